//! The web UI: server-rendered pages (maud) with a little JavaScript for
//! live updates. Every page needs a session; every change needs an
//! administrator and the form's CSRF token, and is recorded in the audit
//! trail with its result.
//!
//! Modules: `layout` (the frame of every page), `view` (pure rendering
//! decisions, unit-tested), `assets` (CSS and JS, embedded), and one module
//! per page: `dashboard`, `add` (Add appliance and its live progress),
//! `nodes` (node detail, roles, removal, service restarts), `events`,
//! `settings`, `accounts`.
//!
//! What applianced refuses is shown verbatim in a red box on the same page,
//! with what to do next; applianced guarantees that a refusal changes
//! nothing, so the page only has to say so.

pub mod accounts;
pub mod add;
pub mod assets;
pub mod dashboard;
pub mod events;
pub mod layout;
pub mod nodes;
pub mod settings;
pub mod view;

use appliance_api::v1::{ClusterStatusReply, ClusterStatusRequest};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::auth::Principal;
use crate::state::{AppState, Outcome};
use view::Tone;

/// The routes of the pages (the sign-in pages, `/metrics` and the gRPC
/// services are the server's).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/dashboard/live", get(dashboard::live))
        .route("/add", get(add::page))
        .route("/add/confirm", post(add::confirm))
        .route("/add/start", post(add::start))
        .route("/add/form", post(add::form_cluster))
        .route("/add/progress/{id}", get(add::progress))
        .route("/add/progress/{id}/events", get(add::progress_events))
        .route("/nodes/{id}", get(nodes::page))
        .route("/nodes/{id}/roles", post(nodes::set_roles))
        .route("/nodes/{id}/remove", post(nodes::remove))
        .route("/nodes/{id}/restart", post(nodes::restart))
        .route("/events", get(events::page))
        .route("/events/stream", get(events::stream))
        .route("/settings", get(settings::page).post(settings::save))
        .route("/settings/certificate", post(settings::certificate_post))
        .route("/accounts", get(accounts::page))
        .route("/accounts/add", post(accounts::add))
        .route("/accounts/remove", post(accounts::remove))
        .route("/accounts/password", post(accounts::password))
        .route("/assets/{file}", get(assets::serve))
        .layer(Extension(add::Runs::shared()))
        .layer(Extension(events::Streams::shared()))
}

/// How an audit event ends: "refused" when applianced (or a check here)
/// said no to the request itself, "failed" when something broke.
pub(crate) fn result_of(status: &tonic::Status) -> &'static str {
    use tonic::Code;
    match status.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::NotFound
        | Code::PermissionDenied
        | Code::OutOfRange
        | Code::Unauthenticated => "refused",
        _ => "failed",
    }
}

/// The HTTP status of a page that shows applianced's refusal or failure.
pub(crate) fn http_status(status: &tonic::Status) -> StatusCode {
    if result_of(status) == "refused" {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::BAD_GATEWAY
    }
}

/// Records a change made from a page: who, from where, what, and how it
/// ended (`Err` carries the result word, "refused" or "failed", and why).
pub(crate) async fn audit(
    state: &AppState,
    who: &Principal,
    action: &str,
    detail: String,
    outcome: Result<(), (&str, String)>,
) {
    let outcome = match &outcome {
        Ok(()) => Outcome::Ok,
        Err(("refused", reason)) => Outcome::Refused(reason),
        Err((_, reason)) => Outcome::Failed(reason),
    };
    state
        .audit(&who.name, who.source, action, &detail, outcome)
        .await;
}

/// Records a change that applianced answered with `outcome`.
pub(crate) async fn audit_call<T>(
    state: &AppState,
    who: &Principal,
    action: &str,
    detail: String,
    outcome: &Result<T, tonic::Status>,
) {
    let outcome = match outcome {
        Ok(_) => Ok(()),
        Err(s) => Err((result_of(s), s.message().to_string())),
    };
    audit(state, who, action, detail, outcome).await;
}

/// The cluster's status, or the reason it could not be read.
pub(crate) async fn cluster_status(state: &AppState) -> Result<ClusterStatusReply, tonic::Status> {
    Ok(state
        .backend()
        .node()
        .cluster_status(ClusterStatusRequest {})
        .await?
        .into_inner())
}

/// The top bar's cluster line from the cluster's status.
pub(crate) fn cluster_badge(
    status: &Result<ClusterStatusReply, tonic::Status>,
) -> Option<(Tone, String)> {
    match status {
        Ok(s) if s.node_state == "member" => {
            let a = view::availability(s);
            let n = s.members.len();
            let plural = if n == 1 { "" } else { "s" };
            Some((
                a.tone,
                format!("Cluster · {n} member{plural} · {}", a.headline),
            ))
        }
        Ok(s) => Some((Tone::Grey, view::availability(s).headline)),
        Err(_) => Some((Tone::Red, "applianced unreachable".to_string())),
    }
}

/// The notices a page shows after a change redirected back to it
/// (`?done=<code>`): fixed texts, so a link cannot make the page say
/// anything else.
pub(crate) fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "account-added" => "The account was added.",
        "account-removed" => "The account was removed; its sessions on this node are signed out.",
        "password-changed" => {
            "The password was changed; other sessions of the account on this node are signed out."
        }
        "settings-saved" => "The settings were saved and are pushed to every member.",
        "certificate-set" => "The certificate was accepted and is pushed to every member.",
        "certificate-cleared" => {
            "The uploaded certificate was removed; each node goes back to its own."
        }
        "roles-changed" => "The roles were changed and pushed to the members.",
        "node-removed" => "The appliance was removed from the cluster.",
        "restarted" => "The service was restarted.",
        _ => return None,
    })
}

/// The query of a page that may show a notice.
#[derive(Debug, Default, serde::Deserialize)]
pub struct DoneQuery {
    /// A notice code (see [`notice`]).
    pub done: Option<String>,
}

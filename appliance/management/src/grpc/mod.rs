//! The remote API: a role-checked proxy of the `Node` service ([`node`])
//! and the `Management` service ([`management`]), both behind
//! `authorization: Bearer <token>` (a token from `Management.Login`).
//!
//! [`routes`] puts both in one axum router; the server sends it every
//! request whose `content-type` starts with `application/grpc`.

pub mod management;
pub mod node;

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use tonic::{Code, Status};

use crate::auth::sessions::Kind;
use crate::auth::{Principal, Role};
use crate::state::AppState;

/// The message of every call without a valid token.
pub const SIGN_IN_FIRST: &str = "sign in first: appliancectl --server URL login";

/// The gRPC services as one axum router.
pub fn routes(state: AppState) -> axum::Router {
    tonic::service::Routes::new(appliance_api::v1::node_server::NodeServer::new(
        node::NodeProxy::new(state.clone()),
    ))
    .add_service(appliance_api::v1::management_server::ManagementServer::new(
        management::ManagementService::new(state),
    ))
    .prepare()
    .into_axum_router()
}

/// The caller's address, as the server recorded it for the connection.
pub fn source<T>(req: &tonic::Request<T>) -> Result<IpAddr, Status> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_canonical())
        .ok_or_else(|| Status::internal("the client's address is unknown"))
}

/// The bearer token of a call, if any.
pub fn bearer<T>(req: &tonic::Request<T>) -> Option<&str> {
    let value = req.metadata().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The signed-in caller of `req` (an API token), or UNAUTHENTICATED.
pub fn caller<T>(state: &AppState, req: &tonic::Request<T>) -> Result<Principal, Status> {
    let source = source(req)?;
    bearer(req)
        .and_then(|token| state.sessions().check(token, Kind::Api, source))
        .ok_or_else(|| Status::unauthenticated(SIGN_IN_FIRST))
}

/// The caller of `req` if it may call `method`: any role for reads, an
/// administrator for changes; PERMISSION_DENIED names the method and role.
pub fn authorize<T>(
    state: &AppState,
    req: &tonic::Request<T>,
    method: &str,
    change: bool,
) -> Result<Principal, Status> {
    let who = caller(state, req)?;
    if change && who.role != Role::Administrator {
        return Err(Status::permission_denied(format!(
            "{method} needs an administrator; account {} is a {}",
            who.name, who.role
        )));
    }
    Ok(who)
}

/// The audit trail's name of a changing method, the same as the web pages
/// record for the same change ("cluster.add", ...); the method's own name
/// for any other. Refusals name the method itself.
pub fn action(method: &str) -> &str {
    match method {
        "SetConfig" => "config.set",
        "RestartService" => "service.restart",
        "AddPeer" => "peer.add",
        "RemovePeer" => "peer.remove",
        "ClusterForm" => "cluster.form",
        "ClusterAdd" => "cluster.add",
        "ClusterRemove" => "cluster.remove",
        "ClusterSetRoles" => "cluster.set-roles",
        "SetSettings" => "settings.set",
        "SetManagementCertificate" => "certificate.set",
        other => other,
    }
}

/// The audit result of a call's outcome.
pub fn outcome_of(status: &Status) -> (&'static str, String) {
    let result = match status.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::AlreadyExists => "refused",
        _ => "failed",
    };
    (result, status.message().to_string())
}

/// Records a changing call of `who` and how it ended.
pub async fn audit_call<T>(
    state: &AppState,
    who: &Principal,
    action: &str,
    detail: &str,
    result: &Result<T, Status>,
) {
    use crate::state::Outcome;
    match result {
        Ok(_) => {
            state
                .audit(&who.name, who.source, action, detail, Outcome::Ok)
                .await
        }
        Err(status) => {
            let (kind, reason) = outcome_of(status);
            let outcome = if kind == "refused" {
                Outcome::Refused(&reason)
            } else {
                Outcome::Failed(&reason)
            };
            state
                .audit(&who.name, who.source, action, detail, outcome)
                .await;
        }
    }
}

/// Checks the role for a changing call; a refusal is audited.
pub async fn authorize_change<T>(
    state: &AppState,
    req: &tonic::Request<T>,
    method: &str,
    detail: &str,
) -> Result<Principal, Status> {
    match authorize(state, req, method, true) {
        Ok(p) => Ok(p),
        Err(status) if status.code() == Code::PermissionDenied => {
            if let Ok(who) = caller(state, req) {
                audit_call::<()>(state, &who, action(method), detail, &Err(status.clone())).await;
            }
            Err(status)
        }
        Err(status) => Err(status),
    }
}

//! `/accounts`: the accounts (name, role, last change), adding and
//! removing them (administrators), changing one's own password (anyone
//! signed in), and who is signed in on this node.
//!
//! The changes themselves are [`crate::auth::accounts`]'s, shared with the
//! remote API (rules, Argon2id hashing, sessions ended, audit events); the
//! pages add the forms, confirmations and the passwords typed twice. The
//! hashes applianced returns are never shown.

use appliance_api::v1::{Account, ListAccountsRequest};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{app_page, csrf, error_box, notice_box, Frame, Nav};
use super::view;
use super::DoneQuery;
use crate::auth::accounts;
use crate::auth::web::{check_csrf, AdminSession, WebSession};
use crate::auth::Principal;
use crate::state::AppState;

/// `GET /accounts`.
pub async fn page(
    State(state): State<AppState>,
    WebSession(who): WebSession,
    Query(done): Query<DoneQuery>,
) -> Response {
    let top = super::notice(done.done.as_deref()).map(notice_box);
    render(&state, &who, top, &AddForm::default()).await
}

async fn render(
    state: &AppState,
    who: &Principal,
    top: Option<Markup>,
    typed: &AddForm,
) -> Response {
    let mut admin = state.backend().admin();
    let (cluster, accounts) = tokio::join!(super::cluster_status(state), async {
        admin
            .list_accounts(ListAccountsRequest {})
            .await
            .map(|r| r.into_inner().accounts)
    });
    let frame = Frame {
        who,
        nav: Nav::Accounts,
        cluster: super::cluster_badge(&cluster),
    };
    let sessions = state.sessions().list();
    app_page(
        "Accounts",
        &frame,
        html! {
            @if let Some(t) = top { (t) }
            section.panel #accounts {
                h2 { "Accounts" }
                @match &accounts {
                    Err(e) => (error_box("The accounts cannot be read.", e.message(), "Reload the page in a moment.")),
                    Ok(list) => (accounts_table(who, list)),
                }
            }
            div.grid2 {
                @if who.can_change() { (add_form(who, typed)) }
                (password_form(who))
            }
            section.panel #sessions {
                h2 { "Signed in on this node" }
                div.table-wrap { table {
                    thead { tr { th { "Account" } th { "Role" } th { "From" } th { "Kind" }
                        th.wide-only { "Since (UTC)" } th { "Expires (UTC)" } } }
                    tbody { @for s in &sessions {
                        tr {
                            td { (s.name) @if s.id == who.session_id { " " span.tag.this { "you" } } }
                            td { (s.role) }
                            td.mono.small { (s.source) }
                            td { (s.kind.as_str()) }
                            td.wide-only.mono.small.nowrap { (view::utc(s.created_unix_ms)) }
                            td.mono.small.nowrap { (view::utc(s.expires_unix_ms)) }
                        }
                    } }
                } }
                p.muted.small { "Sessions live on the node that signed them in; other members have their own." }
            }
        },
    )
    .into_response()
}

fn accounts_table(who: &Principal, list: &[Account]) -> Markup {
    html! {
        div.table-wrap { table {
            thead { tr { th { "Name" } th { "Role" } th { "Changed (UTC)" } th {} } }
            tbody { @for a in list {
                tr {
                    td { strong { (a.name) } @if a.name == who.name { " " span.tag.this { "you" } } }
                    td { (a.role) }
                    td.mono.small.nowrap { (view::utc(a.changed_unix_ms)) }
                    td { @if who.can_change() {
                        form.inline method="post" action="/accounts/remove" {
                            (csrf(who))
                            input type="hidden" name="name" value=(a.name);
                            button.small.secondary type="submit" { "Remove…" }
                        }
                    } }
                }
            } }
        } }
    }
}

fn add_form(who: &Principal, f: &AddForm) -> Markup {
    html! {
        section.panel #add-account {
            h2 { "Add an account" }
            form.stack method="post" action="/accounts/add" {
                (csrf(who))
                label { "Name" span.hint { "A lowercase letter, then up to 31 of a-z 0-9 . _ -" }
                    input type="text" name="name" value=(f.name) required autocomplete="off" spellcheck="false"; }
                label { "Role"
                    select name="role" {
                        option value="viewer" selected[f.role != "administrator"] { "viewer — reads only" }
                        option value="administrator" selected[f.role == "administrator"] { "administrator — everything" }
                    }
                }
                label { "Password" span.hint { "At least 12 characters." }
                    input type="password" name="password" required autocomplete="new-password"; }
                label { "Password again" input type="password" name="password2" required autocomplete="new-password"; }
                div.actions { button type="submit" { "Add account" } }
            }
        }
    }
}

fn password_form(who: &Principal) -> Markup {
    html! {
        section.panel #password {
            h2 { "Change your password" }
            form.stack method="post" action="/accounts/password" {
                (csrf(who))
                label { "Current password" input type="password" name="current" required autocomplete="current-password"; }
                label { "New password" span.hint { "At least 12 characters." }
                    input type="password" name="new" required autocomplete="new-password"; }
                label { "New password again" input type="password" name="new2" required autocomplete="new-password"; }
                div.actions { button type="submit" { "Change password" } }
            }
        }
    }
}

/// The add form.
#[derive(Debug, Default, Deserialize)]
pub struct AddForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub password2: String,
}

/// What the form itself finds wrong before anything is asked: the two
/// passwords must be the same (the rules on names, roles and passwords are
/// [`crate::auth::accounts`]'s, shared with the remote API).
pub fn add_problem(f: &AddForm) -> Option<String> {
    (f.password != f.password2).then(|| "the two passwords differ".to_string())
}

/// `POST /accounts/add`.
pub async fn add(
    State(state): State<AppState>,
    AdminSession(who): AdminSession,
    Form(form): Form<AddForm>,
) -> Response {
    if let Err(refused) = check_csrf(&who, &form.csrf) {
        return refused;
    }
    let reply = match add_problem(&form) {
        Some(problem) => Err(tonic::Status::invalid_argument(problem)),
        None => accounts::add(&state, &who, &form.name, &form.role, &form.password).await,
    };
    match reply {
        Ok(_) => Redirect::to("/accounts?done=account-added").into_response(),
        Err(e) => {
            let top = error_box(
                "The account was not added.",
                e.message(),
                "Nothing changed. Correct what the message names and add the account again.",
            );
            let typed = AddForm {
                password: String::new(),
                password2: String::new(),
                ..form
            };
            (
                super::http_status(&e),
                render(&state, &who, Some(top), &typed).await,
            )
                .into_response()
        }
    }
}

/// The removal form; without `confirm` it asks first.
#[derive(Debug, Default, Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    pub confirm: Option<String>,
}

/// `POST /accounts/remove`: confirmation, then `RemoveAccount`.
pub async fn remove(
    State(state): State<AppState>,
    AdminSession(who): AdminSession,
    Form(form): Form<RemoveForm>,
) -> Response {
    if let Err(refused) = check_csrf(&who, &form.csrf) {
        return refused;
    }
    if form.confirm.as_deref() != Some("yes") {
        let cluster = super::cluster_status(&state).await;
        let frame = Frame {
            who: &who,
            nav: Nav::Accounts,
            cluster: super::cluster_badge(&cluster),
        };
        return app_page("Remove account: confirm", &frame, html! {
            section.panel {
                h2 { "What will change" }
                p { "The account " strong { (form.name) } " is removed from every member; its sessions on this node are signed out."
                    @if form.name == who.name { " That includes you." } }
                p.muted { "The last administrator cannot be removed: that is refused and nothing changes." }
                form.stack method="post" action="/accounts/remove" {
                    (csrf(&who))
                    input type="hidden" name="name" value=(form.name);
                    input type="hidden" name="confirm" value="yes";
                    div.actions {
                        button.danger type="submit" { "Remove " (form.name) }
                        a.button.secondary href="/accounts" { "Cancel" }
                    }
                }
            }
        }).into_response();
    }
    let reply = accounts::remove(&state, &who, &form.name).await;
    match reply {
        Ok(_) => {
            if form.name == who.name {
                return Redirect::to("/signin").into_response();
            }
            Redirect::to("/accounts?done=account-removed").into_response()
        }
        Err(e) => {
            let top = error_box(
                &format!("{} was not removed.", form.name),
                e.message(),
                "Nothing changed.",
            );
            (
                super::http_status(&e),
                render(&state, &who, Some(top), &AddForm::default()).await,
            )
                .into_response()
        }
    }
}

/// The own-password form.
#[derive(Debug, Default, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub current: String,
    #[serde(default)]
    pub new: String,
    #[serde(default)]
    pub new2: String,
}

/// What the form itself finds wrong: the new password typed twice the same.
pub fn password_problem(f: &PasswordForm) -> Option<String> {
    (f.new != f.new2).then(|| "the two new passwords differ".to_string())
}

/// `POST /accounts/password`: the signed-in account's own password (any
/// role), with `ChangePassword`'s rules (the current password, rate-limited
/// like a sign-in; the account's other sessions end).
pub async fn password(
    State(state): State<AppState>,
    WebSession(who): WebSession,
    Form(form): Form<PasswordForm>,
) -> Response {
    if let Err(refused) = check_csrf(&who, &form.csrf) {
        return refused;
    }
    let reply = match password_problem(&form) {
        Some(problem) => Err(tonic::Status::invalid_argument(problem)),
        None => accounts::change_password(&state, &who, "", &form.current, &form.new).await,
    };
    match reply {
        Ok(_) => Redirect::to("/accounts?done=password-changed").into_response(),
        Err(e) => {
            let top = error_box(
                "The password was not changed.",
                e.message(),
                "Nothing changed. Try again.",
            );
            (
                super::http_status(&e),
                render(&state, &who, Some(top), &AddForm::default()).await,
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests;

//! The pages that need no session: `/signin` (the form and its POST),
//! `/signout` (POST, CSRF-checked) and `/setup` (no administrator yet: says
//! where to set the first one, accepts nothing).
//!
//! Every sign-in, failed sign-in (the typed name in the detail), refusal by
//! the rate limiter and sign-out is an audit event.

use axum::extract::{Form, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

use super::sessions::{Kind, COOKIE};
use super::web::{check_csrf, cleared_cookie, cookie, session_cookie, ClientAddr, WebSession};
use super::{sign_in, SignInError};
use crate::state::{AppState, Outcome};
use crate::web::layout::page;

/// The routes of these pages.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/signin", get(signin_form).post(signin))
        .route("/signout", post(signout))
        .route("/setup", get(setup))
}

/// True for a path on this site (`/x`), never `//host` or `/\host`, which
/// browsers read as another site.
pub fn is_local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control())
}

fn local_or_root(next: Option<&str>) -> &str {
    next.filter(|n| is_local_path(n)).unwrap_or("/")
}

/// The query of `GET /signin`.
#[derive(Debug, Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize, Default)]
pub struct SignInForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// The sign-out form's fields.
#[derive(Debug, Deserialize, Default)]
pub struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

fn form(next: &str, name: &str, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            @if let Some(e) = error {
                p class="error" role="alert" { (e) }
            }
            form method="post" action="/signin" {
                input type="hidden" name="next" value=(next);
                label { "Account " input type="text" name="name" value=(name) autocomplete="username" required autofocus; }
                label { "Password " input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

fn unreachable_page(e: &tonic::Status) -> Response {
    tracing::warn!(error = %e.message(), "applianced unreachable from the sign-in page");
    let body = page(
        "Appliance unavailable",
        None,
        html! { p { "The appliance's daemon does not answer: " (e.message()) ". Try again in a moment." } },
    );
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn signin_form(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: axum::http::HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = local_or_root(q.next.as_deref()).to_string();
    if let Some(token) = cookie(&headers, COOKIE) {
        if state.sessions().check(token, Kind::Web, source).is_some() {
            return Redirect::to(&next).into_response();
        }
    }
    match state.backend().has_administrator().await {
        Ok(false) => Redirect::to("/setup").into_response(),
        Ok(true) => form(&next, "", None).into_response(),
        Err(e) => unreachable_page(&e),
    }
}

async fn signin(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    Form(f): Form<SignInForm>,
) -> Response {
    let next = local_or_root(f.next.as_deref()).to_string();
    match sign_in(&state, &f.name, &f.password, source, Kind::Web).await {
        Ok((token, _)) => (
            [(header::SET_COOKIE, session_cookie(&token))],
            Redirect::to(&next),
        )
            .into_response(),
        Err(SignInError::NoAdministrator(_)) => Redirect::to("/setup").into_response(),
        Err(SignInError::Unreachable(e)) => unreachable_page(&e),
        Err(e @ SignInError::Throttled(_)) => (
            StatusCode::TOO_MANY_REQUESTS,
            form(&next, &f.name, Some(&e.to_string())),
        )
            .into_response(),
        Err(e @ SignInError::Wrong) => (
            StatusCode::UNAUTHORIZED,
            form(&next, &f.name, Some(&e.to_string())),
        )
            .into_response(),
    }
}

async fn signout(
    State(state): State<AppState>,
    WebSession(who): WebSession,
    headers: axum::http::HeaderMap,
    Form(f): Form<SignOutForm>,
) -> Response {
    if let Err(refused) = check_csrf(&who, &f.csrf) {
        return refused;
    }
    if let Some(token) = cookie(&headers, COOKIE) {
        state.sessions().revoke_token(token);
    }
    state
        .audit(&who.name, who.source, "sign-out", "web", Outcome::Ok)
        .await;
    (
        [(header::SET_COOKIE, cleared_cookie())],
        Redirect::to("/signin"),
    )
        .into_response()
}

async fn setup(State(state): State<AppState>) -> Response {
    match state.backend().setup_state().await {
        Ok((true, _)) => Redirect::to("/signin").into_response(),
        Ok((false, hint)) => {
            let hint = if hint.is_empty() {
                "Set the first administrator on the console, in the seed file or with the kernel parameter appliance.admin=NAME:HASH."
            } else {
                hint.as_str()
            };
            page(
                "Set up the first administrator",
                None,
                html! {
                    p { "This appliance has no administrator yet, so no one can sign in." }
                    p class="hint" { (hint) }
                    p { "Reload this page once it is set." }
                },
            )
            .into_response()
        }
        Err(e) => unreachable_page(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_stay_on_this_site() {
        for ok in ["/", "/services", "/nodes/a?x=1"] {
            assert!(is_local_path(ok), "{ok}");
        }
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "/a\nb",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }
}

//! The extractors of the web pages: [`WebSession`] (signed in, else a
//! redirect to the sign-in page), [`AdminSession`] (an administrator, else a
//! refusal page), [`ClientAddr`], the CSRF check of forms
//! ([`check_csrf`]) and the same-origin check of every POST
//! ([`same_origin`], a layer the server puts on the whole web router).
//!
//! How a page uses them:
//!
//! ```ignore
//! async fn show(WebSession(who): WebSession) -> Markup {
//!     page("Services", Some(&who), html! {
//!         form method="post" action="/services/restart" {
//!             input type="hidden" name="csrf" value=(who.csrf);
//!             button { "Restart" }
//!         }
//!     })
//! }
//!
//! async fn restart(AdminSession(who): AdminSession, Form(f): Form<RestartForm>) -> Response {
//!     if let Err(refused) = check_csrf(&who, &f.csrf) { return refused; }
//!     ...
//! }
//! ```
//!
//! A page that only reads takes `WebSession`; one that changes anything
//! takes `AdminSession` and calls `check_csrf` first. Tests that call the
//! router without the server must insert `axum::extract::ConnectInfo`
//! (a `SocketAddr`) in the request's extensions, as the server does.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use subtle::ConstantTimeEq;

use super::sessions::{Kind, COOKIE};
use super::Principal;
use crate::state::AppState;
use crate::web::layout::page;

/// A signed-in web session (any role).
#[derive(Debug, Clone)]
pub struct WebSession(pub Principal);

/// A signed-in administrator's web session.
#[derive(Debug, Clone)]
pub struct AdminSession(pub Principal);

/// The client's address (IPv4-mapped IPv6 addresses as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The `Set-Cookie` value of a new web session.
pub fn session_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        super::sessions::ABSOLUTE_MS / 1000
    )
}

/// The `Set-Cookie` value that deletes the session cookie.
pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Percent-encodes everything but unreserved characters and `/` (for the
/// `next` parameter of the sign-in page).
pub fn encode_component(s: &str) -> String {
    use std::fmt::Write;
    s.bytes()
        .fold(String::with_capacity(s.len()), |mut out, b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
            out
        })
}

fn client_addr(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_canonical())
}

fn no_client_addr() -> Response {
    tracing::error!("request without the client's address (ConnectInfo missing)");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the client's address is unknown",
    )
        .into_response()
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        client_addr(parts)
            .map(ClientAddr)
            .ok_or_else(no_client_addr)
    }
}

impl FromRequestParts<AppState> for WebSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let source = client_addr(parts).ok_or_else(no_client_addr)?;
        if let Some(token) = cookie(&parts.headers, COOKIE) {
            if let Some(p) = state.sessions().check(token, Kind::Web, source) {
                return Ok(WebSession(p));
            }
        }
        // Not signed in: to the setup page while no one can sign in.
        if matches!(state.backend().has_administrator().await, Ok(false)) {
            return Err(Redirect::to("/setup").into_response());
        }
        let next = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let target = if next == "/" {
            "/signin".to_string()
        } else {
            format!("/signin?next={}", encode_component(next))
        };
        Err(Redirect::to(&target).into_response())
    }
}

impl FromRequestParts<AppState> for AdminSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let WebSession(p) = WebSession::from_request_parts(parts, state).await?;
        if p.can_change() {
            return Ok(AdminSession(p));
        }
        let body = page(
            "Not allowed",
            Some(&p),
            html! {
                p { "Your account is a viewer; ask an administrator." }
                p { a href="/" { "Back to the dashboard" } }
            },
        );
        Err((StatusCode::FORBIDDEN, body).into_response())
    }
}

/// Checks a form's `csrf` field against the session's token (in constant
/// time); the refusal is a 403 page.
#[allow(clippy::result_large_err)]
pub fn check_csrf(p: &Principal, form_token: &str) -> Result<(), Response> {
    let ok = !p.csrf.is_empty()
        && p.csrf.len() == form_token.len()
        && bool::from(p.csrf.as_bytes().ct_eq(form_token.as_bytes()));
    if ok {
        return Ok(());
    }
    tracing::warn!(name = %p.name, source = %p.source, "form refused: CSRF token does not match");
    let body = page(
        "Form refused",
        Some(p),
        html! {
            p { "This form is out of date or did not come from this site. Reload the page and try again." }
        },
    );
    Err((StatusCode::FORBIDDEN, body).into_response())
}

/// Why a request failed the same-origin check, or `None` if it passes.
pub fn cross_site_reason(
    method: &Method,
    headers: &HeaderMap,
    authority: Option<&str>,
) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(authority)
        .map(str::to_ascii_lowercase);
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return (site != "same-origin")
            .then(|| format!("Sec-Fetch-Site is {site:?}, not same-origin"));
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Some("the request has neither Origin nor Sec-Fetch-Site".to_string());
    };
    let Some(host) = host else {
        return Some("the request names no host".to_string());
    };
    if origin.to_ascii_lowercase() == format!("https://{host}") {
        None
    } else {
        Some(format!(
            "Origin {origin:?} is not this site (https://{host})"
        ))
    }
}

/// The layer of the web router: refuses a POST (or any other changing
/// method) from another site with 403 and says why.
pub async fn same_origin(req: Request, next: Next) -> Response {
    let authority = req.uri().authority().map(|a| a.as_str().to_string());
    if let Some(reason) = cross_site_reason(req.method(), req.headers(), authority.as_deref()) {
        tracing::warn!(path = %req.uri().path(), %reason, "cross-site request refused");
        let body = page(
            "Request refused",
            None,
            html! {
                p { "This request came from another site and was refused: " (reason) "." }
                p { "Use the forms of this site's own pages." }
            },
        );
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[
            ("cookie", "a=1; appliance_session=abc ; b=2"),
            ("cookie", "c=3"),
        ]);
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "d"), None);
    }

    #[test]
    fn session_cookie_flags() {
        let c = session_cookie("t");
        for flag in [
            "appliance_session=t",
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=43200",
        ] {
            assert!(c.split("; ").any(|f| f == flag), "{flag} in {c}");
        }
    }

    #[test]
    fn posts_must_be_same_origin() {
        let post = Method::POST;
        let host = ("host", "node1:8443");
        assert_eq!(
            cross_site_reason(&Method::GET, &headers(&[host]), None),
            None
        );
        assert_eq!(
            cross_site_reason(
                &post,
                &headers(&[host, ("origin", "https://node1:8443")]),
                None
            ),
            None
        );
        assert_eq!(
            cross_site_reason(
                &post,
                &headers(&[("origin", "https://node1:8443")]),
                Some("node1:8443")
            ),
            None
        );
        assert_eq!(
            cross_site_reason(
                &post,
                &headers(&[host, ("sec-fetch-site", "same-origin")]),
                None
            ),
            None
        );
        for bad in [
            headers(&[host]),
            headers(&[host, ("origin", "https://evil.example")]),
            headers(&[host, ("origin", "http://node1:8443")]),
            headers(&[host, ("origin", "null")]),
            headers(&[host, ("sec-fetch-site", "cross-site")]),
            headers(&[
                host,
                ("sec-fetch-site", "same-site"),
                ("origin", "https://node1:8443"),
            ]),
        ] {
            assert!(cross_site_reason(&post, &bad, None).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn csrf_tokens_compare_whole() {
        let p = Principal {
            name: "ann".into(),
            role: super::super::Role::Administrator,
            session_id: "s".into(),
            csrf: "abcd".into(),
            source: IpAddr::from([127, 0, 0, 1]),
        };
        assert!(check_csrf(&p, "abcd").is_ok());
        for bad in ["", "abc", "abcde", "abce"] {
            assert!(check_csrf(&p, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn next_is_encoded() {
        assert_eq!(encode_component("/services?x=1&y"), "/services%3Fx%3D1%26y");
    }
}

//! The web UI: server-rendered pages (maud) with a little JavaScript for
//! live updates. Every page needs a session; every change needs an
//! administrator and the form's CSRF token.

pub mod layout;

use axum::Router;

use crate::state::AppState;

/// The routes of the pages (the sign-in pages, `/metrics` and the gRPC
/// services are the server's).
pub fn router() -> Router<AppState> {
    Router::new()
}

//! The UI's stylesheet and script, compiled into the binary (no files to
//! install, nothing fetched from elsewhere) and served under `/assets/`.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The stylesheet.
pub const STYLE_CSS: &str = include_str!("../../assets/style.css");
/// The script (live refresh, Add progress, confirmations).
pub const APP_JS: &str = include_str!("../../assets/app.js");

/// `GET /assets/{file}`: the embedded files; anything else is 404. They
/// need no session: they hold nothing secret and the sign-in page uses them.
pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            // Short: a new image may change them under the same name.
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

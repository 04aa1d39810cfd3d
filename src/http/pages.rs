//! The web pages: the dashboard (`/`), the player page (`/watch/{stream}`) and their static
//! files (`/static/...`), embedded in the binary; no build step. hls.js is vendored
//! (`static/vendor/`, version and licence there).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error;

const INDEX: &str = include_str!("static/index.html");
const WATCH: &str = include_str!("static/watch.html");

/// Name, content type, bytes.
const STATIC: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("static/style.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_bytes!("static/common.js"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("static/dashboard.js"),
    ),
    (
        "watch.js",
        "text/javascript; charset=utf-8",
        include_bytes!("static/watch.js"),
    ),
    (
        "vendor/hls.light.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("static/vendor/hls.light.min.js"),
    ),
    (
        "vendor/hls.js-LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("static/vendor/hls.js-LICENSE"),
    ),
];

fn html(text: &'static str) -> Response {
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub(super) async fn index() -> Response {
    html(INDEX)
}

pub(super) async fn watch(Path(_stream): Path<String>) -> Response {
    html(WATCH)
}

pub(super) async fn static_file(Path(path): Path<String>) -> Response {
    let Some((_, kind, bytes)) = STATIC.iter().find(|(name, _, _)| *name == path) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no such file: /static/{path}"),
        );
    };
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // The binary's version is in the ETag: a new build's files are fetched again.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "\"{}-{}\"",
        env!("CARGO_PKG_VERSION"),
        bytes.len()
    )) {
        h.insert(header::ETAG, v);
    }
    r
}

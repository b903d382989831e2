//! Server-rendered pages (askama templates, compile-time checked) and the
//! embedded assets; every state change goes through the JSON API from the
//! small embedded script, so the pages carry no inline script.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::Web;

const CSS: &str = include_str!("assets/webmail.css");
const JS: &str = include_str!("assets/webmail.js");

fn asset(ctype: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// The page routes.
pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route(
            "/assets/webmail.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/assets/webmail.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
}

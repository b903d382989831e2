//! Errors of `/api/v1` as RFC 9457 `application/problem+json`: `type`,
//! `title`, `status`, `detail`, plus `error` (the message the webmail's
//! script shows, as before) and the fields of each problem (`smtp_code`
//! and `reason` for a refused submission, `retry_after`, …). The
//! [`api_errors`] layer gives the same shape to the errors that do not
//! come from a handler (an unknown route, a wrong method, a body the
//! extractor refused).

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The media type of every API error.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem that is only its HTTP status (RFC 9457 §4.2.1).
pub const BLANK: &str = "about:blank";
/// The access point did not accept a submission: `smtp_code`, `reason`.
pub const REFUSED: &str = "urn:pecd:problem:submission-refused";
/// The bearer token is unknown or revoked.
pub const INVALID_TOKEN: &str = "urn:pecd:problem:invalid-token";
/// The token lacks a scope the route needs.
pub const INSUFFICIENT_SCOPE: &str = "urn:pecd:problem:insufficient-scope";
/// The route takes no token (the session and account routes).
pub const TOKEN_NOT_ALLOWED: &str = "urn:pecd:problem:token-not-allowed";
/// The token made too many requests: `retry_after`.
pub const RATE_LIMITED: &str = "urn:pecd:problem:rate-limited";
/// The `Idempotency-Key` was used with another request body.
pub const KEY_REUSED: &str = "urn:pecd:problem:idempotency-key-reused";
/// A request with this `Idempotency-Key` is still running.
pub const KEY_IN_USE: &str = "urn:pecd:problem:idempotency-key-in-use";

fn title_of(kind: &str, status: StatusCode) -> String {
    match kind {
        REFUSED => "Submission not accepted",
        INVALID_TOKEN => "Invalid API token",
        INSUFFICIENT_SCOPE => "Insufficient scope",
        TOKEN_NOT_ALLOWED => "API tokens not accepted here",
        RATE_LIMITED => "Rate limit exceeded",
        KEY_REUSED => "Idempotency-Key reused with another request",
        KEY_IN_USE => "Idempotency-Key in use",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
    .to_string()
}

/// `body` (an object with at least `error`, maybe `type` and `detail`) as
/// a problem of `status`.
pub fn shape(status: StatusCode, body: serde_json::Value) -> serde_json::Value {
    let mut obj = match body {
        serde_json::Value::Object(m) => m,
        other => {
            let mut m = serde_json::Map::new();
            m.insert("error".into(), other);
            m
        }
    };
    let kind = obj
        .get("type")
        .and_then(|v| v.as_str())
        .unwrap_or(BLANK)
        .to_string();
    let error = obj
        .get("error")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| title_of(&kind, status));
    let detail = obj
        .get("detail")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| error.clone());
    obj.insert("type".into(), kind.clone().into());
    obj.insert("title".into(), title_of(&kind, status).into());
    obj.insert("status".into(), status.as_u16().into());
    obj.insert("detail".into(), detail.into());
    obj.insert("error".into(), error.into());
    serde_json::Value::Object(obj)
}

/// The response of a problem: the body, its media type, `Retry-After` for
/// a `retry_after`, and the `WWW-Authenticate` challenge (RFC 6750) of a
/// `401` or a scope's `403`.
pub fn response(status: StatusCode, body: serde_json::Value) -> Response {
    let body = shape(status, body);
    let retry = body.get("retry_after").and_then(|v| v.as_u64());
    let challenge = match body.get("type").and_then(|v| v.as_str()) {
        Some(INVALID_TOKEN) => Some("Bearer realm=\"pecd\", error=\"invalid_token\""),
        Some(INSUFFICIENT_SCOPE) => Some("Bearer realm=\"pecd\", error=\"insufficient_scope\""),
        _ if status == StatusCode::UNAUTHORIZED => Some("Bearer realm=\"pecd\""),
        _ => None,
    };
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Some(secs) = retry {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(c) = challenge {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    r
}

/// Largest error body of another layer read to make it a problem's detail.
const MAX_FOREIGN_BODY: usize = 8 * 1024;

/// Under `/api/`: an error response that is not a problem yet (axum's
/// rejections, `404` of an unknown route, `405`) becomes one, its text the
/// detail; its other headers (`Allow`, `Retry-After`) are kept.
pub async fn api_errors(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let r = next.run(req).await;
    let is_problem = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(CONTENT_TYPE.as_bytes()));
    if !api || is_problem || !(r.status().is_client_error() || r.status().is_server_error()) {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, MAX_FOREIGN_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let status = parts.status;
    let message = if text.is_empty() {
        match status {
            StatusCode::NOT_FOUND => "no such API route".to_string(),
            StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_string(),
            s => s.canonical_reason().unwrap_or("error").to_string(),
        }
    } else {
        text
    };
    let fresh = response(status, serde_json::json!({ "error": message }));
    let (fresh_parts, body) = fresh.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (k, v) in fresh_parts.headers.iter() {
        parts.headers.insert(k, v.clone());
    }
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_error_becomes_a_problem_and_keeps_its_fields() {
        let p = shape(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "no such message"}),
        );
        assert_eq!(p["type"], BLANK);
        assert_eq!(p["title"], "Not Found");
        assert_eq!(p["status"], 404);
        assert_eq!(p["detail"], "no such message");
        assert_eq!(p["error"], "no such message");
        let p = shape(
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({"type": REFUSED, "error": "not accepted",
                "detail": "virus X", "smtp_code": "550 5.7.1", "reason": "virus X"}),
        );
        assert_eq!(p["title"], "Submission not accepted");
        assert_eq!(p["detail"], "virus X");
        assert_eq!(p["smtp_code"], "550 5.7.1");
        assert_eq!(p["status"], 422);
    }
}

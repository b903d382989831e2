//! `Idempotency-Key` on `POST /api/v1/messages` (issue 25): a client that
//! retries after a timeout must not send a second PEC with legal value.
//!
//! The key is claimed in the store, per user, with the SHA-256 of the
//! request body, before anything is submitted; the answer is written to it
//! after. Within 24 hours a request with the same key and body gets that
//! answer again (`Idempotent-Replayed: true`) and sends nothing; with
//! another body `422`; while the first is still running `409` with
//! `Retry-After` (the second does not wait: a client's retry loop does the
//! waiting). An answer a retry could change (`408`, `409`, `429`, `5xx`:
//! nothing was accepted) is not kept: the key is freed. The work runs in a
//! task of its own, so a client that hangs up does not cut a submission in
//! two; a request that died with its node (the key still claimed after
//! [`STALE_MS`]) is settled by the Message-ID it was submitting: accepted
//! (its answer is rebuilt) or not (the retry takes the key over).

use std::future::Future;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::server::web::{problem, ApiError, Web};
use crate::store::api::KeyClaim;

/// How long a key is remembered.
pub const TTL_MS: i64 = 24 * 3600 * 1000;
/// A key claimed this long without an answer belongs to a request that died.
pub const STALE_MS: i64 = 10 * 60 * 1000;
/// Longest key.
const MAX_KEY: usize = 255;

/// The request's `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub(super) fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(str::trim)
        .filter(|k| {
            !k.is_empty() && k.len() <= MAX_KEY && k.bytes().all(|b| (0x20..0x7f).contains(&b))
        })
        .map(|k| Some(k.to_string()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Idempotency-Key: 1 to {MAX_KEY} visible ASCII characters"),
            )
        })
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A kept answer given again.
fn replay(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let ctype = if status.is_success() {
        "application/json"
    } else {
        problem::CONTENT_TYPE
    };
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    r
}

fn in_use() -> ApiError {
    ApiError::problem(
        StatusCode::CONFLICT,
        problem::KEY_IN_USE,
        "a request with this Idempotency-Key is still in progress: retry when it has finished",
    )
    .retry_after(1)
}

/// Whether an answer is kept for the key: not when a retry may do better
/// (nothing was accepted).
fn kept(status: StatusCode) -> bool {
    !(status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::CONFLICT
        || status == StatusCode::TOO_MANY_REQUESTS)
}

/// Run `work` (given the Message-ID, without brackets, to submit under) for
/// `user`, once per `key` and body (`body_hash`) when there is a key.
pub(super) async fn run<W, F>(
    web: &Arc<Web>,
    user: &str,
    key: Option<String>,
    body_hash: [u8; 32],
    work: W,
) -> Result<Response, ApiError>
where
    W: FnOnce(String) -> F + Send + 'static,
    F: Future<Output = Result<(StatusCode, serde_json::Value), ApiError>> + Send + 'static,
{
    let ctx = &web.ctx;
    let when = crate::pec::clock::ItalianTime::from_unix(ctx.now_secs());
    let msgid =
        crate::pec::ids::message_id(ctx.ids.as_ref(), &when, ctx.domain()).replace(".r@", ".w@");
    let Some(key) = key else {
        let out = tokio::spawn(work(msgid))
            .await
            .map_err(ApiError::internal)?;
        return out.map(|(s, b)| answer(s, b));
    };
    let store = ctx.store.clone();
    let now = ctx.clock.unix_ms();
    let claim = store
        .claim_idempotency_key(user, &key, body_hash, &msgid, now, TTL_MS)
        .await
        .map_err(ApiError::internal)?;
    match claim {
        KeyClaim::Fresh => {}
        KeyClaim::Answered { status, body } => return Ok(replay(status, body)),
        KeyClaim::OtherBody => {
            return Err(ApiError::problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                problem::KEY_REUSED,
                "this Idempotency-Key was used with another request body in the last 24 hours: a new message needs a new key",
            ))
        }
        KeyClaim::InProgress {
            msgid: old,
            started_at,
        } => {
            if now - started_at < STALE_MS {
                return Err(in_use());
            }
            // The request that claimed it died: it was accepted or it was not.
            if let Some(m) = store
                .sent_with_msgid(user, &old)
                .await
                .map_err(ApiError::internal)?
            {
                let body = serde_json::json!({
                    "identificativo": m.identificativo,
                    "msgid": m.msgid,
                    "sent": null,
                })
                .to_string()
                .into_bytes();
                store
                    .answer_idempotency_key(user, &key, &old, 201, body.clone())
                    .await
                    .map_err(ApiError::internal)?;
                return Ok(replay(201, body));
            }
            if !store
                .take_over_idempotency_key(user, &key, &old, &msgid, now)
                .await
                .map_err(ApiError::internal)?
            {
                return Err(in_use());
            }
        }
    }
    let user = user.to_string();
    let task = tokio::spawn(async move {
        let out = work(msgid.clone()).await;
        let (status, body) = match &out {
            Ok((s, b)) => (*s, b.clone()),
            Err(e) => (e.status, problem::shape(e.status, e.body.clone())),
        };
        let recorded = if kept(status) {
            let body = body.to_string().into_bytes();
            store
                .answer_idempotency_key(&user, &key, &msgid, status.as_u16(), body)
                .await
        } else {
            store.release_idempotency_key(&user, &key, &msgid).await
        };
        if let Err(e) = recorded {
            // The claim stays: a retry after STALE_MS settles it by msgid.
            tracing::error!(error = %e, user = %user, "Idempotency-Key's answer not recorded");
        }
        out
    });
    let out = task.await.map_err(ApiError::internal)?;
    out.map(|(s, b)| answer(s, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_and_only_temporary_answers_are_dropped() {
        let mut h = HeaderMap::new();
        assert_eq!(key_of(&h).unwrap(), None);
        h.insert("idempotency-key", "  order-42 ".parse().unwrap());
        assert_eq!(key_of(&h).unwrap().as_deref(), Some("order-42"));
        h.insert("idempotency-key", "x".repeat(256).parse().unwrap());
        assert!(key_of(&h).is_err());
        h.insert(
            "idempotency-key",
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert!(key_of(&h).is_err());
        for s in [201, 400, 413, 422] {
            assert!(kept(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [408, 409, 429, 500, 503] {
            assert!(!kept(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}

//! API tokens on `/api/v1` (issue 25): `Authorization: Bearer <token>`
//! instead of the session cookie. A token is looked up in the store at
//! every request (no cache: a revocation holds at the next request, on
//! every node), must have the scopes its route needs ([`need`]), and is
//! held to `[api] rate` on this node. No CSRF token is asked: a browser
//! never adds an `Authorization: Bearer` header by itself, so a forged
//! cross-site request cannot carry one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::{HeaderMap, Method, StatusCode};

use super::{problem, ApiError, Web};
use crate::store::api::{ApiToken, Scopes};

/// The token of an `Authorization: Bearer` header, if the request has one
/// (`Some("")` for a Bearer header without a usable token).
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?;
    let v = v.to_str().unwrap_or("");
    let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

const READ: Scopes = Scopes {
    send: false,
    read: true,
};
const SEND: Scopes = Scopes {
    send: true,
    read: false,
};
const READ_SEND: Scopes = Scopes {
    send: true,
    read: true,
};

/// The scopes a token needs for `method` on the route `route` (as the
/// router declares it); `None` where tokens are refused: the session and
/// account routes, and any route not listed here (a new route takes no
/// token until it is given a scope).
///
/// Flags need `read` only: marking a received PEC handled or seen is part
/// of reading the box. Moving, deleting and the folder changes need `read`
/// and `send` both: a token trusted only to read must not be able to hide
/// or destroy what it reads.
pub fn need(method: &Method, route: &str) -> Option<Scopes> {
    let read_only = matches!(*method, Method::GET | Method::HEAD);
    Some(match route {
        "/api/v1/folders"
        | "/api/v1/folders/{folder}/messages"
        | "/api/v1/folders/{folder}/mbox"
        | "/api/v1/messages/{id}/raw"
        | "/api/v1/messages/{id}/html"
        | "/api/v1/messages/{id}/parts/{part}"
        | "/api/v1/sent"
        | "/api/v1/sent/{msgid}"
        | "/api/v1/sent/{msgid}/evidence"
            if read_only =>
        {
            READ
        }
        "/api/v1/messages/{id}" if read_only => READ,
        "/api/v1/messages" if *method == Method::POST => SEND,
        "/api/v1/messages/{id}/flags" if *method == Method::POST => READ,
        "/api/v1/verify" if *method == Method::POST => Scopes::default(),
        "/api/v1/messages/{id}/move" if *method == Method::POST => READ_SEND,
        "/api/v1/messages/{id}" if *method == Method::DELETE => READ_SEND,
        "/api/v1/folders" if *method == Method::POST => READ_SEND,
        "/api/v1/folders/{folder}" if *method == Method::PATCH || *method == Method::DELETE => {
            READ_SEND
        }
        _ => return None,
    })
}

/// How often a token's last use is written back: a write per request would
/// cost a commit each.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Buckets kept before the full (idle) ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

/// `[api] rate` per token: a token bucket per token id, on this node.
#[derive(Default)]
pub struct RateLimit {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimit {
    /// Take one request for token `id` at `now` under `rate` per second and
    /// `burst`; `Err(seconds)` to wait when there is none left.
    pub fn take(&self, id: &str, rate: f64, burst: u32, now: Instant) -> Result<(), u64> {
        let burst = f64::from(burst.max(1));
        let mut m = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_BUCKETS && !m.contains_key(id) {
            m.retain(|_, (left, at)| {
                *left + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (left, at) = m.entry(id.to_string()).or_insert((burst, now));
        *left = (*left + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *left >= 1.0 {
            *left -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *left) / rate).ceil().max(1.0) as u64)
        }
    }
}

fn invalid() -> ApiError {
    ApiError::problem(
        StatusCode::UNAUTHORIZED,
        problem::INVALID_TOKEN,
        "unknown or revoked API token",
    )
}

/// The token a request presents, checked: it exists, has `need` and is
/// within its rate. `401` for a bad or revoked token, `403` for a missing
/// scope or a route that takes no token, `429` over the rate.
pub async fn check(web: &Web, token: &str, need: Option<Scopes>) -> Result<ApiToken, ApiError> {
    if !token.starts_with(crate::store::api::TOKEN_PREFIX) || token.len() > 200 {
        return Err(invalid());
    }
    let t = web
        .ctx
        .store
        .token(token)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(invalid)?;
    let Some(need) = need else {
        return Err(ApiError::problem(
            StatusCode::FORBIDDEN,
            problem::TOKEN_NOT_ALLOWED,
            "API tokens are not accepted here: log in to the webmail for account settings",
        ));
    };
    if !t.scopes.covers(need) {
        return Err(ApiError::problem(
            StatusCode::FORBIDDEN,
            problem::INSUFFICIENT_SCOPE,
            format!(
                "this token's scopes ({}) do not include {}",
                t.scopes.names().join(", "),
                need.names().join(" and ")
            ),
        ));
    }
    let api = web.ctx.cfg().api.clone();
    if let Err(secs) = web
        .api_rate
        .take(&t.id, api.rate_per_second(), api.burst(), Instant::now())
    {
        return Err(ApiError::problem(
            StatusCode::TOO_MANY_REQUESTS,
            problem::RATE_LIMITED,
            format!(
                "too many requests with this token (at most {} with a burst of {}): try again later",
                api.rate,
                api.burst()
            ),
        )
        .retry_after(secs));
    }
    let now = web.ctx.clock.unix_ms();
    if t.last_used.is_none_or(|l| now - l >= TOUCH_EVERY_MS) {
        let (store, id) = (web.ctx.store.clone(), t.id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(&id, now).await {
                tracing::warn!(error = %e, "API token's last use not recorded");
            }
        });
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bearer_header_is_found_whatever_the_case() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert("authorization", "Basic eDp5".parse().unwrap());
        assert_eq!(presented(&h), None);
        h.insert("authorization", "bearer  pecd_abc ".parse().unwrap());
        assert_eq!(presented(&h), Some("pecd_abc"));
        h.insert("authorization", "Bearer".parse().unwrap());
        assert_eq!(presented(&h), Some(""));
    }

    #[test]
    fn routes_need_their_scopes_and_account_routes_refuse_tokens() {
        let read = need(&Method::GET, "/api/v1/sent/{msgid}").unwrap();
        assert!(read.read && !read.send);
        let send = need(&Method::POST, "/api/v1/messages").unwrap();
        assert!(send.send && !send.read);
        assert!(need(&Method::DELETE, "/api/v1/messages/{id}").unwrap().read);
        assert!(need(&Method::DELETE, "/api/v1/messages/{id}").unwrap().send);
        for (m, r) in [
            (Method::GET, "/api/v1/session"),
            (Method::DELETE, "/api/v1/session"),
            (Method::POST, "/api/v1/account/tokens"),
            (Method::GET, "/api/v1/account/tokens"),
            (Method::POST, "/api/v1/account/password"),
            (Method::POST, "/api/v1/sent"),
        ] {
            assert_eq!(need(&m, r), None, "{m} {r}");
        }
    }

    #[test]
    fn the_rate_allows_a_burst_then_one_per_interval() {
        let r = RateLimit::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.take("a", 2.0, 3, t0), Ok(()));
        }
        assert_eq!(r.take("a", 2.0, 3, t0), Err(1));
        // Another token has its own bucket.
        assert_eq!(r.take("b", 2.0, 3, t0), Ok(()));
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(r.take("a", 2.0, 3, t1), Ok(()));
        assert_eq!(r.take("a", 2.0, 3, t1), Err(1));
        assert_eq!(r.take("a", 0.1, 3, t1), Err(10));
    }
}

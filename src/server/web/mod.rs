//! The webmail, `[web] listen`: HTTPS with the `[tls]` certificate, pages at
//! `/`, the JSON API under `/api/v1/` (`docs/webmail.md`).
//!
//! It is a thin layer over what SMTP and IMAP already use: logins through
//! [`super::auth::UserAuth::login`] (same hashes, same throttle), sends
//! through [`super::submission::submit`], mailboxes through
//! [`crate::store::mailbox`], PEC facts through `pec::classify`,
//! `pec::daticert` and `pec::verify`. Nothing here decides a PEC rule.

mod api;
mod compose;
mod pages;
mod sent;
pub mod session;
pub mod totp;
mod view;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Ctx;

/// The peer of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The webmail's shared state.
pub struct Web {
    ctx: Arc<Ctx>,
    sessions: session::Sessions,
    /// Per-message summaries for the lists, by file path; Maildir files never
    /// change their bytes, so an entry stays right while the file exists.
    summaries: Mutex<HashMap<std::path::PathBuf, Arc<view::Summary>>>,
    /// Anonymous `POST /api/v1/verify` calls per client IP in the current minute.
    verify_calls: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Anonymous verifications allowed per client IP and minute.
const VERIFY_PER_MINUTE: u32 = 10;
/// Summaries kept in memory at most (about 1 KB each).
const MAX_SUMMARIES: usize = 200_000;

impl Web {
    /// State for `ctx`'s webmail.
    pub fn new(ctx: Arc<Ctx>) -> Web {
        let idle = ctx
            .cfg()
            .duration(&ctx.cfg().web.session_idle, Duration::from_secs(1800));
        let max = ctx
            .cfg()
            .duration(&ctx.cfg().web.session_max, Duration::from_secs(12 * 3600));
        Web {
            sessions: session::Sessions::new(ctx.store.clone(), idle, max),
            ctx,
            summaries: Mutex::new(HashMap::new()),
            verify_calls: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an anonymous client may verify one more message now.
    fn verify_allowed(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut m = self.verify_calls.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, (t, _)| now.duration_since(*t) < Duration::from_secs(60));
        let e = m.entry(crate::throttle::network_of(ip)).or_insert((now, 0));
        e.1 += 1;
        e.1 <= VERIFY_PER_MINUTE
    }
}

/// An API error: its status and a JSON body `{"error": ...}` (plus fields).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
}

impl ApiError {
    /// `status` with `{"error": message}`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: serde_json::json!({ "error": message.into() }),
        }
    }
    fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not logged in")
    }
    fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "no such message or folder")
    }
    fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "web request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

impl From<crate::store::mailbox::StoreError> for ApiError {
    fn from(e: crate::store::mailbox::StoreError) -> Self {
        use crate::store::mailbox::StoreError as E;
        match e {
            E::NoSuchFolder => ApiError::not_found(),
            E::BadName(n) => {
                ApiError::new(StatusCode::BAD_REQUEST, format!("bad folder name {n:?}"))
            }
            E::Exists => ApiError::new(StatusCode::CONFLICT, "folder exists"),
            E::Refused(why) => ApiError::new(StatusCode::CONFLICT, why),
            E::Io(e) if e.kind() == std::io::ErrorKind::NotFound => ApiError::not_found(),
            E::Io(e) => ApiError::internal(e),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        crate::store::mailbox::StoreError::Io(e).into()
    }
}

/// A logged-in request: the user, and (for state-changing methods) a CSRF
/// token that matched the session's.
pub struct Auth {
    /// The user's canonical address.
    pub user: String,
    /// The session token (for logout).
    pub token: String,
    /// The session's CSRF token.
    pub csrf: String,
}

fn safe_method(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<Arc<Web>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Auth, ApiError> {
        let token = session::cookie(&parts.headers, session::COOKIE)
            .ok_or_else(ApiError::unauthorized)?
            .to_string();
        let (user, csrf) = web
            .sessions
            .get(&token)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(ApiError::unauthorized)?;
        if !safe_method(&parts.method) {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !session::same(sent, &csrf) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "missing or wrong X-CSRF-Token",
                ));
            }
        }
        Ok(Auth { user, token, csrf })
    }
}

/// The policy of every page: scripts and styles from us only, nothing
/// off-site, frames only from us (the sandboxed message body).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-src 'self'; frame-ancestors 'self'; base-uri 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        if !h.contains_key(k) {
            h.insert(k, HeaderValue::from_static(v));
        }
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-frame-options", "SAMEORIGIN");
    set(h, "strict-transport-security", "max-age=31536000");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    if api {
        set(h, "cache-control", "no-store");
    }
    r
}

fn router(web: Arc<Web>) -> Router {
    // Uploads (compose, verify) are bounded by the message size limit plus
    // the form's own overhead (field names, boundaries, base64 is not used).
    let limit = web.ctx.cfg().max_message_size() + 64 * 1024;
    Router::new()
        .merge(api::routes(limit))
        .merge(pages::routes())
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(web)
}

/// Seconds a client gets for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept connections until `shutdown`; each is TLS, then HTTP/1.1 served by
/// the router.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    tls: crate::live::Live<crate::tls::Acceptor>,
    gauge: crate::metrics::ConnectionGauge,
    mut shutdown: watch::Receiver<bool>,
) {
    let web = Arc::new(Web::new(ctx.clone()));
    let app = router(web);
    // A browser opens several connections at once: four times the per-host
    // cap of the mail listeners.
    let per_ip_cap = |cfg: &crate::config::Config| cfg.limits.max_connections_per_ip.max(1) * 4;
    let per_ip = crate::throttle::ConnectionLimit::new(per_ip_cap(&ctx.cfg()));
    let limit = crate::throttle::ConnectionCap::new(ctx.cfg().limits.max_connections.max(1));
    tracing::info!(local = ?listener.local_addr().ok(), "webmail listener up");
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "web accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        if *shutdown.borrow() {
            break;
        }
        // The settings of a reload apply from the next connection on.
        let cfg = ctx.cfg();
        per_ip.set_max(per_ip_cap(&cfg));
        limit.set_max(cfg.limits.max_connections.max(1));
        let Some(slot) = per_ip.try_acquire(peer.ip()) else {
            continue;
        };
        let Some(permit) = limit.try_acquire() else {
            continue;
        };
        let header_timeout = cfg
            .duration(&cfg.limits.command_timeout, Duration::from_secs(300))
            .min(Duration::from_secs(60));
        let _ = tcp.set_nodelay(true);
        let (app, acceptor, gauge, mut sd) =
            (app.clone(), tls.get(), gauge.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _hold = (slot, permit);
            let _open = gauge.open();
            let tls =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, crate::tls::accept(&acceptor, tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    _ => return,
                };
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(peer));
                    let mut app = app.clone();
                    async move { tower_service::Service::call(&mut app, req).await }
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = sd.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
                }
            }
        });
    }
}

/// A response of `bytes` with content type `ctype`, downloaded (never shown
/// inline) as `filename`.
pub fn download(ctype: &str, filename: &str, bytes: Vec<u8>) -> Response {
    let safe: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!("attachment; filename=\"{safe}\"");
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(ctype)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

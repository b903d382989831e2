//! The webmail, `[web] listen`: HTTPS with the `[tls]` certificate, pages at
//! `/`, the JSON API under `/api/v1/` (`docs/webmail.md`).
//!
//! It is a thin layer over what SMTP and IMAP already use: logins through
//! [`super::auth::UserAuth::login`] (same hashes, same throttle), sends
//! through [`super::submission::submit`], mailboxes through
//! [`crate::store::mailbox`], PEC facts through `pec::classify`,
//! `pec::daticert` and `pec::verify`. Nothing here decides a PEC rule.

mod api;
mod bearer;
mod body;
mod compose;
mod pages;
mod problem;
mod sanitise;
mod sent;
pub use sent::iso_ms;
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
    summaries: Mutex<HashMap<String, Arc<view::Summary>>>,
    /// Messages whose HTML is not shown, by file path, and why: the work
    /// spent finding out is not spent again at each opening.
    html_omitted: Mutex<HashMap<String, sanitise::HtmlOmitted>>,
    /// Anonymous `POST /api/v1/verify` calls per client IP in the current minute.
    verify_calls: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// Anonymous verifications in progress (`[web] verify_concurrency`).
    verify_slots: Arc<crate::throttle::ConnectionCap>,
    /// The same per client network: one at a time, so one network cannot
    /// take every slot with slow uploads.
    verify_per_network: Arc<crate::throttle::ConnectionLimit>,
    /// Shared with SMTP: request bodies are held under `[limits] memory_budget`.
    memory: Arc<crate::memory::MemoryBudget>,
    /// Where bodies past the in-memory buffer go (unlinked files).
    spool_dir: std::path::PathBuf,
    /// `[api] rate` per API token.
    api_rate: bearer::RateLimit,
}

/// Anonymous verifications allowed per client IP and minute.
const VERIFY_PER_MINUTE: u32 = 10;
/// Anonymous verifications one client network may have in progress.
const VERIFY_PER_NETWORK: usize = 1;
/// Bytes of a request body kept in memory; the rest goes to a file.
const BODY_BUFFER: usize = crate::smtp::DEFAULT_SPOOL_THRESHOLD;
/// Largest body of the requests that are not uploads (JSON, forms).
const SMALL_BODY: usize = 64 * 1024;
/// How long a finished upload waits for its share of the memory budget
/// before `503` (as SMTP's `452 4.3.1`).
const MEMORY_WAIT: Duration = Duration::from_secs(5);
/// What a `503` for a full budget or verifier asks to wait, in seconds.
const RETRY_AFTER_SECS: u64 = 5;
/// Summaries kept in memory at most (about 1 KB each).
const MAX_SUMMARIES: usize = 200_000;
/// Messages remembered as having HTML not to show.
const MAX_HTML_OMITTED: usize = 10_000;

impl Web {
    /// State for `ctx`'s webmail; request bodies draw on `memory`.
    pub fn new(ctx: Arc<Ctx>, memory: Arc<crate::memory::MemoryBudget>) -> Web {
        let idle = ctx
            .cfg()
            .duration(&ctx.cfg().web.session_idle, Duration::from_secs(1800));
        let slots = ctx.cfg().web.verify_concurrency.max(1);
        let spool_dir = ctx.store.paths().data_dir.join("incoming");
        let max = ctx
            .cfg()
            .duration(&ctx.cfg().web.session_max, Duration::from_secs(12 * 3600));
        Web {
            sessions: session::Sessions::new(ctx.store.clone(), ctx.clock.clone(), idle, max),
            ctx,
            summaries: Mutex::new(HashMap::new()),
            html_omitted: Mutex::new(HashMap::new()),
            verify_calls: Mutex::new(HashMap::new()),
            verify_slots: crate::throttle::ConnectionCap::new(slots),
            verify_per_network: crate::throttle::ConnectionLimit::new(VERIFY_PER_NETWORK),
            memory,
            spool_dir,
            api_rate: bearer::RateLimit::default(),
        }
    }

    /// Whether an anonymous client may verify one more message now, or the
    /// seconds until it may.
    fn verify_allowed(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        let mut m = self.verify_calls.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, (t, _)| now.duration_since(*t) < minute);
        let e = m.entry(crate::throttle::network_of(ip)).or_insert((now, 0));
        e.1 += 1;
        if e.1 <= VERIFY_PER_MINUTE {
            Ok(())
        } else {
            Err((minute.saturating_sub(now.duration_since(e.0)).as_secs() + 1).min(60))
        }
    }

    /// A place for one anonymous verification from `ip`, or `None` when the
    /// verifier (or that client's network) is busy with as many as allowed.
    fn verify_slot(&self, ip: IpAddr) -> Option<VerifySlot> {
        self.verify_slots
            .set_max(self.ctx.cfg().web.verify_concurrency.max(1));
        // Counted per network: ConnectionLimit keys an address by its host.
        let net = self
            .verify_per_network
            .try_acquire(crate::throttle::network_of(ip))?;
        let slot = self.verify_slots.try_acquire()?;
        Some(VerifySlot {
            _network: net,
            _slot: slot,
        })
    }

    /// Read `body` (at most `limit` bytes) under the memory budget.
    async fn receive<B>(&self, body: B, limit: usize) -> Result<body::Upload, body::BodyError>
    where
        B: hyper::body::Body<Data = axum::body::Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        body::receive(
            body,
            limit,
            &self.memory,
            BODY_BUFFER,
            self.spool_dir.clone(),
        )
        .await
    }
}

/// One anonymous verification in progress; dropping it frees its places.
struct VerifySlot {
    _network: crate::throttle::ConnectionSlot,
    _slot: crate::throttle::CapSlot,
}

/// An API error: its status and a JSON body `{"error": ...}` (plus fields),
/// sent as an RFC 9457 problem (`problem::shape`).
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
    /// `status` as a problem of type `kind` (see `problem`).
    fn problem(status: StatusCode, kind: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: serde_json::json!({ "type": kind, "error": detail.into() }),
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
    /// The same error asking the client to come back in `secs` seconds
    /// (`Retry-After`, and `retry_after` in the body).
    fn retry_after(mut self, secs: u64) -> ApiError {
        self.body["retry_after"] = serde_json::json!(secs);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut r = problem::response(status, self.body);
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of a body that stalled is not waited for.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

impl From<body::BodyError> for ApiError {
    fn from(e: body::BodyError) -> Self {
        use body::BodyError as E;
        match e {
            E::TooLarge(n) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over the limit of {n} bytes"),
            ),
            E::TooSlow => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request body too slow: send it at a steady rate",
            ),
            E::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server busy: try again shortly",
            )
            .retry_after(RETRY_AFTER_SECS),
            E::Broken(why) => ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("request body broken off: {why}"),
            ),
            E::Io(e) => ApiError::internal(e),
        }
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
/// token that matched the session's; or a request with an API token
/// (`Authorization: Bearer`, see `bearer`) whose scopes allow its route,
/// where `token` and `csrf` are empty.
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
        if let Some(token) = bearer::presented(&parts.headers) {
            let route = parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map(|m| m.as_str())
                .unwrap_or("");
            let need = bearer::need(&parts.method, route);
            let t = bearer::check(web, token, need).await?;
            return Ok(Auth {
                user: t.address,
                token: String::new(),
                csrf: String::new(),
            });
        }
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
    // Uploads (compose, verify) read their bodies themselves, under the
    // memory budget and their own limits; everything else is small.
    Router::new()
        .merge(api::routes())
        .merge(pages::routes())
        .layer(axum::extract::DefaultBodyLimit::max(SMALL_BODY))
        .layer(axum::middleware::from_fn(problem::api_errors))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(web)
}

/// Largest request head and read buffer of one connection: what a client
/// can make the listener hold before its handler runs.
const MAX_BUF: usize = 64 * 1024;

/// Accept connections until `shutdown`; each is TLS, then HTTP/1.1 served by
/// the router.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    tls: crate::live::Live<crate::tls::Acceptor>,
    gauge: crate::metrics::ConnectionGauge,
    memory: Arc<crate::memory::MemoryBudget>,
    mut shutdown: watch::Receiver<bool>,
) {
    let web = Arc::new(Web::new(ctx.clone(), memory));
    let app = router(web);
    // The same cap as the mail listeners: a browser needs a few connections,
    // and idle ones are closed after `[web] header_timeout`.
    let per_ip_cap = |cfg: &crate::config::Config| cfg.limits.max_connections_per_ip.max(1);
    let per_ip = crate::throttle::ConnectionLimit::new(per_ip_cap(&ctx.cfg()));
    let limit = crate::throttle::ConnectionCap::new(ctx.cfg().limits.max_connections.max(1));
    // Connections still sending their PROXY header hold no slot yet.
    let waiting = crate::throttle::ConnectionCap::new(ctx.cfg().limits.max_connections.max(1));
    let refusals = Arc::new(crate::proxy::RefusalLog::new("web"));
    tracing::info!(local = ?listener.local_addr().ok(), "webmail listener up");
    loop {
        let (mut tcp, peer) = tokio::select! {
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
        waiting.set_max(cfg.limits.max_connections.max(1));
        let _ = tcp.set_nodelay(true);
        let conn = Conn {
            app: app.clone(),
            acceptor: tls.get(),
            gauge: gauge.clone(),
            shutdown: shutdown.clone(),
            header_timeout: cfg.web.header_timeout(),
            min_rate: cfg.web.body_min_rate() as u64,
        };
        if cfg.listen.proxy_protocol {
            // The client is known once its header is read, in the
            // connection's own task.
            let Some(wait) = waiting.try_acquire() else {
                refusals.refused(peer, &crate::proxy::Refused::Busy);
                continue;
            };
            let (per_ip, limit, refusals) = (per_ip.clone(), limit.clone(), refusals.clone());
            tokio::spawn(async move {
                let deadline = crate::proxy::header_timeout(conn.header_timeout);
                let client = match crate::proxy::client_of(&mut tcp, peer, deadline).await {
                    Ok(c) => c,
                    Err(e) => return refusals.refused(peer, &e),
                };
                drop(wait);
                if let Some(held) = admit(&per_ip, &limit, client) {
                    conn.serve(tcp, client, held).await
                }
            });
            continue;
        }
        // Over a cap the connection is closed before the TLS handshake, as
        // on the mail listeners' implicit-TLS ports.
        if let Some(held) = admit(&per_ip, &limit, peer) {
            tokio::spawn(conn.serve(tcp, peer, held));
        }
    }
}

/// Slots for a connection from `peer` (its host's, then the listener's),
/// or `None` over a cap.
fn admit(
    per_ip: &Arc<crate::throttle::ConnectionLimit>,
    limit: &Arc<crate::throttle::ConnectionCap>,
    peer: SocketAddr,
) -> Option<(crate::throttle::ConnectionSlot, crate::throttle::CapSlot)> {
    let Some(slot) = per_ip.try_acquire(peer.ip()) else {
        tracing::warn!(%peer, "web per-IP connection limit reached");
        return None;
    };
    let Some(permit) = limit.try_acquire() else {
        tracing::warn!(%peer, "web connection limit reached");
        return None;
    };
    Some((slot, permit))
}

/// What serving one accepted connection needs.
struct Conn {
    app: Router,
    acceptor: Arc<crate::tls::Acceptor>,
    gauge: crate::metrics::ConnectionGauge,
    shutdown: watch::Receiver<bool>,
    header_timeout: Duration,
    min_rate: u64,
}

impl Conn {
    /// TLS, then HTTP/1.1 from `peer` until the client or `shutdown` ends
    /// it, holding `held` throughout.
    async fn serve<H>(self, tcp: tokio::net::TcpStream, peer: SocketAddr, held: H) {
        let Conn {
            app,
            acceptor,
            gauge,
            mut shutdown,
            header_timeout,
            min_rate,
        } = self;
        let _hold = held;
        let _open = gauge.open();
        let tls =
            match tokio::time::timeout(header_timeout, crate::tls::accept(&acceptor, tcp)).await {
                Ok(Ok(s)) => s,
                _ => return,
            };
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let mut req = req.map(|b| body::MinRate::new(b, min_rate, header_timeout));
            req.extensions_mut().insert(Peer(peer));
            let mut app = app.clone();
            async move { tower_service::Service::call(&mut app, req).await }
        });
        // The head timeout also bounds an idle keep-alive connection:
        // hyper starts it as soon as the connection waits for a request.
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_BUF)
            .serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
            }
        }
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

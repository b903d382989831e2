//! `/api/v1/`: the JSON API the pages use and scripts may use
//! (`docs/webmail.md` lists every endpoint).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::body::{BodyError, InMemory};
use super::{session, ApiError, Auth, Peer, Web, MEMORY_WAIT, RETRY_AFTER_SECS};
use crate::server::auth::{LoginError, SecondFactorError, UserAuth};
use crate::store::mailbox::{Folder, MsgEntry, UserStore};

pub mod account;
mod idempotency;
mod messages;
mod openapi;
mod refusal;
mod send;
mod send_json;
mod sent;
mod tokens;

use messages::{delete, flags, html, list, mbox, message, move_to, part, raw, verify_report};
pub use messages::{list_page, message_view, pec_object};
use send::{declared_length, send};
use sent::{evidence, sent_list, sent_one};
pub use sent::{sent_one_status, sent_page};

/// The API routes.
pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/v1/session", post(login).delete(logout).get(whoami))
        .route("/api/v1/folders", get(folders).post(folder_create))
        .route(
            "/api/v1/folders/{folder}",
            axum::routing::patch(folder_rename).delete(folder_delete),
        )
        .route("/api/v1/folders/{folder}/messages", get(list))
        .route("/api/v1/folders/{folder}/mbox", get(mbox))
        // Its form is read from memory, after the body is received whole.
        .route(
            "/api/v1/messages",
            post(send).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/v1/messages/{id}", get(message).delete(delete))
        .route("/api/v1/messages/{id}/raw", get(raw))
        .route("/api/v1/messages/{id}/html", get(html))
        .route("/api/v1/messages/{id}/parts/{part}", get(part))
        .route("/api/v1/messages/{id}/move", post(move_to))
        .route("/api/v1/messages/{id}/flags", post(flags))
        .route("/api/v1/sent", get(sent_list))
        .route("/api/v1/sent/{msgid}", get(sent_one))
        .route("/api/v1/sent/{msgid}/evidence", get(evidence))
        .route("/api/v1/verify", post(verify))
        .route("/api/v1/account/password", post(account::password))
        .route(
            "/api/v1/account/totp",
            post(account::totp_start).delete(account::totp_disable),
        )
        .route("/api/v1/account/totp/confirm", post(account::totp_confirm))
        .route(
            "/api/v1/account/notify",
            get(account::notify_get).put(account::notify_set),
        )
        .route(
            "/api/v1/account/app-passwords",
            get(account::app_passwords).post(account::app_password_add),
        )
        .route(
            "/api/v1/account/app-passwords/{id}",
            axum::routing::delete(account::app_password_revoke),
        )
        .route("/api/v1/openapi.json", get(openapi::openapi))
        .merge(tokens::routes())
}

// ---------------------------------------------------------------- ids

/// A message id: folder (hex), UIDVALIDITY and UID, scoped to the user who
/// asks (it is always resolved inside that user's Maildir).
pub fn message_id(folder: &str, validity: u32, uid: u32) -> String {
    format!(
        "{}-{validity}-{uid}",
        crate::pec::smime::hex_plain(folder.as_bytes())
    )
}

fn parse_id(id: &str) -> Option<(String, u32, u32)> {
    let mut it = id.splitn(3, '-');
    let hex = it.next()?;
    let validity = it.next()?.parse().ok()?;
    let uid = it.next()?.parse().ok()?;
    if !hex.len().is_multiple_of(2) || hex.len() > 800 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    Some((String::from_utf8(bytes?).ok()?, validity, uid))
}

/// Everything about one located message.
pub struct Located {
    /// The user's store.
    pub store: UserStore,
    /// Folder name.
    pub folder_name: String,
    /// The folder.
    pub folder: Folder,
    /// The message entry.
    pub entry: MsgEntry,
}

fn user_store(web: &Web, user: &str) -> Result<UserStore, ApiError> {
    Ok(web.ctx.mailboxes().open(user)?)
}

/// Find message `id` in `user`'s store; 404 for anything else, including
/// ids that would name another user's files.
pub fn locate(web: &Web, user: &str, id: &str) -> Result<Located, ApiError> {
    let (folder_name, validity, uid) = parse_id(id).ok_or_else(ApiError::not_found)?;
    let store = user_store(web, user)?;
    let folder = store
        .existing(&folder_name)
        .map_err(|_| ApiError::not_found())?;
    let snap = folder.sync(false)?;
    if snap.uidvalidity != validity {
        return Err(ApiError::not_found());
    }
    let entry = snap
        .msgs
        .into_iter()
        .find(|m| m.uid == uid)
        .ok_or_else(ApiError::not_found)?;
    Ok(Located {
        store,
        folder_name,
        folder,
        entry,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

// ---------------------------------------------------------------- session

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

async fn login(
    State(web): State<Arc<Web>>,
    Extension(Peer(peer)): Extension<Peer>,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let auth = UserAuth::new(web.ctx.clone());
    let ip = peer.ip();
    let (user, attempt) = match auth
        .password_step(&b.username, &b.password, ip, "web")
        .await
    {
        Ok(u) => u,
        Err(LoginError::Throttled) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins: try again later",
            ))
        }
        Err(LoginError::Invalid) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "wrong address or password",
            ))
        }
    };
    // Until the second factor passes, the attempt still counts as a failed
    // login: a right password alone clears nothing.
    if let Err(e) = auth.second_factor(&user, b.totp.as_deref(), ip).await {
        attempt.failed().await;
        let (status, error) = match e {
            SecondFactorError::Required => (StatusCode::UNAUTHORIZED, "second factor required"),
            SecondFactorError::Wrong => (StatusCode::UNAUTHORIZED, "wrong second-factor code"),
            SecondFactorError::Replayed => (
                StatusCode::UNAUTHORIZED,
                "this second-factor code was used already: wait for the next one",
            ),
            SecondFactorError::Locked => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong second-factor codes: the second factor of this account is locked, try again later",
            ),
            SecondFactorError::Unavailable => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                ))
            }
        };
        return Err(ApiError {
            status,
            body: serde_json::json!({"error": error, "totp_required": true}),
        });
    }
    let (token, csrf) = web
        .sessions
        .create(&user)
        .await
        .map_err(ApiError::internal)?;
    attempt.succeeded().await;
    tracing::info!(protocol = "web", user = %user, peer = %ip, "login");
    let mut r = Json(serde_json::json!({"csrf": csrf, "user": user})).into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&token)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

async fn logout(State(web): State<Arc<Web>>, a: Auth) -> Response {
    if let Err(e) = web.sessions.remove(&a.token).await {
        return ApiError::internal(e).into_response();
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn whoami(a: Auth) -> Json<serde_json::Value> {
    Json(serde_json::json!({"user": a.user, "csrf": a.csrf}))
}

// ---------------------------------------------------------------- folders

async fn folders(
    State(web): State<Arc<Web>>,
    a: Auth,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(move || {
        let st = user_store(&web, &a.user)?;
        let mut out = vec![];
        for f in st.list()? {
            let snap = st.folder(&f.name)?.sync(false)?;
            let unread = snap.msgs.iter().filter(|m| !m.flags.seen).count();
            out.push(serde_json::json!({
                "name": f.name,
                "special": f.special,
                "total": snap.msgs.len(),
                "unread": unread,
                "uidnext": snap.uidnext,
            }));
        }
        let used = st.usage()?.bytes;
        let limit = web.ctx.quota_of_blocking(&a.user);
        Ok(Json(serde_json::json!({
            "folders": out,
            "quota": {"used": used, "limit": limit},
        })))
    })
    .await
}

#[derive(Deserialize)]
struct NameBody {
    name: String,
}

async fn folder_create(
    State(web): State<Arc<Web>>,
    a: Auth,
    Json(b): Json<NameBody>,
) -> Result<Response, ApiError> {
    blocking(move || {
        user_store(&web, &a.user)?.create(b.name.trim())?;
        Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({"name": b.name.trim()})),
        )
            .into_response())
    })
    .await
}

async fn folder_rename(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(folder): Path<String>,
    Json(b): Json<NameBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(move || {
        let st = user_store(&web, &a.user)?;
        if is_special(&folder) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "special folders keep their names",
            ));
        }
        st.rename(&folder, b.name.trim())?;
        Ok(Json(serde_json::json!({"name": b.name.trim()})))
    })
    .await
}

fn is_special(name: &str) -> bool {
    name.eq_ignore_ascii_case("INBOX")
        || crate::store::mailbox::SPECIAL_FOLDERS
            .iter()
            .any(|(n, _)| *n == name)
}

async fn folder_delete(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(folder): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        if is_special(&folder) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "special folders cannot be deleted",
            ));
        }
        user_store(&web, &a.user)?.delete(&folder)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

// ---------------------------------------------------------------- verify

async fn verify(
    State(web): State<Arc<Web>>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    // An API token (any scope) counts as a login; a bad one is refused.
    let logged_in = match (
        super::bearer::presented(&headers),
        session::cookie(&headers, session::COOKIE),
    ) {
        (Some(token), _) => {
            super::bearer::check(&web, token, Some(Default::default())).await?;
            true
        }
        (None, Some(t)) => matches!(web.sessions.get(t).await, Ok(Some(_))),
        (None, None) => false,
    };
    let limit = {
        let cfg = web.ctx.cfg();
        if logged_in {
            cfg.max_message_size()
        } else {
            cfg.web.verify_max_size()
        }
    };
    let too_big = || {
        let detail = if logged_in {
            format!("the file is over the limit of {limit} bytes")
        } else {
            format!("the file is over the limit of {limit} bytes for a check without logging in")
        };
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
    };
    // Refused before reading a byte (or counting it) when the client says
    // how big it is.
    if declared_length(&headers).is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    // Without a session: a few at a time (the upload included), and a rate
    // per network; a request turned away as busy does not count.
    let _slot = if logged_in {
        None
    } else {
        let slot = web.verify_slot(peer.ip()).ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the verifier is busy: try again shortly",
            )
            .retry_after(RETRY_AFTER_SECS)
        })?;
        if let Err(secs) = web.verify_allowed(peer.ip()) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many verifications: try again in a minute",
            )
            .retry_after(secs));
        }
        Some(slot)
    };
    let up = web.receive(body, limit).await.map_err(|e| match e {
        BodyError::TooLarge(_) => too_big(),
        e => e.into(),
    })?;
    if up.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "send the .eml as the request body",
        ));
    }
    // Parsing and checking the signature cost about what signing does.
    let InMemory { bytes, memory } = up
        .into_memory(crate::memory::SUBMISSION_FACTOR, MEMORY_WAIT)
        .await?;
    let rep = blocking(move || {
        let _memory = memory;
        Ok(verify_report(&web, &bytes))
    })
    .await?;
    let mut r = (StatusCode::OK, rep.to_json()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

//! `/api/v1/`: the JSON API the pages use and scripts may use
//! (`docs/webmail.md` lists every endpoint).

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::body::{BodyError, InMemory};
use super::view::{self, Summary};
use super::{session, ApiError, Auth, Peer, Web, MEMORY_WAIT, RETRY_AFTER_SECS};
use crate::flow::refusal::Refusal;
use crate::server::auth::{LoginError, SecondFactorError, UserAuth};
use crate::server::submission;
use crate::store::mailbox::{Flags, Folder, MsgEntry, UserStore};

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
        attempt.failed();
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
    attempt.succeeded();
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

// ---------------------------------------------------------------- lists

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    q: Option<String>,
}

/// The summary of one entry, from the cache or the file.
pub fn summary(web: &Web, folder: &Folder, m: &MsgEntry) -> Result<Arc<Summary>, ApiError> {
    let key = folder.key(m);
    if let Some(s) = web
        .summaries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
    {
        return Ok(s.clone());
    }
    let raw = folder.read(m)?;
    let s = Arc::new(view::summarise(&raw));
    let mut c = web.summaries.lock().unwrap_or_else(|p| p.into_inner());
    if c.len() >= super::MAX_SUMMARIES {
        c.clear();
    }
    c.insert(key, s.clone());
    Ok(s)
}

/// The view of located message `l` (its bytes `raw`), remembering a
/// message whose HTML is not shown so that the next opening skips it.
pub fn message_view(
    web: &Web,
    l: &Located,
    raw: &[u8],
    remote_images: bool,
) -> (view::MessageView, crate::pec::classify::PecMessage) {
    let key = l.folder.key(&l.entry);
    let known = web
        .html_omitted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .copied();
    let (v, pm) = view::view(raw, remote_images, known);
    if let (None, Some(why)) = (known, v.html_omitted) {
        let mut m = web.html_omitted.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= super::MAX_HTML_OMITTED {
            m.clear();
        }
        m.insert(key, why);
    }
    (v, pm)
}

fn flags_json(f: &Flags) -> serde_json::Value {
    serde_json::json!({"seen": f.seen, "flagged": f.flagged, "answered": f.answered})
}

/// One page of a folder, newest first, optionally filtered by `q` (found in
/// the subject, sender, recipients, identificativo or the text).
pub fn list_page(
    web: &Web,
    user: &str,
    folder_name: &str,
    offset: usize,
    limit: usize,
    q: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let st = user_store(web, user)?;
    let folder = st.existing(folder_name)?;
    let snap = folder.sync(false)?;
    let q = q.map(|q| q.trim().to_lowercase()).filter(|q| !q.is_empty());
    let mut rows = vec![];
    let mut total = 0;
    for m in snap.msgs.iter().rev() {
        if let Some(q) = &q {
            let s = summary(web, &folder, m)?;
            let hay = [
                s.subject.to_lowercase(),
                s.from.to_lowercase(),
                s.to.join(" ").to_lowercase(),
                s.identificativo.clone().unwrap_or_default().to_lowercase(),
            ];
            // Headers first (cached); the body only when they do not match.
            if !hay.iter().any(|h| h.contains(q.as_str()))
                && !view::body_contains(&folder.read(m)?, q)
            {
                continue;
            }
        }
        total += 1;
        if total > offset && rows.len() < limit {
            let s = summary(web, &folder, m)?;
            let size = folder.size(m).unwrap_or(0);
            rows.push(serde_json::json!({
                "id": message_id(folder_name, snap.uidvalidity, m.uid),
                "uid": m.uid,
                "flags": flags_json(&m.flags),
                "size": size,
                "from": s.from,
                "subject": s.subject,
                "date": s.date,
                "attachments": s.attachments,
                "pec": s.pec,
                "identificativo": s.identificativo,
            }));
        }
    }
    Ok(serde_json::json!({
        "folder": folder_name,
        "total": total,
        "offset": offset,
        "uidnext": snap.uidnext,
        "messages": rows,
    }))
}

async fn list(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(folder): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    blocking(move || list_page(&web, &a.user, &folder, q.offset, limit, q.q.as_deref()).map(Json))
        .await
}

async fn mbox(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(folder): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let st = user_store(&web, &a.user)?;
        let f = st.existing(&folder)?;
        let snap = f.sync(false)?;
        let mut out = Vec::new();
        for m in &snap.msgs {
            let raw = match f.read(m) {
                Ok(r) => r,
                Err(_) => continue,
            };
            let date = f.internal_date(m).unwrap_or(0);
            out.extend_from_slice(format!("From MAILER-DAEMON {}\n", asctime(date)).as_bytes());
            // mboxrd: every line that looks like a From_ line (after any
            // number of '>') gets one more '>'.
            for line in raw.split_inclusive(|b| *b == b'\n') {
                let t = line.iter().position(|b| *b != b'>').unwrap_or(line.len());
                if line[t..].starts_with(b"From ") {
                    out.push(b'>');
                }
                out.extend_from_slice(line);
            }
            if !raw.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.push(b'\n');
        }
        Ok(super::download(
            "application/mbox",
            &format!("{folder}.mbox"),
            out,
        ))
    })
    .await
}

fn asctime(secs: i64) -> String {
    const D: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const M: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86400);
    let (y, m, d) = crate::pec::clock::civil_from_days(days);
    let s = secs.rem_euclid(86400);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {y}",
        D[days.rem_euclid(7) as usize],
        M[(m - 1) as usize],
        d,
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

// ---------------------------------------------------------------- one message

/// The `pec` object of the view: type, identificativo, certified facts, and
/// the `pecd verify` report against our trust and index.
pub fn pec_object(
    web: &Web,
    raw: &[u8],
    pm: &crate::pec::classify::PecMessage,
) -> Option<serde_json::Value> {
    use crate::pec::classify::Kind;
    let tipo = match pm.kind {
        Kind::Busta => "posta-certificata".to_string(),
        Kind::Anomalia => "anomalia".to_string(),
        Kind::Ricevuta(t) => t.as_str().to_string(),
        Kind::Ordinary => return None,
    };
    let report = verify_report(web, raw);
    let certified = report.ok && pm.kind != Kind::Anomalia;
    let note = match pm.kind {
        Kind::Anomalia => "Questo messaggio NON è certificato: il gestore lo ha ricevuto senza le garanzie della PEC (busta di anomalia).",
        _ if !report.ok => "La verifica NON è riuscita: il messaggio non può essere considerato certificato.",
        Kind::Busta => "Messaggio di posta certificata: firma del gestore valida.",
        _ => "Ricevuta firmata dal gestore: firma valida.",
    };
    Some(serde_json::json!({
        "tipo": tipo,
        "identificativo": pm.daticert.as_ref().map(|d| d.identificativo.clone()),
        "daticert": pm.daticert.as_ref().map(crate::pec::verify::DaticertReport::from),
        "certified": certified,
        "note": note,
        "verification": report,
    }))
}

fn verify_report(web: &Web, raw: &[u8]) -> crate::pec::verify::VerifyReport {
    let idx = web.ctx.index();
    let trust = web.ctx.trust.get();
    // The same revocation checks (and caches) as the reception point.
    let revocation = web.ctx.revocation.get();
    crate::pec::verify::VerifyReport::build(
        raw,
        &crate::pec::verify::VerifyRequest {
            index: Some(&idx),
            trust: Some(&trust),
            revocation: Some(&*revocation),
            inner: false,
            now: web.ctx.now_secs(),
        },
    )
}

async fn message(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(move || {
        let l = locate(&web, &a.user, &id)?;
        let raw = l.folder.read(&l.entry)?;
        let (mut v, pm) = message_view(&web, &l, &raw, false);
        v.pec = pec_object(&web, &raw, &pm);
        let mut j = serde_json::to_value(&v).map_err(ApiError::internal)?;
        j["id"] = serde_json::json!(id);
        j["folder"] = serde_json::json!(l.folder_name);
        j["flags"] = flags_json(&l.entry.flags);
        j["size"] = serde_json::json!(raw.len());
        Ok(Json(j))
    })
    .await
}

async fn raw(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let l = locate(&web, &a.user, &id)?;
        let raw = l.folder.read(&l.entry)?;
        Ok(super::download("message/rfc822", &format!("{id}.eml"), raw))
    })
    .await
}

#[derive(Deserialize)]
struct HtmlQuery {
    #[serde(default)]
    images: Option<u8>,
}

/// The sanitised HTML body as its own document, for a sandboxed frame: its
/// policy forbids every script and every fetch (remote images only with
/// `?images=1`).
async fn html(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(id): Path<String>,
    Query(q): Query<HtmlQuery>,
) -> Result<Response, ApiError> {
    let images = q.images == Some(1);
    blocking(move || {
        let l = locate(&web, &a.user, &id)?;
        let raw = l.folder.read(&l.entry)?;
        let (v, _) = message_view(&web, &l, &raw, images);
        let body = v.html.unwrap_or_else(|| {
            format!("<pre>{}</pre>", askama_escape(&v.text.unwrap_or_default()))
        });
        let doc = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"></head><body>{body}</body></html>"
        );
        let img = if images { "img-src data: https: http:" } else { "img-src data:" };
        let csp = format!("sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; style-src 'unsafe-inline'; {img}; frame-ancestors 'self'");
        let mut r = (StatusCode::OK, doc).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert("content-security-policy", v);
        }
        Ok(r)
    })
    .await
}

/// HTML-escape text.
pub fn askama_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

async fn part(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path((id, part)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let l = locate(&web, &a.user, &id)?;
        let raw = l.folder.read(&l.entry)?;
        let (ctype, name, bytes) = view::part(&raw, &part).ok_or_else(ApiError::not_found)?;
        Ok(super::download(&ctype, &name, bytes))
    })
    .await
}

#[derive(Deserialize)]
struct MoveBody {
    folder: String,
}

fn move_message(l: &Located, to: &str) -> Result<String, ApiError> {
    let dst = l.store.existing(to)?;
    if dst.same(&l.folder) {
        return Ok(message_id(
            &l.folder_name,
            l.folder.sync(false)?.uidvalidity,
            l.entry.uid,
        ));
    }
    let (validity, uid) = l.folder.copy_to(&l.entry, &dst, &l.entry.flags)?;
    l.folder.remove(&l.entry)?;
    Ok(message_id(to, validity, uid))
}

async fn move_to(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(id): Path<String>,
    Json(b): Json<MoveBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(move || {
        let l = locate(&web, &a.user, &id)?;
        let new = move_message(&l, &b.folder)?;
        Ok(Json(serde_json::json!({"id": new, "folder": b.folder})))
    })
    .await
}

async fn delete(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(move || {
        let l = locate(&web, &a.user, &id)?;
        if l.folder_name == "Trash" {
            l.folder.remove(&l.entry)?;
            return Ok(Json(serde_json::json!({"id": null, "expunged": true})));
        }
        if l.store.existing("Trash").is_err() {
            l.store.create("Trash")?;
        }
        let new = move_message(&l, "Trash")?;
        Ok(Json(serde_json::json!({"id": new, "folder": "Trash"})))
    })
    .await
}

#[derive(Deserialize)]
struct FlagsBody {
    seen: Option<bool>,
    flagged: Option<bool>,
    answered: Option<bool>,
}

async fn flags(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(id): Path<String>,
    Json(b): Json<FlagsBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(move || {
        let l = locate(&web, &a.user, &id)?;
        let mut f = l.entry.flags.clone();
        if let Some(v) = b.seen {
            f.seen = v;
        }
        if let Some(v) = b.flagged {
            f.flagged = v;
        }
        if let Some(v) = b.answered {
            f.answered = v;
        }
        l.folder.set_flags(&l.entry, &f)?;
        Ok(Json(serde_json::json!({"id": id, "flags": flags_json(&f)})))
    })
    .await
}

// ---------------------------------------------------------------- send

/// The HTTP answer to a refusal: the one place a [`Refusal`] becomes a
/// status (SMTP's reply is `submission::reply_for`, whose code the body
/// repeats).
fn refusal(r: Refusal) -> ApiError {
    let status = if r.is_temporary() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if r.is_size() {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let reply = submission::reply_for(&r);
    let code = reply.code;
    ApiError {
        status,
        body: serde_json::json!({
            "error": if r.is_temporary() { "temporary failure: try again" } else { "not accepted" },
            "smtp_code": match reply.enhanced {
                Some((a, b, c)) => format!("{code} {a}.{b}.{c}"),
                None => code.to_string(),
            },
            "detail": r.italian().unwrap_or_else(|| reply.text.clone()),
        }),
    }
}

/// Memory a send needs, as a multiple of its form's size: the form, its
/// fields, and the message built from them (a third larger in base64) as a
/// submission needs it.
const SEND_FACTOR: usize = crate::memory::SUBMISSION_FACTOR * 4 / 3 + 2;

/// The `Content-Length` a request declares, if any.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

async fn send(
    State(web): State<Arc<Web>>,
    a: Auth,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let max = web.ctx.cfg().max_message_size();
    let too_big = || ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        body: serde_json::json!({
            "error": "not accepted",
            "smtp_code": "552 5.3.4",
            "detail": format!("il messaggio supera la dimensione massima consentita ({max} byte)"),
        }),
    };
    // The form's own overhead (field names, boundaries) on top of the message.
    let limit = max + 64 * 1024;
    let (parts, body) = req.into_parts();
    // Refused before reading a byte when the client says how big it is.
    if declared_length(&parts.headers).is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    let up = web.receive(body, limit).await.map_err(|e| match e {
        BodyError::TooLarge(_) => too_big(),
        e => e.into(),
    })?;
    let InMemory { bytes, memory } = up.into_memory(SEND_FACTOR, MEMORY_WAIT).await?;
    // Held until the message is submitted and stored.
    let _memory = memory;
    let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    let mut form = Multipart::from_request(req, &web)
        .await
        .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let mut d = super::compose::Draft {
        from: a.user.clone(),
        to: vec![],
        cc: vec![],
        subject: String::new(),
        body: String::new(),
        tipo_ricevuta: "completa".into(),
        attachments: vec![],
    };
    let mut total = 0usize;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_big()),
            Err(e) => return Err(ApiError::new(e.status(), e.body_text())),
        };
        let name = field.name().unwrap_or("").to_string();
        let filename = field.file_name().map(str::to_string);
        let ctype = field.content_type().map(str::to_string);
        let mut bytes = Vec::new();
        let mut field = field;
        loop {
            match field.chunk().await {
                Ok(Some(c)) => {
                    total += c.len();
                    // Base64 grows attachments by a third in the message.
                    if total > max
                        || (name == "attachment" && (bytes.len() + c.len()) * 4 / 3 > max)
                    {
                        return Err(too_big());
                    }
                    bytes.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_big()),
                Err(e) => return Err(ApiError::new(e.status(), e.body_text())),
            }
        }
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match name.as_str() {
            "to" => d.to.extend(super::compose::addresses(&text())),
            "cc" => d.cc.extend(super::compose::addresses(&text())),
            "bcc" if !bytes.is_empty() => {
                return Err(ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    body: serde_json::json!({
                        "error": "not accepted",
                        "smtp_code": "550 5.7.1",
                        "detail": "la PEC non ammette destinatari nascosti (Bcc)",
                    }),
                })
            }
            "subject" => d.subject = text().replace(['\r', '\n'], " "),
            "body" => d.body = text(),
            "tipo_ricevuta" => {
                let t = text().trim().to_ascii_lowercase();
                if !["completa", "breve", "sintetica"].contains(&t.as_str()) {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "tipo_ricevuta: completa, breve or sintetica",
                    ));
                }
                d.tipo_ricevuta = t;
            }
            "attachment" => {
                if bytes.is_empty() && filename.as_deref().unwrap_or("").is_empty() {
                    continue;
                }
                d.attachments.push(super::compose::Upload {
                    filename: filename.unwrap_or_else(|| "allegato".into()),
                    content_type: ctype.unwrap_or_else(|| "application/octet-stream".into()),
                    bytes,
                })
            }
            _ => {}
        }
    }
    // The form's bytes are in the draft now.
    drop(form);
    if d.to.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "to: at least one recipient",
        ));
    }
    let ctx = web.ctx.clone();
    let when = crate::pec::clock::ItalianTime::from_unix(ctx.now_secs());
    let msgid =
        crate::pec::ids::message_id(ctx.ids.as_ref(), &when, ctx.domain()).replace(".r@", ".w@");
    let boundary = crate::pec::ids::boundary(ctx.ids.as_ref());
    let raw = super::compose::build(&d, &msgid, &when, &boundary);
    // And in the message now: the submission needs the memory.
    drop(std::mem::take(&mut d.attachments));
    if raw.len() > max {
        return Err(too_big());
    }
    let rcpts: Vec<String> = d.to.iter().chain(&d.cc).cloned().collect();
    let s = submission::submit(&ctx, &a.user, &a.user, &rcpts, raw.clone())
        .await
        .map_err(refusal)?;
    // The user's copy in Sent: exactly what was submitted.
    let (web2, user) = (web.clone(), a.user.clone());
    let sent_id = blocking(move || {
        let st = user_store(&web2, &user)?;
        if st.existing("Sent").is_err() {
            st.create("Sent")?;
        }
        let (v, uid) = st
            .existing("Sent")?
            .append(&raw, &Flags::from_info("S"), None)?;
        Ok(message_id("Sent", v, uid))
    })
    .await
    .ok();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "identificativo": s.identificativo,
            "msgid": s.msgid.unwrap_or_else(|| format!("<{msgid}>")),
            "sent": sent_id,
        })),
    )
        .into_response())
}

// ---------------------------------------------------------------- sent

/// Receipts in `user`'s folders about `identificativo`, oldest first.
fn receipts_for(
    web: &Web,
    user: &str,
    identificativo: &str,
) -> Result<Vec<super::sent::Receipt>, ApiError> {
    let st = user_store(web, user)?;
    let mut out = vec![];
    for f in st.list()? {
        let folder = st.folder(&f.name)?;
        let snap = folder.sync(false)?;
        for m in &snap.msgs {
            let s = summary(web, &folder, m)?;
            let is_receipt = s
                .pec
                .as_deref()
                .is_some_and(|p| p != "posta-certificata" && p != "anomalia");
            if !is_receipt || s.identificativo.as_deref() != Some(identificativo) {
                continue;
            }
            let raw = folder.read(m)?;
            if let Some(tipo) = super::sent::receipt_tipo(&raw) {
                out.push((
                    s.date.unwrap_or(0),
                    super::sent::Receipt {
                        id: message_id(&f.name, snap.uidvalidity, m.uid),
                        tipo,
                        raw,
                    },
                ));
            }
        }
    }
    out.sort_by_key(|(d, r)| (*d, r.tipo != crate::pec::types::Tipo::Accettazione));
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

async fn sent_status(
    web: &Arc<Web>,
    user: &str,
    m: crate::store::messages::SentMessage,
) -> Result<serde_json::Value, ApiError> {
    let crate::store::messages::Progress {
        presa,
        esterno_failures: esterno,
    } = web
        .ctx
        .store
        .progress(&m.identificativo)
        .await
        .map_err(ApiError::internal)?;
    let (web2, user2, id2) = (web.clone(), user.to_string(), m.identificativo.clone());
    let receipts = blocking(move || receipts_for(&web2, &user2, &id2)).await?;
    let rows = super::sent::states(&m, &receipts, &presa, &esterno);
    Ok(serde_json::json!({
        "identificativo": m.identificativo,
        "msgid": m.msgid,
        "subject": m.subject,
        "accepted_at": super::sent::iso_ms(m.accepted_at),
        "receipt_type": m.receipt_type,
        "recipients": rows,
        "receipts": receipts.iter().map(|r| serde_json::json!({"id": r.id, "tipo": r.tipo.as_str()})).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: Option<usize>,
}

/// The status of `user`'s sent messages, newest first.
pub async fn sent_page(
    web: &Arc<Web>,
    user: &str,
    offset: usize,
    limit: usize,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let rows = web
        .ctx
        .store
        .sent_by(user, offset, limit)
        .await
        .map_err(ApiError::internal)?;
    let mut out = vec![];
    for m in rows {
        out.push(sent_status(web, user, m).await?);
    }
    Ok(out)
}

async fn sent_list(
    State(web): State<Arc<Web>>,
    a: Auth,
    Query(q): Query<PageQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let out = sent_page(&web, &a.user, q.offset, limit).await?;
    Ok(Json(serde_json::json!({"offset": q.offset, "sent": out})))
}

async fn sent_row(
    web: &Arc<Web>,
    user: &str,
    msgid: &str,
) -> Result<crate::store::messages::SentMessage, ApiError> {
    web.ctx
        .store
        .sent_with_msgid(user, msgid)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::not_found)
}

/// The status of `user`'s sent message `msgid`; 404 if they sent none.
pub async fn sent_one_status(
    web: &Arc<Web>,
    user: &str,
    msgid: &str,
) -> Result<serde_json::Value, ApiError> {
    let m = sent_row(web, user, msgid).await?;
    sent_status(web, user, m).await
}

async fn sent_one(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(msgid): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(sent_one_status(&web, &a.user, &msgid).await?))
}

async fn evidence(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(msgid): Path<String>,
) -> Result<Response, ApiError> {
    let m = sent_row(&web, &a.user, &msgid).await?;
    blocking(move || {
        let receipts = receipts_for(&web, &a.user, &m.identificativo)?;
        // The original as the user sent it: the copy in Sent with its Message-ID.
        let st = user_store(&web, &a.user)?;
        let mut original = None;
        if let (Ok(sent), Some(want)) = (st.existing("Sent"), m.msgid.as_deref()) {
            for e in sent.sync(false)?.msgs.iter().rev() {
                let raw = sent.read(e)?;
                let hdr = crate::pec::headers::parse_header_block(&raw)
                    .and_then(|h| h.message_id().map(|s| format!("<{s}>")));
                if hdr.as_deref() == Some(want) {
                    original = Some(raw);
                    break;
                }
            }
        }
        let w = web.clone();
        let zip = super::sent::evidence_zip(&m, original.as_deref(), &receipts, &|raw| {
            verify_report(&w, raw)
        })?;
        let name = format!("evidenza-{}.zip", m.identificativo);
        Ok(super::download("application/zip", &name, zip))
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
    let logged_in = match session::cookie(&headers, session::COOKIE) {
        Some(t) => matches!(web.sessions.get(t).await, Ok(Some(_))),
        None => false,
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

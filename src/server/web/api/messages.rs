//! `/api/v1/folders/{folder}/messages` and `/api/v1/messages/{id}`: the lists,
//! one message's view, its raw form, parts, HTML, moves and flags.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{blocking, locate, message_id, user_store, Located};
use crate::server::web::view::{self, Summary};
use crate::server::web::{ApiError, Auth, Web};
use crate::store::mailbox::{Flags, Folder, MsgEntry};

// ---------------------------------------------------------------- lists

#[derive(Deserialize)]
pub(super) struct ListQuery {
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
    if c.len() >= crate::server::web::MAX_SUMMARIES {
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
        if m.len() >= crate::server::web::MAX_HTML_OMITTED {
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

pub(super) async fn list(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(folder): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    blocking(move || list_page(&web, &a.user, &folder, q.offset, limit, q.q.as_deref()).map(Json))
        .await
}

pub(super) async fn mbox(
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
        Ok(crate::server::web::download(
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

pub(super) fn verify_report(web: &Web, raw: &[u8]) -> crate::pec::verify::VerifyReport {
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

pub(super) async fn message(
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

pub(super) async fn raw(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let l = locate(&web, &a.user, &id)?;
        let raw = l.folder.read(&l.entry)?;
        Ok(crate::server::web::download(
            "message/rfc822",
            &format!("{id}.eml"),
            raw,
        ))
    })
    .await
}

#[derive(Deserialize)]
pub(super) struct HtmlQuery {
    #[serde(default)]
    images: Option<u8>,
}

/// The sanitised HTML body as its own document, for a sandboxed frame: its
/// policy forbids every script and every fetch (remote images only with
/// `?images=1`).
pub(super) async fn html(
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

pub(super) async fn part(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path((id, part)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let l = locate(&web, &a.user, &id)?;
        let raw = l.folder.read(&l.entry)?;
        let (ctype, name, bytes) = view::part(&raw, &part).ok_or_else(ApiError::not_found)?;
        Ok(crate::server::web::download(&ctype, &name, bytes))
    })
    .await
}

#[derive(Deserialize)]
pub(super) struct MoveBody {
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

pub(super) async fn move_to(
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

pub(super) async fn delete(
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
pub(super) struct FlagsBody {
    seen: Option<bool>,
    flagged: Option<bool>,
    answered: Option<bool>,
}

pub(super) async fn flags(
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

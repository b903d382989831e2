//! `POST /api/v1/messages`: a web send, submitted as SMTP submission is: a
//! multipart form (the compose page) or a JSON object (`send_json`), with
//! an optional `Idempotency-Key` (`idempotency`).

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::refusal::{no_bcc, refusal, tipo_ricevuta, too_big};
use super::{blocking, idempotency, message_id, user_store};
use crate::server::submission;
use crate::server::web::body::{BodyError, InMemory};
use crate::server::web::compose::Draft;
use crate::server::web::{ApiError, Auth, Web, MEMORY_WAIT};
use crate::store::mailbox::Flags;

/// Memory a send needs, as a multiple of its form's size: the form, its
/// fields, and the message built from them (a third larger in base64) as a
/// submission needs it.
const SEND_FACTOR: usize = crate::memory::SUBMISSION_FACTOR * 4 / 3 + 2;

/// The `Content-Length` a request declares, if any.
pub(super) fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// Whether a request body is JSON (by its `Content-Type`).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            let t = t.trim().to_ascii_lowercase();
            t == "application/json" || t.ends_with("+json")
        })
}

pub(super) async fn send(
    State(web): State<Arc<Web>>,
    a: Auth,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let max = web.ctx.cfg().max_message_size();
    let (parts, body) = req.into_parts();
    let json = is_json(&parts.headers);
    // The form's own overhead (field names, boundaries) on top of the
    // message; in JSON the attachments are base64, a third larger.
    let limit = if json {
        max / 3 * 4 + 64 * 1024
    } else {
        max + 64 * 1024
    };
    // Refused before reading a byte when the client says how big it is.
    if declared_length(&parts.headers).is_some_and(|n| n > limit) {
        return Err(too_big(max));
    }
    let key = idempotency::key_of(&parts.headers)?;
    let up = web.receive(body, limit).await.map_err(|e| match e {
        BodyError::TooLarge(_) => too_big(max),
        e => e.into(),
    })?;
    let InMemory { bytes, memory } = up.into_memory(SEND_FACTOR, MEMORY_WAIT).await?;
    let body_hash = openssl::sha::sha256(&bytes);
    let (web2, user) = (web.clone(), a.user.clone());
    let work = move |msgid: String| async move {
        // Held until the message is submitted and stored.
        let _memory = memory;
        let d = if json {
            super::send_json::draft(&user, &bytes, max)?
        } else {
            let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            draft_from_form(&web2, &user, req, max).await?
        };
        submit_draft(&web2, d, &msgid, max).await
    };
    idempotency::run(&web, &a.user, key, body_hash, work).await
}

/// The draft of a multipart form (the compose page's).
async fn draft_from_form(
    web: &Arc<Web>,
    user: &str,
    req: axum::extract::Request,
    max: usize,
) -> Result<Draft, ApiError> {
    let too_big = || too_big(max);
    let mut form = Multipart::from_request(req, web)
        .await
        .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let mut d = Draft {
        from: user.to_string(),
        to: vec![],
        cc: vec![],
        subject: String::new(),
        body: String::new(),
        html: None,
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
            "to" => d.to.extend(crate::server::web::compose::addresses(&text())),
            "cc" => d.cc.extend(crate::server::web::compose::addresses(&text())),
            "bcc" if !bytes.is_empty() => return Err(no_bcc()),
            "subject" => d.subject = text().replace(['\r', '\n'], " "),
            "body" => d.body = text(),
            "tipo_ricevuta" => d.tipo_ricevuta = tipo_ricevuta(&text())?,
            "attachment" => {
                if bytes.is_empty() && filename.as_deref().unwrap_or("").is_empty() {
                    continue;
                }
                d.attachments.push(crate::server::web::compose::Upload {
                    filename: filename.unwrap_or_else(|| "allegato".into()),
                    content_type: ctype.unwrap_or_else(|| "application/octet-stream".into()),
                    bytes,
                })
            }
            _ => {}
        }
    }
    Ok(d)
}

/// Submit draft `d` as message `msgid` (no brackets) and keep the user's
/// copy in Sent: `201` with the identificativo, or the refusal.
async fn submit_draft(
    web: &Arc<Web>,
    mut d: Draft,
    msgid: &str,
    max: usize,
) -> Result<(StatusCode, serde_json::Value), ApiError> {
    if d.to.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "to: at least one recipient",
        ));
    }
    let ctx = web.ctx.clone();
    let when = crate::pec::clock::ItalianTime::from_unix(ctx.now_secs());
    let boundary = crate::pec::ids::boundary(ctx.ids.as_ref());
    let raw = crate::server::web::compose::build(&d, msgid, &when, &boundary);
    // And in the message now: the submission needs the memory.
    drop(std::mem::take(&mut d.attachments));
    if raw.len() > max {
        return Err(too_big(max));
    }
    let user = d.from.clone();
    let rcpts: Vec<String> = d.to.iter().chain(&d.cc).cloned().collect();
    let s = submission::submit(&ctx, &user, &user, &rcpts, raw.clone())
        .await
        .map_err(refusal)?;
    // The user's copy in Sent: exactly what was submitted.
    let web2 = web.clone();
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
        serde_json::json!({
            "identificativo": s.identificativo,
            "msgid": s.msgid.unwrap_or_else(|| format!("<{msgid}>")),
            "sent": sent_id,
        }),
    ))
}

//! `POST /api/v1/messages`: a web send, submitted as SMTP submission is.

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{blocking, message_id, user_store};
use crate::flow::refusal::Refusal;
use crate::server::submission;
use crate::server::web::body::{BodyError, InMemory};
use crate::server::web::{ApiError, Auth, Web, MEMORY_WAIT};
use crate::store::mailbox::Flags;

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
pub(super) fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

pub(super) async fn send(
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
    let mut d = crate::server::web::compose::Draft {
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
            "to" => d.to.extend(crate::server::web::compose::addresses(&text())),
            "cc" => d.cc.extend(crate::server::web::compose::addresses(&text())),
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
                d.attachments.push(crate::server::web::compose::Upload {
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
    let raw = crate::server::web::compose::build(&d, &msgid, &when, &boundary);
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

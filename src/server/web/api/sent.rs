//! `/api/v1/sent`: the sent messages' recipient states and their evidence.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;

use super::messages::{summary, verify_report};
use super::{blocking, message_id, user_store};
use crate::server::web::{ApiError, Auth, Web};

// ---------------------------------------------------------------- sent

/// Receipts in `user`'s folders about `identificativo`, oldest first.
fn receipts_for(
    web: &Web,
    user: &str,
    identificativo: &str,
) -> Result<Vec<crate::server::web::sent::Receipt>, ApiError> {
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
            if let Some(tipo) = crate::server::web::sent::receipt_tipo(&raw) {
                out.push((
                    s.date.unwrap_or(0),
                    crate::server::web::sent::Receipt {
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
    let rows = crate::server::web::sent::states(&m, &receipts, &presa, &esterno);
    Ok(serde_json::json!({
        "identificativo": m.identificativo,
        "msgid": m.msgid,
        "subject": m.subject,
        "accepted_at": crate::server::web::sent::iso_ms(m.accepted_at),
        "receipt_type": m.receipt_type,
        "recipients": rows,
        "receipts": receipts.iter().map(|r| serde_json::json!({"id": r.id, "tipo": r.tipo.as_str()})).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
pub(super) struct PageQuery {
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

pub(super) async fn sent_list(
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

pub(super) async fn sent_one(
    State(web): State<Arc<Web>>,
    a: Auth,
    Path(msgid): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(sent_one_status(&web, &a.user, &msgid).await?))
}

pub(super) async fn evidence(
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
        let zip =
            crate::server::web::sent::evidence_zip(&m, original.as_deref(), &receipts, &|raw| {
                verify_report(&w, raw)
            })?;
        let name = format!("evidenza-{}.zip", m.identificativo);
        Ok(crate::server::web::download("application/zip", &name, zip))
    })
    .await
}

//! The sent messages' status page (`/sent`): each recipient's state from the receipts.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{enc, folder_links, lang, render, state_label, Sidebar, T};
use super::{ApiError, Auth, Web};

#[derive(Deserialize, Default)]
pub(super) struct SentQuery {
    #[serde(default)]
    lang: Option<String>,
    /// Only the sent message with this Message-ID.
    #[serde(default)]
    msgid: Option<String>,
}

/// One recipient row of the sent page.
pub struct StateRow {
    address: String,
    tipo: String,
    state: String,
    label: String,
    at: String,
    receipt: String,
    error: String,
}

/// One sent message on the sent page.
pub struct SentItem {
    msgid: String,
    msgid_enc: String,
    subject: String,
    accepted: String,
    identificativo: String,
    receipt_type: String,
    rows: Vec<StateRow>,
}

#[derive(Template)]
#[template(path = "sent.html")]
struct SentPage {
    t: &'static T,
    user: String,
    csrf: String,
    folders: Sidebar,
    sent: Vec<SentItem>,
}

pub(super) async fn sent(
    State(web): State<Arc<Web>>,
    a: Result<Auth, ApiError>,
    headers: HeaderMap,
    Query(q): Query<SentQuery>,
) -> Response {
    let Ok(a) = a else {
        return Redirect::to("/login").into_response();
    };
    let (t, set) = lang(&headers, &q.lang);
    let list = match &q.msgid {
        Some(m) => crate::server::web::api::sent_one_status(&web, &a.user, m)
            .await
            .map(|m| vec![m]),
        None => crate::server::web::api::sent_page(&web, &a.user, 0, 20).await,
    };
    let list = match list {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let sent = list
        .iter()
        .map(|m| SentItem {
            msgid: s(&m["msgid"]),
            msgid_enc: enc(&s(&m["msgid"])),
            subject: s(&m["subject"]),
            accepted: crate::pec::clock::human_from_iso(&s(&m["accepted_at"])),
            identificativo: s(&m["identificativo"]),
            receipt_type: s(&m["receipt_type"]),
            rows: m["recipients"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|r| StateRow {
                    address: s(&r["address"]),
                    tipo: s(&r["tipo"]),
                    label: state_label(t, &s(&r["state"])),
                    state: s(&r["state"]),
                    at: crate::pec::clock::human_from_iso(&s(&r["at"])),
                    receipt: s(&r["receipt"]),
                    error: s(&r["error"]),
                })
                .collect(),
        })
        .collect();
    let w = web.clone();
    let user = a.user.clone();
    let links = tokio::task::spawn_blocking(move || folder_links(&w, t, &user, ""))
        .await
        .unwrap_or_default();
    render(
        SentPage {
            t,
            user: a.user,
            csrf: a.csrf,
            folders: links,
            sent,
        },
        set,
    )
}

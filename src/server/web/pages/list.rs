//! The message list page of one folder (`/mail/{folder}`), with search and paging.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{enc, folder_label, folder_links, lang, pec_label, render, size, when, Sidebar, T};
use super::{ApiError, Auth, Web};

/// One row of the message list.
pub struct Row {
    id: String,
    seen: bool,
    flagged: bool,
    pec_class: String,
    pec_label: String,
    from: String,
    subject: String,
    attachments: bool,
    date: String,
    size: String,
}

#[derive(Template)]
#[template(path = "list.html")]
struct ListPage {
    t: &'static T,
    user: String,
    csrf: String,
    folders: Sidebar,
    folder: String,
    folder_path: String,
    folder_label: String,
    q: String,
    uidnext: u64,
    rows: Vec<Row>,
    prev: Option<String>,
    next: Option<String>,
    range: String,
}

#[derive(Deserialize, Default)]
pub(super) struct FolderQuery {
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    offset: usize,
}

const PAGE: usize = 50;

pub(super) async fn folder(
    State(web): State<Arc<Web>>,
    a: Result<Auth, ApiError>,
    headers: HeaderMap,
    Path(folder): Path<String>,
    Query(q): Query<FolderQuery>,
) -> Response {
    let Ok(a) = a else {
        return Redirect::to("/login").into_response();
    };
    let (t, set) = lang(&headers, &q.lang);
    let w = web.clone();
    let (user, f2, qq, off) = (a.user.clone(), folder.clone(), q.q.clone(), q.offset);
    let r = tokio::task::spawn_blocking(move || {
        let page = crate::server::web::api::list_page(&w, &user, &f2, off, PAGE, qq.as_deref())?;
        let links = folder_links(&w, t, &user, &f2);
        Ok::<_, ApiError>((page, links))
    })
    .await;
    let (page, links) = match r {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let rows = page["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let pec = m["pec"].as_str().unwrap_or("").to_string();
            Row {
                id: m["id"].as_str().unwrap_or("").into(),
                seen: m["flags"]["seen"] == true,
                flagged: m["flags"]["flagged"] == true,
                pec_label: if pec.is_empty() {
                    String::new()
                } else {
                    pec_label(t, &pec)
                },
                pec_class: if pec.is_empty() { "none".into() } else { pec },
                from: m["from"].as_str().unwrap_or("").into(),
                subject: m["subject"].as_str().unwrap_or("").into(),
                attachments: m["attachments"] == true,
                date: when(m["date"].as_i64()),
                size: size(m["size"].as_u64().unwrap_or(0)),
            }
        })
        .collect::<Vec<_>>();
    let total = page["total"].as_u64().unwrap_or(0) as usize;
    let qs = |o: usize| {
        let mut s = format!("/mail/{}?offset={o}", enc(&folder));
        if let Some(q) = &q.q {
            s.push_str(&format!("&q={}", enc(q)));
        }
        s
    };
    let range = if total == 0 {
        String::new()
    } else {
        format!("{}–{} / {total}", off + 1, (off + rows.len()).max(off + 1))
    };
    render(
        ListPage {
            t,
            csrf: a.csrf,
            user: a.user,
            folder_path: enc(&folder),
            folder_label: folder_label(t, &folder),
            q: q.q.clone().unwrap_or_default(),
            uidnext: page["uidnext"].as_u64().unwrap_or(0),
            prev: (off > 0).then(|| qs(off.saturating_sub(PAGE))),
            next: (off + PAGE < total).then(|| qs(off + PAGE)),
            range,
            rows,
            folders: links,
            folder,
        },
        set,
    )
}

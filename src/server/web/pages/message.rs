//! The page of one message (`/message/{id}`) and its PEC panel.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{enc, folder_links, lang, pec_label, render, size, when, Sidebar, T};
use super::{ApiError, Auth, Web};
use crate::pec::classify::Kind;

/// The PEC panel of a message page.
pub struct Panel {
    title: String,
    certified: bool,
    note: String,
    mittente: String,
    destinatari: Vec<(String, String)>,
    consegna: String,
    oggetto: String,
    identificativo: String,
    data: String,
    ricevuta: String,
    gestore: String,
    errore: String,
    signature: String,
    provider: String,
    signer: String,
    reasons: Vec<String>,
    has_postacert: bool,
    /// For a receipt: the status page of the sent message it is about.
    sent_link: String,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    t: &'static T,
    user: String,
    csrf: String,
    folders: Sidebar,
    id: String,
    seen: bool,
    flagged: bool,
    subject: String,
    from: String,
    to: String,
    cc: String,
    date: String,
    text: String,
    has_html: bool,
    html_omitted: bool,
    images: bool,
    attachments: Vec<(String, String, String)>,
    pec: Option<Panel>,
}

#[derive(Deserialize, Default)]
pub(super) struct MessageQuery {
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    images: Option<u8>,
}

fn panel(t: &T, p: &serde_json::Value, has_postacert: bool) -> Panel {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let d = &p["daticert"];
    let v = &p["verification"];
    let tipo = s(&p["tipo"]);
    let it = t.lang == "it";
    let title = match tipo.as_str() {
        "posta-certificata" => if it {
            "Posta certificata"
        } else {
            "Certified mail"
        }
        .to_string(),
        "anomalia" => if it {
            "Anomalia: messaggio NON certificato"
        } else {
            "Anomaly: NOT certified"
        }
        .to_string(),
        other => format!(
            "{}: {}",
            if it { "Ricevuta" } else { "Receipt" },
            pec_label(t, other)
        ),
    };
    let note = if it {
        s(&p["note"])
    } else {
        match (tipo.as_str(), p["certified"] == true) {
            ("anomalia", _) => "This message is NOT certified: the provider received it without the PEC guarantees (busta di anomalia).".into(),
            (_, false) => "Verification FAILED: the message cannot be considered certified.".into(),
            ("posta-certificata", _) => "Certified mail: the provider's signature is valid.".into(),
            _ => "Receipt signed by the provider: signature valid.".into(),
        }
    };
    let verdict = s(&v["signature"]["verdict"]);
    let signature = match (verdict.as_str(), it) {
        ("valid", true) => if v["signature"]["chain_checked"] == true {
            "valida (catena verificata)"
        } else {
            "valida"
        }
        .to_string(),
        ("valid", false) => if v["signature"]["chain_checked"] == true {
            "valid (chain checked)"
        } else {
            "valid"
        }
        .to_string(),
        ("absent", true) => "assente".into(),
        ("absent", false) => "absent".into(),
        (_, true) => format!("NON valida: {}", s(&v["signature"]["error"])),
        (_, false) => format!("INVALID: {}", s(&v["signature"]["error"])),
    };
    Panel {
        title,
        certified: p["certified"] == true,
        note,
        mittente: s(&d["mittente"]),
        destinatari: d["destinatari"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| (s(&x["address"]), s(&x["tipo"])))
                    .collect()
            })
            .unwrap_or_default(),
        consegna: s(&d["consegna"]),
        oggetto: s(&d["oggetto"]),
        identificativo: s(&d["identificativo"]),
        data: if d["giorno"].is_string() {
            // The daticert's own time and offset, in the same form.
            crate::pec::clock::human_from_iso(&crate::server::web::sent::iso(
                &s(&d["giorno"]),
                &s(&d["ora"]),
                &s(&d["zona"]),
            ))
        } else {
            String::new()
        },
        ricevuta: s(&d["ricevuta"]),
        gestore: s(&d["gestore_emittente"]),
        errore: if d["errore"].is_string() && d["errore"] != "nessuno" {
            format!("{} {}", s(&d["errore"]), s(&d["errore_esteso"]))
                .trim()
                .to_string()
        } else {
            s(&d["errore_esteso"])
        },
        signature,
        provider: s(&v["provider"]),
        signer: s(&v["signature"]["signer_subject"]),
        reasons: v["reasons"]
            .as_array()
            .map(|a| a.iter().map(s).collect())
            .unwrap_or_default(),
        has_postacert,
        sent_link: String::new(),
    }
}

pub(super) async fn message(
    State(web): State<Arc<Web>>,
    a: Result<Auth, ApiError>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<MessageQuery>,
) -> Response {
    let Ok(a) = a else {
        return Redirect::to("/login").into_response();
    };
    let (t, set) = lang(&headers, &q.lang);
    let w = web.clone();
    let (user, id2) = (a.user.clone(), id.clone());
    let r = tokio::task::spawn_blocking(move || {
        let l = crate::server::web::api::locate(&w, &user, &id2)?;
        let raw = l.folder.read(&l.entry)?;
        let (v, pm) = crate::server::web::api::message_view(&w, &l, &raw, false);
        let mut pec = crate::server::web::api::pec_object(&w, &raw, &pm)
            .map(|p| panel(t, &p, pm.postacert.is_some()));
        // A receipt links to the message it is about, when this user sent it.
        if let (Some(p), Kind::Ricevuta(_), Some(rif)) = (
            pec.as_mut(),
            pm.kind,
            pm.x_riferimento_message_id.as_deref(),
        ) {
            let found = w.ctx.store.sent_with_msgid_blocking(&user, rif.trim());
            if let Ok(Some(m)) = found {
                p.sent_link = format!("/sent?msgid={}", enc(m.msgid.as_deref().unwrap_or(rif)));
            }
        }
        let links = folder_links(&w, t, &user, &l.folder_name);
        Ok::<_, ApiError>((v, pec, l.entry.flags, links))
    })
    .await;
    let (v, pec, flags, links) = match r {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return ApiError::internal(e).into_response(),
    };
    render(
        MessagePage {
            t,
            user: a.user,
            csrf: a.csrf,
            folders: links,
            id,
            seen: flags.seen,
            flagged: flags.flagged,
            subject: v.subject,
            from: v.from,
            to: v.to.join(", "),
            cc: v.cc.join(", "),
            date: when(v.date),
            text: v.text.unwrap_or_default(),
            has_html: v.html.is_some(),
            html_omitted: v.html_omitted.is_some(),
            images: q.images == Some(1),
            attachments: v
                .attachments
                .into_iter()
                .map(|x| (x.part, x.filename, size(x.size as u64)))
                .collect(),
            pec,
        },
        set,
    )
}

//! Server-rendered pages (askama templates, compile-time checked) and the
//! embedded assets. Every state change goes through the JSON API from the
//! one embedded script, so no page carries inline script; the strings are
//! Italian by default, English by `Accept-Language` or the `?lang=` toggle.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::{ApiError, Auth, Web};
use crate::pec::classify::Kind;

const CSS: &str = include_str!("assets/webmail.css");
const JS: &str = include_str!("assets/webmail.js");

fn asset(ctype: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The page routes.
pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/mail/{folder}", get(folder))
        .route("/message/{id}", get(message))
        .route("/compose", get(compose))
        .route("/sent", get(sent))
        .route("/verify", get(verify))
        .route(
            "/assets/webmail.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/assets/webmail.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
}

/// The interface strings of one language.
pub struct T {
    lang: &'static str,
    other_lang: &'static str,
    other_lang_name: &'static str,
    product: &'static str,
    skip: &'static str,
    nav: &'static str,
    compose: &'static str,
    sent_status: &'static str,
    verify: &'static str,
    logout: &'static str,
    folders: &'static str,
    space_used: &'static str,
    of: &'static str,
    new_folder: &'static str,
    receipt_of_sent: &'static str,
    create: &'static str,
    rename: &'static str,
    delete_folder: &'static str,
    delete_folder_confirm: &'static str,
    login: &'static str,
    login_intro: &'static str,
    address: &'static str,
    password: &'static str,
    totp: &'static str,
    search: &'static str,
    search_hint: &'static str,
    download_mbox: &'static str,
    pec_type: &'static str,
    from: &'static str,
    to: &'static str,
    subject: &'static str,
    date: &'static str,
    size: &'static str,
    no_subject: &'static str,
    attachments: &'static str,
    att_mark: &'static str,
    empty: &'static str,
    pages: &'static str,
    newer: &'static str,
    older: &'static str,
    mittente: &'static str,
    destinatari: &'static str,
    consegna: &'static str,
    oggetto: &'static str,
    identificativo: &'static str,
    data_ora: &'static str,
    ricevuta: &'static str,
    gestore: &'static str,
    errore: &'static str,
    firma: &'static str,
    firmatario: &'static str,
    certificato: &'static str,
    flag: &'static str,
    unflag: &'static str,
    mark_unread: &'static str,
    move_to: &'static str,
    move_: &'static str,
    delete: &'static str,
    download_eml: &'static str,
    html_note: &'static str,
    html_omitted: &'static str,
    show_images: &'static str,
    body: &'static str,
    no_bcc: &'static str,
    max_size: &'static str,
    receipt_type: &'static str,
    completa: &'static str,
    breve: &'static str,
    sintetica: &'static str,
    send: &'static str,
    sent_intro: &'static str,
    accepted_at: &'static str,
    evidence: &'static str,
    recipient: &'static str,
    state: &'static str,
    when: &'static str,
    receipt: &'static str,
    open: &'static str,
    verify_intro: &'static str,
    eml_file: &'static str,
}

static IT: T = T {
    lang: "it",
    other_lang: "en",
    other_lang_name: "English",
    product: "PEC webmail",
    skip: "Vai al contenuto",
    nav: "Navigazione",
    compose: "Scrivi",
    sent_status: "Inviati e stato",
    verify: "Verifica una PEC",
    logout: "Esci",
    folders: "Cartelle",
    space_used: "Spazio usato:",
    of: "di",
    new_folder: "Nuova cartella",
    receipt_of_sent: "Il messaggio inviato a cui si riferisce, con lo stato di ogni destinatario",
    create: "Crea",
    rename: "Rinomina",
    delete_folder: "Elimina cartella",
    delete_folder_confirm: "Eliminare la cartella e i messaggi che contiene?",
    login: "Accedi",
    login_intro: "Indirizzo e password sono gli stessi della posta (IMAP/SMTP).",
    address: "Indirizzo PEC",
    password: "Password",
    totp: "Codice di verifica (6 cifre)",
    search: "Cerca",
    search_hint: "oggetto, mittente, destinatario, identificativo",
    download_mbox: "Scarica la cartella (.mbox)",
    pec_type: "Tipo",
    from: "Da",
    to: "A",
    subject: "Oggetto",
    date: "Data",
    size: "Dimensione",
    no_subject: "(senza oggetto)",
    attachments: "Allegati",
    att_mark: "all.",
    empty: "Nessun messaggio.",
    pages: "Pagine",
    newer: "Più recenti",
    older: "Meno recenti",
    mittente: "Mittente",
    destinatari: "Destinatari",
    consegna: "Consegna a",
    oggetto: "Oggetto originale",
    identificativo: "Identificativo",
    data_ora: "Data e ora",
    ricevuta: "Tipo di ricevuta",
    gestore: "Gestore emittente",
    errore: "Errore",
    firma: "Firma del gestore",
    firmatario: "Gestore firmatario (indice)",
    certificato: "Certificato",
    flag: "Contrassegna",
    unflag: "Togli contrassegno",
    mark_unread: "Segna come da leggere",
    move_to: "Sposta in",
    move_: "Sposta",
    delete: "Elimina",
    download_eml: "Scarica .eml",
    html_note: "Il contenuto HTML è mostrato ripulito e isolato; le immagini remote sono bloccate.",
    html_omitted: "La parte HTML di questo messaggio è troppo grande o troppo complessa per essere mostrata: ecco il suo testo. Il messaggio completo si può scaricare come .eml.",
    show_images: "Mostra le immagini remote",
    body: "Testo",
    no_bcc: "La PEC non ammette destinatari nascosti (Ccn/Bcc): tutti i destinatari sono visibili a tutti.",
    max_size: "dimensione massima",
    receipt_type: "Ricevuta di consegna",
    completa: "completa (con il messaggio)",
    breve: "breve (impronte degli allegati)",
    sintetica: "sintetica (solo dati di certificazione)",
    send: "Invia",
    sent_intro: "Ogni messaggio inviato con le sue ricevute: lo stato di ciascun destinatario viene dalle ricevute firmate.",
    accepted_at: "Accettato il",
    evidence: "Scarica le prove (.zip)",
    recipient: "Destinatario",
    state: "Stato",
    when: "Quando",
    receipt: "Ricevuta",
    open: "apri",
    verify_intro: "Carica un file .eml (busta, ricevuta o anomalia): ottieni la verifica della firma e dei dati certificati, come con «pecd verify».",
    eml_file: "File .eml",
};

static EN: T = T {
    lang: "en",
    other_lang: "it",
    other_lang_name: "Italiano",
    product: "PEC webmail",
    skip: "Skip to content",
    nav: "Navigation",
    compose: "Compose",
    sent_status: "Sent and status",
    verify: "Check a PEC file",
    logout: "Log out",
    folders: "Folders",
    space_used: "Space used:",
    of: "of",
    new_folder: "New folder",
    receipt_of_sent: "The sent message it is about, with each recipient's status",
    create: "Create",
    rename: "Rename",
    delete_folder: "Delete folder",
    delete_folder_confirm: "Delete the folder and the messages in it?",
    login: "Log in",
    login_intro: "Same address and password as for mail clients (IMAP/SMTP).",
    address: "PEC address",
    password: "Password",
    totp: "Verification code (6 digits)",
    search: "Search",
    search_hint: "subject, sender, recipient, identificativo",
    download_mbox: "Download folder (.mbox)",
    pec_type: "Type",
    from: "From",
    to: "To",
    subject: "Subject",
    date: "Date",
    size: "Size",
    no_subject: "(no subject)",
    attachments: "Attachments",
    att_mark: "att.",
    empty: "No messages.",
    pages: "Pages",
    newer: "Newer",
    older: "Older",
    mittente: "Certified sender",
    destinatari: "Recipients",
    consegna: "Delivered to",
    oggetto: "Original subject",
    identificativo: "Identificativo",
    data_ora: "Date and time",
    ricevuta: "Receipt type",
    gestore: "Issuing provider",
    errore: "Error",
    firma: "Provider signature",
    firmatario: "Signing provider (index)",
    certificato: "Certificate",
    flag: "Flag",
    unflag: "Unflag",
    mark_unread: "Mark unread",
    move_to: "Move to",
    move_: "Move",
    delete: "Delete",
    download_eml: "Download .eml",
    html_note: "HTML is shown sanitised and isolated; remote images are blocked.",
    html_omitted: "The HTML part of this message is too large or too complex to show: here is its text. The whole message can be downloaded as .eml.",
    show_images: "Show remote images",
    body: "Body",
    no_bcc: "PEC does not allow hidden recipients (Bcc): every recipient is visible to all.",
    max_size: "size limit",
    receipt_type: "Delivery receipt",
    completa: "full (with the message)",
    breve: "short (attachment digests)",
    sintetica: "summary (certification data only)",
    send: "Send",
    sent_intro: "Every sent message with its receipts: each recipient's state comes from the signed receipts.",
    accepted_at: "Accepted on",
    evidence: "Download evidence (.zip)",
    recipient: "Recipient",
    state: "State",
    when: "When",
    receipt: "Receipt",
    open: "open",
    verify_intro: "Upload a .eml file (busta, receipt or anomaly) to check its signature and certified data, as «pecd verify» does.",
    eml_file: ".eml file",
};

#[derive(Deserialize, Default)]
struct LangQuery {
    #[serde(default)]
    lang: Option<String>,
}

#[derive(Deserialize, Default)]
struct SentQuery {
    #[serde(default)]
    lang: Option<String>,
    /// Only the sent message with this Message-ID.
    #[serde(default)]
    msgid: Option<String>,
}

/// The language of a request: `?lang=`, then the `pecd_lang` cookie, then
/// `Accept-Language`; Italian unless English is asked for.
fn lang(headers: &HeaderMap, q: &Option<String>) -> (&'static T, Option<&'static str>) {
    match q.as_deref() {
        Some("en") => return (&EN, Some("en")),
        Some("it") => return (&IT, Some("it")),
        _ => {}
    }
    match super::session::cookie(headers, "pecd_lang") {
        Some("en") => return (&EN, None),
        Some("it") => return (&IT, None),
        _ => {}
    }
    let al = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_start()
        .to_ascii_lowercase();
    if al.starts_with("en") {
        (&EN, None)
    } else {
        (&IT, None)
    }
}

fn render(t: impl Template, set_lang: Option<&str>) -> Response {
    match t.render() {
        Ok(html) => {
            let mut r = (StatusCode::OK, html).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Some(l) = set_lang {
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "pecd_lang={l}; Secure; SameSite=Strict; Path=/; Max-Age=31536000"
                )) {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
            }
            r
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// The side list: the user's folders and the space their box uses.
#[derive(Default)]
pub struct Sidebar {
    links: Vec<FolderLink>,
    space: String,
    /// The folder shown, when it is one of the user's own (renamable).
    own: Option<String>,
}

impl Sidebar {
    /// Pages without a logged-in user have no side list.
    fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// One folder in the side list.
pub struct FolderLink {
    name: String,
    special: bool,
    path: String,
    label: String,
    unread: usize,
    current: bool,
}

fn folder_label(t: &T, name: &str) -> String {
    let it = t.lang == "it";
    match name {
        "INBOX" => if it { "Posta in arrivo" } else { "Inbox" }.into(),
        "Sent" => if it { "Inviata" } else { "Sent" }.into(),
        "Drafts" => if it { "Bozze" } else { "Drafts" }.into(),
        "Trash" => if it { "Cestino" } else { "Trash" }.into(),
        n => n.to_string(),
    }
}

/// Percent-encode one path segment.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn folder_links(web: &Web, t: &T, user: &str, current: &str) -> Sidebar {
    let Ok(st) = web.ctx.mailboxes().open(user) else {
        return Sidebar::default();
    };
    let links: Vec<FolderLink> = st
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let unread = st
                .folder(&f.name)
                .ok()
                .and_then(|x| x.sync(false).ok())
                .map(|s| s.msgs.iter().filter(|m| !m.flags.seen).count())
                .unwrap_or(0);
            FolderLink {
                path: enc(&f.name),
                label: folder_label(t, &f.name),
                current: f.name == current,
                special: f.special.is_some() || f.name.eq_ignore_ascii_case("INBOX"),
                name: f.name,
                unread,
            }
        })
        .collect();
    let used = st.usage().map(|u| u.bytes).unwrap_or(0);
    let space = match web.ctx.quota_of_blocking(user) {
        Some(limit) => format!(
            "{} {} {} {} ({}%)",
            t.space_used,
            size(used),
            t.of,
            size(limit),
            used.saturating_mul(100) / limit.max(1)
        ),
        None => format!("{} {}", t.space_used, size(used)),
    };
    let own = links
        .iter()
        .find(|l| l.current && !l.special)
        .map(|l| l.name.clone());
    Sidebar { links, space, own }
}

/// Unix seconds in the one human form, Italian time with its offset
/// (`ItalianTime::human`).
fn when(secs: Option<i64>) -> String {
    match secs {
        Some(s) => crate::pec::clock::ItalianTime::from_unix(s).human(),
        None => String::new(),
    }
}

fn size(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1} GB", n as f64 / 1e9)
    } else if n >= 1_000_000 {
        format!("{:.1} MB", n as f64 / 1e6)
    } else {
        format!("{} KB", n.div_ceil(1000))
    }
}

fn pec_label(t: &T, token: &str) -> String {
    let it = t.lang == "it";
    match token {
        "posta-certificata" => "PEC".into(),
        "anomalia" => if it { "anomalia" } else { "anomaly" }.into(),
        "accettazione" => if it { "accettazione" } else { "acceptance" }.into(),
        "non-accettazione" => if it {
            "non accettazione"
        } else {
            "non-acceptance"
        }
        .into(),
        "presa-in-carico" => if it {
            "presa in carico"
        } else {
            "taken in charge"
        }
        .into(),
        "avvenuta-consegna" => if it { "consegna" } else { "delivery" }.into(),
        "errore-consegna" => if it {
            "errore consegna"
        } else {
            "delivery error"
        }
        .into(),
        "preavviso-errore-consegna" => if it {
            "avviso mancata consegna"
        } else {
            "non-delivery notice"
        }
        .into(),
        other => other.to_string(),
    }
}

fn state_label(t: &T, state: &str) -> String {
    let it = t.lang == "it";
    match state {
        "accettato" => {
            if it {
                "accettato"
            } else {
                "accepted"
            }
        }
        "preso-in-carico" => {
            if it {
                "preso in carico"
            } else {
                "taken in charge"
            }
        }
        "consegnato" => {
            if it {
                "consegnato"
            } else {
                "delivered"
            }
        }
        "errore" => {
            if it {
                "non consegnato"
            } else {
                "not delivered"
            }
        }
        "preavviso" => {
            if it {
                "avviso: non ancora consegnato (12 h)"
            } else {
                "warning: not delivered yet (12 h)"
            }
        }
        "mancata-consegna" => {
            if it {
                "mancata consegna (24 h)"
            } else {
                "not delivered (24 h expiry)"
            }
        }
        s => s,
    }
    .to_string()
}

// ---------------------------------------------------------------- pages

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    t: &'static T,
    user: String,
    csrf: String,
    folders: Sidebar,
}

async fn home(a: Result<Auth, ApiError>) -> Redirect {
    match a {
        Ok(_) => Redirect::to("/mail/INBOX"),
        Err(_) => Redirect::to("/login"),
    }
}

async fn login(headers: HeaderMap, Query(q): Query<LangQuery>) -> Response {
    let (t, set) = lang(&headers, &q.lang);
    render(
        LoginPage {
            t,
            user: String::new(),
            csrf: String::new(),
            folders: Sidebar::default(),
        },
        set,
    )
}

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
struct FolderQuery {
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    offset: usize,
}

const PAGE: usize = 50;

async fn folder(
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
        let page = super::api::list_page(&w, &user, &f2, off, PAGE, qq.as_deref())?;
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
struct MessageQuery {
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
            crate::pec::clock::human_from_iso(&super::sent::iso(
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

async fn message(
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
        let l = super::api::locate(&w, &user, &id2)?;
        let raw = l.folder.read(&l.entry)?;
        let (v, pm) = super::api::message_view(&w, &l, &raw, false);
        let mut pec =
            super::api::pec_object(&w, &raw, &pm).map(|p| panel(t, &p, pm.postacert.is_some()));
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

#[derive(Template)]
#[template(path = "compose.html")]
struct ComposePage {
    t: &'static T,
    user: String,
    csrf: String,
    folders: Sidebar,
    max_size: String,
}

async fn compose(
    State(web): State<Arc<Web>>,
    a: Result<Auth, ApiError>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let Ok(a) = a else {
        return Redirect::to("/login").into_response();
    };
    let (t, set) = lang(&headers, &q.lang);
    render(
        ComposePage {
            t,
            user: a.user,
            csrf: a.csrf,
            folders: Sidebar::default(),
            max_size: size(web.ctx.cfg().max_message_size() as u64),
        },
        set,
    )
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

async fn sent(
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
        Some(m) => super::api::sent_one_status(&web, &a.user, m)
            .await
            .map(|m| vec![m]),
        None => super::api::sent_page(&web, &a.user, 0, 20).await,
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

#[derive(Template)]
#[template(path = "verify.html")]
struct VerifyPage {
    t: &'static T,
    user: String,
    csrf: String,
    folders: Sidebar,
}

async fn verify(
    a: Result<Auth, ApiError>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let (t, set) = lang(&headers, &q.lang);
    let (user, csrf) = match a {
        Ok(a) => (a.user, a.csrf),
        Err(_) => (String::new(), String::new()),
    };
    render(
        VerifyPage {
            t,
            user,
            csrf,
            folders: Sidebar::default(),
        },
        set,
    )
}

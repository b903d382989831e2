//! Server-rendered pages (askama templates, compile-time checked) and the
//! embedded assets. Every state change goes through the JSON API from the
//! one embedded script, so no page carries inline script; the strings are
//! Italian by default, English by `Accept-Language` or the `?lang=` toggle.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::{ApiError, Auth, Web};

mod list;
mod message;
mod sent;
mod settings;
mod strings;

use strings::{EN, IT};

const CSS: &str = include_str!("../assets/webmail.css");
const JS: &str = include_str!("../assets/webmail.js");

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
        .route("/mail/{folder}", get(list::folder))
        .route("/message/{id}", get(message::message))
        .route("/compose", get(compose))
        .route("/sent", get(sent::sent))
        .route("/verify", get(verify))
        .route("/settings", get(settings::settings))
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
    settings: &'static str,
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

#[derive(Deserialize, Default)]
struct LangQuery {
    #[serde(default)]
    lang: Option<String>,
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

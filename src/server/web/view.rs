//! What the web shows of one stored message: a list summary, the full view
//! with its PEC facts, parts, and the sanitised HTML body. The PEC reading
//! is `pec::classify` / `pec::daticert` / `pec::verify`, as `pecd verify`.

use std::ops::Range;

use serde::Serialize;

use crate::pec::classify::{classify, Kind, PecMessage};
use crate::pec::headers::parse_message;
use mail_parser::MimeHeaders;

use super::sanitise::{sanitise, HtmlOmitted};

/// One line of a message list.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Sender as shown (for a busta: the certified sender).
    pub from: String,
    /// To and Cc addresses (for search).
    pub to: Vec<String>,
    /// Subject as shown (for a busta: the original subject).
    pub subject: String,
    /// `Date:` as Unix seconds.
    pub date: Option<i64>,
    /// Whether the shown message has attachments.
    pub attachments: bool,
    /// PEC type: `posta-certificata`, `anomalia`, a receipt tipo, or none.
    pub pec: Option<String>,
    /// Identificativo from the daticert.
    pub identificativo: Option<String>,
    /// `X-Riferimento-Message-ID` of a receipt (the user's original Message-ID).
    pub riferimento: Option<String>,
}

fn pec_token(k: Kind) -> Option<String> {
    match k {
        Kind::Busta => Some("posta-certificata".into()),
        Kind::Anomalia => Some("anomalia".into()),
        Kind::Ricevuta(t) => Some(t.as_str().to_string()),
        Kind::Ordinary => None,
    }
}

fn first_address(a: Option<&mail_parser::Address<'_>>) -> String {
    a.and_then(|a| a.first())
        .map(|a| match (a.name(), a.address()) {
            (Some(n), Some(ad)) => format!("{n} <{ad}>"),
            (None, Some(ad)) => ad.to_string(),
            (Some(n), None) => n.to_string(),
            (None, None) => String::new(),
        })
        .unwrap_or_default()
}

fn all_addresses(m: &mail_parser::Message<'_>) -> Vec<String> {
    m.to()
        .into_iter()
        .chain(m.cc())
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address().map(str::to_string))
        .collect()
}

/// The message a user reads: the original (`postacert.eml`) for a busta,
/// the message itself otherwise.
pub fn shown_range(raw: &[u8], pm: &PecMessage) -> Range<usize> {
    match (pm.kind, &pm.postacert) {
        (Kind::Busta, Some(r)) => r.clone(),
        _ => 0..raw.len(),
    }
}

/// The list summary of `raw`.
pub fn summarise(raw: &[u8]) -> Summary {
    let pm = classify(raw);
    let shown = &raw[shown_range(raw, &pm)];
    let parsed = parse_message(shown).ok();
    let mut s = Summary {
        from: String::new(),
        to: vec![],
        subject: String::new(),
        date: None,
        attachments: false,
        pec: pec_token(pm.kind),
        identificativo: pm.daticert.as_ref().map(|d| d.identificativo.clone()),
        riferimento: pm
            .x_riferimento_message_id
            .as_ref()
            .map(|s| s.trim().to_string()),
    };
    if let Some(m) = &parsed {
        s.from = first_address(m.from());
        s.to = all_addresses(m);
        s.subject = m.subject().unwrap_or("").to_string();
        s.date = m.date().map(|d| d.to_timestamp());
        s.attachments = m.attachment_count() > 0;
    }
    if pm.kind == Kind::Busta {
        if let Some(d) = &pm.daticert {
            s.from = d.mittente.clone();
        }
    }
    s
}

/// One attachment of the shown message.
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    /// Its id in `/parts/{part}`.
    pub part: String,
    /// File name.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// Decoded size.
    pub size: usize,
}

/// The full view of one message.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// Headers of the shown message (name, decoded value), in order.
    pub headers: Vec<(String, String)>,
    /// Sender as shown.
    pub from: String,
    /// To addresses.
    pub to: Vec<String>,
    /// Cc addresses.
    pub cc: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Date, Unix seconds.
    pub date: Option<i64>,
    /// Plain-text body.
    pub text: Option<String>,
    /// Sanitised HTML body (remote images removed unless asked for).
    pub html: Option<String>,
    /// Why the message's HTML body is not in `html` (`text` stands in).
    pub html_omitted: Option<HtmlOmitted>,
    /// Attachments of the shown message.
    pub attachments: Vec<Attachment>,
    /// The PEC reading, when it is a PEC object.
    pub pec: Option<serde_json::Value>,
}

fn content_type_of(p: &mail_parser::MessagePart<'_>) -> String {
    p.content_type()
        .map(|c| match c.subtype() {
            Some(s) => format!("{}/{}", c.ctype(), s),
            None => c.ctype().to_string(),
        })
        .unwrap_or_else(|| "application/octet-stream".into())
        .to_ascii_lowercase()
}

/// Whether the text a user reads of `raw` (for a busta, the original
/// message's; its plain-text bodies, or the HTML ones rendered as text)
/// contains `needle`, which is already lower case.
pub fn body_contains(raw: &[u8], needle: &str) -> bool {
    let pm = classify(raw);
    let shown = &raw[shown_range(raw, &pm)];
    let Ok(m) = parse_message(shown) else {
        return false;
    };
    let n = m.text_body_count().max(m.html_body_count());
    (0..n).any(|i| {
        m.body_text(i)
            .is_some_and(|t| t.to_lowercase().contains(needle))
    })
}

/// Build the full view of `raw`; `pec` is the verification (filled by the
/// caller). `omitted`: the HTML body is known not to be shown, for this
/// reason, and is not looked at again.
pub fn view(
    raw: &[u8],
    remote_images: bool,
    omitted: Option<HtmlOmitted>,
) -> (MessageView, PecMessage) {
    let pm = classify(raw);
    let shown = &raw[shown_range(raw, &pm)];
    let mut v = MessageView {
        headers: vec![],
        from: String::new(),
        to: vec![],
        cc: vec![],
        subject: String::new(),
        date: None,
        text: None,
        html: None,
        html_omitted: None,
        attachments: vec![],
        pec: None,
    };
    if let Ok(m) = parse_message(shown) {
        v.headers = m
            .headers_raw()
            .map(|(k, val)| {
                (
                    k.to_string(),
                    crate::pec::headers::decode_unstructured(val.trim()),
                )
            })
            .collect();
        v.from = first_address(m.from());
        let addrs = |a: Option<&mail_parser::Address<'_>>| -> Vec<String> {
            a.into_iter()
                .flat_map(|a| a.iter())
                .filter_map(|a| a.address().map(str::to_string))
                .collect()
        };
        v.to = addrs(m.to());
        v.cc = addrs(m.cc());
        v.subject = m.subject().unwrap_or("").to_string();
        v.date = m.date().map(|d| d.to_timestamp());
        v.text = m.body_text(0).map(|t| t.into_owned());
        if let (Some(why), true) = (omitted, m.html_body_count() > 0) {
            v.html_omitted = Some(why);
        } else if let Some(h) = m.body_html(0).filter(|_| m.html_body_count() > 0) {
            match sanitise(&h, remote_images) {
                Ok(clean) => v.html = Some(clean),
                Err(why) => {
                    tracing::info!(size = h.len(), reason = ?why, "message HTML not shown, its text is");
                    v.html_omitted = Some(why);
                }
            }
        }
        v.attachments = m
            .attachments()
            .enumerate()
            .map(|(i, p)| Attachment {
                part: i.to_string(),
                filename: p
                    .attachment_name()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("part-{i}")),
                content_type: content_type_of(p),
                size: p.contents().len(),
            })
            .collect();
    }
    if pm.kind == Kind::Busta {
        if let Some(d) = &pm.daticert {
            v.from = d.mittente.clone();
        }
    }
    (v, pm)
}

/// Bytes and type of part `part` of the shown message, or one of the PEC
/// pieces `postacert.eml` / `daticert.xml` (exact bytes as carried).
pub fn part(raw: &[u8], part: &str) -> Option<(String, String, Vec<u8>)> {
    let pm = classify(raw);
    match part {
        "postacert.eml" => {
            let r = pm.postacert?;
            return Some(("message/rfc822".into(), part.into(), raw[r].to_vec()));
        }
        "daticert.xml" => {
            let bytes = daticert_bytes(raw)?;
            return Some(("application/xml".into(), part.into(), bytes));
        }
        _ => {}
    }
    let i: u32 = part.parse().ok()?;
    let shown = &raw[shown_range(raw, &pm)];
    let m = parse_message(shown).ok()?;
    let p = m.attachment(i)?;
    let name = p
        .attachment_name()
        .map(str::to_string)
        .unwrap_or_else(|| format!("part-{i}"));
    // An attached message is handed out as it was written, not re-encoded.
    let bytes = match p.message() {
        Some(inner) => inner.raw_message().to_vec(),
        None => p.contents().to_vec(),
    };
    Some((content_type_of(p), name, bytes))
}

/// The raw `daticert.xml` of a PEC message (transfer encoding removed).
pub fn daticert_bytes(raw: &[u8]) -> Option<Vec<u8>> {
    crate::pec::mime::walk(raw, 0..raw.len())
        .into_iter()
        .find(|e| {
            e.filename(raw)
                .is_some_and(|f| f.eq_ignore_ascii_case("daticert.xml"))
        })
        .map(|e| e.decoded_body(raw))
}

//! What the web shows of one stored message: a list summary, the full view
//! with its PEC facts, parts, and the sanitised HTML body. The PEC reading
//! is `pec::classify` / `pec::daticert` / `pec::verify`, as `pecd verify`.

use std::ops::Range;

use serde::Serialize;

use crate::pec::classify::{classify, Kind, PecMessage};
use crate::pec::headers::parse_message;
use mail_parser::MimeHeaders;

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

/// Largest HTML body the webmail sanitises; a larger one is shown as text.
pub const MAX_HTML_BYTES: usize = 2 * 1024 * 1024;

/// Deepest nesting of elements the webmail sanitises. The HTML parser's
/// work per tag grows with the depth of the open elements, so a body of
/// nested `<div>`s costs the square of its length; mail written by people
/// and by mailing tools nests a few dozen levels.
pub const MAX_HTML_DEPTH: usize = 256;

/// Most attributes one element may have (the parser compares each new
/// attribute with the ones before it).
pub const MAX_HTML_ATTRIBUTES: usize = 256;

/// CPU time one sanitisation may take; parsing stops past it. A backstop
/// for shapes the checks before it do not foresee (ordinary mail takes a
/// few milliseconds).
pub const HTML_CPU_BUDGET: std::time::Duration = std::time::Duration::from_millis(200);

/// Why an HTML body is not shown (its text is, when it has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HtmlOmitted {
    /// Larger than [`MAX_HTML_BYTES`].
    #[serde(rename = "too-large")]
    Large,
    /// Nested deeper than [`MAX_HTML_DEPTH`].
    #[serde(rename = "too-deep")]
    Deep,
    /// Too costly to sanitise: an element with more than
    /// [`MAX_HTML_ATTRIBUTES`], or parsing took more than [`HTML_CPU_BUDGET`].
    #[serde(rename = "too-complex")]
    Complex,
}

fn builder(remote_images: bool) -> ammonia::Builder<'static> {
    let mut b = ammonia::Builder::default();
    b.link_rel(Some("noopener noreferrer"))
        .url_relative(ammonia::UrlRelative::Deny)
        .url_schemes(
            ["http", "https", "mailto", "cid", "data"]
                .into_iter()
                .collect(),
        )
        .set_tag_attribute_value("a", "target", "_blank");
    b.attribute_filter(move |el, attr, value| {
        if el == "img" && attr == "src" {
            let v = value.trim_start().to_ascii_lowercase();
            let remote = v.starts_with("http:") || v.starts_with("https:") || v.starts_with("//");
            if remote && !remote_images {
                return None;
            }
            if v.starts_with("data:") && !v.starts_with("data:image/") {
                return None;
            }
        }
        if attr == "href" && value.trim_start().to_ascii_lowercase().starts_with("data:") {
            return None;
        }
        Some(value.into())
    });
    b
}

/// The sanitiser every message body goes through: no scripts, no event
/// handlers, no `style`, no forms, only http(s)/mailto links (opened in a
/// new context without referrer), and images only from `data:` and `cid:`
/// unless `remote_images`. A body too large, too deep or too costly to
/// parse is refused instead (linear checks first, then a CPU budget), so
/// no message costs more than a fraction of a second to open.
pub fn sanitise(html: &str, remote_images: bool) -> Result<String, HtmlOmitted> {
    if html.len() > MAX_HTML_BYTES {
        return Err(HtmlOmitted::Large);
    }
    html_shape(html)?;
    let input = Budgeted::new(html.as_bytes(), HTML_CPU_BUDGET);
    builder(remote_images)
        .clean_from_reader(input)
        .map(|doc| doc.to_string())
        .map_err(|_| HtmlOmitted::Complex)
}

/// The HTML handed to the parser a chunk at a time, until the CPU time of
/// this thread since the start passes the budget.
struct Budgeted<'a> {
    rest: &'a [u8],
    started: Option<std::time::Duration>,
    wall: std::time::Instant,
    budget: std::time::Duration,
}

impl<'a> Budgeted<'a> {
    fn new(html: &'a [u8], budget: std::time::Duration) -> Budgeted<'a> {
        Budgeted {
            rest: html,
            started: crate::sys::thread_cpu::now(),
            wall: std::time::Instant::now(),
            budget,
        }
    }

    fn spent(&self) -> std::time::Duration {
        match (self.started, crate::sys::thread_cpu::now()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            // Without a thread clock, time on the wall is an upper bound.
            _ => self.wall.elapsed(),
        }
    }
}

impl std::io::Read for Budgeted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.spent() > self.budget {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "HTML sanitiser over its CPU budget",
            ));
        }
        self.rest.read(buf)
    }
}

/// Elements without content or end tag.
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image", "img",
    "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
];

/// Elements whose content is text up to their end tag.
const RAW_TEXT: &[&str] = &[
    "iframe", "noembed", "noframes", "noscript", "script", "style", "textarea", "title", "xmp",
];

/// Elements a sibling of their kind closes (`<p>a<p>b`, `<li>`, table
/// rows and cells...), and the document's own: they do not pile up.
const SELF_CLOSING_SIBLINGS: &[&str] = &[
    "body", "caption", "colgroup", "dd", "dt", "head", "html", "li", "optgroup", "option", "p",
    "rb", "rp", "rt", "rtc", "tbody", "td", "tfoot", "th", "thead", "tr",
];

fn one_of(name: &str, set: &[&str]) -> bool {
    set.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// A linear look at `html` before it is parsed: how deep its elements
/// nest (end tags close the nearest open element of their name; elements
/// that close their siblings are not counted) and how many attributes an
/// element has. An estimate, not the parser's own reckoning: shapes it
/// misses are stopped by the CPU budget.
fn html_shape(html: &str) -> Result<(), HtmlOmitted> {
    let b = html.as_bytes();
    let mut open: Vec<&str> = Vec::new();
    // Inside <svg> or <math> a `/>` closes its element, as in XML.
    let mut foreign = 0usize;
    // End tags search the open elements: bounded, so stray end tags
    // cannot make this look quadratic itself.
    let mut steps = 0usize;
    let max_steps = b.len().saturating_mul(8).saturating_add(4096);
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        let lt = i + off;
        let rest = &b[lt + 1..];
        if rest.starts_with(b"!--") {
            i = find(b, lt + 4, b"-->").map_or(b.len(), |e| e + 3);
            continue;
        }
        if rest.first().is_some_and(|c| *c == b'!' || *c == b'?') {
            i = find(b, lt + 1, b">").map_or(b.len(), |e| e + 1);
            continue;
        }
        let end_tag = rest.first() == Some(&b'/');
        let name_at = lt + 1 + usize::from(end_tag);
        if !b.get(name_at).is_some_and(|c| c.is_ascii_alphabetic()) {
            // Text, or a bogus comment after `</`.
            i = if end_tag {
                find(b, lt + 1, b">").map_or(b.len(), |e| e + 1)
            } else {
                lt + 1
            };
            continue;
        }
        let name_end = b[name_at..]
            .iter()
            .position(|c| c.is_ascii_whitespace() || *c == b'/' || *c == b'>')
            .map_or(b.len(), |p| name_at + p);
        let name = &html[name_at..name_end];
        let (after, attributes, self_closing) = tag_rest(b, name_end);
        i = after;
        if end_tag {
            if let Some(at) = open.iter().rposition(|n| {
                steps += 1;
                n.eq_ignore_ascii_case(name)
            }) {
                let closed = open[at..]
                    .iter()
                    .filter(|n| one_of(n, &["svg", "math"]))
                    .count();
                foreign = foreign.saturating_sub(closed);
                open.truncate(at);
            } else {
                steps += open.len();
            }
            if steps > max_steps {
                return Err(HtmlOmitted::Complex);
            }
            continue;
        }
        if attributes > MAX_HTML_ATTRIBUTES {
            return Err(HtmlOmitted::Complex);
        }
        if foreign == 0 && one_of(name, RAW_TEXT) {
            i = raw_text_end(html, i, name);
            continue;
        }
        if foreign == 0 && name.eq_ignore_ascii_case("plaintext") {
            return Ok(());
        }
        if one_of(name, VOID)
            || one_of(name, SELF_CLOSING_SIBLINGS)
            || (self_closing && foreign > 0)
        {
            continue;
        }
        if one_of(name, &["svg", "math"]) {
            foreign += 1;
        }
        open.push(name);
        if open.len() > MAX_HTML_DEPTH {
            return Err(HtmlOmitted::Deep);
        }
    }
    Ok(())
}

/// Position of `needle` in `b` from `from` on.
fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// The rest of a tag from the end of its name: where it ends (past `>`),
/// how many attributes it has, and whether it ends in `/>`.
fn tag_rest(b: &[u8], mut i: usize) -> (usize, usize, bool) {
    let mut attributes = 0;
    loop {
        let mut slash = false;
        while let Some(&c) = b.get(i) {
            if c.is_ascii_whitespace() {
                slash = false;
            } else if c == b'/' {
                slash = true;
            } else {
                break;
            }
            i += 1;
        }
        match b.get(i) {
            None => return (b.len(), attributes, false),
            Some(b'>') => return (i + 1, attributes, slash),
            Some(_) => {}
        }
        // An attribute name (its first character may be anything, `=` too).
        attributes += 1;
        i += 1;
        while b
            .get(i)
            .is_some_and(|c| !c.is_ascii_whitespace() && !b"/>=".contains(c))
        {
            i += 1;
        }
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        match b.get(i) {
            Some(&q) if q == b'"' || q == b'\'' => {
                i = b[i + 1..]
                    .iter()
                    .position(|c| *c == q)
                    .map_or(b.len(), |p| i + 1 + p + 1);
            }
            _ => {
                while b
                    .get(i)
                    .is_some_and(|c| !c.is_ascii_whitespace() && *c != b'>')
                {
                    i += 1;
                }
            }
        }
    }
}

/// Where the text content of raw-text element `name` that starts at `from`
/// ends: past its end tag, or the end of the input.
fn raw_text_end(html: &str, from: usize, name: &str) -> usize {
    let b = html.as_bytes();
    let mut i = from;
    while let Some(at) = find(b, i, b"</") {
        let n = at + 2;
        let candidate = b.get(n..n + name.len());
        let boundary = b
            .get(n + name.len())
            .is_none_or(|c| c.is_ascii_whitespace() || *c == b'/' || *c == b'>');
        if candidate.is_some_and(|c| c.eq_ignore_ascii_case(name.as_bytes())) && boundary {
            return find(b, n, b">").map_or(b.len(), |e| e + 1);
        }
        i = n;
    }
    b.len()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitiser_removes_every_active_thing() {
        let evil = r#"<p onclick="x()">hi<script>alert(1)</script>
            <a href="javascript:alert(1)">j</a><a href="https://ok.example/">ok</a>
            <div style="width: expression(alert(1))">css</div><style>body{}</style>
            <svg><script>alert(1)</script></svg><img src="https://track.example/p.gif">
            <img src="data:image/png;base64,AAAA"><iframe src="x"></iframe>
            <form action="https://x"><input></form><img src=x onerror=alert(1)>"#;
        let out = sanitise(evil, false).unwrap();
        for bad in [
            "script",
            "onclick",
            "javascript",
            "expression",
            "style",
            "svg",
            "track.example",
            "iframe",
            "form",
            "onerror",
            "input",
        ] {
            assert!(!out.to_ascii_lowercase().contains(bad), "{bad} in {out}");
        }
        assert!(out.contains("https://ok.example/") && out.contains("noopener"));
        assert!(out.contains("data:image/png"));
        assert!(sanitise(r#"<img src="https://a.example/i.png">"#, true)
            .unwrap()
            .contains("a.example"));
    }

    #[test]
    fn html_too_deep_or_too_large_is_refused_before_parsing() {
        let start = std::time::Instant::now();
        assert_eq!(
            sanitise(&"<div>".repeat(200_000), false),
            Err(HtmlOmitted::Deep)
        );
        assert_eq!(
            sanitise(&"<span><b>".repeat(200), false),
            Err(HtmlOmitted::Deep)
        );
        assert_eq!(
            sanitise(&"x".repeat(MAX_HTML_BYTES + 1), false),
            Err(HtmlOmitted::Large)
        );
        let mut attrs = String::from("<p");
        for i in 0..=MAX_HTML_ATTRIBUTES {
            attrs.push_str(&format!(" a{i}='1'"));
        }
        attrs.push('>');
        assert_eq!(sanitise(&attrs, false), Err(HtmlOmitted::Complex));
        // Stray end tags against a deep stack cost bounded steps.
        let stray = format!("{}{}", "<div>".repeat(250), "</x>".repeat(200_000));
        assert_eq!(sanitise(&stray, false), Err(HtmlOmitted::Complex));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn ordinary_html_is_within_the_limits() {
        // Closed elements, however many, do not add up.
        let many = "<div><span>x</span><br><img src=\"cid:a\"/></div>".repeat(5_000);
        assert!(sanitise(&many, false).unwrap().contains("<span>x</span>"));
        // Paragraphs, list items and cells left open close each other.
        let sloppy = format!(
            "<table>{}</table><ul>{}</ul>{}",
            "<tr><td>a<td>b".repeat(2_000),
            "<li>x".repeat(2_000),
            "<p>y".repeat(2_000)
        );
        assert!(sanitise(&sloppy, false).is_ok());
        // Tags inside scripts, styles and comments are not elements.
        let hidden = format!(
            "<style>{0}</style><script>{0}</script><!--{0}--><p a=\"{0}\">ok</p>",
            "<div>".repeat(10_000)
        );
        assert_eq!(sanitise(&hidden, false).unwrap(), "<p>ok</p>");
        // Deep but within the limit, closed or not.
        let deep = "<div>".repeat(MAX_HTML_DEPTH - 1);
        assert!(sanitise(&deep, false).is_ok());
        let svg = format!("<svg>{}</svg><p>z</p>", "<g/>".repeat(10_000));
        assert!(sanitise(&svg, false).unwrap().contains("<p>z</p>"));
    }

    #[test]
    fn html_the_checks_miss_stops_at_the_cpu_budget() {
        // `<li>` does not close past a `<dd>`: this nests without bound,
        // though no element is counted, and costs the square of its length.
        let html = "<li><dd>".repeat(100_000);
        let cpu = crate::sys::thread_cpu::now().unwrap();
        assert_eq!(sanitise(&html, false), Err(HtmlOmitted::Complex));
        let spent = crate::sys::thread_cpu::now().unwrap() - cpu;
        eprintln!("<li><dd> x 100,000: stopped after {spent:?} of CPU");
        assert!(spent < HTML_CPU_BUDGET * 3, "{spent:?}");
    }
}

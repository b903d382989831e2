//! The HTML sanitiser a message body goes through before the webmail shows
//! it, with the size, depth and CPU bounds that keep one message cheap to open.

use serde::Serialize;

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

//! RFC 5322 / RFC 2047 / RFC 2045 helpers for *building* provider messages.
//!
//! Two rules drive this module (`pec-spec.md` §9): the user's original must
//! travel with every byte unchanged except the Message-ID swap, so we scan raw
//! header fields by byte offsets instead of re-serialising a parsed message;
//! and what we generate must be conservative 7-bit MIME (encoded words only
//! when a value is non-ASCII, folding at 78 columns, QP/base64 bodies, CRLF).

use mail_parser::{HeaderName, HeaderValue, Message, MessageParser};

/// Longest line we generate, excluding CRLF (RFC 5322 §2.1.1 "SHOULD").
pub const LINE: usize = 78;

/// One raw header field of a message, by byte offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawField {
    /// Field name as written.
    pub name: String,
    /// Offset of the first byte of the field.
    pub start: usize,
    /// Offset just past its last line terminator (or end of input).
    pub end: usize,
    /// Offset of the first byte of the value (after the colon).
    pub value_start: usize,
}

impl RawField {
    /// The raw value (after the colon), continuation lines included, the
    /// final line terminator excluded.
    pub fn raw_value<'a>(&self, msg: &'a [u8]) -> &'a [u8] {
        let v = &msg[self.value_start..self.end];
        let v = v.strip_suffix(b"\n").unwrap_or(v);
        v.strip_suffix(b"\r").unwrap_or(v)
    }

    /// The value unfolded (line breaks removed) and trimmed, lossily UTF-8.
    pub fn unfolded(&self, msg: &[u8]) -> String {
        let v: Vec<u8> = self
            .raw_value(msg)
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        String::from_utf8_lossy(&v).trim().to_string()
    }
}

/// The raw header fields of `msg` and the offset where the header block ends
/// (the start of the empty separator line, or the end of input).
pub fn raw_fields(msg: &[u8]) -> (Vec<RawField>, usize) {
    let mut fields: Vec<RawField> = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        let eol = msg[pos..].iter().position(|&b| b == b'\n');
        let next = eol.map_or(msg.len(), |i| pos + i + 1);
        let line = &msg[pos..next];
        if line == b"\n" || line == b"\r\n" {
            return (fields, pos);
        }
        match line.first() {
            Some(b' ') | Some(b'\t') if !fields.is_empty() => {
                if let Some(f) = fields.last_mut() {
                    f.end = next;
                }
            }
            _ => {
                let colon = line.iter().position(|&b| b == b':');
                let name_end = colon.unwrap_or(line.len());
                fields.push(RawField {
                    name: String::from_utf8_lossy(&line[..name_end])
                        .trim()
                        .to_string(),
                    start: pos,
                    end: next,
                    value_start: pos + colon.map_or(name_end, |c| c + 1),
                });
            }
        }
        pos = next;
    }
    (fields, msg.len())
}

/// The line terminator the message uses (that of its first line).
pub fn line_ending(msg: &[u8]) -> &'static [u8] {
    match msg.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && msg[i - 1] == b'\r' => b"\r\n",
        Some(_) => b"\n",
        None => b"\r\n",
    }
}

/// The original *as submitted* with its Message-ID replaced by
/// `Message-ID: <identificativo>` and `X-Riferimento-Message-ID: <original>`
/// appended at the end of the header block (`pec-spec.md` §3.1). Every other
/// byte is kept, folding and line endings included; inserted lines use the
/// message's own line terminator. With no Message-ID, the identificativo one
/// is appended and no X-Riferimento-Message-ID is added. Returns the new bytes
/// and the original Message-ID (unfolded, angle brackets kept).
pub fn swap_message_id(original: &[u8], identificativo: &str) -> (Vec<u8>, Option<String>) {
    let (fields, hdr_end) = raw_fields(original);
    let eol = line_ending(original);
    let old = fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case("Message-ID"));
    let mut out = Vec::with_capacity(original.len() + 200);
    let msgid = old.map(|f| f.unfolded(original)).filter(|s| !s.is_empty());
    let new_line = format!("Message-ID: <{identificativo}>");
    match old {
        Some(f) => {
            out.extend_from_slice(&original[..f.start]);
            out.extend_from_slice(new_line.as_bytes());
            // Keep the field's own terminator (none if it ended the input).
            let term = &original[f.start..f.end];
            if term.ends_with(b"\r\n") {
                out.extend_from_slice(b"\r\n");
            } else if term.ends_with(b"\n") {
                out.extend_from_slice(b"\n");
            } else {
                out.extend_from_slice(eol);
            }
            out.extend_from_slice(&original[f.end..hdr_end]);
        }
        None => out.extend_from_slice(&original[..hdr_end]),
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(eol);
    }
    match (&old, &msgid) {
        (Some(_), Some(m)) => {
            out.extend_from_slice(b"X-Riferimento-Message-ID: ");
            out.extend_from_slice(m.as_bytes());
            out.extend_from_slice(eol);
        }
        (Some(_), None) => {}
        (None, _) => {
            out.extend_from_slice(new_line.as_bytes());
            out.extend_from_slice(eol);
        }
    }
    if hdr_end == original.len() {
        // No body: still end the header block properly.
        out.extend_from_slice(eol);
    } else {
        out.extend_from_slice(&original[hdr_end..]);
    }
    (out, msgid)
}

/// Why [`parse_message`] gave no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unparsable {
    /// Nested deeper than [`crate::pec::mime::MAX_NESTED_MESSAGES`]: parsing
    /// (or dropping) it could exhaust the stack.
    TooDeep,
    /// mail-parser found no message in the bytes.
    Malformed,
}

/// The one door to mail-parser's full parse: nesting is bounded first
/// ([`crate::pec::mime::check_nesting`]), since its message tree is built,
/// copied and dropped recursively. Everything that needs only header fields
/// uses [`parse_header_block`] instead.
pub fn parse_message(raw: &[u8]) -> Result<Message<'_>, Unparsable> {
    crate::pec::mime::check_nesting(raw).map_err(|_| Unparsable::TooDeep)?;
    #[allow(clippy::disallowed_methods)]
    MessageParser::default()
        .parse(raw)
        .ok_or(Unparsable::Malformed)
}

/// The top-level header fields of a message, parsed; the body is not read,
/// so no input depth can make this recurse.
pub fn parse_header_block(raw: &[u8]) -> Option<Message<'_>> {
    MessageParser::default().parse_headers(raw)
}

/// Decode an unstructured header value (RFC 2047 encoded words, folding).
pub fn decode_unstructured(raw: &str) -> String {
    let fake = format!("Subject: {raw}\r\n\r\n");
    parse_header_block(fake.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_else(|| raw.trim().to_string())
}

/// Bare lower-case addresses of every `name` field of a parsed message
/// (From, To, Cc, Reply-To, Bcc), groups flattened, in order.
pub fn addresses(msg: &Message<'_>, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for v in msg.header_values(HeaderName::from(name)) {
        if let HeaderValue::Address(a) = v {
            for addr in a.iter() {
                if let Some(x) = addr.address() {
                    let x = x.trim();
                    if !x.is_empty() {
                        out.push(x.to_ascii_lowercase());
                    }
                }
            }
        }
    }
    out
}

/// RFC 2047 `B` encoded words for `text` (UTF-8), each at most 75 octets,
/// separated by `\r\n ` so the caller's line never overflows.
pub fn encoded_words(text: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        // 45 raw octets -> 60 base64 chars -> 72-octet encoded word.
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                openssl::base64::encode_block(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

fn needs_encoding(text: &str) -> bool {
    text.bytes()
        .any(|b| !(0x20..0x7f).contains(&b) && b != b'\t')
        || text.contains("=?")
}

/// `Subject` value `<prefix><text>`: the ASCII prefix stays readable; the
/// original subject is encoded only if it is not plain ASCII. Folded for a
/// `Subject: ` field.
pub fn prefixed_subject(prefix: &str, text: &str) -> String {
    if needs_encoding(text) {
        let first_room = LINE - "Subject: ".len() - prefix.len();
        let words = encoded_words(text);
        // Start the encoded words on a new line if the first one cannot fit.
        if words
            .split("\r\n ")
            .next()
            .is_some_and(|w| w.len() > first_room)
        {
            format!("{}\r\n {}", prefix.trim_end(), words)
        } else {
            format!("{prefix}{words}")
        }
    } else {
        fold("Subject", &format!("{prefix}{text}"))
    }
}

/// Fold `value` for a field called `name` at whitespace so that lines stay
/// within 78 columns where possible (continuations joined with `\r\n`).
pub fn fold(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let mut col = name.len() + 2;
    let mut first = true;
    // Split before each space, keeping the space with the following word.
    let mut rest = value;
    while !rest.is_empty() {
        let skip = if first { 0 } else { 1 };
        let cut = rest[skip..].find(' ').map_or(rest.len(), |i| i + skip);
        let piece = &rest[..cut];
        if !first && col + piece.len() > LINE && !piece.trim().is_empty() {
            out.push_str("\r\n");
            col = 0;
        }
        out.push_str(piece);
        col += piece.len();
        rest = &rest[cut..];
        first = false;
    }
    out
}

/// A quoted-string display name with `"` and `\` escaped.
pub fn quote(display: &str) -> String {
    let mut s = String::with_capacity(display.len() + 2);
    s.push('"');
    for c in display.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// `From` value `"Per conto di: <sender>" <posta-certificata@<domain>>`,
/// folded after the display name when long (as Namirial does). A non-ASCII
/// (EAI) sender is put in an encoded word, since a quoted-string cannot carry it.
pub fn per_conto_di(sender: &str, domain: &str) -> String {
    let display_text = format!("Per conto di: {sender}");
    let display = if needs_encoding(&display_text) {
        encoded_words(&display_text)
    } else {
        quote(&display_text)
    };
    let addr = format!("<posta-certificata@{domain}>");
    let last_line = display.rsplit("\r\n ").next().unwrap_or(&display);
    if "From: ".len() + last_line.len() + 1 + addr.len() > LINE {
        format!("{display}\r\n {addr}")
    } else {
        format!("{display} {addr}")
    }
}

/// Convert every line ending to CRLF (lone LF and lone CR alike).
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 40);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Base64 in 76-column CRLF-terminated lines.
pub fn base64_lines(data: &[u8]) -> String {
    let b = openssl::base64::encode_block(data);
    let mut out = String::with_capacity(b.len() + b.len() / 38 + 2);
    for chunk in b.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push_str("\r\n");
    }
    out
}

/// Quoted-printable (RFC 2045 §6.7) of UTF-8 text; input lines may end in LF
/// or CRLF, output uses CRLF and soft breaks at 76 columns.
pub fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 11 / 10);
    let norm = text.replace("\r\n", "\n");
    let lines: Vec<&str> = norm.split('\n').collect();
    for (n, line) in lines.iter().enumerate() {
        let bytes = line.as_bytes();
        let mut col = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let literal =
                (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let enc = if literal {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            // Leave room for the soft-break "=" within 76 columns.
            if col + enc.len() > 75 {
                out.push_str("=\r\n");
                col = 0;
            }
            out.push_str(&enc);
            col += enc.len();
        }
        if n + 1 < lines.len() {
            out.push_str("\r\n");
        }
    }
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_keeps_every_other_byte_crlf_folded() {
        let orig = b"Received: from x\r\n\tby y; Tue, 1 Jan 2019\r\nMessage-ID:\r\n <abc@host>\r\nSubject: hi\r\n\r\nbody\r\nMessage-ID: <not-a-header>\r\n";
        let (out, old) = swap_message_id(orig, "ID1@pec.test");
        assert_eq!(old.as_deref(), Some("<abc@host>"));
        assert_eq!(
            out,
            b"Received: from x\r\n\tby y; Tue, 1 Jan 2019\r\nMessage-ID: <ID1@pec.test>\r\nSubject: hi\r\nX-Riferimento-Message-ID: <abc@host>\r\n\r\nbody\r\nMessage-ID: <not-a-header>\r\n".to_vec()
        );
    }

    #[test]
    fn swap_lf_only_and_case() {
        let orig = b"From: a@b.it\nmessage-id: <x@y>\nTo: c@d.it,\n  e@f.it\n\nciao\n";
        let (out, old) = swap_message_id(orig, "I@p");
        assert_eq!(old.as_deref(), Some("<x@y>"));
        assert_eq!(
            out,
            b"From: a@b.it\nMessage-ID: <I@p>\nTo: c@d.it,\n  e@f.it\nX-Riferimento-Message-ID: <x@y>\n\nciao\n".to_vec()
        );
    }

    #[test]
    fn swap_without_message_id() {
        let orig = b"From: a@b.it\r\nTo: c@d.it\r\n\r\nbody";
        let (out, old) = swap_message_id(orig, "I@p");
        assert_eq!(old, None);
        assert_eq!(
            out,
            b"From: a@b.it\r\nTo: c@d.it\r\nMessage-ID: <I@p>\r\n\r\nbody".to_vec()
        );
        // Header-only input without a final newline.
        let (out, _) = swap_message_id(b"From: a@b.it", "I@p");
        assert_eq!(out, b"From: a@b.it\r\nMessage-ID: <I@p>\r\n\r\n".to_vec());
    }

    #[test]
    fn decode_and_encode_subjects() {
        assert_eq!(
            decode_unstructured("=?UTF-8?Q?Norah_Colly?="),
            "Norah Colly"
        );
        assert_eq!(
            decode_unstructured("=?iso-8859-1?q?perch=E9?= no"),
            "perché no"
        );
        assert_eq!(prefixed_subject("CONSEGNA: ", "hello"), "CONSEGNA: hello");
        let s = prefixed_subject("POSTA CERTIFICATA: ", "perché");
        assert_eq!(s, "POSTA CERTIFICATA: =?UTF-8?B?cGVyY2jDqQ==?=");
        assert_eq!(decode_unstructured(&s), "POSTA CERTIFICATA: perché");
        let long = "è".repeat(60);
        let s = prefixed_subject("POSTA CERTIFICATA: ", &long);
        for l in format!("Subject: {s}").split("\r\n") {
            assert!(l.len() <= LINE, "{l}");
        }
        assert_eq!(
            decode_unstructured(&s),
            format!("POSTA CERTIFICATA: {long}")
        );
    }

    #[test]
    fn folding() {
        let v = "POSTA CERTIFICATA: ".to_string() + &"parola ".repeat(20);
        let f = fold("Subject", v.trim_end());
        for l in format!("Subject: {f}").split("\r\n") {
            assert!(l.len() <= LINE, "{l}");
        }
        assert_eq!(f.replace("\r\n", ""), v.trim_end());
        assert_eq!(fold("To", "a@b.it"), "a@b.it");
    }

    #[test]
    fn display_names() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            per_conto_di("a@b.it", "pec.alpha.test"),
            "\"Per conto di: a@b.it\" <posta-certificata@pec.alpha.test>"
        );
        let long = format!("{}@example.it", "x".repeat(40));
        let v = per_conto_di(&long, "pec.alpha.test");
        assert!(v.contains("\"\r\n <posta-certificata@"));
        let v = per_conto_di("rené@b.it", "p.it");
        assert!(v.starts_with("=?UTF-8?B?"));
    }

    #[test]
    fn address_lists() {
        let raw = b"From: \"A\" <A@B.it>\r\nTo: x@y.it, Grp: P@q.it, r@s.it;\r\nTo: z@w.it\r\nCc:\r\n\r\n";
        let m = parse_message(raw).unwrap();
        assert_eq!(addresses(&m, "From"), vec!["a@b.it"]);
        assert_eq!(
            addresses(&m, "To"),
            vec!["x@y.it", "p@q.it", "r@s.it", "z@w.it"]
        );
        assert!(addresses(&m, "Cc").is_empty());
    }

    #[test]
    fn body_encodings() {
        assert_eq!(to_crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd".to_vec());
        assert_eq!(
            quoted_printable("è = ok \nfine"),
            "=C3=A8 =3D ok=20\r\nfine\r\n"
        );
        let q = quoted_printable(&"x".repeat(200));
        assert!(q.split("\r\n").all(|l| l.len() <= 76));
        assert_eq!(q.replace("=\r\n", "").trim_end(), "x".repeat(200));
        assert_eq!(
            base64_lines(&[0u8; 60]).split("\r\n").next().unwrap().len(),
            76
        );
    }
}

//! Byte-exact MIME walking on `&[u8]`.
//!
//! Signed PEC messages must never be re-encoded (`pec-spec.md` §9), so this
//! module never builds a parsed copy of a message: it answers questions with
//! byte ranges into the original buffer. Line endings may be CRLF or LF (most
//! archived samples are LF); the S/MIME digest is computed over the CRLF form
//! produced by [`canonicalize_crlf`], which reproduces what openssl does in
//! `multi_split`/`strip_eol`.

use std::ops::Range;

/// A MIME entity located inside a buffer: header block and body as ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// The whole entity (header block, blank line, body).
    pub range: Range<usize>,
    /// Header block without the blank line that ends it.
    pub header: Range<usize>,
    /// Body, after the blank line (empty when there is none).
    pub body: Range<usize>,
}

impl Entity {
    /// Locate header block and body of the entity occupying `range` of `raw`.
    pub fn parse(raw: &[u8], range: Range<usize>) -> Entity {
        let bytes = &raw[range.clone()];
        let (h, b) = split_header_body(bytes);
        Entity {
            header: range.start + h.start..range.start + h.end,
            body: range.start + b.start..range.start + b.end,
            range,
        }
    }

    /// The entity occupying the whole buffer.
    pub fn whole(raw: &[u8]) -> Entity {
        Entity::parse(raw, 0..raw.len())
    }

    /// Value of the first header field called `name` (case-insensitive), unfolded.
    pub fn header(&self, raw: &[u8], name: &str) -> Option<String> {
        header_value(&raw[self.header.clone()], name)
    }

    /// Parsed `Content-Type` (defaults to `text/plain` as RFC 2045 says).
    pub fn content_type(&self, raw: &[u8]) -> ContentType {
        self.header(raw, "Content-Type")
            .map(|v| ContentType::parse(&v))
            .unwrap_or_else(ContentType::default_text)
    }

    /// Lower-case `Content-Transfer-Encoding` (`7bit` when absent).
    pub fn transfer_encoding(&self, raw: &[u8]) -> String {
        self.header(raw, "Content-Transfer-Encoding")
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "7bit".to_string())
    }

    /// File name from `Content-Disposition` `filename` or `Content-Type` `name`.
    pub fn filename(&self, raw: &[u8]) -> Option<String> {
        self.header(raw, "Content-Disposition")
            .and_then(|v| ContentType::parse(&format!("x/x; {}", params_of(&v))).param("filename"))
            .or_else(|| self.content_type(raw).param("name"))
    }

    /// Body with its transfer encoding removed (base64 / quoted-printable).
    pub fn decoded_body(&self, raw: &[u8]) -> Vec<u8> {
        let body = &raw[self.body.clone()];
        match self.transfer_encoding(raw).as_str() {
            "base64" => decode_base64(body),
            "quoted-printable" => decode_quoted_printable(body),
            _ => body.to_vec(),
        }
    }
}

/// Everything after the first `;` of a header value (its parameter list).
fn params_of(v: &str) -> &str {
    v.find(';').map(|i| &v[i + 1..]).unwrap_or("")
}

/// Split a message or entity into header block and body (relative ranges).
///
/// The header block ends at the first empty line (`CRLF` or `LF`); the blank
/// line itself belongs to neither range. Without an empty line everything is
/// header and the body is empty.
pub fn split_header_body(bytes: &[u8]) -> (Range<usize>, Range<usize>) {
    // An entity may start directly with the blank line (no header fields).
    if bytes.starts_with(b"\r\n") {
        return (0..0, 2..bytes.len());
    }
    if bytes.starts_with(b"\n") {
        return (0..0, 1..bytes.len());
    }
    let mut i = 0;
    while let Some(p) = memchr(b'\n', &bytes[i..]) {
        let nl = i + p;
        let rest = &bytes[nl + 1..];
        if rest.starts_with(b"\r\n") {
            return (0..nl + 1, nl + 3..bytes.len());
        }
        if rest.starts_with(b"\n") {
            return (0..nl + 1, nl + 2..bytes.len());
        }
        i = nl + 1;
    }
    (0..bytes.len(), bytes.len()..bytes.len())
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// One header field as found in the block: name and raw (folded) value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// Field name as written.
    pub name: &'a [u8],
    /// Raw value after the colon, folding and final line break included.
    pub raw_value: &'a [u8],
}

impl HeaderField<'_> {
    /// The value unfolded (line breaks before white space removed) and trimmed.
    pub fn value(&self) -> String {
        let mut out = Vec::with_capacity(self.raw_value.len());
        for &b in self.raw_value {
            if b != b'\r' && b != b'\n' {
                out.push(b);
            }
        }
        String::from_utf8_lossy(&out).trim().to_string()
    }
}

/// All header fields of a header block, in order. Lines without a colon
/// (an mbox `From ` line, garbage) are skipped.
pub fn header_fields(block: &[u8]) -> Vec<HeaderField<'_>> {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    let mut i = 0;
    while i < block.len() {
        let end = memchr(b'\n', &block[i..]).map_or(block.len(), |p| i + p + 1);
        lines.push(i..end);
        i = end;
    }
    let mut k = 0;
    while k < lines.len() {
        let start = lines[k].start;
        let mut end = lines[k].end;
        k += 1;
        while k < lines.len() && matches!(block.get(lines[k].start), Some(b' ' | b'\t')) {
            end = lines[k].end;
            k += 1;
        }
        let field = &block[start..end];
        if let Some(colon) = memchr(b':', field) {
            let name = trim_ascii(&field[..colon]);
            if !name.is_empty() && !name.iter().any(|b| b.is_ascii_whitespace()) {
                out.push(HeaderField {
                    name,
                    raw_value: &field[colon + 1..],
                });
            }
        }
    }
    out
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |p| p + 1);
    &b[s..e]
}

/// Unfolded value of the first field called `name` (case-insensitive).
pub fn header_value(block: &[u8], name: &str) -> Option<String> {
    header_fields(block)
        .into_iter()
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| f.value())
}

/// Unfolded values of every field called `name` (case-insensitive).
pub fn header_values(block: &[u8], name: &str) -> Vec<String> {
    header_fields(block)
        .into_iter()
        .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| f.value())
        .collect()
}

/// A parsed `Content-Type` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// `type/subtype`, lower case.
    pub mime_type: String,
    /// Parameters in order; names lower case, values unquoted.
    pub params: Vec<(String, String)>,
}

impl ContentType {
    /// `text/plain`, the RFC 2045 default.
    pub fn default_text() -> ContentType {
        ContentType {
            mime_type: "text/plain".to_string(),
            params: Vec::new(),
        }
    }

    /// Parse a header value: `type/subtype *(; name=value)`, values as tokens
    /// or quoted strings, RFC 2231 `name*=charset''%xx` and `name*0=` joined.
    pub fn parse(value: &str) -> ContentType {
        let (mt, rest) = match value.find(';') {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => (value, ""),
        };
        let mime_type = mt.trim().to_ascii_lowercase();
        let mut params: Vec<(String, String)> = Vec::new();
        let mut continued: Vec<(String, u32, bool, String)> = Vec::new();
        let b = rest.as_bytes();
        let mut i = 0;
        while i < b.len() {
            while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b';') {
                i += 1;
            }
            let ns = i;
            while i < b.len() && b[i] != b'=' && b[i] != b';' {
                i += 1;
            }
            let name = rest[ns..i].trim().to_ascii_lowercase();
            if i >= b.len() || b[i] == b';' {
                continue;
            }
            i += 1; // '='
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let mut val = String::new();
            if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut bytes = Vec::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    bytes.push(b[i]);
                    i += 1;
                }
                i += 1; // closing quote
                val.push_str(&String::from_utf8_lossy(&bytes));
                while i < b.len() && b[i] != b';' {
                    i += 1;
                }
            } else {
                let vs = i;
                while i < b.len() && b[i] != b';' {
                    i += 1;
                }
                val.push_str(rest[vs..i].trim());
            }
            if name.is_empty() {
                continue;
            }
            // RFC 2231: name*N[*]=value and name*=charset'lang'value
            if let Some(star) = name.find('*') {
                let base = name[..star].to_string();
                let tail = &name[star + 1..];
                let encoded = tail.ends_with('*') || tail.is_empty();
                let idx = tail.trim_end_matches('*').parse::<u32>().unwrap_or(0);
                continued.push((base, idx, encoded, val));
            } else {
                params.push((name, val));
            }
        }
        continued.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut k = 0;
        while k < continued.len() {
            let base = continued[k].0.clone();
            let mut bytes = Vec::new();
            while k < continued.len() && continued[k].0 == base {
                let (_, idx, enc, v) = &continued[k];
                if *enc {
                    let v = if *idx == 0 {
                        // strip charset'lang'
                        let mut parts = v.splitn(3, '\'');
                        let first = parts.next().unwrap_or("");
                        match (parts.next(), parts.next()) {
                            (Some(_), Some(rest)) => rest.to_string(),
                            _ => first.to_string(),
                        }
                    } else {
                        v.clone()
                    };
                    bytes.extend(percent_decode(&v));
                } else {
                    bytes.extend_from_slice(v.as_bytes());
                }
                k += 1;
            }
            if !params.iter().any(|(n, _)| *n == base) {
                params.push((base, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
        ContentType { mime_type, params }
    }

    /// Value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// `true` for any `multipart/*`.
    pub fn is_multipart(&self) -> bool {
        self.mime_type.starts_with("multipart/")
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The body parts of a multipart entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart {
    /// Each part's exact bytes: from after the delimiter line to just before
    /// the line break that precedes the next delimiter (RFC 2046 §5.1.1).
    pub parts: Vec<Range<usize>>,
    /// Whether the close delimiter `--boundary--` was found.
    pub closed: bool,
}

/// Split the body `body` of `raw` (a range) on `boundary`.
///
/// A delimiter is a line starting with `--boundary`, followed by optional
/// `--` (close) and only linear white space. Ranges are absolute in `raw`.
pub fn multipart_parts(raw: &[u8], body: Range<usize>, boundary: &str) -> Multipart {
    let dash: Vec<u8> = [b"--".as_slice(), boundary.as_bytes()].concat();
    let mut parts = Vec::new();
    // (start of the line break preceding the delimiter, end of the delimiter line)
    let mut current: Option<usize> = None;
    let mut closed = false;
    let mut line_start = body.start;
    while line_start < body.end {
        let line_end =
            memchr(b'\n', &raw[line_start..body.end]).map_or(body.end, |p| line_start + p + 1);
        let line = &raw[line_start..line_end];
        if let Some(close) = delimiter_kind(line, &dash) {
            if let Some(start) = current.take() {
                // The CRLF/LF before the delimiter belongs to the delimiter.
                let mut end = line_start;
                if end > start && raw[end - 1] == b'\n' {
                    end -= 1;
                    if end > start && raw[end - 1] == b'\r' {
                        end -= 1;
                    }
                }
                parts.push(start..end.max(start));
            }
            if close {
                closed = true;
                break;
            }
            current = Some(line_end);
        }
        line_start = line_end;
    }
    if let Some(start) = current {
        // Unterminated multipart: keep the last part up to the end.
        parts.push(start..body.end);
    }
    Multipart { parts, closed }
}

/// `Some(false)` for a delimiter line, `Some(true)` for the close delimiter.
fn delimiter_kind(line: &[u8], dash: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(dash)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        Some(close)
    } else {
        None
    }
}

/// CRLF canonicalisation as openssl applies it to S/MIME content: every line
/// break becomes CRLF, and carriage returns that end a line (`\r\r\n`, a
/// trailing `\r`) are dropped, exactly as `strip_eol` does.
pub fn canonicalize_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut i = 0;
    while i < data.len() {
        let (line, eol) = match memchr(b'\n', &data[i..]) {
            Some(p) => (&data[i..i + p], true),
            None => (&data[i..], false),
        };
        let mut n = line.len();
        while n > 0 && line[n - 1] == b'\r' {
            n -= 1;
        }
        out.extend_from_slice(&line[..n]);
        if eol {
            out.extend_from_slice(b"\r\n");
            i += line.len() + 1;
        } else {
            i += line.len();
        }
    }
    out
}

/// Decode base64, ignoring line breaks and any byte outside the alphabet;
/// stops at the first `=` padding.
pub fn decode_base64(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in data {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Encode base64 in lines of `width` characters joined by CRLF (final CRLF included).
pub fn encode_base64_lines(data: &[u8], width: usize) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut flat = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        flat.push(T[(n >> 18) as usize & 63]);
        flat.push(T[(n >> 12) as usize & 63]);
        flat.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        flat.push(if chunk.len() > 2 {
            T[n as usize & 63]
        } else {
            b'='
        });
    }
    let width = width.max(4);
    let mut out = Vec::with_capacity(flat.len() + flat.len() / width * 2 + 2);
    for line in flat.chunks(width) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Decode quoted-printable (soft line breaks `=` + CRLF/LF, `=XX` escapes;
/// malformed escapes are kept literally).
pub fn decode_quoted_printable(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let c = data[i];
        if c == b'=' {
            if data[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if data[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            if i + 2 < data.len() {
                if let (Some(h), Some(l)) = (hex_val(data[i + 1]), hex_val(data[i + 2])) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Decode RFC 2047 encoded words (`=?charset?B|Q?…?=`); white space between
/// adjacent encoded words is dropped. UTF-8 and the ISO-8859-1 family are
/// decoded; other charsets are decoded as UTF-8, lossily.
pub fn decode_rfc2047(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut pending_ws = String::new();
    let mut last_was_word = false;
    while !rest.is_empty() {
        if let Some((decoded, used)) = encoded_word(rest) {
            if !last_was_word {
                out.push_str(&pending_ws);
            }
            pending_ws.clear();
            out.push_str(&decoded);
            rest = &rest[used..];
            last_was_word = true;
            continue;
        }
        let ch = rest.chars().next().unwrap_or(' ');
        if ch == ' ' || ch == '\t' {
            pending_ws.push(ch);
        } else {
            out.push_str(&pending_ws);
            pending_ws.clear();
            out.push(ch);
            last_was_word = false;
        }
        rest = &rest[ch.len_utf8()..];
    }
    out.push_str(&pending_ws);
    out
}

fn encoded_word(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("=?")?;
    let q1 = body.find('?')?;
    let charset = &body[..q1];
    let after = &body[q1 + 1..];
    let mut it = after.char_indices();
    let (_, enc) = it.next()?;
    if after.get(1..2)? != "?" {
        return None;
    }
    let text_start = 2;
    let end = after[text_start..].find("?=")? + text_start;
    let text = &after[text_start..end];
    if text.contains(' ') {
        return None;
    }
    let bytes = match enc.to_ascii_uppercase() {
        'B' => decode_base64(text.as_bytes()),
        'Q' => {
            let t = text.replace('_', " ");
            decode_quoted_printable(t.as_bytes())
        }
        _ => return None,
    };
    let used = 2 + q1 + 1 + end + 2;
    Some((decode_charset(&bytes, charset), used))
}

/// Bytes in `charset` to a `String` (UTF-8 and ISO-8859-1/15, Windows-1252 as Latin-1).
pub fn decode_charset(bytes: &[u8], charset: &str) -> String {
    let cs = charset.split('*').next().unwrap_or("").to_ascii_lowercase();
    match cs.as_str() {
        "iso-8859-1" | "iso-8859-15" | "latin1" | "windows-1252" | "cp1252" | "us-ascii" => {
            bytes.iter().map(|&b| char::from(b)).collect()
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Every entity of a message in depth-first order, the root first. Children
/// of `multipart/*` are walked; `message/rfc822` bodies are not (an attached
/// message such as `postacert.eml` is one leaf).
pub fn walk(raw: &[u8], root: Range<usize>) -> Vec<Entity> {
    let mut out = Vec::new();
    walk_into(raw, root, 0, &mut out);
    out
}

fn walk_into(raw: &[u8], range: Range<usize>, depth: usize, out: &mut Vec<Entity>) {
    let e = Entity::parse(raw, range);
    let ct = e.content_type(raw);
    let children = if ct.is_multipart() && depth < 32 {
        ct.param("boundary")
            .filter(|b| !b.is_empty())
            .map(|b| multipart_parts(raw, e.body.clone(), &b).parts)
    } else {
        None
    };
    out.push(e);
    for c in children.into_iter().flatten() {
        walk_into(raw, c, depth + 1, out);
    }
}

/// Most `Content-Type` fields that can open a nested message (`message/*`,
/// `multipart/digest`) one message may hold, across every encoded layer.
///
/// mail-parser builds one Rust value per nested message and drops (and, for
/// encoded ones, copies) that tree recursively: tens of thousands of levels,
/// a few dozen bytes each, overflow a thread's stack and abort the process.
/// Real messages stay far below this (a busta holds two or three levels; a
/// message forwarding a few hundred messages is the rare case refused here).
pub const MAX_NESTED_MESSAGES: usize = 256;

/// A message whose structure is too deep (or too costly to bound) to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep;

/// Check, without recursion and before any parser sees the bytes, that a
/// message cannot nest more than [`MAX_NESTED_MESSAGES`] messages.
///
/// Every level of mail-parser's tree needs a `Content-Type` naming
/// `message/rfc822`, `message/global` or `multipart/digest` inside that
/// level, so counting such header lines anywhere in the bytes (body lines
/// that merely look like one count too) bounds the depth from above whatever
/// the boundaries. Parts with such a type and a base64 or quoted-printable
/// encoding are decoded and re-parsed by mail-parser, so their decoded bytes
/// are counted as well (from each place the body can start; mail-parser does
/// this for three levels, we follow every level up to a decoding budget).
pub fn check_nesting(raw: &[u8]) -> Result<(), TooDeep> {
    let budget = raw.len().saturating_mul(4).saturating_add(1 << 20);
    let mut decoded = 0usize;
    let mut count = 0usize;
    let mut work: Vec<std::borrow::Cow<'_, [u8]>> = vec![raw.into()];
    while let Some(buf) = work.pop() {
        // The header block being read: does it declare a nested message,
        // and with which encoding (Some(true): base64, Some(false): QP)?
        let mut block_message = false;
        let mut block_encoding: Option<bool> = None;
        let (mut in_ct, mut in_cte) = (false, false);
        for (start, line) in lines_with_offsets(&buf) {
            let body = trim_cr(line);
            if body.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                // A blank line may end the block and start the body. A line
                // of blanks may instead continue it, for some parsers: then
                // the body can start here or at the next empty line, and
                // both are decoded (a superset of what mail-parser reads).
                if let (true, Some(b64)) = (block_message, block_encoding) {
                    let from = (start + line.len()).min(buf.len());
                    let piece = decode_lenient(&buf[from..], b64);
                    decoded = decoded.saturating_add(piece.len());
                    if decoded > budget {
                        return Err(TooDeep);
                    }
                    work.push(piece.into());
                }
                if body.is_empty() {
                    block_message = false;
                    block_encoding = None;
                }
                (in_ct, in_cte) = (false, false);
                continue;
            }
            if !matches!(body.first(), Some(b' ' | b'\t')) {
                in_ct = field_named(body, b"content-type");
                in_cte = !in_ct && field_named(body, b"content-transfer-encoding");
            }
            if in_ct && (contains_ci(body, b"message") || contains_ci(body, b"digest")) {
                count += 1;
                if count > MAX_NESTED_MESSAGES {
                    return Err(TooDeep);
                }
                block_message = true;
            }
            if in_cte {
                if contains_ci(body, b"base64") {
                    block_encoding = Some(true);
                } else if contains_ci(body, b"quoted-printable") {
                    block_encoding = Some(false);
                }
            }
        }
    }
    Ok(())
}

/// Lines of `buf` (each with its `\n`, if any) and where each starts.
fn lines_with_offsets(buf: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= buf.len() {
            return None;
        }
        let end = memchr(b'\n', &buf[at..]).map_or(buf.len(), |i| at + i + 1);
        let r = (at, &buf[at..end]);
        at = end;
        Some(r)
    })
}

fn trim_cr(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// `name`, case-insensitively, then optional blanks and a colon.
fn field_named(line: &[u8], name: &[u8]) -> bool {
    line.len() > name.len()
        && line[..name.len()].eq_ignore_ascii_case(name)
        && line[name.len()..]
            .iter()
            .find(|b| **b != b' ' && **b != b'\t')
            == Some(&b':')
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Decode everything from `data` on, skipping what does not belong to the
/// encoding, so the real part's content is a prefix of the result.
fn decode_lenient(data: &[u8], base64: bool) -> Vec<u8> {
    if !base64 {
        return decode_quoted_printable(data);
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let (mut acc, mut n) = (0u32, 0u8);
    for &c in data {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                // Padding ends a quantum; what follows starts a fresh one.
                match n {
                    2 => out.push((acc >> 4) as u8),
                    3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
                    _ => {}
                }
                (acc, n) = (0, 0);
                continue;
            }
            _ => continue,
        };
        acc = (acc << 6) | v as u32;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            (acc, n) = (0, 0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `levels` messages, each the whole body of the one around it.
    fn nested(levels: usize) -> Vec<u8> {
        let mut m = b"From: a@b.test\r\nSubject: deep\r\n".to_vec();
        for _ in 0..levels {
            m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        m.extend_from_slice(b"Subject: bottom\r\n\r\nhello\r\n");
        m
    }

    #[test]
    fn a_deep_chain_is_refused_before_parsing() {
        // The shape that aborted the daemon: ~30 bytes a level.
        assert_eq!(check_nesting(&nested(50_000)), Err(TooDeep));
        assert_eq!(
            check_nesting(&nested(MAX_NESTED_MESSAGES + 1)),
            Err(TooDeep)
        );
        assert_eq!(check_nesting(&nested(MAX_NESTED_MESSAGES)), Ok(()));
        // Header names are matched as parsers match them.
        let m = b"CONTENT-TYPE : Message/RFC822\r\n\r\n".repeat(MAX_NESTED_MESSAGES + 1);
        assert_eq!(check_nesting(&m), Err(TooDeep));
    }

    #[test]
    fn what_is_accepted_parses_and_drops_on_a_small_stack() {
        // mail-parser recurses when it drops the tree: the most we let
        // through must fit in far less than a tokio worker's 2 MiB.
        let m = nested(MAX_NESTED_MESSAGES);
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || {
                let parsed = crate::pec::headers::parse_message(&m).unwrap();
                let mut depth = 0;
                let mut at = &parsed;
                while let Some(inner) = at.parts.iter().find_map(|p| match &p.body {
                    mail_parser::PartType::Message(m) => Some(m),
                    _ => None,
                }) {
                    depth += 1;
                    at = inner;
                }
                assert_eq!(depth, MAX_NESTED_MESSAGES);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn encoded_nested_messages_are_counted_after_decoding() {
        let inner = nested(MAX_NESTED_MESSAGES + 10);
        let b64 = encode_base64_lines(&inner, 76);
        let mut m = b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
        m.extend_from_slice(&b64);
        m.extend_from_slice(b"\r\n--b--\r\n");
        assert_eq!(check_nesting(&m), Err(TooDeep));
        // The encoding may also come first, and the block end with blanks.
        let mut m = b"Content-Transfer-Encoding: quoted-printable\r\nContent-Type:\r\n message/rfc822\r\n \r\n\r\n".to_vec();
        m.extend_from_slice(&inner);
        assert_eq!(check_nesting(&m), Err(TooDeep));
        // An ordinary attached message, encoded or not, is fine.
        let small = encode_base64_lines(&nested(3), 76);
        let mut m =
            b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
        m.extend_from_slice(&small);
        assert_eq!(check_nesting(&m), Ok(()));
    }

    #[test]
    fn every_real_sample_is_within_bounds() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pec-samples");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "eml") {
                let raw = std::fs::read(&p).unwrap();
                assert_eq!(check_nesting(&raw), Ok(()), "{}", p.display());
                n += 1;
            }
        }
        assert!(n > 10, "only {n} samples read from {}", dir.display());
    }

    #[test]
    fn header_block_lf_and_crlf() {
        let m = b"A: 1\r\nB: x\r\n y\r\n\r\nbody\r\n";
        let (h, b) = split_header_body(m);
        assert_eq!(&m[h.clone()], b"A: 1\r\nB: x\r\n y\r\n");
        assert_eq!(&m[b], b"body\r\n");
        assert_eq!(header_value(&m[h], "b").as_deref(), Some("x y"));
        let m = b"a: 1\nX-TipoRicevuta: breve\n\nbody";
        let e = Entity::whole(m);
        assert_eq!(e.header(m, "x-tiporicevuta").as_deref(), Some("breve"));
        assert_eq!(&m[e.body], b"body");
    }

    #[test]
    fn content_type_params() {
        let ct = ContentType::parse(
            "multipart/signed; protocol=\"application/x-pkcs7-signature\"; micalg=sha1; boundary=\"--a\\\"b;c\"",
        );
        assert_eq!(ct.mime_type, "multipart/signed");
        assert_eq!(ct.param("micalg").as_deref(), Some("sha1"));
        assert_eq!(ct.param("Boundary").as_deref(), Some("--a\"b;c"));
        let ct = ContentType::parse("application/xml; name*=UTF-8''dati%20cert.xml");
        assert_eq!(ct.param("name").as_deref(), Some("dati cert.xml"));
        let ct = ContentType::parse("text/plain; name*0=\"a\"; name*1=\"b.txt\"");
        assert_eq!(ct.param("name").as_deref(), Some("ab.txt"));
    }

    #[test]
    fn multipart_exact_ranges() {
        let m = b"Content-Type: multipart/mixed; boundary=b\n\npre\n--b\nX: 1\n\none\n\n--b  \r\n\ntwo\r\n--b--\nepi";
        let e = Entity::whole(m);
        let mp = multipart_parts(m, e.body.clone(), "b");
        assert!(mp.closed);
        assert_eq!(mp.parts.len(), 2);
        assert_eq!(&m[mp.parts[0].clone()], b"X: 1\n\none\n");
        assert_eq!(&m[mp.parts[1].clone()], b"\ntwo");
        // a line that merely starts with the boundary is content
        let m2 = b"\n--b\nx\n--bx\n--b--\n";
        let mp = multipart_parts(m2, 0..m2.len(), "b");
        assert_eq!(&m2[mp.parts[0].clone()], b"x\n--bx");
    }

    #[test]
    fn canonical_like_openssl() {
        assert_eq!(canonicalize_crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc");
        assert_eq!(canonicalize_crlf(b"a\r\r\n\n"), b"a\r\n\r\n");
        assert_eq!(canonicalize_crlf(b"x\r"), b"x");
    }

    #[test]
    fn decoders() {
        assert_eq!(decode_base64(b"aGVs\r\nbG8=\r\n"), b"hello");
        let enc = encode_base64_lines(b"hello world, this is longer", 8);
        assert_eq!(decode_base64(&enc), b"hello world, this is longer");
        assert!(enc.starts_with(b"aGVsbG8g\r\n"));
        assert_eq!(
            decode_quoted_printable(b"=E8 stato=\r\n ok=\nx=4"),
            b"\xe8 stato okx=4"
        );
        assert_eq!(decode_rfc2047("=?UTF-8?Q?Norah_Colly?="), "Norah Colly");
        assert_eq!(
            decode_rfc2047("POSTA: =?iso-8859-1?Q?perch=E8?= =?UTF-8?B?w6g=?= x"),
            "POSTA: perch\u{e8}\u{e8} x"
        );
    }
}

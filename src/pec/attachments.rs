//! Attachment names with a blocked extension, at any depth of a message.

use mail_parser::{Message, MimeHeaders, PartType};

/// A blocked attachment: its file name and the extension rule it hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The attachment's file name as the message gives it.
    pub name: String,
    /// The blocked extension, lower case without the dot.
    pub extension: String,
}

/// Deepest attached message looked into; beyond it the scanner still sees
/// the bytes.
const MAX_DEPTH: usize = 8;

/// The first attachment of `raw` whose name (`Content-Disposition`
/// `filename` or `Content-Type` `name`) ends in one of `blocked`, looking
/// inside attached messages too. `None` when clean or unparsable (the formal
/// checks judge unparsable messages).
pub fn find_blocked(raw: &[u8], blocked: &[String]) -> Option<Blocked> {
    if blocked.is_empty() {
        return None;
    }
    let m = crate::pec::headers::parse_message(raw).ok()?;
    walk(&m, blocked, 0)
}

fn walk(m: &Message<'_>, blocked: &[String], depth: usize) -> Option<Blocked> {
    for p in &m.parts {
        let names = [
            p.content_disposition()
                .and_then(|d| d.attribute("filename")),
            p.content_type().and_then(|c| c.attribute("name")),
        ];
        for name in names.into_iter().flatten() {
            if let Some(extension) = blocked_extension(name, blocked) {
                return Some(Blocked {
                    name: name.to_string(),
                    extension,
                });
            }
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        let found = match &p.body {
            PartType::Message(inner) => walk(inner, blocked, depth + 1),
            // An `.eml` sent as application/octet-stream is opened as a
            // message by mail clients all the same.
            PartType::Binary(b) | PartType::InlineBinary(b)
                if p.attachment_name()
                    .is_some_and(|n| n.to_ascii_lowercase().ends_with(".eml")) =>
            {
                crate::pec::headers::parse_message(b)
                    .ok()
                    .and_then(|inner| walk(&inner, blocked, depth + 1))
            }
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The extension of `name` if it is blocked. Trailing dots and spaces are
/// dropped first, as Windows does when it opens the file.
fn blocked_extension(name: &str, blocked: &[String]) -> Option<String> {
    let n = name.trim_end_matches(['.', ' ']).to_ascii_lowercase();
    let (_, ext) = n.rsplit_once('.')?;
    blocked.iter().find(|b| **b == ext).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Vec<String> {
        vec!["exe".into(), "js".into()]
    }

    #[test]
    fn names_at_any_depth() {
        let top = b"From: a@b.it\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1\r\nContent-Type: application/octet-stream; name=\"setup.EXE\"\r\n\r\nAAAA\r\n--b1--\r\n";
        let b = find_blocked(top, &list()).unwrap();
        assert_eq!(b.name, "setup.EXE");
        assert_eq!(b.extension, "exe");

        let nested = b"From: a@b.it\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\nFrom: c@d.it\r\nSubject: y\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b2\"\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\nin\r\n--b2\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"run.js \"\r\n\r\nalert(1)\r\n--b2--\r\n\r\n--b1--\r\n";
        let b = find_blocked(nested, &list()).unwrap();
        assert_eq!(b.extension, "js");

        let clean = b"From: a@b.it\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1\r\nContent-Type: application/pdf; name=\"exe.pdf\"\r\n\r\nAAAA\r\n--b1--\r\n";
        assert_eq!(find_blocked(clean, &list()), None);
        assert_eq!(find_blocked(top, &[]), None);
    }
}

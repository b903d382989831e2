//! Delivery-point decisions (`pec-spec.md` §3.5, §5.3): which avvenuta-consegna
//! a recipient gets, and the *breve* transformation.
//!
//! Receipt type: the sender's `X-TipoRicevuta` (carried in the busta and in
//! daticert `<ricevuta>`), default `completa`; recipients in **Cc** always get
//! a `sintetica` one (the original only goes back for primary recipients).
//!
//! **Breve** (RFC 6109 §3.3 / pec-spec §3.5 leave the encoding open; no public
//! sample exists). pecd's choice: `postacert.eml` is kept as carried in the
//! busta, except that every attachment part of the original (a leaf MIME part
//! with `Content-Disposition: attachment` or a file name, inside a multipart)
//! is replaced, in place and with all other bytes unchanged, by a
//! `text/plain; charset="UTF-8"` attachment named `<file name>.hash.txt`
//! whose body is
//!
//! ```text
//! Allegato sostituito dalla sua impronta (ricevuta di consegna breve).
//! Nome: <file name>
//! Dimensione: <decoded size> byte
//! SHA-256: <64 lower-case hex digits>
//! SHA-1: <40 lower-case hex digits>
//! ```
//!
//! The hashes are over the *decoded* attachment content (the file the sender
//! keeps and must later show), SHA-256 as the current algorithm, SHA-1 as the
//! one named by the 2005 rules. Parts inside a nested message/rfc822 are left
//! alone (they are part of an attached message, itself hashed if it is an
//! attachment).

use mail_parser::{MimeHeaders, PartType};
use openssl::hash::{hash, MessageDigest};

use super::headers::{addresses, parse_header_block, parse_message};
use super::types::ReceiptType;

/// The receipt type a recipient gets: Cc ⇒ sintetica, else what was requested.
pub fn receipt_type_for(requested: ReceiptType, recipient_in_cc: bool) -> ReceiptType {
    if recipient_in_cc {
        ReceiptType::Sintetica
    } else {
        requested
    }
}

/// Is `recipient` a Cc (and not also a To) recipient of the original
/// (given as `postacert.eml`)?
pub fn is_cc(postacert: &[u8], recipient: &str) -> bool {
    let Some(m) = parse_header_block(postacert) else {
        return false;
    };
    let r = recipient.to_ascii_lowercase();
    addresses(&m, "Cc").contains(&r) && !addresses(&m, "To").contains(&r)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The file name made safe for a quoted MIME parameter.
fn param_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The `postacert.eml` of a consegna breve (see the module doc). Input and
/// output use the line terminator of the input (CRLF when it comes from the
/// busta). Unparsable input is returned unchanged.
pub fn breve(postacert: &[u8]) -> Vec<u8> {
    let Ok(m) = parse_message(postacert) else {
        return postacert.to_vec();
    };
    let eol = super::headers::line_ending(postacert);
    let eol_s = String::from_utf8_lossy(eol).into_owned();
    let mut replacements: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for (i, p) in m.parts.iter().enumerate() {
        if i == 0 || matches!(p.body, PartType::Multipart(_)) {
            continue;
        }
        let disposition_attachment = p
            .content_disposition()
            .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"));
        let name = p.attachment_name();
        if !disposition_attachment && name.is_none() {
            continue;
        }
        let name = name.unwrap_or("allegato").to_string();
        let content = p.contents();
        let (Ok(s256), Ok(s1)) = (
            hash(MessageDigest::sha256(), content),
            hash(MessageDigest::sha1(), content),
        ) else {
            continue;
        };
        let fname = format!("{}.hash.txt", param_safe(&name));
        let part = [
            "Content-Type: text/plain; charset=\"UTF-8\"".to_string(),
            format!("Content-Disposition: attachment; filename=\"{fname}\""),
            "Content-Transfer-Encoding: 8bit".to_string(),
            String::new(),
            "Allegato sostituito dalla sua impronta (ricevuta di consegna breve).".to_string(),
            format!("Nome: {name}"),
            format!("Dimensione: {} byte", content.len()),
            format!("SHA-256: {}", hex(&s256)),
            format!("SHA-1: {}", hex(&s1)),
            String::new(),
        ]
        .join(&eol_s);
        replacements.push((
            p.offset_header as usize,
            p.offset_end as usize,
            part.into_bytes(),
        ));
    }
    let mut out = Vec::with_capacity(postacert.len());
    let mut pos = 0;
    for (start, end, bytes) in replacements {
        if start < pos || end > postacert.len() || start > end {
            continue;
        }
        out.extend_from_slice(&postacert[pos..start]);
        out.extend_from_slice(&bytes);
        pos = end;
    }
    out.extend_from_slice(&postacert[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@pec.alpha.test\r\nTo: b@pec.alpha.test\r\nCc: c@pec.alpha.test\r\nSubject: fattura\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nVedi allegato.\r\n--XX\r\nContent-Type: application/pdf; name=\"f.pdf\"\r\nContent-Disposition: attachment; filename=\"f.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8=\r\n--XX--\r\n";

    #[test]
    fn cc_gets_sintetica() {
        assert_eq!(
            receipt_type_for(ReceiptType::Completa, true),
            ReceiptType::Sintetica
        );
        assert_eq!(
            receipt_type_for(ReceiptType::Breve, false),
            ReceiptType::Breve
        );
        assert!(is_cc(MSG, "C@pec.alpha.test"));
        assert!(!is_cc(MSG, "b@pec.alpha.test"));
    }

    #[test]
    fn breve_replaces_attachments_only() {
        let out = breve(MSG);
        let s = String::from_utf8(out.clone()).unwrap();
        // "Hello" hashed.
        assert!(
            s.contains("SHA-256: 185f8db32271fe25f561a6fc938b2e264306ec304eda518007d1764826381969"),
            "{s}"
        );
        assert!(s.contains("SHA-1: f7ff9e8b7bb2e09b70935a5d785e0cc5d9d0abf0"));
        assert!(s.contains("filename=\"f.pdf.hash.txt\""));
        assert!(!s.contains("SGVsbG8="));
        // Everything before the attachment is untouched, and the structure still parses.
        let head = b"From: a@pec.alpha.test\r\nTo: b@pec.alpha.test\r\nCc: c@pec.alpha.test\r\nSubject: fattura\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nVedi allegato.\r\n--XX\r\n";
        assert!(out.starts_with(head));
        assert!(out.ends_with(b"\r\n--XX--\r\n"));
        let m = parse_message(&out).unwrap();
        assert_eq!(m.attachment_count(), 1);
        assert_eq!(
            m.attachment(0).unwrap().attachment_name(),
            Some("f.pdf.hash.txt")
        );
        assert_eq!(m.body_text(0).as_deref(), Some("Vedi allegato."));
    }

    #[test]
    fn breve_without_attachments_is_identity() {
        let m = b"From: a@b.it\r\nTo: c@d.it\r\n\r\nsolo testo\r\n";
        assert_eq!(breve(m), m.to_vec());
    }
}

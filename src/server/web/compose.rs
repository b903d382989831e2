//! The RFC 5322 message a web send submits: what a mail client would write.
//! From is the user, To/Cc only (PEC refuses hidden recipients), the receipt
//! type in `X-TipoRicevuta` (pec-spec §3.5), text as quoted-printable,
//! attachments as base64 parts of a multipart/mixed.

use crate::pec::clock::ItalianTime;
use crate::pec::headers::{base64_lines, encoded_words, fold, quoted_printable};

/// One uploaded file.
pub struct Upload {
    /// File name as the browser sent it.
    pub filename: String,
    /// Its MIME type.
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// What the compose form holds.
pub struct Draft {
    /// The sender (the logged-in user).
    pub from: String,
    /// Primary recipients.
    pub to: Vec<String>,
    /// Carbon-copy recipients.
    pub cc: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// An HTML body beside it (`multipart/alternative`), from the API.
    pub html: Option<String>,
    /// `completa`, `breve` or `sintetica`.
    pub tipo_ricevuta: String,
    /// Attachments in order.
    pub attachments: Vec<Upload>,
}

/// Split a recipient field at commas, semicolons and white space.
pub fn addresses(field: &str) -> Vec<String> {
    field
        .split([',', ';', '\n', '\r', ' ', '\t'])
        .map(|a| {
            a.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim()
        })
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

fn header_text(name: &str, value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..0x7f).contains(&b)) && !value.contains("=?");
    if plain {
        fold(name, value)
    } else {
        encoded_words(value)
    }
}

fn param_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\' && *c != '/')
        .collect();
    let clean = if clean.trim().is_empty() {
        "allegato".to_string()
    } else {
        clean
    };
    if clean.is_ascii() {
        format!("\"{clean}\"")
    } else {
        // RFC 2047 in a quoted parameter: what mail clients read in practice.
        format!("\"{}\"", encoded_words(&clean).replace("\r\n ", " "))
    }
}

fn safe_type(t: &str) -> String {
    let t = t.trim().to_ascii_lowercase();
    let ok = t.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"/.+-".contains(&c))
    });
    if ok {
        t
    } else {
        "application/octet-stream".into()
    }
}

/// The message bytes (CRLF) for `d`, with `msgid` (no brackets), dated `when`.
pub fn build(d: &Draft, msgid: &str, when: &ItalianTime, boundary: &str) -> Vec<u8> {
    let mut h = String::new();
    h.push_str(&format!("From: {}\r\n", d.from));
    h.push_str(&format!("To: {}\r\n", fold("To", &d.to.join(", "))));
    if !d.cc.is_empty() {
        h.push_str(&format!("Cc: {}\r\n", fold("Cc", &d.cc.join(", "))));
    }
    h.push_str(&format!(
        "Subject: {}\r\n",
        header_text("Subject", &d.subject)
    ));
    h.push_str(&format!("Date: {}\r\n", when.rfc5322()));
    h.push_str(&format!("Message-ID: <{msgid}>\r\n"));
    h.push_str(&format!("X-TipoRicevuta: {}\r\n", d.tipo_ricevuta));
    h.push_str("MIME-Version: 1.0\r\n");
    h.push_str("User-Agent: pecd webmail\r\n");
    let text_part = format!(
        "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}",
        quoted_printable(&d.body)
    );
    let text_part = match &d.html {
        None => text_part,
        // Its own boundary, not one that starts with the outer one.
        Some(html) => format!(
            "Content-Type: multipart/alternative; boundary=\"alt{boundary}\"\r\n\r\n--alt{boundary}\r\n{text_part}\r\n--alt{boundary}\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n--alt{boundary}--\r\n",
            quoted_printable(html)
        ),
    };
    let mut out = h.into_bytes();
    if d.attachments.is_empty() {
        out.extend_from_slice(text_part.as_bytes());
        return out;
    }
    out.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n").as_bytes(),
    );
    out.extend_from_slice(format!("--{boundary}\r\n{text_part}\r\n").as_bytes());
    for a in &d.attachments {
        let name = param_name(&a.filename);
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: {}; name={name}\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename={name}\r\n\r\n",
                safe_type(&a.content_type)
            )
            .as_bytes(),
        );
        out.extend_from_slice(base64_lines(&a.bytes).as_bytes());
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MimeHeaders;

    #[test]
    fn builds_a_message_the_parser_reads_back() {
        let d = Draft {
            from: "a@alpha.test".into(),
            to: addresses("b@beta.test, c@beta.test"),
            cc: addresses("d@alpha.test"),
            subject: "Perché no".into(),
            body: "riga 1\nriga è 2\n".into(),
            html: None,
            tipo_ricevuta: "breve".into(),
            attachments: vec![Upload {
                filename: "fattura è.pdf".into(),
                content_type: "application/pdf".into(),
                bytes: b"%PDF-1.4 x".to_vec(),
            }],
        };
        let when = ItalianTime::from_unix(1_700_000_000);
        let raw = build(&d, "w1@alpha.test", &when, "----=_b1");
        let m = crate::pec::headers::parse_message(&raw).unwrap();
        assert_eq!(m.subject(), Some("Perché no"));
        assert_eq!(m.to().unwrap().iter().count(), 2);
        assert_eq!(m.message_id(), Some("w1@alpha.test"));
        assert_eq!(
            m.body_text(0).unwrap().replace("\r\n", "\n"),
            "riga 1\nriga è 2\n"
        );
        let a = m.attachment(0).unwrap();
        assert_eq!(a.attachment_name(), Some("fattura è.pdf"));
        assert_eq!(a.contents(), b"%PDF-1.4 x");
        assert!(!String::from_utf8_lossy(&raw)
            .to_ascii_lowercase()
            .contains("bcc"));
        let acc = crate::pec::access::check(
            &raw,
            "a@alpha.test",
            &[
                "b@beta.test".into(),
                "c@beta.test".into(),
                "d@alpha.test".into(),
            ],
            Some("a@alpha.test"),
            &crate::pec::access::Limits {
                max_message_size: 1 << 20,
                max_recipients: 100,
            },
        )
        .ok()
        .unwrap();
        assert_eq!(acc.receipt_type.as_str(), "breve");
    }

    #[test]
    fn an_html_body_goes_beside_the_text_one() {
        let mut d = Draft {
            from: "a@alpha.test".into(),
            to: vec!["b@beta.test".into()],
            cc: vec![],
            subject: "s".into(),
            body: "testo".into(),
            html: Some("<p>testo <b>grassetto</b></p>".into()),
            tipo_ricevuta: "completa".into(),
            attachments: vec![],
        };
        let when = ItalianTime::from_unix(1_700_000_000);
        for with_attachment in [false, true] {
            if with_attachment {
                d.attachments.push(Upload {
                    filename: "a.txt".into(),
                    content_type: "text/plain".into(),
                    bytes: b"allegato".to_vec(),
                });
            }
            let raw = build(&d, "w1@alpha.test", &when, "----=_b1");
            let m = crate::pec::headers::parse_message(&raw).unwrap();
            assert_eq!(m.body_text(0).unwrap().trim(), "testo");
            assert!(m.body_html(0).unwrap().contains("<b>grassetto</b>"));
            assert_eq!(m.attachment_count(), usize::from(with_attachment));
        }
    }
}

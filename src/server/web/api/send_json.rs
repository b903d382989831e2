//! `POST /api/v1/messages` with `Content-Type: application/json`: the
//! draft of `{"to","cc","subject","body","html"?,"attachments":
//! [{"filename","content_type","content_base64"}],"tipo_ricevuta"?}`
//! (issue 25). `to` and `cc` are an address, a list of addresses, or a
//! string of them separated as in the compose form. The refusals are the
//! form's: no `bcc`, the same size limit.

use axum::http::StatusCode;
use serde::Deserialize;

use super::refusal::{no_bcc, tipo_ricevuta, too_big};
use crate::server::web::compose::{addresses, Draft, Upload};
use crate::server::web::ApiError;

/// One address field: a string of addresses, or a list of them.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Recipients {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Recipients {
    fn list(self) -> Vec<String> {
        match self {
            Recipients::None => vec![],
            Recipients::One(s) => addresses(&s),
            Recipients::Many(v) => v.iter().flat_map(|s| addresses(s)).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Attachment {
    filename: String,
    #[serde(default)]
    content_type: Option<String>,
    content_base64: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Send {
    to: Recipients,
    #[serde(default)]
    cc: Recipients,
    #[serde(default)]
    bcc: Recipients,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    attachments: Vec<Attachment>,
    #[serde(default)]
    tipo_ricevuta: Option<String>,
}

/// Strict base64 (RFC 4648 alphabet, padding only at the end, line breaks
/// allowed): the bytes, or `None`.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let clean: Vec<u8> = text.bytes().filter(|b| !b" \t\r\n".contains(b)).collect();
    let data = clean
        .strip_suffix(b"==")
        .or_else(|| clean.strip_suffix(b"="));
    let padded = data.is_some();
    let data = data.unwrap_or(&clean);
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    if !data.iter().all(alphabet)
        || data.len() % 4 == 1
        || (padded && !clean.len().is_multiple_of(4))
    {
        return None;
    }
    Some(crate::pec::mime::decode_base64(data))
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, detail)
}

/// The draft `user` sends with JSON `bytes`; a message over `max` bytes is
/// refused as the form's is.
pub(super) fn draft(user: &str, bytes: &[u8], max: usize) -> Result<Draft, ApiError> {
    let s: Send = serde_json::from_slice(bytes).map_err(|e| bad(format!("JSON body: {e}")))?;
    if !s.bcc.list().is_empty() {
        return Err(no_bcc());
    }
    let tipo = match s.tipo_ricevuta {
        Some(t) => tipo_ricevuta(&t)?,
        None => "completa".into(),
    };
    let mut attachments = vec![];
    let mut total = s.body.len() + s.html.as_ref().map_or(0, String::len);
    for (i, a) in s.attachments.into_iter().enumerate() {
        let bytes = decode_base64(&a.content_base64)
            .ok_or_else(|| bad(format!("attachments[{i}].content_base64: not base64")))?;
        // Base64 grows attachments by a third in the message.
        total += bytes.len() / 3 * 4;
        if total > max {
            return Err(too_big(max));
        }
        if a.filename.trim().is_empty() {
            return Err(bad(format!("attachments[{i}].filename: required")));
        }
        attachments.push(Upload {
            filename: a.filename,
            content_type: a
                .content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            bytes,
        });
    }
    Ok(Draft {
        from: user.to_string(),
        to: s.to.list(),
        cc: s.cc.list(),
        subject: s.subject.replace(['\r', '\n'], " "),
        body: s.body,
        html: s.html.filter(|h| !h.is_empty()),
        tipo_ricevuta: tipo,
        attachments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_decoded_strictly() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVs\r\nbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("").unwrap(), b"");
        for bad in ["aGVsbG8*", "a=GVsbG8", "aGVsb", "aGVsbG8==="] {
            assert!(decode_base64(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_json_send_becomes_a_draft_with_the_forms_refusals() {
        let j = serde_json::json!({
            "to": ["b@beta.test", "c@beta.test"], "cc": "d@alpha.test",
            "subject": "a\r\nb", "body": "x", "html": "<p>x</p>",
            "attachments": [{"filename": "a.txt", "content_type": "text/plain", "content_base64": "eHl6"}],
            "tipo_ricevuta": "Breve",
        });
        let d = draft("a@alpha.test", j.to_string().as_bytes(), 1 << 20).unwrap();
        assert_eq!(d.to, ["b@beta.test", "c@beta.test"]);
        assert_eq!(d.cc, ["d@alpha.test"]);
        assert_eq!(d.subject, "a  b");
        assert_eq!(d.tipo_ricevuta, "breve");
        assert_eq!(d.attachments[0].bytes, b"xyz");
        assert_eq!(d.html.as_deref(), Some("<p>x</p>"));
        let refused =
            |v: serde_json::Value| match draft("a@alpha.test", v.to_string().as_bytes(), 100) {
                Ok(_) => panic!("accepted: {v}"),
                Err(e) => e.status,
            };
        assert_eq!(
            refused(serde_json::json!({"to": "b@beta.test", "bcc": "x@beta.test"})),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            refused(serde_json::json!({"to": "b@beta.test", "attachments":
                [{"filename": "a", "content_base64": "QUFB".repeat(40)}]})),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            refused(serde_json::json!({"to": "b@beta.test", "tipo_ricevuta": "lunga"})),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            refused(serde_json::json!({"to": "b@beta.test", "attachment": []})),
            StatusCode::BAD_REQUEST,
            "unknown fields are refused, not ignored"
        );
    }
}

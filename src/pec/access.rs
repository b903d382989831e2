//! Formal checks of the access point (`pec-spec.md` §5.1, RFC 6109 §3.1.1).
//!
//! A pure function over the submitted bytes and the SMTP envelope. It decides
//! nothing about transport (TLS/AUTH are the SMTP layer's job; a MAIL FROM that
//! is not the authenticated user is refused there with 553 and no notice) and
//! returns either the data the access point needs to certify the message or a
//! [`Refusal`] that says whether a non-accettazione is due. Date is not
//! required: real clients always send it, and its absence harms nothing we
//! certify (the provider's own time is what the receipts carry).

use mail_parser::HeaderName;

use super::headers::{addresses, decode_unstructured, parse_header_block, raw_fields};
use super::mime::check_nesting;
use super::types::ReceiptType;

/// Provider limits (DM art. 12 requires accepting ≥ 50 recipients and
/// recipients × size ≤ 30 MB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum of message size × number of recipients, in bytes.
    pub max_message_size: usize,
    /// Maximum number of recipients.
    pub max_recipients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 30 * 1024 * 1024,
            max_recipients: 100,
        }
    }
}

/// What the access point learnt from an acceptable submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The sender (bare, lower case).
    pub from: String,
    /// To addresses (bare, lower case, in order).
    pub to: Vec<String>,
    /// Cc addresses (bare, lower case, in order).
    pub cc: Vec<String>,
    /// First Reply-To address, if any.
    pub reply_to: Option<String>,
    /// Decoded subject, if the message has one.
    pub subject: Option<String>,
    /// Original Message-ID with angle brackets, if any.
    pub msgid: Option<String>,
    /// Raw `X-TipoRicevuta` value (copied to the busta as is).
    pub tipo_ricevuta: Option<String>,
    /// Receipt type requested (unknown values mean `completa`).
    pub receipt_type: ReceiptType,
    /// Raw To value (first line's leading blank removed), for the busta.
    pub raw_to: Option<String>,
    /// Raw Cc value, for the busta.
    pub raw_cc: Option<String>,
    /// Raw Reply-To value, for the busta.
    pub raw_reply_to: Option<String>,
}

impl Accepted {
    /// To then Cc, duplicates removed (the recipients to certify).
    pub fn recipients(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for a in self.to.iter().chain(&self.cc) {
            if !v.contains(a) {
                v.push(a.clone());
            }
        }
        v
    }

    /// `risposte` of the daticert: Reply-To, or the sender.
    pub fn risposte(&self) -> String {
        self.reply_to.clone().unwrap_or_else(|| self.from.clone())
    }
}

/// What the formal checks found wrong (`pec-spec.md` §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Defect {
    /// Larger than the provider's limit: refused at SMTP, no notice
    /// (beyond the threshold, RFC 6109 §3.1.2).
    TooBig,
    /// Not an RFC 5322 message.
    NotRfc5322,
    /// `From` is not exactly one valid address.
    FromNotOneAddress,
    /// `From` is not the SMTP sender (MAIL FROM).
    FromNotSender,
    /// No `To` recipient.
    NoTo,
    /// A recipient address that is not valid.
    BadRecipient(String),
    /// A `Bcc` with a value.
    Bcc,
    /// RCPT TO differs from To + Cc.
    RecipientsDiffer,
    /// More recipients than the provider takes.
    TooManyRecipients,
    /// MIME nested deeper than any parser here follows.
    TooDeep,
    /// Size times recipients over the limit.
    TooBigForRecipients,
}

impl Defect {
    /// The reason in the words of the non-accettazione (`errore-esteso`).
    pub fn italian(&self) -> String {
        match self {
            Defect::TooBig => "dimensione del messaggio superiore al limite consentito".into(),
            Defect::NotRfc5322 => "messaggio non conforme a RFC 5322".into(),
            Defect::FromNotOneAddress => {
                "il campo From deve contenere esattamente un indirizzo valido".into()
            }
            Defect::FromNotSender => {
                "il mittente (From) non corrisponde al mittente della sessione SMTP (MAIL FROM)"
                    .into()
            }
            Defect::NoTo => "il campo To deve contenere almeno un destinatario".into(),
            Defect::BadRecipient(a) => format!("indirizzo destinatario non valido: {a}"),
            Defect::Bcc => "il campo Bcc (copia nascosta) non e' ammesso".into(),
            Defect::RecipientsDiffer => {
                "i destinatari della sessione SMTP (RCPT TO) non corrispondono ai campi To e Cc"
                    .into()
            }
            Defect::TooManyRecipients => {
                "numero di destinatari superiore al limite consentito".into()
            }
            Defect::TooDeep => "struttura MIME annidata oltre il limite consentito".into(),
            Defect::TooBigForRecipients => "dimensione del messaggio moltiplicata per il numero di destinatari superiore al limite consentito".into(),
        }
    }

    /// The reason in English (SMTP reply text, log).
    pub fn english(&self) -> String {
        match self {
            Defect::TooBig => "message size exceeds the limit".into(),
            Defect::NotRfc5322 => "message is not RFC 5322".into(),
            Defect::FromNotOneAddress => "From must contain exactly one valid address".into(),
            Defect::FromNotSender => "From does not match MAIL FROM".into(),
            Defect::NoTo => "To must contain at least one recipient".into(),
            Defect::BadRecipient(a) => format!("invalid recipient address: {a}"),
            Defect::Bcc => "Bcc is not allowed".into(),
            Defect::RecipientsDiffer => "RCPT TO set differs from To+Cc".into(),
            Defect::TooManyRecipients => "too many recipients".into(),
            Defect::TooDeep => "MIME structure nested too deeply".into(),
            Defect::TooBigForRecipients => "message size times recipients exceeds the limit".into(),
        }
    }
}

/// Why a submission is refused, with whatever could be parsed of it (the
/// notice of the refusal is built from that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What is wrong.
    pub defect: Defect,
    /// Whatever could be parsed, for the notice (may be partial).
    pub partial: Box<Accepted>,
}

fn raw_value(msg: &[u8], name: &str) -> Option<String> {
    let (fields, _) = raw_fields(msg);
    let f = fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))?;
    let v = String::from_utf8_lossy(f.raw_value(msg)).into_owned();
    let v = v.replace("\r\n", "\n").replace('\n', "\r\n");
    Some(v.trim_start_matches([' ', '\t']).to_string())
}

fn valid_addr(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((l, d)) => {
            !l.is_empty()
                && !d.is_empty()
                && d.contains('.')
                && !a.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
        }
        None => false,
    }
}

/// Check a submission. `mail_from` and `rcpt_to` are the SMTP envelope
/// (compared case-insensitively), `_auth_user` is for symmetry with the SMTP
/// layer, which already enforced MAIL FROM == authenticated user.
pub fn check(
    raw: &[u8],
    mail_from: &str,
    rcpt_to: &[String],
    _auth_user: Option<&str>,
    limits: &Limits,
) -> Result<Accepted, Refusal> {
    let mut acc = Accepted {
        from: mail_from.to_ascii_lowercase(),
        to: Vec::new(),
        cc: Vec::new(),
        reply_to: None,
        subject: None,
        msgid: None,
        tipo_ricevuta: None,
        receipt_type: ReceiptType::Completa,
        raw_to: raw_value(raw, "To"),
        raw_cc: raw_value(raw, "Cc"),
        raw_reply_to: raw_value(raw, "Reply-To"),
    };
    let refuse = |acc: &Accepted, defect: Defect| Refusal {
        defect,
        partial: Box::new(acc.clone()),
    };

    let n_rcpt = rcpt_to.len().max(1);
    if raw.len() > limits.max_message_size {
        return Err(refuse(&acc, Defect::TooBig));
    }

    let Some(msg) = parse_header_block(raw) else {
        return Err(refuse(&acc, Defect::NotRfc5322));
    };
    acc.subject = msg
        .subject()
        .map(str::to_string)
        .or_else(|| raw_value(raw, "Subject").map(|s| decode_unstructured(&s)));
    acc.msgid = raw_value(raw, "Message-ID")
        .map(|s| s.replace("\r\n", "").trim().to_string())
        .filter(|s| !s.is_empty());
    acc.tipo_ricevuta = raw_value(raw, "X-TipoRicevuta").map(|s| s.trim().to_string());
    acc.receipt_type = acc
        .tipo_ricevuta
        .as_deref()
        .and_then(ReceiptType::parse)
        .unwrap_or_default();
    acc.to = addresses(&msg, "To");
    acc.cc = addresses(&msg, "Cc");
    acc.reply_to = addresses(&msg, "Reply-To").into_iter().next();

    let from_fields = msg.header_values(HeaderName::From).count();
    let from = addresses(&msg, "From");
    if from_fields != 1 || from.len() != 1 || !valid_addr(&from[0]) {
        return Err(refuse(&acc, Defect::FromNotOneAddress));
    }
    // Checked before taking From as the sender: the notice of this refusal
    // goes to the authenticated MAIL FROM, never to the forged From.
    if !from[0].eq_ignore_ascii_case(mail_from.trim()) {
        return Err(refuse(&acc, Defect::FromNotSender));
    }
    acc.from = from[0].clone();
    if acc.to.is_empty() {
        return Err(refuse(&acc, Defect::NoTo));
    }
    if let Some(bad) = acc.to.iter().chain(&acc.cc).find(|a| !valid_addr(a)) {
        return Err(refuse(&acc, Defect::BadRecipient(bad.clone())));
    }
    if !addresses(&msg, "Bcc").is_empty()
        || raw_value(raw, "Bcc").is_some_and(|v| !v.trim().is_empty())
    {
        return Err(refuse(&acc, Defect::Bcc));
    }
    let mut header_set: Vec<String> = acc.recipients();
    header_set.sort();
    let mut rcpt_set: Vec<String> = rcpt_to
        .iter()
        .map(|r| r.trim().to_ascii_lowercase())
        .collect();
    rcpt_set.sort();
    rcpt_set.dedup();
    if header_set != rcpt_set {
        return Err(refuse(&acc, Defect::RecipientsDiffer));
    }
    if rcpt_set.len() > limits.max_recipients {
        return Err(refuse(&acc, Defect::TooManyRecipients));
    }
    // Last, so that the refusal's notice has the sender and subject: an
    // otherwise well-formed message gets its signed non-accettazione.
    if check_nesting(raw).is_err() {
        return Err(refuse(&acc, Defect::TooDeep));
    }
    if raw.len().saturating_mul(n_rcpt) > limits.max_message_size {
        return Err(refuse(&acc, Defect::TooBigForRecipients));
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: Mario <Mario@pec.alpha.test>\r\nTo: a@pec.alpha.test,\r\n b@pec.beta.test\r\nCc: c@example.com\r\nSubject: =?UTF-8?Q?perch=C3=A9?=\r\nMessage-ID: <m1@client>\r\nX-TipoRicevuta: breve\r\n\r\nciao\r\n";

    fn rcpts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accepts_a_good_message() {
        let a = check(
            MSG,
            "mario@pec.alpha.test",
            &rcpts(&["A@pec.alpha.test", "b@pec.beta.test", "c@example.com"]),
            Some("mario@pec.alpha.test"),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(a.from, "mario@pec.alpha.test");
        assert_eq!(a.to, vec!["a@pec.alpha.test", "b@pec.beta.test"]);
        assert_eq!(a.cc, vec!["c@example.com"]);
        assert_eq!(a.subject.as_deref(), Some("perché"));
        assert_eq!(a.msgid.as_deref(), Some("<m1@client>"));
        assert_eq!(a.receipt_type, ReceiptType::Breve);
        assert_eq!(
            a.raw_to.as_deref(),
            Some("a@pec.alpha.test,\r\n b@pec.beta.test")
        );
        assert_eq!(a.risposte(), "mario@pec.alpha.test");
    }

    fn refused(raw: &[u8], from: &str, to: &[&str], limits: Limits) -> Refusal {
        check(raw, from, &rcpts(to), None, &limits).unwrap_err()
    }

    #[test]
    fn refusals() {
        let all = ["a@pec.alpha.test", "b@pec.beta.test", "c@example.com"];
        let l = Limits::default();
        let r = refused(MSG, "other@pec.alpha.test", &all, l);
        assert_eq!(r.defect, Defect::FromNotSender);
        assert!(r.defect.italian().contains("MAIL FROM"));
        assert_eq!(
            r.partial.from, "other@pec.alpha.test",
            "notice to the session's sender"
        );
        let r = refused(MSG, "mario@pec.alpha.test", &all[..2], l);
        assert_eq!(r.defect, Defect::RecipientsDiffer);
        let hidden = [
            "a@pec.alpha.test",
            "b@pec.beta.test",
            "c@example.com",
            "h@x.it",
        ];
        assert_eq!(
            refused(MSG, "mario@pec.alpha.test", &hidden, l).defect,
            Defect::RecipientsDiffer
        );
        let bcc = [b"Bcc: h@x.it\r\n".as_slice(), MSG].concat();
        assert_eq!(
            refused(&bcc, "mario@pec.alpha.test", &all, l).defect,
            Defect::Bcc
        );
        let two_from = [b"From: x@pec.alpha.test\r\n".as_slice(), MSG].concat();
        assert_eq!(
            refused(&two_from, "mario@pec.alpha.test", &all, l).defect,
            Defect::FromNotOneAddress
        );
        let no_to = b"From: mario@pec.alpha.test\r\nCc: c@example.com\r\n\r\nx";
        assert_eq!(
            refused(no_to, "mario@pec.alpha.test", &["c@example.com"], l).defect,
            Defect::NoTo
        );
        let small = Limits {
            max_message_size: 400,
            max_recipients: 100,
        };
        let r = refused(MSG, "mario@pec.alpha.test", &all, small);
        assert_eq!(r.defect, Defect::TooBigForRecipients, "{r:?}");
        let tiny = Limits {
            max_message_size: 100,
            max_recipients: 100,
        };
        assert_eq!(
            refused(MSG, "mario@pec.alpha.test", &all, tiny).defect,
            Defect::TooBig
        );
        let few = Limits {
            max_message_size: 1 << 20,
            max_recipients: 2,
        };
        let r = refused(MSG, "mario@pec.alpha.test", &all, few);
        assert_eq!(r.defect, Defect::TooManyRecipients);
        assert!(r.defect.italian().contains("numero"));
    }

    #[test]
    fn empty_bcc_is_fine() {
        let m = [b"Bcc:\r\n".as_slice(), MSG].concat();
        let all = rcpts(&["a@pec.alpha.test", "b@pec.beta.test", "c@example.com"]);
        assert!(check(&m, "mario@pec.alpha.test", &all, None, &Limits::default()).is_ok());
    }
}

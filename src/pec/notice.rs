//! Notices that are not PEC receipts: plain, unsigned messages from the
//! provider to one of its users.
//!
//! The rules give no certified receipt for an `esterno` recipient (an
//! ordinary address, `pec-spec.md` §3.1, §6: no timers either), yet a relay
//! to one can fail for good. The sender is then told with an RFC 3464
//! delivery status notification: a `multipart/report` with a text part in
//! Italian and English, the machine-readable `message/delivery-status`, and
//! the headers of what was not delivered (`text/rfc822-headers`). It is
//! never signed and carries no `X-Ricevuta`, so no mail client or verifier
//! can take it for a receipt; its text says it has no legal value.

use super::clock::ItalianTime;
use super::daticert::Certified;
use super::envelope::Provider;
use super::headers::prefixed_subject;
use super::ids::{boundary, message_id, IdSource};

/// The header that marks pecd's non-certified delivery-failure notice.
pub const NOTICE_HEADER: &str = "X-Pecd-Notice";

/// Its value for an ordinary recipient not reached.
pub const ESTERNO_FAILED: &str = "mancata-consegna-esterno";

/// The RFC 3463 status an error text carries (`550 5.1.1 …`, `5.4.4 no
/// route …`), else `5.0.0`: the relay's words are kept as the diagnostic.
pub fn status_of(error: &str) -> String {
    error
        .split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .find(|w| {
            let p: Vec<&str> = w.split('.').collect();
            p.len() == 3
                && matches!(p[0], "2" | "4" | "5")
                && p[1..]
                    .iter()
                    .all(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|w| match w.as_bytes()[0] {
            // The relay gave up: whatever it last heard, the outcome is final.
            b'4' => format!("5{}", &w[1..]),
            _ => w.to_string(),
        })
        .unwrap_or_else(|| "5.0.0".into())
}

/// What the notice is about.
pub struct EsternoFailure<'a> {
    /// The accepted message (its daticert facts).
    pub certified: &'a Certified,
    /// The ordinary recipient not reached.
    pub recipient: &'a str,
    /// Why, in the relay's words.
    pub error: &'a str,
    /// Our SMTP host name (`Reporting-MTA`).
    pub reporting_host: &'a str,
    /// When the message was accepted.
    pub accepted: ItalianTime,
    /// The header block of the busta that was not delivered, if at hand.
    pub original_headers: Option<&'a [u8]>,
}

/// A built notice.
pub struct Notice {
    /// The message as stored (CRLF line ends, 8-bit UTF-8 text).
    pub bytes: Vec<u8>,
    /// Its `Message-ID`, with angle brackets.
    pub message_id: String,
}

/// The RFC 3464 delivery-failure notice to the sender, to store in the
/// sender's mailbox.
pub fn esterno_failure(
    provider: &Provider,
    ids: &dyn IdSource,
    when: &ItalianTime,
    f: &EsternoFailure<'_>,
) -> Notice {
    let c = f.certified;
    let b = boundary(ids);
    let msgid = message_id(ids, when, &provider.domain);
    let oneline = |s: &str| s.replace(['\r', '\n'], " ");
    let error = oneline(f.error);
    let status = status_of(&error);
    let subject = oneline(c.oggetto_str());
    let acc = &f.accepted;
    let mut out = String::new();
    let mut h = |k: &str, v: &str| out.push_str(&format!("{k}: {v}\r\n"));
    h(
        "From",
        &format!(
            "\"{}\" <{}>",
            provider.name.replace('"', ""),
            provider.mailbox()
        ),
    );
    h("To", &format!("<{}>", c.mittente));
    h("Date", &when.rfc5322());
    h(
        "Subject",
        &prefixed_subject("AVVISO DI MANCATA CONSEGNA (NON CERTIFICATO)", &subject),
    );
    h("Message-ID", &format!("<{msgid}>"));
    if let Some(m) = &c.msgid {
        h("In-Reply-To", m);
        h("References", m);
    }
    h("Auto-Submitted", "auto-replied");
    h(NOTICE_HEADER, ESTERNO_FAILED);
    h("MIME-Version", "1.0");
    h(
        "Content-Type",
        &format!("multipart/report; report-type=delivery-status; boundary=\"{b}\""),
    );
    out.push_str("\r\n");
    out.push_str(&format!(
        "--{b}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ));
    let text = format!(
        "Avviso di mancata consegna - NON CERTIFICATO\n\
         \n\
         Il messaggio \"{subject}\" inviato da {mittente} il {giorno} alle ore {ora} ({zona}),\n\
         identificativo {id},\n\
         non e' stato consegnato al destinatario {rcpt}, un indirizzo di posta ordinaria\n\
         (non di posta certificata), per il seguente errore:\n\
         \n\
         {error}\n\
         \n\
         Per i destinatari di posta ordinaria le regole della PEC non prevedono ricevute\n\
         certificate: questo avviso, del gestore {gestore}, e' solo informativo e non ha\n\
         valore legale.\n\
         \n\
         --- English ---\n\
         \n\
         Delivery failure notice - NOT CERTIFIED\n\
         \n\
         The message \"{subject}\" sent by {mittente} on {giorno} at {ora} ({zona}),\n\
         identificativo {id},\n\
         could not be delivered to {rcpt}, an ordinary (non-PEC) address:\n\
         \n\
         {error}\n\
         \n\
         PEC rules give no certified receipt for ordinary recipients: this notice from\n\
         {gestore} is for information only and has no legal value.\n",
        mittente = c.mittente,
        giorno = acc.giorno(),
        ora = acc.ora(),
        zona = acc.zona(),
        id = c.identificativo,
        rcpt = f.recipient,
        gestore = provider.name,
    );
    out.push_str(&text.replace('\n', "\r\n"));
    out.push_str(&format!(
        "\r\n--{b}\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; {host}\r\n\
         X-Pecd-Identificativo: {id}\r\n\
         Arrival-Date: {arrival}\r\n\
         \r\n\
         Final-Recipient: rfc822; {rcpt}\r\n\
         Action: failed\r\n\
         Status: {status}\r\n\
         Diagnostic-Code: smtp; {error}\r\n",
        host = f.reporting_host,
        id = c.identificativo,
        arrival = acc.rfc5322(),
        rcpt = f.recipient,
    ));
    if let Some(headers) = f.original_headers {
        out.push_str(&format!(
            "\r\n--{b}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        ));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(headers);
        if !headers.ends_with(b"\r\n") {
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
        return Notice {
            bytes,
            message_id: format!("<{msgid}>"),
        };
    }
    out.push_str(&format!("\r\n--{b}--\r\n"));
    Notice {
        bytes: out.into_bytes(),
        message_id: format!("<{msgid}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pec::daticert::Destinatario;
    use crate::pec::ids::SequentialIds;
    use crate::pec::types::{ReceiptType, RecipientType};

    #[test]
    fn the_status_comes_from_the_error_and_a_temporary_one_is_final() {
        assert_eq!(
            status_of("5.4.4 no route to example.org: no [[route]]"),
            "5.4.4"
        );
        assert_eq!(status_of("550 5.1.1 <x@y>: user unknown"), "5.1.1");
        assert_eq!(
            status_of("not delivered within the time limit: 451 4.4.1 busy"),
            "5.4.1"
        );
        assert_eq!(status_of("connect to 127.0.0.1:25: refused"), "5.0.0");
        assert_eq!(status_of("version 1.2.3 of 9.9.9"), "5.0.0");
    }

    /// Byte for byte, with a fixed clock and sequential ids.
    #[test]
    fn golden_esterno_failure() {
        let p = Provider {
            name: "Alpha PEC S.p.A.".into(),
            domain: "pec.alpha.test".into(),
        };
        let c = Certified {
            mittente: "mario@pec.alpha.test".into(),
            destinatari: vec![Destinatario {
                address: "carl@example.org".into(),
                tipo: RecipientType::Esterno,
            }],
            risposte: "mario@pec.alpha.test".into(),
            oggetto: Some("Fattura n° 9".into()),
            identificativo: "pecd.20181113163927.T000001@pec.alpha.test".into(),
            msgid: Some("<orig.1@client.example>".into()),
            ricevuta: ReceiptType::Completa,
        };
        let ids = SequentialIds::default();
        let when = ItalianTime::from_unix(1_542_123_600);
        let busta_headers = b"From: \"Per conto di: mario@pec.alpha.test\" <posta-certificata@pec.alpha.test>\r\nTo: carl@example.org\r\nSubject: POSTA CERTIFICATA: Fattura\r\n";
        let got = esterno_failure(
            &p,
            &ids,
            &when,
            &EsternoFailure {
                certified: &c,
                recipient: "carl@example.org",
                error: "5.4.4 no route to example.org:\r\n no [[route]] names it",
                reporting_host: "mx.pec.alpha.test",
                accepted: ItalianTime::from_unix(1_542_123_567),
                original_headers: Some(busta_headers),
            },
        );
        let want = "From: \"Alpha PEC S.p.A.\" <posta-certificata@pec.alpha.test>\r\n\
To: <mario@pec.alpha.test>\r\n\
Date: Tue, 13 Nov 2018 16:40:00 +0100\r\n\
Subject: AVVISO DI MANCATA CONSEGNA (NON CERTIFICATO)\r\n =?UTF-8?B?RmF0dHVyYSBuwrAgOQ==?=\r\n\
Message-ID: <pecd.20181113164000.T000002.r@pec.alpha.test>\r\n\
In-Reply-To: <orig.1@client.example>\r\n\
References: <orig.1@client.example>\r\n\
Auto-Submitted: auto-replied\r\n\
X-Pecd-Notice: mancata-consegna-esterno\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"----=_pecd_T000001\"\r\n\
\r\n\
------=_pecd_T000001\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Avviso di mancata consegna - NON CERTIFICATO\r\n\
\r\n\
Il messaggio \"Fattura n° 9\" inviato da mario@pec.alpha.test il 13/11/2018 alle ore 16:39:27 (+0100),\r\n\
identificativo pecd.20181113163927.T000001@pec.alpha.test,\r\n\
non e' stato consegnato al destinatario carl@example.org, un indirizzo di posta ordinaria\r\n\
(non di posta certificata), per il seguente errore:\r\n\
\r\n\
5.4.4 no route to example.org:   no [[route]] names it\r\n\
\r\n\
Per i destinatari di posta ordinaria le regole della PEC non prevedono ricevute\r\n\
certificate: questo avviso, del gestore Alpha PEC S.p.A., e' solo informativo e non ha\r\n\
valore legale.\r\n\
\r\n\
--- English ---\r\n\
\r\n\
Delivery failure notice - NOT CERTIFIED\r\n\
\r\n\
The message \"Fattura n° 9\" sent by mario@pec.alpha.test on 13/11/2018 at 16:39:27 (+0100),\r\n\
identificativo pecd.20181113163927.T000001@pec.alpha.test,\r\n\
could not be delivered to carl@example.org, an ordinary (non-PEC) address:\r\n\
\r\n\
5.4.4 no route to example.org:   no [[route]] names it\r\n\
\r\n\
PEC rules give no certified receipt for ordinary recipients: this notice from\r\n\
Alpha PEC S.p.A. is for information only and has no legal value.\r\n\
\r\n\
------=_pecd_T000001\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.pec.alpha.test\r\n\
X-Pecd-Identificativo: pecd.20181113163927.T000001@pec.alpha.test\r\n\
Arrival-Date: Tue, 13 Nov 2018 16:39:27 +0100\r\n\
\r\n\
Final-Recipient: rfc822; carl@example.org\r\n\
Action: failed\r\n\
Status: 5.4.4\r\n\
Diagnostic-Code: smtp; 5.4.4 no route to example.org:   no [[route]] names it\r\n\
\r\n\
------=_pecd_T000001\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: \"Per conto di: mario@pec.alpha.test\" <posta-certificata@pec.alpha.test>\r\n\
To: carl@example.org\r\n\
Subject: POSTA CERTIFICATA: Fattura\r\n\
\r\n\
------=_pecd_T000001--\r\n";
        assert_eq!(
            got.message_id,
            "<pecd.20181113164000.T000002.r@pec.alpha.test>"
        );
        assert_eq!(String::from_utf8(got.bytes).unwrap(), want);
    }
}

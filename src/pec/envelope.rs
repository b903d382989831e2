//! Busta di trasporto (`pec-spec.md` §3.1) and busta di anomalia (§3.2),
//! plus the MIME assembly shared with the receipts.
//!
//! Layout follows the real samples (§2): a `multipart/mixed` entity with the
//! human text (UTF-8, quoted-printable), `daticert.xml` (base64, inline) and
//! `postacert.eml` (message/rfc822, inline), in that order. The entity is
//! CRLF throughout because it is what gets signed and sent over SMTP; the
//! Message-ID swap itself is byte-exact (see [`headers::swap_message_id`]),
//! only line endings are canonicalised when the original is embedded.
//!
//! Busta di anomalia: it carries **no daticert.xml**. Its whole point is that
//! the data of the message could not be certified, so a certification
//! document would contradict the envelope; receivers recognise it by
//! `X-Trasporto: errore` alone. The original is attached unmodified.

use super::access::Accepted;
use super::clock::ItalianTime;
use super::daticert::{Certified, Daticert, Destinatario};
use super::headers::{
    addresses, base64_lines, parse_header_block, per_conto_di, prefixed_subject, quoted_printable,
    raw_fields, swap_message_id, to_crlf,
};
use super::ids::{boundary, message_id, IdSource};
use super::types::{Errore, RecipientType, Tipo, Unsigned};

/// The emitting provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Descriptive name (`gestore-emittente`), e.g. "Alpha PEC S.p.A.".
    pub name: String,
    /// Provider PEC domain (right-hand side of ids and of posta-certificata@).
    pub domain: String,
}

impl Provider {
    /// `posta-certificata@<domain>`, the From of every generated message.
    pub fn mailbox(&self) -> String {
        format!("posta-certificata@{}", self.domain)
    }
}

/// A built busta di trasporto and what the rest of the flow needs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busta {
    /// Headers and entity to sign.
    pub unsigned: Unsigned,
    /// Its certification data.
    pub daticert: Daticert,
    /// `postacert.eml` exactly as embedded (CRLF): reused by consegna completa/breve.
    pub postacert: Vec<u8>,
    /// The original's data, for the receipts of this message.
    pub certified: Certified,
}

/// One MIME body part: header lines (CRLF-terminated) and encoded body.
pub(crate) struct Part {
    pub(crate) headers: String,
    pub(crate) body: Vec<u8>,
}

/// The human-readable part.
pub(crate) fn text_part(text: &str) -> Part {
    Part {
        headers: "Content-Type: text/plain; charset=\"UTF-8\"\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: quoted-printable\r\n".into(),
        body: quoted_printable(text).into_bytes(),
    }
}

/// `daticert.xml`, base64 as every provider sends it.
pub(crate) fn daticert_part(d: &Daticert) -> Part {
    Part {
        headers: "Content-Type: application/xml; name=\"daticert.xml\"\r\nContent-Disposition: inline; filename=\"daticert.xml\"\r\nContent-Transfer-Encoding: base64\r\n".into(),
        body: base64_lines(d.to_xml().as_bytes()).into_bytes(),
    }
}

/// `postacert.eml`; the CTE states what the bytes really are.
pub(crate) fn rfc822_part(msg: &[u8]) -> Part {
    let body = to_crlf(msg);
    let cte = if body.contains(&0) || body.split(|&b| b == b'\n').any(|l| l.len() > 999) {
        "binary"
    } else if body.iter().any(|&b| b >= 0x80) {
        "8bit"
    } else {
        "7bit"
    };
    Part {
        headers: format!("Content-Type: message/rfc822; name=\"postacert.eml\"\r\nContent-Disposition: inline; filename=\"postacert.eml\"\r\nContent-Transfer-Encoding: {cte}\r\n"),
        body,
    }
}

/// A `multipart/mixed` entity (its own Content-Type header, blank line, body).
pub(crate) fn mixed(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n")
            .as_bytes(),
    );
    for p in parts {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        out.extend_from_slice(p.headers.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.body);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// `"a@b" ("posta certificata")` lines, as the Aruba receipts list recipients.
pub(crate) fn recipient_lines(d: &[Destinatario]) -> String {
    d.iter()
        .map(|r| {
            let kind = match r.tipo {
                RecipientType::Certificato => "posta certificata",
                RecipientType::Esterno => "posta ordinaria",
            };
            format!("{} (\"{kind}\")\n", r.address)
        })
        .collect()
}

/// Build the busta di trasporto for an accepted submission. `destinatari`
/// are the To+Cc recipients classified by the caller (index lookup).
pub fn busta_di_trasporto(
    p: &Provider,
    ids: &dyn IdSource,
    when: &ItalianTime,
    original: &[u8],
    acc: &Accepted,
    identificativo: &str,
    destinatari: &[Destinatario],
) -> Busta {
    let (postacert, old_msgid) = swap_message_id(original, identificativo);
    let certified = Certified {
        mittente: acc.from.clone(),
        destinatari: destinatari.to_vec(),
        risposte: acc.risposte(),
        oggetto: acc.subject.clone(),
        identificativo: identificativo.to_string(),
        msgid: old_msgid.clone(),
        ricevuta: acc.receipt_type,
    };
    let mut daticert = certified.daticert(
        Tipo::PostaCertificata,
        Errore::Nessuno,
        &p.name,
        when.data_ora(),
    );
    daticert.ricevuta = Some(acc.receipt_type);

    let text = format!(
        "--Questo è un Messaggio di Posta Certificata--\n\n\
         Il giorno {} alle ore {} ({}) il messaggio con Oggetto\n\
         \"{}\" è stato inviato dal mittente \"{}\"\n\
         e indirizzato a:\n{}\
         Il messaggio originale è incluso in allegato, per aprirlo cliccare sul file \"postacert.eml\" \
         (nella webmail o in alcuni client di posta l'allegato potrebbe avere come nome l'oggetto del messaggio originale).\n\
         L'allegato daticert.xml contiene informazioni di servizio sulla trasmissione\n\
         L'identificativo univoco di questo messaggio è: {}\n",
        when.giorno(),
        when.ora(),
        when.zona(),
        certified.oggetto_str(),
        certified.mittente,
        recipient_lines(destinatari),
        identificativo
    );
    let b = boundary(ids);
    let entity = mixed(
        &b,
        &[
            text_part(&text),
            daticert_part(&daticert),
            rfc822_part(&postacert),
        ],
    );

    let mut h: Vec<(String, String)> = vec![
        ("X-Trasporto".into(), "posta-certificata".into()),
        ("Date".into(), when.rfc5322()),
        (
            "Subject".into(),
            prefixed_subject("POSTA CERTIFICATA: ", certified.oggetto_str()),
        ),
        ("From".into(), per_conto_di(&acc.from, &p.domain)),
        (
            "Reply-To".into(),
            acc.raw_reply_to.clone().unwrap_or_else(|| acc.from.clone()),
        ),
    ];
    if let Some(to) = &acc.raw_to {
        h.push(("To".into(), to.clone()));
    }
    if let Some(cc) = &acc.raw_cc {
        h.push(("Cc".into(), cc.clone()));
    }
    if let Some(m) = &old_msgid {
        h.push(("X-Riferimento-Message-ID".into(), m.clone()));
    }
    if let Some(t) = &acc.tipo_ricevuta {
        h.push(("X-TipoRicevuta".into(), t.clone()));
    }
    h.push(("Message-ID".into(), format!("<{identificativo}>")));
    h.push(("MIME-Version".into(), "1.0".into()));
    Busta {
        unsigned: Unsigned { headers: h, entity },
        daticert,
        postacert: to_crlf(&postacert),
        certified,
    }
}

fn raw_header(msg: &[u8], name: &str) -> Option<String> {
    let (fields, _) = raw_fields(msg);
    let f = fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))?;
    let v = String::from_utf8_lossy(f.raw_value(msg))
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    Some(v.trim_start_matches([' ', '\t']).to_string())
}

/// Build a busta di anomalia around a message that reached our reception
/// point but could not be certified; `reason` (Italian) is stated in the text.
pub fn busta_di_anomalia(
    p: &Provider,
    ids: &dyn IdSource,
    when: &ItalianTime,
    original: &[u8],
    reason: &str,
) -> Unsigned {
    let parsed = parse_header_block(original);
    let from = parsed
        .as_ref()
        .and_then(|m| addresses(m, "From").into_iter().next())
        .unwrap_or_default();
    let subject = parsed
        .as_ref()
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default();
    let recipients: Vec<String> = parsed
        .as_ref()
        .map(|m| {
            let mut v = addresses(m, "To");
            v.extend(addresses(m, "Cc"));
            v
        })
        .unwrap_or_default();
    let text = format!(
        "--Anomalia nel messaggio--\n\n\
         Il giorno {} alle ore {} ({}) è stato ricevuto il messaggio con Oggetto\n\
         \"{}\" inviato da \"{}\"\n\
         e indirizzato a:\n{}\
         Tali dati non sono stati certificati per il seguente errore:\n{}\n\
         Il messaggio originale è incluso in allegato (file \"postacert.eml\").\n",
        when.giorno(),
        when.ora(),
        when.zona(),
        subject,
        from,
        recipients
            .iter()
            .map(|r| format!("{r}\n"))
            .collect::<String>(),
        reason
    );
    let b = boundary(ids);
    let entity = mixed(&b, &[text_part(&text), rfc822_part(original)]);
    let mut h: Vec<(String, String)> = vec![
        ("X-Trasporto".into(), "errore".into()),
        ("Date".into(), when.rfc5322()),
        (
            "Subject".into(),
            prefixed_subject("ANOMALIA MESSAGGIO: ", &subject),
        ),
        ("From".into(), per_conto_di(&from, &p.domain)),
    ];
    match raw_header(original, "Reply-To") {
        Some(r) => h.push(("Reply-To".into(), r)),
        None if !from.is_empty() => h.push(("Reply-To".into(), from.clone())),
        None => {}
    }
    for name in ["To", "Cc"] {
        if let Some(v) = raw_header(original, name) {
            h.push((name.into(), v));
        }
    }
    if let Some(m) = raw_header(original, "Message-ID") {
        let m = m.replace("\r\n", "").trim().to_string();
        if !m.is_empty() {
            h.push(("X-Riferimento-Message-ID".into(), m));
        }
    }
    h.push((
        "Message-ID".into(),
        format!("<{}>", message_id(ids, when, &p.domain)),
    ));
    h.push(("MIME-Version".into(), "1.0".into()));
    Unsigned { headers: h, entity }
}

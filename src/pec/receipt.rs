//! Ricevute and avvisi (`pec-spec.md` §3, §3.3–3.6): one builder per message.
//!
//! Every builder returns an [`Unsigned`] (outer headers + `multipart/mixed`
//! entity) ready for `pec::smime` to sign. Common headers, in this order:
//! `From: posta-certificata@<domain>` (bare, like Aruba), `To`, `Date`,
//! `Subject: <PREFIX>: <original subject>`, `X-Ricevuta`, marker headers
//! (`X-VerificaSicurezza`), `X-Riferimento-Message-ID` (the original
//! Message-ID, when it had one), `Message-ID` (fresh), `MIME-Version`. The
//! daticert `data` is always the time of the event being certified, `when`.
//!
//! Choices where the rules leave room: the 12 h preavviso carries
//! `errore="nessuno"` and no `errore-esteso` (it is a warning); the 24 h one
//! carries `errore="altro"` and `errore-esteso` `5.4.1 - <Gestore> - …` saying
//! the message must be considered not delivered, the convention that
//! receivers (pagoPA and others) treat as final.

use super::clock::ItalianTime;
use super::daticert::Certified;
use super::envelope::{daticert_part, mixed, recipient_lines, rfc822_part, text_part, Provider};
use super::headers::prefixed_subject;
use super::ids::{boundary, message_id, IdSource};
use super::types::{Errore, ReceiptType, Tipo, Unsigned};

/// Who emits, and when.
#[derive(Clone, Copy)]
pub struct Emitter<'a> {
    /// The emitting provider.
    pub provider: &'a Provider,
    /// Id source for Message-IDs and boundaries.
    pub ids: &'a dyn IdSource,
    /// Time of the certified event.
    pub when: ItalianTime,
}

/// What an avvenuta-consegna carries besides text and daticert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consegna<'a> {
    /// `postacert.eml` as carried in the busta.
    Completa(&'a [u8]),
    /// `postacert.eml` with attachments replaced by hashes (`delivery::breve`).
    Breve(&'a [u8]),
    /// Nothing.
    Sintetica,
}

impl Consegna<'_> {
    /// The `<ricevuta tipo>` it corresponds to.
    pub fn receipt_type(&self) -> ReceiptType {
        match self {
            Consegna::Completa(_) => ReceiptType::Completa,
            Consegna::Breve(_) => ReceiptType::Breve,
            Consegna::Sintetica => ReceiptType::Sintetica,
        }
    }
}

/// Which time-limit notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preavviso {
    /// 12 h warning: no presa in carico nor consegna yet.
    Ore12,
    /// 24 h final notice: no consegna; the message is to be considered not delivered.
    Ore24,
}

/// `errore-esteso` for an unknown recipient (Nota 12 group "utente inesistente").
pub fn no_dest_esteso(gestore: &str) -> String {
    format!("5.1.1 - {gestore} - indirizzo non valido")
}

/// `errore-esteso` of the 24 h notice.
pub fn expiry_esteso(gestore: &str) -> String {
    format!(
        "5.4.1 - {gestore} - il messaggio non e' stato consegnato nelle 24 ore successive al suo invio e deve considerarsi non consegnato"
    )
}

#[allow(clippy::too_many_arguments)]
fn build(
    e: &Emitter<'_>,
    to: &str,
    prefix: &str,
    x_ricevuta: Tipo,
    extra: &[(&str, &str)],
    c: &Certified,
    text: &str,
    daticert: &super::daticert::Daticert,
    postacert: Option<&[u8]>,
) -> Unsigned {
    let mut h: Vec<(String, String)> = vec![
        ("From".into(), e.provider.mailbox()),
        ("To".into(), to.to_string()),
        ("Date".into(), e.when.rfc5322()),
        ("Subject".into(), prefixed_subject(prefix, c.oggetto_str())),
        ("X-Ricevuta".into(), x_ricevuta.as_str().into()),
    ];
    for (k, v) in extra {
        h.push((k.to_string(), v.to_string()));
    }
    if let Some(m) = &c.msgid {
        h.push(("X-Riferimento-Message-ID".into(), m.clone()));
    }
    h.push((
        "Message-ID".into(),
        format!("<{}>", message_id(e.ids, &e.when, &e.provider.domain)),
    ));
    h.push(("MIME-Version".into(), "1.0".into()));
    let b = boundary(e.ids);
    let mut parts = vec![text_part(text), daticert_part(daticert)];
    if let Some(pc) = postacert {
        parts.push(rfc822_part(pc));
    }
    Unsigned {
        headers: h,
        entity: mixed(&b, &parts),
    }
}

/// "Il giorno … il messaggio con Oggetto "…" inviato da "…"" (Aruba wording).
fn opening(e: &Emitter<'_>, c: &Certified) -> String {
    format!(
        "Il giorno {} alle ore {} ({}) il messaggio con Oggetto\n\"{}\" inviato da \"{}\"\n",
        e.when.giorno(),
        e.when.ora(),
        e.when.zona(),
        c.oggetto_str(),
        c.mittente
    )
}

const DATICERT_NOTE: &str =
    "L'allegato daticert.xml contiene informazioni di servizio sulla trasmissione\n";

/// Ricevuta di accettazione, to the sender.
pub fn accettazione(e: &Emitter<'_>, c: &Certified) -> Unsigned {
    let d = c.daticert(
        Tipo::Accettazione,
        Errore::Nessuno,
        &e.provider.name,
        e.when.data_ora(),
    );
    let text = format!(
        "-- Ricevuta di accettazione del messaggio --\n\n{}ed indirizzato a:\n{}è stato accettato dal sistema ed inoltrato.\nIdentificativo del messaggio: {}\n{DATICERT_NOTE}",
        opening(e, c),
        recipient_lines(&c.destinatari),
        c.identificativo
    );
    build(
        e,
        &c.mittente,
        "ACCETTAZIONE: ",
        Tipo::Accettazione,
        &[],
        c,
        &text,
        &d,
        None,
    )
}

/// Avviso di non accettazione, to the sender: `errore="altro"` (formal
/// checks) or, with `virus`, `errore="virus"` and the virus subject/marker.
pub fn non_accettazione(e: &Emitter<'_>, c: &Certified, reason: &str, virus: bool) -> Unsigned {
    let errore = if virus { Errore::Virus } else { Errore::Altro };
    let mut d = c.daticert(
        Tipo::NonAccettazione,
        errore,
        &e.provider.name,
        e.when.data_ora(),
    );
    d.errore_esteso = Some(reason.to_string());
    let text = format!(
        "-- Avviso di non accettazione --\n\n{}ed indirizzato a:\n{}non è stato accettato dal sistema per il seguente motivo:\n{}\nIl messaggio non è stato inoltrato ai destinatari.\nIdentificativo del messaggio: {}\n{DATICERT_NOTE}",
        opening(e, c),
        recipient_lines(&c.destinatari),
        reason,
        c.identificativo
    );
    let (prefix, extra): (&str, &[(&str, &str)]) = if virus {
        (
            "AVVISO DI NON ACCETTAZIONE PER VIRUS: ",
            &[("X-VerificaSicurezza", "errore")],
        )
    } else {
        ("AVVISO DI NON ACCETTAZIONE: ", &[])
    };
    build(
        e,
        &c.mittente,
        prefix,
        Tipo::NonAccettazione,
        extra,
        c,
        &text,
        &d,
        None,
    )
}

/// Ricevuta di presa in carico, to the sender provider's receipt mailbox;
/// `covered` are the busta's recipients served by the emitting provider.
pub fn presa_in_carico(
    e: &Emitter<'_>,
    c: &Certified,
    to_mailbox: &str,
    covered: &[String],
) -> Unsigned {
    let mut d = c.daticert(
        Tipo::PresaInCarico,
        Errore::Nessuno,
        &e.provider.name,
        e.when.data_ora(),
    );
    d.ricezione = covered.to_vec();
    let text = format!(
        "-- Ricevuta di presa in carico --\n\n{}è stato preso in carico dal sistema di {} per i destinatari:\n{}Identificativo del messaggio: {}\n{DATICERT_NOTE}",
        opening(e, c),
        e.provider.name,
        covered.iter().map(|r| format!("{r}\n")).collect::<String>(),
        c.identificativo
    );
    build(
        e,
        to_mailbox,
        "PRESA IN CARICO: ",
        Tipo::PresaInCarico,
        &[],
        c,
        &text,
        &d,
        None,
    )
}

/// Ricevuta di avvenuta consegna for one recipient, to the sender.
pub fn avvenuta_consegna(
    e: &Emitter<'_>,
    c: &Certified,
    recipient: &str,
    kind: Consegna<'_>,
) -> Unsigned {
    let mut d = c.daticert(
        Tipo::AvvenutaConsegna,
        Errore::Nessuno,
        &e.provider.name,
        e.when.data_ora(),
    );
    d.ricevuta = Some(kind.receipt_type());
    d.consegna = Some(recipient.to_string());
    let allegato = match kind {
        Consegna::Completa(_) => "Il messaggio originale è incluso in allegato, per aprirlo cliccare sul file \"postacert.eml\".\n",
        Consegna::Breve(_) => "Il messaggio originale è incluso in allegato (file \"postacert.eml\"); gli eventuali allegati sono stati sostituiti dalla loro impronta (hash).\n",
        Consegna::Sintetica => "",
    };
    let text = format!(
        "-- Ricevuta di avvenuta consegna del messaggio indirizzato a {recipient} --\n\n{}ed indirizzato a \"{recipient}\"\nè stato correttamente consegnato al destinatario.\nIdentificativo del messaggio: {}\n{allegato}{DATICERT_NOTE}",
        opening(e, c),
        c.identificativo
    );
    let pc = match kind {
        Consegna::Completa(b) | Consegna::Breve(b) => Some(b),
        Consegna::Sintetica => None,
    };
    build(
        e,
        &c.mittente,
        "CONSEGNA: ",
        Tipo::AvvenutaConsegna,
        &[],
        c,
        &text,
        &d,
        pc,
    )
}

/// Avviso di mancata consegna for one recipient, to the sender.
/// `errore_esteso` is `"<code> - <Gestore> - <text>"` (see [`no_dest_esteso`]).
pub fn errore_consegna(
    e: &Emitter<'_>,
    c: &Certified,
    recipient: &str,
    errore: Errore,
    errore_esteso: &str,
) -> Unsigned {
    let mut d = c.daticert(
        Tipo::ErroreConsegna,
        errore,
        &e.provider.name,
        e.when.data_ora(),
    );
    d.consegna = Some(recipient.to_string());
    d.errore_esteso = Some(errore_esteso.to_string());
    let text = format!(
        "-- Avviso di mancata consegna del messaggio indirizzato a {recipient} --\n\n{}ed indirizzato a \"{recipient}\"\nnon è stato consegnato a causa del seguente errore:\n{errore_esteso}\nIdentificativo del messaggio: {}\n{DATICERT_NOTE}",
        opening(e, c),
        c.identificativo
    );
    let (prefix, extra): (&str, &[(&str, &str)]) = if errore == Errore::Virus {
        (
            "AVVISO DI MANCATA CONSEGNA PER VIRUS: ",
            &[("X-VerificaSicurezza", "errore")],
        )
    } else {
        ("AVVISO DI MANCATA CONSEGNA: ", &[])
    };
    build(
        e,
        &c.mittente,
        prefix,
        Tipo::ErroreConsegna,
        extra,
        c,
        &text,
        &d,
        None,
    )
}

/// Avviso di mancata consegna per superamento dei tempi massimi (12 h or
/// 24 h) for one recipient, to the sender.
pub fn preavviso(e: &Emitter<'_>, c: &Certified, recipient: &str, stage: Preavviso) -> Unsigned {
    let errore = match stage {
        Preavviso::Ore12 => Errore::Nessuno,
        Preavviso::Ore24 => Errore::Altro,
    };
    let mut d = c.daticert(
        Tipo::PreavvisoErroreConsegna,
        errore,
        &e.provider.name,
        e.when.data_ora(),
    );
    d.consegna = Some(recipient.to_string());
    let body = match stage {
        Preavviso::Ore12 => "non è ancora stato preso in carico né consegnato dal gestore del destinatario entro 12 ore dall'invio.\nIl gestore del destinatario potrebbe non essere in grado di consegnarlo; un ulteriore avviso seguirà entro 24 ore dall'invio.\n".to_string(),
        Preavviso::Ore24 => {
            let esteso = expiry_esteso(&e.provider.name);
            let t = format!("non è stato consegnato entro 24 ore dall'invio.\nIl messaggio deve considerarsi NON CONSEGNATO.\n{esteso}\n");
            d.errore_esteso = Some(esteso);
            t
        }
    };
    let text = format!(
        "-- Avviso di mancata consegna per superamento dei tempi massimi --\n\n{}ed indirizzato a \"{recipient}\"\n{body}Identificativo del messaggio: {}\n{DATICERT_NOTE}",
        opening(e, c),
        c.identificativo
    );
    build(
        e,
        &c.mittente,
        "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: ",
        Tipo::PreavvisoErroreConsegna,
        &[],
        c,
        &text,
        &d,
        None,
    )
}

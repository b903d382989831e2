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

/// `errore-esteso` of the avviso di mancata consegna for a full mailbox
/// (RFC 3463 `5.2.2`: mailbox full).
pub fn full_box_esteso(gestore: &str) -> String {
    format!(
        "5.2.2 - {gestore} - casella del destinatario piena: lo spazio disponibile e' esaurito e il messaggio non e' stato consegnato"
    )
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

#[cfg(test)]
mod tests {
    //! Golden files: fixed clock and sequential ids, whole output compared
    //! byte for byte with `tests/golden/`. `UPDATE_GOLDEN=1` rewrites them.
    use super::*;
    use crate::pec::access::{check, Limits};
    use crate::pec::daticert::{Daticert, Destinatario};
    use crate::pec::delivery::breve;
    use crate::pec::envelope::{busta_di_anomalia, busta_di_trasporto, Busta};
    use crate::pec::ids::{identificativo, SequentialIds};
    use crate::pec::types::RecipientType;
    use std::path::PathBuf;

    /// 2018-11-13 16:39:27 +0100, the Aruba sample's consegna time.
    const T0: i64 = 1_542_123_567;

    const ORIGINAL: &[u8] = b"Received: from [127.0.0.1] by client\r\n\tfor <b@pec.beta.test>; Tue, 13 Nov 2018 16:39:26 +0100\r\nFrom: Mario Rossi <mario@pec.alpha.test>\r\nTo: Bianca <b@pec.beta.test>,\r\n  e@example.com\r\nCc: c@pec.alpha.test\r\nSubject: =?UTF-8?Q?Fattura_n=C2=B0_9_=E2=80=93_perch=C3=A9?=\r\nDate: Tue, 13 Nov 2018 16:39:26 +0100\r\nMessage-ID: <orig.1@client.example>\r\nX-TipoRicevuta: breve\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nIn allegato la fattura.\r\n--XX\r\nContent-Type: application/pdf; name=\"f.pdf\"\r\nContent-Disposition: attachment; filename=\"f.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8=\r\n--XX--\r\n";

    fn provider() -> Provider {
        Provider {
            name: "Alpha PEC S.p.A.".into(),
            domain: "pec.alpha.test".into(),
        }
    }

    fn flat(u: &Unsigned) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &u.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(&u.entity);
        out
    }

    fn golden(name: &str, got: &[u8]) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, got).unwrap();
            return;
        }
        let want = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
        assert!(
            want == got,
            "{} differs from the builder output (UPDATE_GOLDEN=1 rewrites it)",
            path.display()
        );
    }

    fn busta(ids: &SequentialIds) -> Busta {
        let p = provider();
        let when = ItalianTime::from_unix(T0);
        let rcpt: Vec<String> = ["b@pec.beta.test", "e@example.com", "c@pec.alpha.test"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let acc = check(
            ORIGINAL,
            "mario@pec.alpha.test",
            &rcpt,
            None,
            &Limits::default(),
        )
        .unwrap();
        let dest: Vec<Destinatario> = acc
            .recipients()
            .into_iter()
            .map(|a| Destinatario {
                tipo: if a.ends_with("example.com") {
                    RecipientType::Esterno
                } else {
                    RecipientType::Certificato
                },
                address: a,
            })
            .collect();
        let id = identificativo(ids, &when, &p.domain);
        busta_di_trasporto(&p, ids, &when, ORIGINAL, &acc, &id, &dest)
    }

    /// Every generated message, with a name, in a fixed order.
    fn all() -> Vec<(&'static str, Unsigned, Option<Daticert>)> {
        let ids = SequentialIds::default();
        let p = provider();
        let b = busta(&ids);
        let c = b.certified.clone();
        let at = |dt: i64| Emitter {
            provider: &p,
            ids: &ids,
            when: ItalianTime::from_unix(T0 + dt),
        };
        let short = breve(&b.postacert);
        let mut v: Vec<(&'static str, Unsigned)> = vec![
            ("busta", b.unsigned.clone()),
            ("accettazione", accettazione(&at(0), &c)),
            (
                "non-accettazione",
                non_accettazione(
                    &at(0),
                    &c,
                    "il campo Bcc (copia nascosta) non e' ammesso",
                    false,
                ),
            ),
            (
                "non-accettazione-virus",
                non_accettazione(&at(0), &c, "virus Eicar-Test-Signature", true),
            ),
            (
                "presa-in-carico",
                presa_in_carico(
                    &at(1),
                    &c,
                    "ricevute@pec.alpha.test",
                    &["b@pec.beta.test".to_string()],
                ),
            ),
            (
                "consegna-completa",
                avvenuta_consegna(
                    &at(2),
                    &c,
                    "b@pec.beta.test",
                    Consegna::Completa(&b.postacert),
                ),
            ),
            (
                "consegna-breve",
                avvenuta_consegna(&at(2), &c, "b@pec.beta.test", Consegna::Breve(&short)),
            ),
            (
                "consegna-sintetica",
                avvenuta_consegna(&at(2), &c, "c@pec.alpha.test", Consegna::Sintetica),
            ),
            (
                "errore-consegna",
                errore_consegna(
                    &at(2),
                    &c,
                    "c@pec.alpha.test",
                    Errore::NoDest,
                    &no_dest_esteso(&p.name),
                ),
            ),
            (
                "preavviso-12h",
                preavviso(&at(12 * 3600), &c, "b@pec.beta.test", Preavviso::Ore12),
            ),
            (
                "preavviso-24h",
                preavviso(&at(24 * 3600), &c, "b@pec.beta.test", Preavviso::Ore24),
            ),
        ];
        v.push((
            "anomalia",
            busta_di_anomalia(
                &p,
                &ids,
                &ItalianTime::from_unix(T0),
                ORIGINAL,
                "la firma digitale del messaggio non risulta attendibile",
            ),
        ));
        v.into_iter()
            .map(|(n, u)| {
                let d = extract_daticert(&flat(&u));
                (n, u, d)
            })
            .collect()
    }

    fn extract_daticert(msg: &[u8]) -> Option<Daticert> {
        use mail_parser::MimeHeaders;
        let m = crate::pec::headers::parse_message(msg).unwrap();
        let p = m
            .parts
            .iter()
            .find(|p| p.attachment_name() == Some("daticert.xml"))?;
        Some(Daticert::parse(p.contents()).unwrap())
    }

    #[test]
    fn golden_messages() {
        for (name, u, d) in all() {
            golden(&format!("{name}.eml"), &flat(&u));
            if let Some(d) = d {
                golden(&format!("{name}.daticert.xml"), d.to_xml().as_bytes());
            }
        }
    }

    #[test]
    fn daticert_fields_by_type() {
        let all = all();
        let get = |n: &str| all.iter().find(|x| x.0 == n).unwrap();
        let d = get("busta").2.clone().unwrap();
        assert_eq!(d.tipo, Tipo::PostaCertificata);
        assert_eq!(d.msgid.as_deref(), Some("<orig.1@client.example>"));
        assert_eq!(d.ricevuta, Some(ReceiptType::Breve));
        assert_eq!(d.oggetto.as_deref(), Some("Fattura n° 9 – perché"));
        assert_eq!(d.data.zona, "+0100");
        assert_eq!(d.destinatari.len(), 3);
        assert_eq!(d.destinatari[1].tipo, RecipientType::Esterno);
        let id = d.identificativo.clone();
        for (name, u, dc) in &all {
            if *name == "anomalia" {
                assert!(dc.is_none());
                assert_eq!(u.header("X-Trasporto"), Some("errore"));
                continue;
            }
            let dc = dc.as_ref().unwrap();
            assert_eq!(dc.identificativo, id, "{name}");
            if *name != "busta" {
                assert_eq!(u.header("X-Ricevuta"), Some(dc.tipo.as_str()), "{name}");
                assert_eq!(u.header("From"), Some("posta-certificata@pec.alpha.test"));
                assert_eq!(
                    u.header("X-Riferimento-Message-ID"),
                    Some("<orig.1@client.example>")
                );
            }
        }
        let e = get("errore-consegna").2.clone().unwrap();
        assert_eq!(e.errore, Errore::NoDest);
        assert!(e
            .errore_esteso
            .unwrap()
            .starts_with("5.1.1 - Alpha PEC S.p.A. - "));
        let f = get("preavviso-24h").2.clone().unwrap();
        assert!(f.errore_esteso.unwrap().starts_with("5.4.1"));
        assert_eq!(
            get("presa-in-carico").1.header("To"),
            Some("ricevute@pec.alpha.test")
        );
        assert_eq!(
            get("presa-in-carico").2.clone().unwrap().ricezione,
            vec!["b@pec.beta.test"]
        );
        assert_eq!(
            get("consegna-sintetica").2.clone().unwrap().ricevuta,
            Some(ReceiptType::Sintetica)
        );
        assert_eq!(get("preavviso-12h").2.clone().unwrap().data.ora, "04:39:27");
    }

    #[test]
    fn busta_shape() {
        let ids = SequentialIds::default();
        let b = busta(&ids);
        let u = &b.unsigned;
        let id = "pecd.20181113163927.T000001@pec.alpha.test";
        assert_eq!(u.header("Message-ID"), Some(format!("<{id}>").as_str()));
        assert_eq!(
            u.header("From"),
            Some("\"Per conto di: mario@pec.alpha.test\" <posta-certificata@pec.alpha.test>")
        );
        assert_eq!(
            u.header("To"),
            Some("Bianca <b@pec.beta.test>,\r\n  e@example.com")
        );
        assert_eq!(u.header("Reply-To"), Some("mario@pec.alpha.test"));
        assert_eq!(u.header("X-TipoRicevuta"), Some("breve"));
        assert_eq!(u.header("Date"), Some("Tue, 13 Nov 2018 16:39:27 +0100"));
        // postacert.eml: the original with only the Message-ID swap.
        let (swapped, _) = crate::pec::headers::swap_message_id(ORIGINAL, id);
        assert_eq!(b.postacert, swapped);
        let s = String::from_utf8_lossy(&b.postacert);
        assert!(s.contains(&format!("\r\nMessage-ID: <{id}>\r\n")));
        assert!(s.contains("X-Riferimento-Message-ID: <orig.1@client.example>\r\n\r\n--XX"));
        // The embedded bytes are exactly postacert.
        assert!(u
            .entity
            .windows(b.postacert.len())
            .any(|w| w == b.postacert.as_slice()));
        // CRLF throughout: no bare LF anywhere in the entity.
        assert!(!u.entity.windows(2).any(|w| w[0] != b'\r' && w[1] == b'\n'));
    }

    #[test]
    fn every_daticert_validates_against_the_dtd() {
        let dtd = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/daticert.dtd");
        assert!(dtd.exists(), "{} missing", dtd.display());
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        for (name, _, d) in all() {
            let Some(d) = d else { continue };
            seen.insert(d.tipo);
            let f = dir.path().join(format!("{name}.xml"));
            std::fs::write(&f, d.to_xml()).unwrap();
            let out = std::process::Command::new("xmllint")
                .arg("--noout")
                .arg("--dtdvalid")
                .arg(&dtd)
                .arg(&f)
                .output()
                .expect("xmllint must be installed");
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Every type we emit (rilevazione-virus is not built here).
        assert_eq!(seen.len(), 7, "{seen:?}");
    }
}

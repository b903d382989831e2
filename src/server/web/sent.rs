//! The sent view: each accepted message with one row per recipient, its
//! state derived from the signed receipts in the user's mailbox and from the
//! timers a verified presa in carico stopped; and the evidence bundle.

use serde::Serialize;

use crate::pec::classify::{classify, Kind};
use crate::pec::types::Tipo;
use crate::store::messages::SentMessage;

/// One recipient's state, as the API gives it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecipientState {
    /// The address.
    pub address: String,
    /// `certificato` or `esterno`.
    pub tipo: String,
    /// `accettato`, `preso-in-carico`, `consegnato`, `errore`, `preavviso`
    /// or `mancata-consegna`.
    pub state: String,
    /// When, ISO 8601 with the zone the provider certified.
    pub at: Option<String>,
    /// The web id of the receipt that says so (none for a presa in carico
    /// consumed by the provider).
    pub receipt: Option<String>,
    /// The certified error, for `errore` and `mancata-consegna`.
    pub error: Option<String>,
}

/// One stored receipt about a sent message.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// Web id.
    pub id: String,
    /// `X-Ricevuta` type.
    pub tipo: Tipo,
    /// Exact bytes.
    pub raw: Vec<u8>,
}

/// Recipients of a `messages` row: `a@x (certificato), b@y (esterno)`.
pub fn recipients_of(m: &SentMessage) -> Vec<(String, String)> {
    m.recipients
        .split(", ")
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.trim().rsplit_once(" (") {
            Some((a, t)) => (a.to_string(), t.trim_end_matches(')').to_string()),
            None => (s.trim().to_string(), String::new()),
        })
        .collect()
}

/// `dd/mm/yyyy`, `hh:mm:ss`, `+hhmm` as ISO 8601.
pub fn iso(giorno: &str, ora: &str, zona: &str) -> String {
    let p: Vec<&str> = giorno.split('/').collect();
    let date = if p.len() == 3 {
        format!("{}-{}-{}", p[2], p[1], p[0])
    } else {
        giorno.to_string()
    };
    let z = if zona.len() == 5 {
        format!("{}:{}", &zona[..3], &zona[3..])
    } else {
        zona.to_string()
    };
    format!("{date}T{ora}{z}")
}

/// ISO 8601 in Italian time for Unix milliseconds.
pub fn iso_ms(ms: i64) -> String {
    let t = crate::pec::clock::ItalianTime::from_unix(ms.div_euclid(1000));
    iso(&t.giorno(), &t.ora(), &t.zona())
}

fn rank(state: &str) -> u8 {
    match state {
        "accettato" => 0,
        "preso-in-carico" => 1,
        "preavviso" => 2,
        _ => 3,
    }
}

/// Every recipient's state from the stored receipts, the presa times and
/// the ordinary recipients not delivered for good (`esterno`: recipient,
/// Unix ms, error; they have no certified receipt).
pub fn states(
    m: &SentMessage,
    receipts: &[Receipt],
    presa: &[(String, i64)],
    esterno_failed: &[(String, i64, String)],
) -> Vec<RecipientState> {
    let accettazione = receipts.iter().find(|r| r.tipo == Tipo::Accettazione);
    let mut out: Vec<RecipientState> = recipients_of(m)
        .into_iter()
        .map(|(address, tipo)| RecipientState {
            address,
            tipo,
            state: "accettato".into(),
            at: Some(iso_ms(m.accepted_at)),
            receipt: accettazione.map(|r| r.id.clone()),
            error: None,
        })
        .collect();
    let mut set = |addr: &str,
                   state: &str,
                   at: Option<String>,
                   receipt: Option<String>,
                   error: Option<String>| {
        if let Some(r) = out
            .iter_mut()
            .find(|r| r.address.eq_ignore_ascii_case(addr))
        {
            // A final state is never overwritten by a later warning.
            if rank(state) > rank(&r.state) {
                *r = RecipientState {
                    address: r.address.clone(),
                    tipo: r.tipo.clone(),
                    state: state.into(),
                    at,
                    receipt,
                    error,
                };
            }
        }
    };
    for (addr, at) in presa {
        set(addr, "preso-in-carico", Some(iso_ms(*at)), None, None);
    }
    for (addr, at, error) in esterno_failed {
        set(addr, "errore", Some(iso_ms(*at)), None, Some(error.clone()));
    }
    for r in receipts {
        let pm = classify(&r.raw);
        let Some(d) = pm.daticert else { continue };
        let at = Some(iso(&d.data.giorno, &d.data.ora, &d.data.zona));
        let id = Some(r.id.clone());
        match r.tipo {
            Tipo::PresaInCarico => {
                for a in &d.ricezione {
                    set(a, "preso-in-carico", at.clone(), id.clone(), None);
                }
            }
            Tipo::AvvenutaConsegna => {
                if let Some(a) = &d.consegna {
                    set(a, "consegnato", at, id, None);
                }
            }
            Tipo::ErroreConsegna => {
                if let Some(a) = &d.consegna {
                    set(
                        a,
                        "errore",
                        at,
                        id,
                        d.errore_esteso.clone().or(Some(d.errore.as_str().into())),
                    );
                }
            }
            Tipo::PreavvisoErroreConsegna => {
                // The 24 h notice carries an error; the 12 h warning does not.
                let fin = d.errore != crate::pec::types::Errore::Nessuno
                    || d.errore_esteso
                        .as_deref()
                        .is_some_and(|e| e.trim_start().starts_with("5.4.1"));
                if let Some(a) = &d.consegna {
                    if fin {
                        set(a, "mancata-consegna", at, id, d.errore_esteso.clone());
                    } else {
                        set(a, "preavviso", at, id, None);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether a classified message is a receipt, and of which type.
pub fn receipt_tipo(raw: &[u8]) -> Option<Tipo> {
    match classify(raw).kind {
        Kind::Ricevuta(t) => Some(t),
        _ => None,
    }
}

fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The evidence zip: the original, every receipt and its daticert.xml, and a
/// verification report of each receipt (JSON and text).
pub fn evidence_zip(
    m: &SentMessage,
    original: Option<&[u8]>,
    receipts: &[Receipt],
    verify: &dyn Fn(&[u8]) -> crate::pec::verify::VerifyReport,
) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let add = |z: &mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>,
               name: &str,
               bytes: &[u8]|
     -> std::io::Result<()> {
        z.start_file(name, opts).map_err(std::io::Error::other)?;
        z.write_all(bytes)
    };
    if let Some(o) = original {
        add(&mut z, "messaggio-originale.eml", o)?;
    }
    let mut json = Vec::new();
    let mut text = String::new();
    text.push_str(&format!(
        "Identificativo: {}\nOggetto: {}\nMittente: {}\nDestinatari: {}\n\n",
        m.identificativo, m.subject, m.sender, m.recipients
    ));
    for (i, r) in receipts.iter().enumerate() {
        let pm = classify(&r.raw);
        let who = pm
            .daticert
            .as_ref()
            .and_then(|d| d.consegna.clone())
            .map(|c| format!("-{}", safe(&c)))
            .unwrap_or_default();
        let base = format!("{:02}-{}{who}", i + 1, r.tipo.as_str());
        add(&mut z, &format!("{base}.eml"), &r.raw)?;
        if let Some(x) = super::view::daticert_bytes(&r.raw) {
            add(&mut z, &format!("{base}-daticert.xml"), &x)?;
        }
        let rep = verify(&r.raw);
        text.push_str(&format!("== {base}.eml ==\n{}\n", rep.to_text()));
        json.push(serde_json::json!({"file": format!("{base}.eml"), "report": rep}));
    }
    let json = serde_json::json!({
        "identificativo": m.identificativo,
        "msgid": m.msgid,
        "subject": m.subject,
        "sender": m.sender,
        "recipients": recipients_of(m),
        "receipts": json,
    });
    add(
        &mut z,
        "verifica.json",
        serde_json::to_string_pretty(&json)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    add(&mut z, "verifica.txt", text.as_bytes())?;
    add(
        &mut z,
        "LEGGIMI.txt",
        b"Ogni ricevuta (*.eml) e' firmata S/MIME dal gestore che l'ha emessa.\n\
Verifica indipendente: openssl smime -verify -in FILE.eml -CAfile CA.pem -out /dev/null\n\
(CA.pem: il certificato dell'autorita' che ha emesso il certificato del gestore).\n\
Each receipt is S/MIME-signed by its provider; check it with the command above.\n",
    )?;
    let c = z.finish().map_err(std::io::Error::other)?;
    Ok(c.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_and_recipients() {
        assert_eq!(
            iso("01/12/2026", "15:24:07", "+0100"),
            "2026-12-01T15:24:07+01:00"
        );
        let m = SentMessage {
            identificativo: "i@x".into(),
            msgid: Some("<m@x>".into()),
            sender: "a@x".into(),
            subject: "s".into(),
            recipients: "b@x (certificato), c@y (esterno)".into(),
            receipt_type: "completa".into(),
            accepted_at: 0,
        };
        assert_eq!(
            recipients_of(&m),
            [
                ("b@x".to_string(), "certificato".to_string()),
                ("c@y".to_string(), "esterno".to_string())
            ]
        );
        let s = states(&m, &[], &[("b@x".into(), 1000)], &[]);
        assert_eq!(s[0].state, "preso-in-carico");
        assert_eq!(s[1].state, "accettato");
        let s = states(
            &m,
            &[],
            &[],
            &[("c@y".into(), 2000, "5.4.4 no route".into())],
        );
        assert_eq!(s[0].state, "accettato");
        assert_eq!(s[1].state, "errore");
        assert_eq!(s[1].error.as_deref(), Some("5.4.4 no route"));
    }
}

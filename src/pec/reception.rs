//! The reception point decision (`pec-spec.md` §5.2) as a pure function.
//!
//! Inputs are the received bytes, the provider index, the trust store, our
//! domains and "now"; the output says whether the message is a valid busta
//! (→ presa in carico + delivery), a valid receipt (→ delivery), or must be
//! wrapped in a busta di anomalia, with a reason in Italian (for the envelope
//! text) and English (for the log). Virus scanning (step 1 of §5.2) is the
//! caller's business and happens before this.
//!
//! Checks, in order: the message is S/MIME signed and the signature verifies
//! (digest, signature, chain to `trust` at signing time); the signer's SHA-1 is
//! a `providerCertificateHash` of a provider in the index that also manages
//! the domain of the `From` address (`posta-certificata@<domain>`); the
//! message is a well-formed PEC object (busta with daticert + postacert, or a
//! known `X-Ricevuta` with a daticert of the same tipo); its unsigned outer
//! headers say what its daticert certifies ([`super::consistency`]). Only the
//! domain of `From` is compared with the signer, not its local part, because
//! providers differ there.
//!
//! A valid busta is certified only for the recipients its daticert lists:
//! [`split_recipients`] tells the caller which SMTP recipients those are; any
//! other recipient (a replay under another `RCPT TO`) gets
//! [`AnomalyReason::NotAddressed`].

use std::fmt;

use crate::pec::smime::Trust;

use super::classify::{classify, domain_of, Kind, PecMessage};
use super::consistency::{self, CheckOptions, Mismatch};
use super::index::{Provider, ProviderIndex};
use super::smime::{verify, Verified, VerifyError, VerifyOptions};
use super::types::Tipo;

/// Everything the decision depends on.
#[derive(Clone, Copy)]
pub struct ReceptionInput<'a> {
    /// The message as received (after the SMTP dot-unstuffing).
    pub raw: &'a [u8],
    /// Provider index snapshot.
    pub index: &'a ProviderIndex,
    /// `[trust] ca`; `None` checks integrity only (tests, tools).
    pub trust: Option<&'a Trust>,
    /// Our PEC domains (to list the local recipients of a busta).
    pub our_domains: &'a [String],
    /// Current time, Unix seconds.
    pub now: i64,
    /// Revocation of signer certificates (`[trust] revocation`); `None`
    /// checks none.
    pub revocation: Option<&'a dyn crate::pec::revocation::RevocationCheck>,
}

/// Why a message becomes a busta di anomalia.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnomalyReason {
    /// No PEC marker headers and no S/MIME signature: ordinary mail.
    NotPec,
    /// PEC headers but no signature.
    NotSigned(String),
    /// Signature present but unusable or wrong.
    BadSignature(VerifyError),
    /// Signer certificate does not chain to a trusted CA, or expired.
    Untrusted(VerifyError),
    /// Signer certificate revoked before the signing time.
    Revoked(VerifyError),
    /// Signer's fingerprint is not in the provider index.
    SignerNotInIndex(String),
    /// Signer is a known provider, but not the one managing the `From` domain.
    DomainMismatch {
        /// Provider that signed.
        provider: String,
        /// Domain of `From`.
        domain: String,
    },
    /// Signer is a known provider speaking for addresses it does not serve:
    /// a busta's sender, or the recipients a receipt certifies.
    NotServed {
        /// Provider that signed.
        provider: String,
        /// What the message certifies about them (`mittente`, `consegna`, `ricezione`).
        field: &'static str,
        /// The addresses in domains the provider does not manage.
        addresses: Vec<String>,
    },
    /// A busta certifying one of our own users as its sender reached us from
    /// outside: our users' messages never leave through another provider.
    OwnSender(String),
    /// A receipt about a message whose sender is not one of our users: no
    /// message of ours is concerned, so it certifies nothing here.
    NotOurMessage(String),
    /// Signed by a provider but not a well-formed PEC object.
    Malformed(Vec<String>),
    /// Nested deeper than any parser here may follow
    /// ([`crate::pec::mime::check_nesting`]); never judged further.
    TooDeep,
    /// The unsigned outer headers differ from the signed daticert.
    HeaderMismatch(Vec<Mismatch>),
    /// A valid busta reached SMTP recipients its daticert does not list.
    NotAddressed(Vec<String>),
}

impl AnomalyReason {
    /// Italian text for the anomaly envelope ("…per il seguente errore: <text>").
    pub fn italian(&self) -> String {
        match self {
            AnomalyReason::NotPec => "messaggio non di posta certificata".into(),
            AnomalyReason::NotSigned(_) => "firma non presente o non autentica".into(),
            AnomalyReason::BadSignature(_) => {
                "la firma digitale del messaggio non risulta valida (messaggio alterato o firma non autentica)".into()
            }
            AnomalyReason::Untrusted(_) => {
                "la firma digitale del messaggio non risulta attendibile".into()
            }
            AnomalyReason::Revoked(_) => {
                "il certificato di firma del gestore mittente risulta revocato".into()
            }
            AnomalyReason::SignerNotInIndex(_) => {
                "il firmatario non risulta nell'indice dei gestori di posta certificata".into()
            }
            AnomalyReason::DomainMismatch { domain, .. } => format!(
                "dominio mittente {domain} non gestito dal gestore che ha firmato il messaggio"
            ),
            AnomalyReason::NotServed {
                field: "mittente",
                addresses,
                ..
            } => format!(
                "mittente {} non gestito dal gestore che ha firmato il messaggio",
                addresses.join(", ")
            ),
            AnomalyReason::NotServed { addresses, .. } => format!(
                "il gestore che ha firmato la ricevuta non gestisce {}",
                addresses.join(", ")
            ),
            AnomalyReason::OwnSender(a) => format!(
                "il mittente {a} e' un utente di questo gestore: il messaggio non puo' provenire da un altro gestore"
            ),
            AnomalyReason::NotOurMessage(a) => format!(
                "ricevuta relativa a un messaggio il cui mittente {a} non e' un utente di questo gestore"
            ),
            AnomalyReason::Malformed(p) => {
                format!("messaggio di posta certificata non conforme ({})", p.join("; "))
            }
            AnomalyReason::TooDeep => {
                "struttura MIME del messaggio annidata oltre il limite consentito".into()
            }
            AnomalyReason::HeaderMismatch(m) => format!(
                "le intestazioni del messaggio ({}) non corrispondono ai dati di certificazione",
                m.iter().map(|m| m.header).collect::<Vec<_>>().join(", ")
            ),
            AnomalyReason::NotAddressed(_) => {
                "il destinatario non risulta tra i destinatari del messaggio di posta certificata"
                    .into()
            }
        }
    }

    /// English text for the log.
    pub fn english(&self) -> String {
        match self {
            AnomalyReason::NotPec => "not a PEC message (ordinary mail, unsigned)".into(),
            AnomalyReason::NotSigned(s) => format!("PEC headers but no S/MIME signature: {s}"),
            AnomalyReason::BadSignature(e)
            | AnomalyReason::Untrusted(e)
            | AnomalyReason::Revoked(e) => e.to_string(),
            AnomalyReason::SignerNotInIndex(fp) => {
                format!("signer certificate SHA-1 {fp} is not in the provider index")
            }
            AnomalyReason::DomainMismatch { provider, domain } => {
                format!("From domain {domain} is not managed by the signing provider {provider:?}")
            }
            AnomalyReason::NotServed {
                provider,
                field,
                addresses,
            } => format!(
                "{field} {} not in a domain managed by the signing provider {provider:?}",
                addresses.join(", ")
            ),
            AnomalyReason::OwnSender(a) => {
                format!("busta from outside whose sender {a} is one of our users")
            }
            AnomalyReason::NotOurMessage(a) => {
                format!("receipt about a message whose sender {a} is not one of our users")
            }
            AnomalyReason::Malformed(p) => format!("malformed PEC object: {}", p.join("; ")),
            AnomalyReason::TooDeep => format!(
                "MIME structure nested deeper than {} messages",
                crate::pec::mime::MAX_NESTED_MESSAGES
            ),
            AnomalyReason::HeaderMismatch(m) => format!(
                "outer headers differ from daticert: {}",
                m.iter()
                    .map(Mismatch::english)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            AnomalyReason::NotAddressed(r) => format!(
                "valid busta, but {} not among its daticert destinatari",
                r.join(", ")
            ),
        }
    }
}

impl fmt::Display for AnomalyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.english())
    }
}

/// Outcome of the reception point checks.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Valid busta di trasporto: send a presa in carico, hand to delivery.
    Busta {
        /// The classified message.
        message: Box<PecMessage>,
        /// Signature facts.
        verified: Box<Verified>,
        /// Name of the sender's provider (from the index).
        provider: String,
        /// Where the presa in carico goes (`mailReceipt`).
        receipt_mailbox: String,
        /// Recipients of the busta (daticert destinatari) in our domains.
        local_recipients: Vec<String>,
    },
    /// Valid receipt or notice: hand to delivery (or consume a presa in carico).
    Receipt {
        /// Its `X-Ricevuta` type.
        tipo: Tipo,
        /// The classified message.
        message: Box<PecMessage>,
        /// Signature facts.
        verified: Box<Verified>,
        /// Name of the emitting provider.
        provider: String,
    },
    /// Not decidable now (no revocation source answered and `soft_fail`
    /// is off): neither accepted nor an anomaly; try again later.
    Postpone {
        /// Why, for the log.
        reason: String,
    },
    /// Anything else: wrap in a busta di anomalia.
    Anomaly {
        /// Why.
        reason: AnomalyReason,
        /// The classified message (for subject, From, recipients).
        message: Box<PecMessage>,
    },
}

/// Decide what the reception point does with `input.raw`.
pub fn receive(input: &ReceptionInput) -> Verdict {
    let message = classify(input.raw);
    let anomaly = |reason: AnomalyReason, message: PecMessage| Verdict::Anomaly {
        reason,
        message: Box::new(message),
    };
    // Before anything parses the body: a busta di anomalia wraps the bytes
    // without reading them, and nothing downstream certifies such a message.
    if crate::pec::mime::check_nesting(input.raw).is_err() {
        return anomaly(AnomalyReason::TooDeep, message);
    }
    let opts = VerifyOptions {
        trust: input.trust,
        now: input.now,
        revocation: input.revocation,
    };
    let verified = match verify(input.raw, &opts) {
        Ok(v) => v,
        Err(VerifyError::NotSigned(s)) => {
            let reason = if message.kind == Kind::Ordinary {
                AnomalyReason::NotPec
            } else {
                AnomalyReason::NotSigned(s)
            };
            return anomaly(reason, message);
        }
        Err(e @ (VerifyError::Untrusted(_) | VerifyError::Expired(_))) => {
            return anomaly(AnomalyReason::Untrusted(e), message)
        }
        Err(e @ VerifyError::Revoked(_)) => return anomaly(AnomalyReason::Revoked(e), message),
        Err(e @ VerifyError::RevocationUnavailable(_)) => {
            return Verdict::Postpone {
                reason: e.to_string(),
            }
        }
        Err(e) => return anomaly(AnomalyReason::BadSignature(e), message),
    };
    let Some(provider) = input.index.provider_by_sha1(&verified.sha1) else {
        return anomaly(
            AnomalyReason::SignerNotInIndex(verified.sha1_fingerprint.clone()),
            message,
        );
    };
    if let Err(reason) = authority(provider, &message) {
        return anomaly(reason, message);
    }
    match message.kind {
        Kind::Busta | Kind::Ricevuta(_) if message.is_well_formed() => {}
        Kind::Ordinary if message.problems.is_empty() => {
            return anomaly(
                AnomalyReason::Malformed(vec!["no X-Trasporto or X-Ricevuta header".into()]),
                message,
            )
        }
        Kind::Anomalia => {
            let mut p = message.problems.clone();
            p.insert(
                0,
                "a busta di anomalia is never relayed between providers".into(),
            );
            return anomaly(AnomalyReason::Malformed(p), message);
        }
        _ => {
            let p = message.problems.clone();
            return anomaly(AnomalyReason::Malformed(p), message);
        }
    }
    let mismatches = consistency::check(input.raw, &message, CheckOptions::default());
    if !mismatches.is_empty() {
        return anomaly(AnomalyReason::HeaderMismatch(mismatches), message);
    }
    if let Some(reason) = foreign_to_us(&message, input.our_domains) {
        return anomaly(reason, message);
    }
    let provider_name = provider.name.clone();
    match message.kind {
        Kind::Ricevuta(tipo) => Verdict::Receipt {
            tipo,
            message: Box::new(message),
            verified: Box::new(verified),
            provider: provider_name,
        },
        _ => {
            let local_recipients = message
                .daticert
                .as_ref()
                .map(|d| {
                    d.destinatari
                        .iter()
                        .map(|r| r.address.clone())
                        .filter(|a| {
                            domain_of(a).is_some_and(|d| {
                                input.our_domains.iter().any(|o| o.eq_ignore_ascii_case(&d))
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            Verdict::Busta {
                message: Box::new(message),
                verified: Box::new(verified),
                provider: provider_name,
                receipt_mailbox: provider.receipt_mailbox.clone(),
                local_recipients,
            }
        }
    }
}

/// Whether `provider`, the signer by the index, may certify what `message`
/// says (`pec-spec.md` §5.2 step 2, the provider index): a provider signs
/// only as itself (the `From` domain), certifies a busta only for a sender
/// in its own domains, and a receipt only about recipients it serves — a
/// presa in carico or virus notice for its `ricezione`, a consegna for its
/// `consegna`. An errore-consegna or preavviso may also come from the
/// sender's own provider (a relay refused, a time limit passed), which
/// speaks for its `mittente`. The reception point and the verifier (`pecd
/// verify`, the webmail) both judge by this.
pub fn authority(provider: &Provider, message: &PecMessage) -> Result<(), AnomalyReason> {
    let domain = message
        .from_address
        .as_deref()
        .and_then(domain_of)
        .unwrap_or_default();
    if !provider.manages(&domain) {
        return Err(AnomalyReason::DomainMismatch {
            provider: provider.name.clone(),
            domain,
        });
    }
    let Some(d) = &message.daticert else {
        return Ok(());
    };
    let unserved = |addresses: &[&str]| -> Vec<String> {
        addresses
            .iter()
            .filter(|a| !domain_of(a).is_some_and(|dom| provider.manages(&dom)))
            .map(|a| a.trim().to_string())
            .collect()
    };
    let consegna: Vec<&str> = d.consegna.as_deref().into_iter().collect();
    let ricezione: Vec<&str> = d.ricezione.iter().map(String::as_str).collect();
    let mittente = [d.mittente.as_str()];
    let (field, addresses) = match message.kind {
        Kind::Busta => ("mittente", unserved(&mittente)),
        Kind::Ricevuta(Tipo::PresaInCarico | Tipo::RilevazioneVirus) => {
            ("ricezione", unserved(&ricezione))
        }
        Kind::Ricevuta(Tipo::AvvenutaConsegna) => ("consegna", unserved(&consegna)),
        Kind::Ricevuta(Tipo::ErroreConsegna | Tipo::PreavvisoErroreConsegna) => {
            let not_consegna = unserved(&consegna);
            if not_consegna.is_empty() || unserved(&mittente).is_empty() {
                return Ok(());
            }
            ("consegna", not_consegna)
        }
        Kind::Ricevuta(_) => ("mittente", unserved(&mittente)),
        Kind::Anomalia | Kind::Ordinary => return Ok(()),
    };
    if addresses.is_empty() {
        Ok(())
    } else {
        Err(AnomalyReason::NotServed {
            provider: provider.name.clone(),
            field,
            addresses,
        })
    }
}

/// What makes a message from another provider concern nobody here: a busta
/// whose sender is one of ours (our users' messages are delivered here
/// without leaving), or a receipt about a message none of our users sent
/// (no receipt reaches a user of ours for a message that did not leave from us).
fn foreign_to_us(message: &PecMessage, our_domains: &[String]) -> Option<AnomalyReason> {
    let d = message.daticert.as_ref()?;
    let ours = domain_of(&d.mittente)
        .is_some_and(|dom| our_domains.iter().any(|o| o.eq_ignore_ascii_case(&dom)));
    match message.kind {
        Kind::Busta if ours => Some(AnomalyReason::OwnSender(d.mittente.trim().to_string())),
        Kind::Ricevuta(_) if !ours => {
            Some(AnomalyReason::NotOurMessage(d.mittente.trim().to_string()))
        }
        _ => None,
    }
}

/// The SMTP recipients of a valid busta split into those its daticert lists
/// (`local_recipients` of [`Verdict::Busta`]: delivered as PEC, named in
/// receipts) and the others (an anomaly each), both in envelope order.
pub fn split_recipients(envelope: &[String], listed: &[String]) -> (Vec<String>, Vec<String>) {
    envelope.iter().cloned().partition(|r| {
        listed
            .iter()
            .any(|l| l.trim().eq_ignore_ascii_case(r.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{generate_ca, generate_signing, CertKey};
    use crate::pec::daticert::{DataOra, Daticert, Destinatario};
    use crate::pec::index::Provider;
    use crate::pec::mime::encode_base64_lines;
    use crate::pec::smime::tests::samples;
    use crate::pec::smime::tests::tests_now;
    use crate::pec::smime::{cert_sha1, trust_store_from_pem, Signer};
    use crate::pec::types::{Errore, ReceiptType, RecipientType, Unsigned};

    fn daticert(tipo: Tipo) -> Daticert {
        Daticert {
            tipo,
            errore: Errore::Nessuno,
            mittente: "alice@pec.alpha.test".into(),
            destinatari: vec![
                Destinatario {
                    address: "bob@pec.beta.test".into(),
                    tipo: RecipientType::Certificato,
                },
                Destinatario {
                    address: "carl@example.org".into(),
                    tipo: RecipientType::Esterno,
                },
            ],
            risposte: "alice@pec.alpha.test".into(),
            oggetto: Some("prova".into()),
            gestore_emittente: "Alpha PEC".into(),
            data: DataOra {
                zona: "+0100".into(),
                giorno: "01/02/2026".into(),
                ora: "10:00:00".into(),
            },
            identificativo: "opec1.20260201100000.1.1@pec.alpha.test".into(),
            msgid: Some("<orig@alpha>".into()),
            ricevuta: Some(ReceiptType::Completa),
            consegna: None,
            ricezione: vec![],
            errore_esteso: None,
        }
    }

    fn busta(signer: &Signer, with_postacert: bool) -> Vec<u8> {
        let xml = daticert(Tipo::PostaCertificata).to_xml();
        let mut e = String::from("Content-Type: multipart/mixed; boundary=\"mixed\"\r\n\r\n--mixed\r\nContent-Type: text/plain\r\n\r\nMessaggio di posta certificata\r\n--mixed\r\nContent-Type: application/xml; name=\"daticert.xml\"\r\nContent-Disposition: inline; filename=\"daticert.xml\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
        e.push_str(&String::from_utf8(encode_base64_lines(xml.as_bytes(), 76)).unwrap());
        if with_postacert {
            e.push_str("--mixed\r\nContent-Type: message/rfc822; name=\"postacert.eml\"\r\nContent-Disposition: inline; filename=\"postacert.eml\"\r\n\r\nFrom: alice@pec.alpha.test\r\nTo: bob@pec.beta.test\r\nSubject: prova\r\n\r\nciao\r\n");
        }
        e.push_str("--mixed--\r\n");
        let msg = Unsigned {
            headers: vec![
                ("X-Trasporto".into(), "posta-certificata".into()),
                ("Subject".into(), "POSTA CERTIFICATA: prova".into()),
                (
                    "From".into(),
                    "\"Per conto di: alice@pec.alpha.test\" <posta-certificata@pec.alpha.test>"
                        .into(),
                ),
                ("To".into(), "bob@pec.beta.test, carl@example.org".into()),
                ("X-Riferimento-Message-ID".into(), "<orig@alpha>".into()),
                (
                    "Message-ID".into(),
                    "<opec1.20260201100000.1.1@pec.alpha.test>".into(),
                ),
            ],
            entity: e.into_bytes(),
        };
        signer.sign(&msg, "----sig").unwrap()
    }

    fn signer_of(ck: &CertKey) -> Signer {
        Signer::from_pem(&ck.cert_pem(), &ck.key_pem(), b"").unwrap()
    }

    fn index_with(name: &str, domain: &str, ck: &CertKey) -> Provider {
        Provider {
            name: name.into(),
            domains: vec![domain.into()],
            receipt_mailbox: format!("posta-certificata@{domain}"),
            sha1: vec![cert_sha1(&ck.cert).unwrap()],
            certificate_der: None,
        }
    }

    #[test]
    fn decisions() {
        let ca = generate_ca("Test CA").unwrap();
        let alpha = generate_signing(&ca, "Alpha PEC", "pec.alpha.test").unwrap();
        let gamma = generate_signing(&ca, "Gamma PEC", "pec.gamma.test").unwrap();
        let rogue_ca = generate_ca("Rogue CA").unwrap();
        let rogue = generate_signing(&rogue_ca, "Alpha PEC", "pec.alpha.test").unwrap();
        let index = ProviderIndex {
            providers: vec![
                index_with("Alpha PEC", "pec.alpha.test", &alpha),
                index_with("Gamma PEC", "pec.gamma.test", &gamma),
                index_with("Rogue", "pec.rogue.test", &rogue),
            ],
        };
        let store = trust_store_from_pem(&[&ca.cert_pem()]).unwrap();
        let ours = vec!["pec.beta.test".to_string()];
        let run = |raw: &[u8]| {
            receive(&ReceptionInput {
                revocation: None,
                raw,
                index: &index,
                trust: Some(&store),
                our_domains: &ours,
                now: tests_now(),
            })
        };

        let good = busta(&signer_of(&alpha), true);
        match run(&good) {
            Verdict::Busta {
                provider,
                receipt_mailbox,
                local_recipients,
                message,
                ..
            } => {
                assert_eq!(provider, "Alpha PEC");
                assert_eq!(receipt_mailbox, "posta-certificata@pec.alpha.test");
                assert_eq!(local_recipients, vec!["bob@pec.beta.test"]);
                assert_eq!(message.kind, Kind::Busta);
            }
            v => panic!("expected busta, got {v:?}"),
        }

        let reason = |v: Verdict| match v {
            Verdict::Anomaly { reason, .. } => reason,
            v => panic!("expected anomaly, got {v:?}"),
        };
        assert_eq!(
            reason(run(b"From: a@b.it\r\nSubject: hi\r\n\r\nhello\r\n")),
            AnomalyReason::NotPec
        );
        let mut altered = good.clone();
        let p = altered.windows(7).position(|w| w == b"Messagg").unwrap();
        altered[p] = b'm';
        assert_eq!(
            reason(run(&altered)),
            AnomalyReason::BadSignature(VerifyError::DigestMismatch)
        );
        assert!(matches!(
            reason(run(&busta(&signer_of(&rogue), true))),
            AnomalyReason::Untrusted(_)
        ));
        // trusted CA, but the signer is in the index for another domain
        assert!(matches!(
            reason(run(&busta(&signer_of(&gamma), true))),
            AnomalyReason::DomainMismatch { .. }
        ));
        // trusted CA, signer not in the index
        let delta = generate_signing(&ca, "Delta", "pec.alpha.test").unwrap();
        assert!(matches!(
            reason(run(&busta(&signer_of(&delta), true))),
            AnomalyReason::SignerNotInIndex(_)
        ));
        // well signed but no postacert
        let r = reason(run(&busta(&signer_of(&alpha), false)));
        assert!(
            matches!(&r, AnomalyReason::Malformed(p) if p[0].contains("postacert")),
            "{r:?}"
        );
        assert!(r.italian().contains("non conforme"));

        // The signature still verifies once an outer header is changed,
        // but the busta no longer says what it certifies.
        let swap = |from: &str, to: &str| {
            let s = String::from_utf8(good.clone()).unwrap();
            assert!(s.contains(from), "{from}");
            s.replacen(from, to, 1).into_bytes()
        };
        for (bytes, header) in [
            (
                swap(
                    "Subject: POSTA CERTIFICATA: prova",
                    "Subject: POSTA CERTIFICATA: paga subito",
                ),
                "Subject",
            ),
            (
                swap("Per conto di: alice@", "Per conto di: direttore@"),
                "From",
            ),
            (
                swap("To: bob@pec.beta.test, ", "To: carol@pec.beta.test, "),
                "To/Cc",
            ),
            (
                swap("Message-ID: <opec1.", "Message-ID: <opec2."),
                "Message-ID",
            ),
        ] {
            match reason(run(&bytes)) {
                AnomalyReason::HeaderMismatch(m) => {
                    assert_eq!(m.len(), 1, "{m:?}");
                    assert_eq!(m[0].header, header);
                    let r = AnomalyReason::HeaderMismatch(m);
                    assert!(r.english().contains(header), "{}", r.english());
                    assert!(r.italian().contains(header), "{}", r.italian());
                }
                r => panic!("{header}: expected a header mismatch, got {r:?}"),
            }
        }
    }

    #[test]
    fn a_provider_speaks_only_for_what_it_serves() {
        let beta = Provider {
            name: "Beta".into(),
            domains: vec!["pec.beta.test".into()],
            receipt_mailbox: String::new(),
            sha1: vec![],
            certificate_der: None,
        };
        let judge = |kind: Kind, f: &dyn Fn(&mut Daticert)| {
            let mut m = classify(b"From: posta-certificata@pec.beta.test\r\n\r\n");
            let mut d = daticert(Tipo::PostaCertificata);
            d.mittente = "bob@pec.beta.test".into();
            f(&mut d);
            m.kind = kind;
            m.daticert = Some(d);
            authority(&beta, &m).map_err(|r| r.english())
        };
        let rcpt = |k: Tipo| Kind::Ricevuta(k);
        // A busta: only for its own senders.
        assert!(judge(Kind::Busta, &|_| {}).is_ok());
        let e = judge(Kind::Busta, &|d| d.mittente = "alice@pec.alpha.test".into()).unwrap_err();
        assert!(e.contains("mittente alice@pec.alpha.test"), "{e}");
        // Receipts: about the recipients it serves.
        let at_delta = |d: &mut Daticert| {
            d.mittente = "alice@pec.alpha.test".into();
            d.consegna = Some("dan@pec.delta.test".into());
            d.ricezione = vec!["bob@pec.beta.test".into(), "dan@pec.delta.test".into()];
        };
        let at_beta = |d: &mut Daticert| {
            d.mittente = "alice@pec.alpha.test".into();
            d.consegna = Some("bob@pec.beta.test".into());
            d.ricezione = vec!["bob@pec.beta.test".into()];
        };
        for k in [
            Tipo::AvvenutaConsegna,
            Tipo::PresaInCarico,
            Tipo::RilevazioneVirus,
            Tipo::ErroreConsegna,
            Tipo::PreavvisoErroreConsegna,
        ] {
            assert!(judge(rcpt(k), &at_beta).is_ok(), "{k:?}");
            let e = judge(rcpt(k), &at_delta).unwrap_err();
            assert!(e.contains("dan@pec.delta.test"), "{k:?}: {e}");
            assert!(!e.contains("bob@"), "{k:?}: {e}");
        }
        // The sender's own provider speaks for its sender's failures.
        for k in [Tipo::ErroreConsegna, Tipo::PreavvisoErroreConsegna] {
            let own = |d: &mut Daticert| d.consegna = Some("dan@pec.delta.test".into());
            assert!(judge(rcpt(k), &own).is_ok(), "{k:?}");
        }
        // Acceptance receipts: only for its own senders.
        assert!(judge(rcpt(Tipo::Accettazione), &|_| {}).is_ok());
        assert!(judge(rcpt(Tipo::Accettazione), &at_beta).is_err());
        // Signing as another provider is what it was before.
        let mut m = classify(b"From: posta-certificata@pec.alpha.test\r\n\r\n");
        m.kind = Kind::Busta;
        assert!(matches!(
            authority(&beta, &m),
            Err(AnomalyReason::DomainMismatch { .. })
        ));
    }

    #[test]
    fn only_listed_recipients_are_certified() {
        let env = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let listed = env(&["Bob@pec.beta.test", "dan@pec.beta.test"]);
        let (yes, no) = split_recipients(
            &env(&[
                "carol@pec.beta.test",
                "bob@pec.beta.test",
                "eve@pec.beta.test",
            ]),
            &listed,
        );
        assert_eq!(yes, env(&["bob@pec.beta.test"]));
        assert_eq!(no, env(&["carol@pec.beta.test", "eve@pec.beta.test"]));
        let (yes, no) = split_recipients(&env(&["carol@pec.beta.test"]), &listed);
        assert!(yes.is_empty());
        assert_eq!(no, env(&["carol@pec.beta.test"]));
        let r = AnomalyReason::NotAddressed(no);
        assert!(r.english().contains("carol@pec.beta.test"));
        assert!(r.italian().contains("non risulta tra i destinatari"));
    }

    #[test]
    fn real_samples_with_their_providers() {
        // An index naming the real signers: integrity-only (their chains expired).
        let mut providers = Vec::new();
        for (name, raw) in samples() {
            if name.starts_with("ANON") || name.starts_with("NEG") || name.starts_with("namirial") {
                continue;
            }
            let v = verify(
                &raw,
                &VerifyOptions {
                    revocation: None,
                    trust: None,
                    now: 0,
                },
            )
            .unwrap();
            // A provider manages its users' domains too (Aruba: pec.it):
            // the addresses its samples certify.
            let m = classify(&raw);
            let dom = domain_of(&m.from_address.unwrap()).unwrap();
            let d = m.daticert.unwrap();
            let mut domains = vec![dom.clone()];
            domains.extend(
                std::iter::once(&d.mittente)
                    .chain(&d.consegna)
                    .filter_map(|a| domain_of(a)),
            );
            providers.push(Provider {
                name: dom.clone(),
                domains,
                receipt_mailbox: String::new(),
                sha1: vec![v.sha1],
                certificate_der: None,
            });
        }
        let index = ProviderIndex { providers };
        for (name, raw) in samples() {
            // A receipt concerns one of our users' messages; a busta comes
            // from another provider's user.
            let m = classify(&raw);
            let ours: Vec<String> = match (&m.kind, &m.daticert) {
                (Kind::Ricevuta(_), Some(d)) => domain_of(&d.mittente).into_iter().collect(),
                _ => Vec::new(),
            };
            let v = receive(&ReceptionInput {
                revocation: None,
                raw: &raw,
                index: &index,
                trust: None,
                our_domains: &ours,
                now: tests_now(),
            });
            let ok = !matches!(v, Verdict::Anomaly { .. });
            let expect = !name.starts_with("ANON")
                && !name.starts_with("NEG")
                && !name.starts_with("namirial");
            assert_eq!(ok, expect, "{name}: {v:?}");
            if !expect {
                continue;
            }
            // The same genuine bytes under another outer subject.
            let text = String::from_utf8_lossy(&raw);
            let at = text.find("Subject: ").unwrap() + "Subject: ".len();
            let mut altered = raw.clone();
            altered.splice(at..at, b"URGENTE ".iter().copied());
            let v = receive(&ReceptionInput {
                revocation: None,
                raw: &altered,
                index: &index,
                trust: None,
                our_domains: &ours,
                now: tests_now(),
            });
            assert!(
                matches!(&v, Verdict::Anomaly { reason: AnomalyReason::HeaderMismatch(m), .. }
                    if m.iter().map(|m| m.header).collect::<Vec<_>>() == ["Subject"]),
                "{name}: {v:?}"
            );
        }
    }
}

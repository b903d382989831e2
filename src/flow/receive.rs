//! The reception point (`pec-spec.md` §5.2) after its checks: what a
//! verdict of [`crate::pec::reception::receive`] (and the scanner's) means
//! for a message received over SMTP.
//!
//! - A valid busta: a presa in carico to the sender's provider for the
//!   recipients its daticert lists, and a delivery job for each of them; any
//!   other SMTP recipient gets a busta di anomalia.
//! - A valid receipt: the deadlines it settles, and a copy for each user it
//!   is addressed to (a presa in carico for our receipt mailbox is consumed);
//!   a peer's rilevazione virus becomes our avviso di mancata consegna per
//!   virus for the recipients that peer serves.
//! - Anything else: a busta di anomalia for the SMTP recipients.
//! - Infected: nothing is delivered, the bytes are kept in quarantine, and a
//!   valid busta gets a rilevazione virus instead of the presa in carico.
//!
//! Notices are keyed by what they certify, so a message the peer sends twice
//! (our `250` lost on the way) gets one notice, and the events announcing a
//! notice already queued are not written again.

use crate::pec::classify::PecMessage;
use crate::pec::daticert::{Certified, Daticert};
use crate::pec::envelope::busta_di_anomalia;
use crate::pec::index::ProviderIndex;
use crate::pec::receipt::{self, Emitter};
use crate::pec::reception::{split_recipients, AnomalyReason, Verdict};
use crate::pec::smime::Verified;
use crate::pec::types::{Errore, Tipo};

use super::batch::{
    Batch, BlobRef, Event, EventKind, JobEnd, JobId, JobKind, LogEntry, NewBlob, NewJob,
    Quarantine, TimerOp,
};
use super::{emit, event_for, notice_data, Now, Us};

/// A message the inbound listener took: its bytes and its SMTP envelope.
#[derive(Clone, Copy)]
pub struct Received<'a> {
    /// The bytes as received.
    pub raw: &'a [u8],
    /// Their spool name.
    pub blob: &'a str,
    /// The envelope sender.
    pub mail_from: &'a str,
    /// The envelope recipients (all ours).
    pub recipients: &'a [String],
    /// The inbound job judging it.
    pub job: JobId,
}

/// What the reception point knows about it.
pub struct Facts<'a> {
    /// Who we are.
    pub us: Us<'a>,
    /// The checks' verdict.
    pub verdict: Verdict,
    /// The virus the scanner found, if any.
    pub virus: Option<String>,
    /// The provider index (whom a peer's virus notice may speak for).
    pub index: &'a ProviderIndex,
    /// For a receipt about a message of ours ([`our_message`]): the
    /// daticert we accepted it with, if we did.
    pub ours: Option<Daticert>,
    /// Now, and the ids.
    pub now: Now<'a>,
}

/// What judging comes to.
#[derive(Debug)]
pub enum Outcome {
    /// Decided: commit this.
    Judged(Box<Batch>),
    /// Not decidable now (no revocation source answered): try again later.
    Postpone(String),
}

/// The identificativo of ours a verdict needs the accepted daticert of
/// (a peer's rilevazione virus speaks of a message we sent).
pub fn our_message(v: &Verdict) -> Option<&str> {
    match v {
        Verdict::Receipt {
            tipo: Tipo::RilevazioneVirus,
            message,
            ..
        } => message.daticert.as_ref().map(|d| d.identificativo.as_str()),
        _ => None,
    }
}

/// Judge one received message.
pub fn judge(f: &Facts<'_>, m: &Received<'_>) -> Outcome {
    let mut b = Batch::at(f.now.ms);
    b.end = Some((m.job, JobEnd::Done));
    let r = match &f.virus {
        Some(v) => infected(f, m, v, &mut b),
        None => clean(f, m, &mut b),
    };
    match r {
        Ok(()) => Outcome::Judged(Box::new(b)),
        Err(reason) => Outcome::Postpone(reason),
    }
}

/// What distinguishes one received copy from another when nothing signed
/// names it: the digest of its bytes. A peer that sends again after losing
/// our `250` sends the same bytes; an altered copy under the same
/// Message-ID is another message and gets its own anomaly envelope.
pub fn dedup_key(bytes: &[u8]) -> String {
    openssl::sha::sha256(bytes)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `; revocation …` for a log detail, when the check says something worth
/// keeping (a source that answered, or that none did under `soft_fail`).
pub fn revocation_note(v: &Verified) -> String {
    use crate::pec::revocation::Status;
    match &v.revocation {
        Some(r) if r.status != Status::NotChecked => format!("; revocation {r}"),
        _ => String::new(),
    }
}

fn clean(f: &Facts<'_>, m: &Received<'_>, b: &mut Batch) -> Result<(), String> {
    let e = f.now.emitter(&f.us);
    match &f.verdict {
        Verdict::Busta {
            message,
            verified,
            provider,
            receipt_mailbox,
            local_recipients,
        } => {
            let Some(d) = &message.daticert else {
                anomaly(
                    f,
                    &e,
                    m,
                    b,
                    &AnomalyReason::Malformed(vec!["busta without daticert".into()]),
                    message,
                    m.recipients,
                );
                return Ok(());
            };
            let c = Certified::from(d);
            // The envelope is not signed: only the recipients the daticert
            // lists are certified; a replay to anyone else is an anomaly.
            let (ours, unlisted) = listed(f, m, local_recipients);
            if !unlisted.is_empty() {
                let reason = AnomalyReason::NotAddressed(unlisted.clone());
                let i = anomaly(f, &e, m, b, &reason, message, &unlisted);
                b.log[i].event.identificativo = Some(c.identificativo.clone());
            }
            if !ours.is_empty() {
                let mut ev = event_for(EventKind::BustaRicevuta, b.now, &c);
                ev.detail = Some(format!(
                    "from {provider} (signer SHA-1 {}{}), for {}",
                    verified.sha1_fingerprint,
                    revocation_note(verified),
                    ours.join(", ")
                ));
                b.log(ev);
                let presa = receipt::presa_in_carico(&e, &c, receipt_mailbox, &ours);
                // Keyed by what it certifies, so a busta the peer sends twice
                // gets one presa in carico, not two.
                let em = emit(
                    &f.us,
                    b,
                    presa,
                    Tipo::PresaInCarico,
                    EventKind::PresaInCarico,
                    &c,
                    format!("presa:{}:{}", c.identificativo, ours.join(",")),
                    receipt_mailbox,
                );
                let mut ev = em.event;
                ev.detail = Some(format!("to {receipt_mailbox} for {}", ours.join(", ")));
                let j = b.job(em.job);
                b.log.push(LogEntry {
                    event: ev,
                    unless_repeat_of: Some(j),
                });
            }
            for r in ours {
                b.job(NewJob {
                    key: format!("busta:{}:{r}", c.identificativo),
                    kind: JobKind::LocalBusta,
                    identificativo: Some(c.identificativo.clone()),
                    mail_from: m.mail_from.to_string(),
                    recipients: vec![r],
                    next_hop: None,
                    blob: Some(BlobRef::Spooled(m.blob.to_string())),
                    data: None,
                    due_at: b.now,
                });
            }
        }
        Verdict::Receipt {
            tipo,
            message,
            provider,
            verified,
        } => receipt(f, &e, m, b, *tipo, message, provider, verified),
        // Like a scanner that cannot answer: the job waits and is judged again.
        Verdict::Postpone { reason } => return Err(reason.clone()),
        Verdict::Anomaly { reason, message } => {
            let i = anomaly(f, &e, m, b, reason, message, m.recipients);
            let ev = &mut b.log[i].event;
            ev.sender = ev.sender.take().or(Some(m.mail_from.to_string()));
        }
    }
    Ok(())
}

/// The job's recipients in our domains split into those the busta's
/// daticert lists and the others.
fn listed(
    f: &Facts<'_>,
    m: &Received<'_>,
    local_recipients: &[String],
) -> (Vec<String>, Vec<String>) {
    let envelope: Vec<String> = m
        .recipients
        .iter()
        .filter(|r| f.us.is_local(r))
        .cloned()
        .collect();
    split_recipients(&envelope, local_recipients)
}

#[allow(clippy::too_many_arguments)]
fn receipt(
    f: &Facts<'_>,
    e: &Emitter<'_>,
    m: &Received<'_>,
    b: &mut Batch,
    tipo: Tipo,
    message: &PecMessage,
    provider: &str,
    verified: &Verified,
) {
    let d = message.daticert.as_ref();
    let id = d.map(|d| d.identificativo.clone()).unwrap_or_default();
    let mut ev = match d {
        Some(d) => event_for(EventKind::Ricevuta(tipo), b.now, &Certified::from(d)),
        None => Event::new(EventKind::Ricevuta(tipo), b.now),
    };
    ev.generated_msgid = message.message_id.clone();
    ev.detail = Some(format!("from {provider}{}", revocation_note(verified)));
    if let Some(d) = d {
        let lower = |a: &str| a.trim().to_ascii_lowercase();
        match tipo {
            Tipo::PresaInCarico => {
                for r in &d.ricezione {
                    b.timers.push(TimerOp::Presa {
                        identificativo: id.clone(),
                        recipient: lower(r),
                    });
                }
            }
            Tipo::AvvenutaConsegna => {
                if let Some(r) = &d.consegna {
                    b.timers.push(TimerOp::Delivered {
                        identificativo: id.clone(),
                        recipient: lower(r),
                    });
                }
            }
            Tipo::ErroreConsegna => {
                if let Some(r) = &d.consegna {
                    b.timers.push(TimerOp::Close {
                        identificativo: id.clone(),
                        recipient: lower(r),
                        by: "ricevuta",
                    });
                }
            }
            Tipo::RilevazioneVirus if !virus_reported(f, e, b, d, provider) => {
                ev.error = Some("no recipient of ours it may speak for".into());
            }
            Tipo::PreavvisoErroreConsegna => {
                let fin = d
                    .errore_esteso
                    .as_deref()
                    .is_some_and(|x| x.trim_start().starts_with("5.4.1"));
                if fin {
                    ev.event = EventKind::MancataConsegna24h;
                    ev.error = d.errore_esteso.clone();
                    if let Some(r) = &d.consegna {
                        b.timers.push(TimerOp::Close {
                            identificativo: id.clone(),
                            recipient: lower(r),
                            by: "preavviso-5.4.1",
                        });
                    }
                }
            }
            _ => {}
        }
    }
    let receipt_box = f.us.receipt_address();
    // The signature verified, so its Message-ID names this receipt: a peer
    // sending it again (its 250 lost) must reach the mailbox once, even if
    // the copy differs in unsigned bytes.
    let copy = message
        .message_id
        .as_deref()
        .map(|m| m.trim().trim_matches(['<', '>']).to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| dedup_key(m.raw));
    for r in m.recipients {
        if r.eq_ignore_ascii_case(&receipt_box) {
            // Provider-to-provider traffic: consumed, never shown to users.
            continue;
        }
        b.job(NewJob {
            key: format!("ricevuta:{copy}:{r}"),
            kind: JobKind::Mailbox,
            identificativo: Some(id.clone()),
            mail_from: String::new(),
            recipients: vec![r.clone()],
            next_hop: None,
            blob: Some(BlobRef::Spooled(m.blob.to_string())),
            data: notice_data(tipo.as_str(), &message.message_id),
            due_at: b.now,
        });
    }
    b.log(ev);
}

/// Sender's provider, on a peer's avviso di rilevazione virus about one of
/// our messages: an avviso di mancata consegna per virus to our sender for
/// each recipient it covers, and their timers closed (no 12 h / 24 h notice
/// follows). A peer speaks only for recipients in its own domains; a notice
/// about a message we did not accept is only logged. False when it covers
/// no one.
fn virus_reported(
    f: &Facts<'_>,
    e: &Emitter<'_>,
    b: &mut Batch,
    d: &Daticert,
    provider: &str,
) -> bool {
    let Some(ours) = &f.ours else {
        return false;
    };
    let c = Certified::from(ours);
    let peer = f.index.providers.iter().find(|p| p.name == provider);
    let served =
        |r: &str| peer.is_some_and(|p| r.rsplit_once('@').is_some_and(|(_, dom)| p.manages(dom)));
    let ours_listed = |r: &str| {
        c.destinatari
            .iter()
            .any(|x| x.address.eq_ignore_ascii_case(r.trim()))
    };
    let covered: Vec<String> = if d.ricezione.is_empty() {
        c.destinatari
            .iter()
            .map(|x| x.address.to_ascii_lowercase())
            .filter(|r| served(r))
            .collect()
    } else {
        d.ricezione
            .iter()
            .map(|r| r.trim().to_ascii_lowercase())
            .filter(|r| served(r) && ours_listed(r))
            .collect()
    };
    let esteso = d
        .errore_esteso
        .clone()
        .filter(|x| !x.trim().is_empty())
        .unwrap_or_else(|| receipt::virus_esteso(provider, "virus"));
    for r in &covered {
        let msg = receipt::errore_consegna(e, &c, r, Errore::Virus, &esteso);
        let em = emit(
            &f.us,
            b,
            msg,
            Tipo::ErroreConsegna,
            EventKind::ErroreConsegna,
            &c,
            format!("virus-consegna:{}:{r}", c.identificativo),
            &c.mittente,
        );
        let mut ev = em.event;
        ev.recipients = Some(r.clone());
        ev.error = Some(esteso.clone());
        ev.detail = Some(format!("virus reported by {provider}"));
        let j = b.job(em.job);
        b.log.push(LogEntry {
            event: ev,
            unless_repeat_of: Some(j),
        });
        b.timers.push(TimerOp::Close {
            identificativo: c.identificativo.clone(),
            recipient: r.clone(),
            by: "rilevazione-virus",
        });
    }
    !covered.is_empty()
}

/// A busta di anomalia around the received bytes for `recipients`: its log
/// event (index into the batch's log is returned) and one mailbox job per
/// recipient (none for our receipt mailbox, which is no user's).
fn anomaly(
    f: &Facts<'_>,
    e: &Emitter<'_>,
    m: &Received<'_>,
    b: &mut Batch,
    reason: &AnomalyReason,
    message: &PecMessage,
    recipients: &[String],
) -> usize {
    let msg = busta_di_anomalia(e.provider, f.now.ids, &e.when, m.raw, &reason.italian());
    let msgid = super::message_id_of(&msg);
    let blob = b.blob(NewBlob::Sign(msg));
    let mut ev = Event::new(EventKind::Anomalia, b.now);
    ev.sender = message.from_address.clone();
    ev.recipients = Some(recipients.join(", "));
    ev.subject = message.subject.clone();
    ev.msgid = message.message_id.clone();
    ev.generated_msgid = msgid.clone();
    ev.error = Some(reason.english());
    let receipt_box = f.us.receipt_address();
    let key = dedup_key(m.raw);
    for r in recipients {
        if r.eq_ignore_ascii_case(&receipt_box) {
            continue;
        }
        b.job(NewJob {
            key: format!("anomalia:{key}:{r}"),
            kind: JobKind::Mailbox,
            identificativo: None,
            mail_from: String::new(),
            recipients: vec![r.clone()],
            next_hop: None,
            blob: Some(blob.clone()),
            data: notice_data("anomalia", &msgid),
            due_at: b.now,
        });
    }
    b.log(ev);
    b.log.len() - 1
}

/// Infected: nothing is delivered and the bytes go to the quarantine. A
/// busta that passes every other check gets an avviso di rilevazione virus
/// to the sender's provider instead of the presa in carico; anything else
/// (ordinary mail, a receipt, an unverifiable message) is logged and kept,
/// with no provider to tell and no busta di anomalia.
fn infected(f: &Facts<'_>, m: &Received<'_>, virus: &str, b: &mut Batch) -> Result<(), String> {
    let e = f.now.emitter(&f.us);
    let mut notice_job = None;
    let (message, what) = match &f.verdict {
        Verdict::Busta {
            message,
            provider,
            receipt_mailbox,
            local_recipients,
            ..
        } => {
            let (ours, _) = listed(f, m, local_recipients);
            if let (Some(d), false) = (&message.daticert, ours.is_empty()) {
                let c = Certified::from(d);
                let esteso = receipt::virus_esteso(&f.us.provider.name, virus);
                let msg = receipt::rilevazione_virus(&e, &c, receipt_mailbox, &ours, &esteso);
                // Keyed like the presa in carico it replaces: a busta the
                // peer sends twice gets one notice.
                let em = emit(
                    &f.us,
                    b,
                    msg,
                    Tipo::RilevazioneVirus,
                    EventKind::RilevazioneVirus,
                    &c,
                    format!("virus:{}:{}", c.identificativo, ours.join(",")),
                    receipt_mailbox,
                );
                let j = b.job(em.job);
                notice_job = Some(j);
                for r in &ours {
                    let mut ev = em.event.clone();
                    ev.recipients = Some(r.clone());
                    ev.error = Some(esteso.clone());
                    ev.detail = Some(format!(
                        "busta from {provider} not delivered to {r}; notice to {receipt_mailbox}"
                    ));
                    b.log.push(LogEntry {
                        event: ev,
                        unless_repeat_of: Some(j),
                    });
                }
            }
            (message, "busta di trasporto")
        }
        Verdict::Receipt { message, .. } => (message, "receipt"),
        // Whether the sender's provider is told waits for the revocation
        // answer, as for a clean busta; nothing is delivered meanwhile.
        Verdict::Postpone { reason } => return Err(reason.clone()),
        Verdict::Anomaly {
            reason: AnomalyReason::NotPec,
            message,
        } => (message, "ordinary mail"),
        Verdict::Anomaly { message, .. } => (message, "unverified PEC message"),
    };
    let identificativo = message.daticert.as_ref().map(|d| d.identificativo.clone());
    let mut ev = Event::new(EventKind::Virus, b.now);
    ev.identificativo = identificativo.clone();
    ev.sender = message
        .from_address
        .clone()
        .or(Some(m.mail_from.to_string()));
    ev.recipients = Some(m.recipients.join(", "));
    ev.subject = message.subject.clone();
    ev.msgid = message.message_id.clone();
    ev.error = Some(format!("virus {virus}"));
    ev.detail = Some(format!("{what} not delivered, quarantined"));
    b.log(ev);
    b.quarantine = Some(Quarantine {
        identificativo,
        virus: virus.to_string(),
        sender: m.mail_from.to_string(),
        recipients: m.recipients.join(", "),
        point: "reception",
        bytes: BlobRef::Spooled(m.blob.to_string()),
        // A busta received again is quarantined once.
        unless_repeat_of: notice_job,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::{check, flat, render, T0};
    use crate::pec::access::{check as access_check, Limits};
    use crate::pec::classify::classify;
    use crate::pec::clock::ItalianTime;
    use crate::pec::daticert::Destinatario;
    use crate::pec::envelope::{busta_di_trasporto, Provider};
    use crate::pec::ids::SequentialIds;
    use crate::pec::index::Provider as Peer;
    use crate::pec::receipt::Consegna;
    use crate::pec::types::RecipientType;

    fn alpha() -> Provider {
        Provider {
            name: "Alpha PEC S.p.A.".into(),
            domain: "pec.alpha.test".into(),
        }
    }

    fn beta() -> Provider {
        Provider {
            name: "Beta PEC S.p.A.".into(),
            domain: "pec.beta.test".into(),
        }
    }

    /// Alpha's busta from mario to b@pec.beta.test.
    fn busta() -> (Vec<u8>, Certified, Daticert) {
        let raw = b"From: mario@pec.alpha.test\r\nTo: b@pec.beta.test\r\nSubject: Fattura\r\nMessage-ID: <orig.1@client.example>\r\n\r\nIn allegato.\r\n";
        let rcpts = vec!["b@pec.beta.test".to_string()];
        let acc = access_check(
            raw,
            "mario@pec.alpha.test",
            &rcpts,
            None,
            &Limits::default(),
        )
        .unwrap();
        let d = [Destinatario {
            address: "b@pec.beta.test".into(),
            tipo: RecipientType::Certificato,
        }];
        let ids = SequentialIds::starting_at(100);
        let when = ItalianTime::from_unix(T0 / 1000 - 60);
        let id = crate::pec::ids::identificativo(&ids, &when, "pec.alpha.test");
        let b = busta_di_trasporto(&alpha(), &ids, &when, raw, &acc, &id, &d);
        (flat(&b.unsigned), b.certified, b.daticert)
    }

    fn verified() -> Box<Verified> {
        let ca = crate::certs::generate_ca("Test CA").unwrap();
        Box::new(Verified {
            signer: ca.cert,
            signer_subject: "CN=Posta Certificata".into(),
            issuer_subject: "CN=Test CA".into(),
            sha1: [7; 20],
            sha1_fingerprint: "07:07".into(),
            sha1_hex: "0707".into(),
            signing_time: Some(T0 / 1000),
            digest: "sha256".into(),
            micalg: "sha-256".into(),
            signed_entity: 0..1,
            chain_checked: true,
            expired_now: false,
            revocation: None,
        })
    }

    /// Judge at the provider `us` (its domain `domain`).
    fn judge_at(
        us: &Provider,
        domain: &str,
        verdict: Verdict,
        virus: Option<&str>,
        ours: Option<Daticert>,
        raw: &[u8],
        rcpts: &[&str],
    ) -> Outcome {
        let domains = vec![domain.to_string()];
        let ids = SequentialIds::default();
        let index = ProviderIndex {
            providers: vec![Peer {
                name: "Beta PEC S.p.A.".into(),
                domains: vec!["pec.beta.test".into()],
                receipt_mailbox: "posta-certificata@pec.beta.test".into(),
                sha1: vec![[7; 20]],
                certificate_der: None,
            }],
        };
        let f = Facts {
            us: Us {
                provider: us,
                domains: &domains,
                hostname: "mx.test",
            },
            verdict,
            virus: virus.map(str::to_string),
            index: &index,
            ours,
            now: Now { ms: T0, ids: &ids },
        };
        let rcpts: Vec<String> = rcpts.iter().map(|s| s.to_string()).collect();
        judge(
            &f,
            &Received {
                raw,
                blob: "seg-00000002.spool@0+10",
                mail_from: "posta-certificata@pec.alpha.test",
                recipients: &rcpts,
                job: JobId(11),
            },
        )
    }

    fn judged(o: Outcome) -> Batch {
        match o {
            Outcome::Judged(b) => *b,
            Outcome::Postpone(r) => panic!("postponed: {r}"),
        }
    }

    /// A receipt `raw` of type `tipo`, verified as signed by Beta.
    fn from_beta(tipo: Tipo, raw: &[u8]) -> Verdict {
        Verdict::Receipt {
            tipo,
            message: Box::new(classify(raw)),
            verified: verified(),
            provider: "Beta PEC S.p.A.".into(),
        }
    }

    /// Beta's emitter for receipts about Alpha's busta.
    fn beta_emits<'a>(b: &'a Provider, ids: &'a SequentialIds) -> Emitter<'a> {
        Emitter {
            provider: b,
            ids,
            when: ItalianTime::from_unix(T0 / 1000 - 10),
        }
    }

    fn busta_verdict(raw: &[u8]) -> Verdict {
        Verdict::Busta {
            message: Box::new(classify(raw)),
            verified: verified(),
            provider: "Alpha PEC S.p.A.".into(),
            receipt_mailbox: "posta-certificata@pec.alpha.test".into(),
            local_recipients: vec!["b@pec.beta.test".into()],
        }
    }

    #[test]
    fn golden_busta_listed_and_unlisted_recipients() {
        let (raw, _, _) = busta();
        let b = judged(judge_at(
            &beta(),
            "pec.beta.test",
            busta_verdict(&raw),
            None,
            None,
            &raw,
            &["b@pec.beta.test", "z@pec.beta.test"],
        ));
        let kinds: Vec<JobKind> = b.jobs.iter().map(|j| j.kind).collect();
        // z's anomaly, the presa in carico to Alpha, b's delivery.
        assert_eq!(
            kinds,
            [JobKind::Mailbox, JobKind::Relay, JobKind::LocalBusta]
        );
        assert!(b.log.iter().any(|l| l.unless_repeat_of.is_some()));
        check("receive-busta", &render(&b));
    }

    #[test]
    fn golden_receipts_settle_deadlines() {
        let (_, c, _) = busta();
        let ids = SequentialIds::starting_at(500);
        let b = beta();
        let e = beta_emits(&b, &ids);
        let consegna = flat(&receipt::avvenuta_consegna(
            &e,
            &c,
            "b@pec.beta.test",
            Consegna::Sintetica,
        ));
        let v = from_beta(Tipo::AvvenutaConsegna, &consegna);
        let out = judged(judge_at(
            &alpha(),
            "pec.alpha.test",
            v,
            None,
            None,
            &consegna,
            &["mario@pec.alpha.test"],
        ));
        assert!(matches!(out.timers[..], [TimerOp::Delivered { .. }]));
        check("receive-consegna", &render(&out));
        let presa = flat(&receipt::presa_in_carico(
            &e,
            &c,
            "posta-certificata@pec.alpha.test",
            &["b@pec.beta.test".to_string()],
        ));
        let v = from_beta(Tipo::PresaInCarico, &presa);
        let out = judged(judge_at(
            &alpha(),
            "pec.alpha.test",
            v,
            None,
            None,
            &presa,
            &["posta-certificata@pec.alpha.test"],
        ));
        assert!(
            out.jobs.is_empty(),
            "a presa for our receipt box is consumed"
        );
        assert!(matches!(out.timers[..], [TimerOp::Presa { .. }]));
        check("receive-presa", &render(&out));
    }

    #[test]
    fn golden_a_peers_virus_notice_becomes_our_mancata_consegna() {
        let (_, c, d) = busta();
        let ids = SequentialIds::starting_at(700);
        let b = beta();
        let e = beta_emits(&b, &ids);
        let notice = flat(&receipt::rilevazione_virus(
            &e,
            &c,
            "posta-certificata@pec.alpha.test",
            &["b@pec.beta.test".to_string()],
            &receipt::virus_esteso("Beta PEC S.p.A.", "Eicar-Test"),
        ));
        let v = from_beta(Tipo::RilevazioneVirus, &notice);
        assert_eq!(our_message(&v), Some(c.identificativo.as_str()));
        let out = judged(judge_at(
            &alpha(),
            "pec.alpha.test",
            v.clone(),
            None,
            Some(d),
            &notice,
            &["posta-certificata@pec.alpha.test"],
        ));
        assert_eq!(out.jobs.len(), 1, "one mancata consegna per virus to mario");
        check("receive-virus-reported", &render(&out));
        // About a message we never accepted: only logged.
        let out = judged(judge_at(
            &alpha(),
            "pec.alpha.test",
            v,
            None,
            None,
            &notice,
            &["posta-certificata@pec.alpha.test"],
        ));
        assert!(out.jobs.is_empty());
    }

    #[test]
    fn golden_anomaly_infected_and_postponed() {
        let plain = b"From: x@example.org\r\nTo: b@pec.beta.test\r\nSubject: ciao\r\n\r\nciao\r\n";
        let v = Verdict::Anomaly {
            reason: AnomalyReason::NotPec,
            message: Box::new(classify(plain)),
        };
        let b = judged(judge_at(
            &beta(),
            "pec.beta.test",
            v,
            None,
            None,
            plain,
            &["b@pec.beta.test"],
        ));
        check("receive-anomaly", &render(&b));
        let (raw, _, _) = busta();
        let b = judged(judge_at(
            &beta(),
            "pec.beta.test",
            busta_verdict(&raw),
            Some("Eicar-Test"),
            None,
            &raw,
            &["b@pec.beta.test"],
        ));
        assert!(
            !b.jobs.iter().any(|j| j.kind == JobKind::LocalBusta),
            "nothing delivered"
        );
        assert_eq!(
            b.quarantine.as_ref().and_then(|q| q.unless_repeat_of),
            Some(0)
        );
        check("receive-infected-busta", &render(&b));
        let v = Verdict::Postpone {
            reason: "no revocation source answered".into(),
        };
        assert!(matches!(
            judge_at(&beta(), "pec.beta.test", v, None, None, &raw, &["b@pec.beta.test"]),
            Outcome::Postpone(r) if r.contains("revocation")
        ));
    }
}

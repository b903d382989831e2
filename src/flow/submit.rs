//! The access point (`pec-spec.md` §5.1) as a decision: a submission and
//! what the server knows (who we are, the index, the limits, the scanner's
//! verdict, now) in; accepted or refused out, with everything to record.
//!
//! Accepted: a busta di trasporto to sign, then ([`Busta::finish`], once
//! its signed size is known) the accettazione, the `messages` row, the log
//! events `accettazione` and `busta-trasporto`, a job per local recipient
//! and per remote domain, and the timers of the remote certified
//! recipients. Refused: the reason, the `non-accettazione` event and, where
//! the rules give one ([`Refusal::notice`]), the signed avviso to the
//! sender; an infected message is also kept in quarantine.

use std::collections::BTreeMap;

use crate::pec::access::{self, Limits};
use crate::pec::daticert::{Certified, Destinatario};
use crate::pec::envelope::busta_di_trasporto;
use crate::pec::index::ProviderIndex;
use crate::pec::receipt;
use crate::pec::timers::{expiry_due, preavviso_due, TimerConfig};
use crate::pec::types::{RecipientType, Tipo, Unsigned};

use super::batch::{
    Batch, BlobRef, EventKind, JobKind, MessageRow, NewBlob, NewJob, Quarantine, TimerOp,
};
use super::refusal::Refusal;
use super::{emit, event_for, message_id_of, notice_data, recipients_text, route, Now, Us};

/// What the virus scanner said before the formal checks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    /// Scanned and clean, or no scanner.
    Clean,
    /// The scanner failed and the provider accepts unscanned mail: why.
    Unscanned(String),
    /// The scanner found this virus.
    Infected(String),
}

/// What the access point knows besides the message.
#[derive(Clone, Copy)]
pub struct Facts<'a> {
    /// Who we are.
    pub us: Us<'a>,
    /// The provider index (recipient types).
    pub index: &'a ProviderIndex,
    /// Size and recipient limits.
    pub limits: Limits,
    /// When the 12 h / 24 h notices are due.
    pub timers: TimerConfig,
    /// Attachment extensions refused (`[antivirus] blocked_extensions`).
    pub blocked_extensions: &'a [String],
    /// Now, and the ids.
    pub now: Now<'a>,
}

/// One submission, from SMTP or the web.
#[derive(Clone, Copy)]
pub struct Submission<'a> {
    /// The message as submitted.
    pub raw: &'a [u8],
    /// The envelope sender.
    pub mail_from: &'a str,
    /// The envelope recipients.
    pub rcpts: &'a [String],
    /// The authenticated user.
    pub user: &'a str,
    /// The scanner's verdict on `raw`.
    pub screen: &'a Screen,
}

/// A submission the access point accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The identificativo of its busta.
    pub identificativo: String,
    /// The Message-ID the user's message carried, if any.
    pub msgid: Option<String>,
    /// How many recipients it is certified for.
    pub recipients: usize,
}

/// What a submission comes to, and what to record for it.
#[derive(Debug)]
pub struct Outcome {
    /// Accepted, or why not.
    pub result: Result<Accepted, Refusal>,
    /// What to commit (messages to sign included).
    pub batch: Batch,
}

/// The first step's answer.
#[derive(Debug)]
pub enum Decision {
    /// The busta must be signed before the rest is decided ([`Busta::finish`]).
    Sign(Box<Busta>),
    /// Decided.
    Done(Box<Outcome>),
}

/// An accepted submission's busta, waiting for its signature.
#[derive(Debug)]
pub struct Busta {
    busta: crate::pec::envelope::Busta,
    acc: access::Accepted,
    destinatari: Vec<Destinatario>,
    identificativo: String,
    unscanned: Option<String>,
}

/// Decide a submission. `Decision::Sign` when it passes every check: the
/// busta's signed size decides the rest.
pub fn decide(f: &Facts<'_>, s: &Submission<'_>) -> Decision {
    let now = f.now;
    if !s.user.eq_ignore_ascii_case(s.mail_from.trim()) {
        return Decision::Done(Box::new(bare(now.ms, Refusal::NotYourAddress)));
    }
    if let Some(bad) = s.rcpts.iter().find(|r| !valid_address(r)) {
        return Decision::Done(Box::new(bare(
            now.ms,
            Refusal::BadEnvelopeRecipient(bad.clone()),
        )));
    }
    let identificativo =
        crate::pec::ids::identificativo(now.ids, &now.italian(), &f.us.provider.domain);
    let checked = access::check(s.raw, s.mail_from, s.rcpts, Some(s.user), &f.limits);
    if let Screen::Infected(virus) = s.screen {
        // The virus outranks any formal defect: it is what the sender must hear.
        let partial = match checked {
            Ok(acc) => acc,
            Err(r) => *r.partial,
        };
        let mut out = refuse(f, &identificativo, &partial, Refusal::Virus(virus.clone()));
        let bytes = out.batch.blob(NewBlob::Bytes(s.raw.to_vec()));
        out.batch.quarantine = Some(Quarantine {
            identificativo: Some(identificativo),
            virus: virus.clone(),
            sender: s.mail_from.to_string(),
            recipients: s.rcpts.join(", "),
            point: "submission",
            bytes,
            unless_repeat_of: None,
        });
        return Decision::Done(Box::new(out));
    }
    let acc = match checked {
        Ok(acc) => acc,
        Err(r) => {
            return Decision::Done(Box::new(refuse(
                f,
                &identificativo,
                &r.partial,
                Refusal::Formal(r.defect),
            )))
        }
    };
    if let Some(b) = crate::pec::attachments::find_blocked(s.raw, f.blocked_extensions) {
        let why = Refusal::Blocked {
            name: b.name,
            extension: b.extension,
        };
        return Decision::Done(Box::new(refuse(f, &identificativo, &acc, why)));
    }
    let destinatari = classify(f, &acc);
    let busta = busta_di_trasporto(
        f.us.provider,
        now.ids,
        &now.italian(),
        s.raw,
        &acc,
        &identificativo,
        &destinatari,
    );
    Decision::Sign(Box::new(Busta {
        busta,
        acc,
        destinatari,
        identificativo,
        unscanned: match s.screen {
            Screen::Unscanned(e) => Some(e.clone()),
            _ => None,
        },
    }))
}

impl Busta {
    /// The busta to sign.
    pub fn unsigned(&self) -> &Unsigned {
        &self.busta.unsigned
    }

    /// The rest of the decision, given the signed busta.
    pub fn finish(self, f: &Facts<'_>, signed: Vec<u8>) -> Outcome {
        // What travels is the busta, a few KB larger than the original: a
        // peer with our limit would refuse it after we had certified the
        // acceptance.
        let max = f.limits.max_message_size;
        if signed.len() > max {
            let why = Refusal::BustaTooBig {
                size: signed.len(),
                max,
            };
            return refuse(f, &self.identificativo, &self.acc, why);
        }
        accept(f, self, signed)
    }
}

/// Whether an envelope recipient is an address at all.
pub fn valid_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((l, d)) => !l.is_empty() && !d.is_empty() && !a.contains(char::is_whitespace),
        None => false,
    }
}

fn classify(f: &Facts<'_>, acc: &access::Accepted) -> Vec<Destinatario> {
    acc.recipients()
        .into_iter()
        .map(|a| Destinatario {
            tipo: f.us.recipient_type(f.index, &a),
            address: a,
        })
        .collect()
}

/// A refusal that certifies nothing and records nothing.
fn bare(now: i64, why: Refusal) -> Outcome {
    Outcome {
        result: Err(why),
        batch: Batch::at(now),
    }
}

fn accept(f: &Facts<'_>, b: Busta, signed: Vec<u8>) -> Outcome {
    let now = f.now.ms;
    let mut batch = Batch::at(now);
    let busta_blob = batch.blob(NewBlob::Bytes(signed));
    let c = b.busta.certified;
    let id = b.identificativo;
    let e = f.now.emitter(&f.us);
    let acc_msg = receipt::accettazione(&e, &c);
    let acc_msgid = message_id_of(&acc_msg);
    let acc_blob = batch.blob(NewBlob::Sign(acc_msg));

    let mut ev = event_for(EventKind::Accettazione, now, &c);
    ev.generated_msgid = acc_msgid.clone();
    if let Some(why) = &b.unscanned {
        ev.detail = Some(format!("not scanned for viruses: {why}"));
    }
    batch.log(ev);
    let mut ev = event_for(EventKind::BustaTrasporto, now, &c);
    ev.generated_msgid = Some(format!("<{id}>"));
    ev.receipt_type = Some(c.ricevuta.as_str().to_string());
    batch.log(ev);

    batch.job(route(
        &f.us,
        format!("accettazione:{id}"),
        &id,
        &c.mittente,
        acc_blob,
        notice_data(Tipo::Accettazione.as_str(), &acc_msgid),
        now,
    ));
    let mut remote: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &b.destinatari {
        if f.us.is_local(&d.address) {
            batch.job(NewJob {
                key: format!("busta:{id}:{}", d.address),
                kind: JobKind::LocalBusta,
                identificativo: Some(id.clone()),
                mail_from: c.mittente.clone(),
                recipients: vec![d.address.clone()],
                next_hop: None,
                blob: Some(busta_blob.clone()),
                data: None,
                due_at: now,
            });
            continue;
        }
        let domain = d.address.rsplit_once('@').map(|(_, x)| x).unwrap_or("");
        remote
            .entry(domain.to_string())
            .or_default()
            .push(d.address.clone());
        if d.tipo == RecipientType::Certificato {
            batch.timers.push(TimerOp::Start {
                identificativo: id.clone(),
                recipient: d.address.clone(),
                sent_at: now,
                preavviso_due: preavviso_due(now, &f.timers),
                expire_due: expiry_due(now, &f.timers),
            });
        }
    }
    for (domain, rcpts) in remote {
        batch.job(NewJob {
            key: format!("relay:{id}:{domain}"),
            kind: JobKind::Relay,
            identificativo: Some(id.clone()),
            mail_from: c.mittente.clone(),
            recipients: rcpts,
            next_hop: Some(domain),
            blob: Some(busta_blob.clone()),
            data: Some(serde_json::json!({"tipo": Tipo::PostaCertificata.as_str()}).to_string()),
            due_at: now,
        });
    }
    batch.message = Some(MessageRow {
        identificativo: id.clone(),
        msgid: c.msgid.clone(),
        sender: c.mittente.clone(),
        subject: c.oggetto_str().to_string(),
        recipients: recipients_text(&b.destinatari),
        receipt_type: c.ricevuta.as_str().to_string(),
        daticert: b.busta.daticert.to_xml(),
        accepted_at: now,
    });
    Outcome {
        result: Ok(Accepted {
            identificativo: id,
            msgid: c.msgid.clone(),
            recipients: b.destinatari.len(),
        }),
        batch,
    }
}

/// The refusal of a submission: its `non-accettazione` event and, when the
/// rules give one and the sender is ours, the signed avviso.
fn refuse(
    f: &Facts<'_>,
    identificativo: &str,
    partial: &access::Accepted,
    why: Refusal,
) -> Outcome {
    let now = f.now.ms;
    let mut batch = Batch::at(now);
    let c = Certified {
        mittente: partial.from.clone(),
        destinatari: classify(f, partial),
        risposte: partial.risposte(),
        oggetto: partial.subject.clone(),
        identificativo: identificativo.to_string(),
        msgid: partial.msgid.clone(),
        ricevuta: partial.receipt_type,
    };
    let reason = why.italian().unwrap_or_else(|| why.english());
    let mut ev = event_for(EventKind::NonAccettazione, now, &c);
    ev.error = Some(reason.clone());
    if !why.notice() || !f.us.is_local(&c.mittente) {
        ev.detail = Some(format!("refused at SMTP: {}", why.english()));
        batch.log(ev);
        return Outcome {
            result: Err(why),
            batch,
        };
    }
    let virus = matches!(why, Refusal::Virus(_));
    let notice = receipt::non_accettazione(&f.now.emitter(&f.us), &c, &reason, virus);
    let emitted = emit(
        &f.us,
        &mut batch,
        notice,
        Tipo::NonAccettazione,
        EventKind::NonAccettazione,
        &c,
        format!("non-accettazione:{identificativo}"),
        &c.mittente,
    );
    ev.generated_msgid = emitted.event.generated_msgid;
    batch.log(ev);
    batch.job(emitted.job);
    Outcome {
        result: Err(why),
        batch,
    }
}

/// The busta blob of an accepted outcome (tests, benchmarks).
pub fn busta_of(o: &Outcome) -> Option<&BlobRef> {
    o.batch.jobs.iter().find_map(|j| match j.kind {
        JobKind::LocalBusta | JobKind::Relay => j.blob.as_ref(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::{check, render, T0};
    use crate::pec::envelope::Provider;
    use crate::pec::ids::SequentialIds;
    use crate::pec::index::Provider as Peer;

    const ORIGINAL: &[u8] = b"From: Mario Rossi <mario@pec.alpha.test>\r\nTo: Bianca <b@pec.beta.test>,\r\n  e@example.com\r\nCc: c@pec.alpha.test\r\nSubject: Fattura\r\nDate: Tue, 13 Nov 2018 16:39:26 +0100\r\nMessage-ID: <orig.1@client.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nIn allegato la fattura.\r\n";

    fn provider() -> Provider {
        Provider {
            name: "Alpha PEC S.p.A.".into(),
            domain: "pec.alpha.test".into(),
        }
    }

    fn index() -> ProviderIndex {
        ProviderIndex {
            providers: vec![Peer {
                name: "Beta PEC S.p.A.".into(),
                domains: vec!["pec.beta.test".into()],
                receipt_mailbox: "posta-certificata@pec.beta.test".into(),
                sha1: vec![[7; 20]],
                certificate_der: None,
            }],
        }
    }

    /// Run a submission with a fixed clock and ids; a "signature" that is
    /// the unsigned bytes with a marker, so sizes are what they are.
    fn run(raw: &[u8], rcpts: &[&str], screen: Screen, max: usize, blocked: &[String]) -> Outcome {
        let p = provider();
        let domains = vec!["pec.alpha.test".to_string()];
        let idx = index();
        let ids = SequentialIds::default();
        let f = Facts {
            us: Us {
                provider: &p,
                domains: &domains,
                hostname: "mx.pec.alpha.test",
            },
            index: &idx,
            limits: Limits {
                max_message_size: max,
                max_recipients: 10,
            },
            timers: TimerConfig::default(),
            blocked_extensions: blocked,
            now: Now { ms: T0, ids: &ids },
        };
        let rcpts: Vec<String> = rcpts.iter().map(|s| s.to_string()).collect();
        let s = Submission {
            raw,
            mail_from: "mario@pec.alpha.test",
            rcpts: &rcpts,
            user: "mario@pec.alpha.test",
            screen: &screen,
        };
        match decide(&f, &s) {
            Decision::Done(o) => *o,
            Decision::Sign(b) => {
                let mut signed = b"SIGNED ".to_vec();
                signed.extend_from_slice(&crate::golden::flat(b.unsigned()));
                b.finish(&f, signed)
            }
        }
    }

    const ALL: [&str; 3] = ["b@pec.beta.test", "e@example.com", "c@pec.alpha.test"];

    #[test]
    fn golden_accepted() {
        let o = run(ORIGINAL, &ALL, Screen::Clean, 1 << 20, &[]);
        assert_eq!(
            o.result.as_ref().map(|a| a.recipients),
            Ok(3),
            "{:?}",
            o.result
        );
        assert!(busta_of(&o).is_some());
        check("submit-accepted", &render(&o.batch));
    }

    #[test]
    fn golden_refused_with_a_notice() {
        let o = run(ORIGINAL, &ALL[..2], Screen::Clean, 1 << 20, &[]);
        assert_eq!(
            o.result,
            Err(Refusal::Formal(
                crate::pec::access::Defect::RecipientsDiffer
            ))
        );
        check("submit-refused", &render(&o.batch));
    }

    #[test]
    fn golden_virus_is_refused_and_quarantined() {
        let o = run(
            ORIGINAL,
            &ALL,
            Screen::Infected("Eicar-Test".into()),
            1 << 20,
            &[],
        );
        assert_eq!(o.result, Err(Refusal::Virus("Eicar-Test".into())));
        assert!(o.batch.quarantine.is_some());
        check("submit-virus", &render(&o.batch));
    }

    #[test]
    fn over_the_threshold_only_the_smtp_reply_answers() {
        let o = run(ORIGINAL, &ALL, Screen::Clean, 100, &[]);
        assert_eq!(
            o.result,
            Err(Refusal::Formal(crate::pec::access::Defect::TooBig))
        );
        assert!(o.batch.jobs.is_empty() && o.batch.blobs.is_empty());
        assert_eq!(o.batch.log.len(), 1, "the refusal is logged");
        check("submit-too-big", &render(&o.batch));
    }

    #[test]
    fn a_busta_over_the_limit_once_signed_is_refused_without_a_notice() {
        // The original fits; its busta does not.
        let o = run(ORIGINAL, &ALL, Screen::Clean, ORIGINAL.len() * 3 + 50, &[]);
        assert!(
            matches!(o.result, Err(Refusal::BustaTooBig { .. })),
            "{:?}",
            o.result
        );
        assert!(o.batch.jobs.is_empty());
    }

    #[test]
    fn blocked_attachment_and_unscanned_and_envelope_refusals() {
        let with_exe = b"From: mario@pec.alpha.test\r\nTo: b@pec.beta.test\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B\r\nContent-Type: application/octet-stream; name=\"a.exe\"\r\nContent-Disposition: attachment; filename=\"a.exe\"\r\n\r\nMZ\r\n--B--\r\n";
        let o = run(
            with_exe,
            &["b@pec.beta.test"],
            Screen::Clean,
            1 << 20,
            &["exe".into()],
        );
        assert!(matches!(&o.result, Err(Refusal::Blocked { extension, .. }) if extension == "exe"));
        let o = run(
            ORIGINAL,
            &ALL,
            Screen::Unscanned("clamd down".into()),
            1 << 20,
            &[],
        );
        assert!(o.result.is_ok());
        assert_eq!(
            o.batch.log[0].event.detail.as_deref(),
            Some("not scanned for viruses: clamd down")
        );
        let o = run(ORIGINAL, &["not an address"], Screen::Clean, 1 << 20, &[]);
        assert_eq!(
            o.result,
            Err(Refusal::BadEnvelopeRecipient("not an address".into()))
        );
        assert!(o.batch.log.is_empty());
    }
}

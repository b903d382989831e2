//! What a relay attempt's outcome means, and how the sender hears of a busta
//! that will not be delivered.
//!
//! Sent: logged, done. A temporary failure: tried again later, until a
//! busta's 24 h limit, after which the timers speak for its certified
//! recipients and the sender of an ordinary recipient is told here. A
//! permanent failure of a busta: a signed avviso di mancata consegna for
//! each certified recipient (their deadlines closed) and, since the rules
//! give no receipt for an ordinary (`esterno`) recipient, the plain
//! RFC 3464 notice of [`crate::pec::notice`] for each of those.

use crate::pec::clock::ItalianTime;
use crate::pec::daticert::Certified;
use crate::pec::notice::{self, EsternoFailure};
use crate::pec::receipt;
use crate::pec::types::{Errore, RecipientType, Tipo};

use super::batch::{Batch, Event, EventKind, JobEnd, JobId, NewBlob, TimerOp};
use super::{emit, event_for, notice_data, route, Now, Us};

/// The relay job, as the decision needs it.
#[derive(Clone, Copy)]
pub struct Relay<'a> {
    /// Its id.
    pub id: JobId,
    /// The message it carries, when it is a PEC message of ours.
    pub identificativo: Option<&'a str>,
    /// The envelope sender.
    pub mail_from: &'a str,
    /// The recipients it serves.
    pub recipients: &'a [String],
    /// Its destination domain.
    pub domain: &'a str,
    /// The job's `tipo` (`posta-certificata` for a busta) and Message-ID.
    pub tipo: Option<&'a str>,
    /// The Message-ID of what it carries.
    pub msgid: Option<&'a str>,
    /// When it was created (Unix ms).
    pub created_at: i64,
}

impl Relay<'_> {
    /// Whether it carries a busta di trasporto.
    pub fn is_busta(&self) -> bool {
        self.tipo == Some(Tipo::PostaCertificata.as_str())
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Accepted by the next hop (`host:port`).
    Sent(String),
    /// Try again.
    Temporary(String),
    /// Refused for good.
    Permanent(String),
}

/// A busta's own facts, for telling its sender.
#[derive(Clone, Copy)]
pub struct Accepted<'a> {
    /// Its daticert's facts.
    pub certified: &'a Certified,
    /// When we accepted it (Unix ms).
    pub at: i64,
    /// Its header block, for the notice's `text/rfc822-headers`.
    pub headers: Option<&'a [u8]>,
}

/// What the relay decision needs besides the attempt.
#[derive(Clone, Copy)]
pub struct Facts<'a> {
    /// Who we are.
    pub us: Us<'a>,
    /// Now, and the ids.
    pub now: Now<'a>,
    /// `[timers] expire_after` (ms): a busta's relay ends after it.
    pub expire_after: i64,
    /// When a temporary failure is tried again (Unix ms, backoff included).
    pub retry_at: i64,
    /// The busta it carries, when it is one of ours we know.
    pub accepted: Option<Accepted<'a>>,
}

/// What a relay attempt comes to.
#[derive(Debug)]
pub enum Outcome {
    /// Commit this.
    Batch(Box<Batch>),
    /// The sender of a busta must be told, but we do not know its message
    /// (no `messages` row): the job fails for good with this reason.
    Unknown(String),
}

/// Decide what `attempt` means for relay job `r`.
pub fn outcome(f: &Facts<'_>, r: &Relay<'_>, attempt: Attempt) -> Outcome {
    let now = f.now.ms;
    match attempt {
        Attempt::Sent(via) => {
            let mut b = Batch::at(now);
            let mut ev = Event::new(
                if r.is_busta() {
                    EventKind::InoltroBusta
                } else {
                    EventKind::Inoltro
                },
                now,
            );
            ev.identificativo = r.identificativo.map(str::to_string);
            ev.sender = Some(r.mail_from.to_string());
            ev.recipients = Some(r.recipients.join(", "));
            ev.generated_msgid = r.msgid.map(str::to_string);
            ev.detail = Some(format!(
                "{} sent to {} via {via}",
                r.tipo.unwrap_or_default(),
                r.domain
            ));
            b.log(ev);
            b.end = Some((r.id, JobEnd::Done));
            Outcome::Batch(Box::new(b))
        }
        Attempt::Temporary(e) if r.is_busta() && now > r.created_at + f.expire_after => {
            // The 24 h notice of a certified recipient is the timers' duty;
            // an ordinary one has no timer and is told here.
            let why = format!("not delivered within the time limit: {e}");
            undelivered(f, r, &why, Some(JobEnd::Failed(why.clone())), false)
        }
        Attempt::Temporary(error) => {
            let mut b = Batch::at(now);
            b.end = Some((
                r.id,
                JobEnd::Retry {
                    error,
                    due_at: f.retry_at,
                },
            ));
            Outcome::Batch(Box::new(b))
        }
        Attempt::Permanent(e) if r.is_busta() => {
            undelivered(f, r, &e, Some(JobEnd::Failed(e.clone())), true)
        }
        Attempt::Permanent(e) => Outcome::Batch(Box::new(failed(
            now,
            r.id,
            r.identificativo,
            r.recipients,
            "relay",
            &e,
        ))),
    }
}

/// A job given up: its log event (`lavoro-fallito`) and its end.
pub fn failed(
    now: i64,
    id: JobId,
    identificativo: Option<&str>,
    recipients: &[String],
    kind: &str,
    error: &str,
) -> Batch {
    let mut b = Batch::at(now);
    let mut ev = Event::new(EventKind::LavoroFallito, now);
    ev.identificativo = identificativo.map(str::to_string);
    ev.recipients = Some(recipients.join(", "));
    ev.error = Some(error.to_string());
    ev.detail = Some(format!("job {id} {kind}"));
    b.log(ev);
    b.end = Some((id, JobEnd::Failed(error.to_string())));
    b
}

/// A job held after it crashed the process again and again: its sender, if
/// it carries a busta of ours, is told as for a refusal.
pub fn held(f: &Facts<'_>, r: &Relay<'_>) -> Outcome {
    let why = "messaggio sospeso: ha causato ripetuti errori interni del gestore";
    undelivered(f, r, why, None, true)
}

/// Tell the sender of a busta that it was not delivered to the job's
/// recipients — a signed errore-consegna for each certified one (its timers
/// closed) unless `certificati` is false (their timers speak), a plain
/// notice for each ordinary one — and end the job with `end`.
fn undelivered(
    f: &Facts<'_>,
    r: &Relay<'_>,
    error: &str,
    end: Option<JobEnd>,
    certificati: bool,
) -> Outcome {
    let Some(a) = f.accepted else {
        return Outcome::Unknown(format!(
            "unknown message {}",
            r.identificativo.unwrap_or_default()
        ));
    };
    let c = a.certified;
    let now = f.now.ms;
    let mut b = Batch::at(now);
    b.end = end.map(|e| (r.id, e));
    let e = f.now.emitter(&f.us);
    for rcpt in r.recipients {
        let certified = c
            .destinatari
            .iter()
            .any(|d| d.address.eq_ignore_ascii_case(rcpt) && d.tipo == RecipientType::Certificato);
        if certified && !certificati {
            continue;
        }
        let mut ev = event_for(EventKind::InoltroFallito, now, c);
        ev.error = Some(error.to_string());
        ev.detail = Some(format!("refused for {rcpt}"));
        if certified {
            let esteso = format!(
                "5.0.0 - {} - {}",
                f.us.provider.name,
                error.replace(['\r', '\n'], " ")
            );
            let msg = receipt::errore_consegna(&e, c, rcpt, Errore::Altro, &esteso);
            let em = emit(
                &f.us,
                &mut b,
                msg,
                Tipo::ErroreConsegna,
                EventKind::ErroreConsegna,
                c,
                format!("errore-consegna:{}:{rcpt}", c.identificativo),
                &c.mittente,
            );
            ev.generated_msgid = em.event.generated_msgid;
            b.job(em.job);
            b.timers.push(TimerOp::Close {
                identificativo: c.identificativo.clone(),
                recipient: rcpt.clone(),
                by: "rifiuto-definitivo",
            });
            b.log(ev);
        } else {
            let n = notice::esterno_failure(
                f.us.provider,
                f.now.ids,
                &f.now.italian(),
                &EsternoFailure {
                    certified: c,
                    recipient: rcpt,
                    error,
                    reporting_host: f.us.hostname,
                    accepted: ItalianTime::from_unix(a.at.div_euclid(1000)),
                    original_headers: a.headers,
                },
            );
            let msgid = Some(n.message_id);
            let blob = b.blob(NewBlob::Bytes(n.bytes));
            ev.generated_msgid = msgid.clone();
            b.log(ev);
            let mut notice_ev = event_for(EventKind::MancataConsegnaEsterno, now, c);
            notice_ev.recipients = Some(rcpt.clone());
            notice_ev.error = Some(error.replace(['\r', '\n'], " "));
            notice_ev.generated_msgid = msgid.clone();
            notice_ev.detail = Some(format!(
                "not delivered to the ordinary address {rcpt}; non-certified notice to {}",
                c.mittente
            ));
            b.log(notice_ev);
            b.job(route(
                &f.us,
                format!("mancata-consegna-esterno:{}:{rcpt}", c.identificativo),
                &c.identificativo,
                &c.mittente,
                blob,
                notice_data(notice::ESTERNO_FAILED, &msgid),
                now,
            ));
        }
    }
    Outcome::Batch(Box::new(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::{check, render, T0};
    use crate::pec::daticert::Destinatario;
    use crate::pec::envelope::Provider;
    use crate::pec::ids::SequentialIds;
    use crate::pec::types::ReceiptType;

    fn certified() -> Certified {
        Certified {
            mittente: "mario@pec.alpha.test".into(),
            destinatari: vec![
                Destinatario {
                    address: "b@pec.beta.test".into(),
                    tipo: RecipientType::Certificato,
                },
                Destinatario {
                    address: "e@example.org".into(),
                    tipo: RecipientType::Esterno,
                },
            ],
            risposte: "mario@pec.alpha.test".into(),
            oggetto: Some("Fattura".into()),
            identificativo: "pecd.20181113163927.T000001@pec.alpha.test".into(),
            msgid: Some("<orig.1@client.example>".into()),
            ricevuta: ReceiptType::Completa,
        }
    }

    fn decide(rcpt: &str, domain: &str, created_at: i64, attempt: Attempt) -> Outcome {
        let p = Provider {
            name: "Alpha PEC S.p.A.".into(),
            domain: "pec.alpha.test".into(),
        };
        let d = vec!["pec.alpha.test".to_string()];
        let ids = SequentialIds::default();
        let c = certified();
        let f = Facts {
            us: Us {
                provider: &p,
                domains: &d,
                hostname: "mx.pec.alpha.test",
            },
            now: Now { ms: T0, ids: &ids },
            expire_after: 86_400_000,
            retry_at: T0 + 60_000,
            accepted: Some(Accepted {
                certified: &c,
                at: T0 - 1000,
                headers: Some(b"Subject: POSTA CERTIFICATA: Fattura\r\n"),
            }),
        };
        let rcpts = vec![rcpt.to_string()];
        let r = Relay {
            id: JobId(3),
            identificativo: Some("pecd.20181113163927.T000001@pec.alpha.test"),
            mail_from: "mario@pec.alpha.test",
            recipients: &rcpts,
            domain,
            tipo: Some("posta-certificata"),
            msgid: None,
            created_at,
        };
        outcome(&f, &r, attempt)
    }

    fn batch(o: Outcome) -> Batch {
        match o {
            Outcome::Batch(b) => *b,
            Outcome::Unknown(e) => panic!("{e}"),
        }
    }

    #[test]
    fn golden_sent_and_retried() {
        let b = batch(decide(
            "b@pec.beta.test",
            "pec.beta.test",
            T0,
            Attempt::Sent("127.0.0.1:25".into()),
        ));
        assert_eq!(b.end, Some((JobId(3), JobEnd::Done)));
        check("relay-sent", &render(&b));
        let b = batch(decide(
            "b@pec.beta.test",
            "pec.beta.test",
            T0,
            Attempt::Temporary("421 busy".into()),
        ));
        assert_eq!(
            b.end,
            Some((
                JobId(3),
                JobEnd::Retry {
                    error: "421 busy".into(),
                    due_at: T0 + 60_000
                }
            ))
        );
    }

    #[test]
    fn golden_refused_for_good_certified_and_ordinary() {
        let b = batch(decide(
            "b@pec.beta.test",
            "pec.beta.test",
            T0,
            Attempt::Permanent("550 5.1.1 no such user".into()),
        ));
        assert_eq!(b.timers.len(), 1, "the certified recipient is closed");
        check("relay-refused-certificato", &render(&b));
        let b = batch(decide(
            "e@example.org",
            "example.org",
            T0,
            Attempt::Permanent("5.4.4 no route to example.org".into()),
        ));
        assert!(b.timers.is_empty());
        check("relay-refused-esterno", &render(&b));
    }

    #[test]
    fn past_the_limit_the_timers_speak_for_certified_recipients() {
        let old = T0 - 86_400_001;
        let b = batch(decide(
            "b@pec.beta.test",
            "pec.beta.test",
            old,
            Attempt::Temporary("refused".into()),
        ));
        assert!(
            b.jobs.is_empty() && b.timers.is_empty(),
            "the 24 h timer tells"
        );
        assert!(matches!(b.end, Some((_, JobEnd::Failed(_)))));
        let b = batch(decide(
            "e@example.org",
            "example.org",
            old,
            Attempt::Temporary("refused".into()),
        ));
        assert_eq!(b.jobs.len(), 1, "the ordinary recipient's notice");
        check("relay-expired-esterno", &render(&b));
    }
}

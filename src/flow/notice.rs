//! The notice of a new PEC at an ordinary address (issue 24): a user may
//! name one (`PUT /api/v1/account/notify`); each busta delivered to the
//! box then queues a `notice` job in the delivery's batch, and that job
//! sends one short ordinary e-mail (no busta, no signature) through the
//! relay: sender, subject, time, never the content.
//!
//! At most one notice a minute per box. A PEC arriving within the minute
//! is only counted (`held`); the first of those stays queued until the
//! minute ends and then sends the count ("N altri messaggi PEC"), unless a
//! notice sent meanwhile has carried the count already. The state is one
//! row per box, changed by the notice job's batch under
//! [`Guard::Notice`], so two notice jobs of one box running at once
//! cannot both send: the second finds the row changed and runs again.

use serde::{Deserialize, Serialize};

use crate::pec::clock::ItalianTime;
use crate::pec::headers::{encoded_words, prefixed_subject, quote, quoted_printable};

pub use super::batch::NoticeState as State;
use super::batch::{Batch, Guard, JobEnd, JobId, JobKind, NewBlob, NewJob};
use super::{Now, Us};

/// At most one notice per box in this time (ms).
pub const EVERY_MS: i64 = 60_000;

/// The facts of one delivered PEC a notice tells (the notice job's data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pec {
    /// Its certified sender (the daticert's `mittente`).
    pub from: String,
    /// Its subject, as the daticert records it.
    pub subject: String,
    /// When it was delivered (unix ms).
    pub at: i64,
}

/// What a notice says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Says {
    /// This PEC arrived, and `others` more since the last notice.
    One {
        /// The PEC.
        pec: Pec,
        /// How many arrived before it without a notice of their own.
        others: i64,
    },
    /// `count` PEC arrived since the last notice.
    Summary {
        /// How many.
        count: i64,
    },
}

/// A notice job's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The box's state after it.
    pub then: State,
    /// The notice to send now, if any.
    pub says: Option<Says>,
    /// Run the job again at this time (it is the box's summary job).
    pub again_at: Option<i64>,
}

/// Decide the turn of notice job `job` about `pec` at `now`, the box's
/// notices being in `s`.
pub fn turn(s: &State, job: JobId, pec: &Pec, now: i64) -> Turn {
    if s.summary_job == Some(job) {
        if now < s.next_at {
            // A notice went out meanwhile and opened a new minute.
            return Turn {
                then: *s,
                says: None,
                again_at: Some(s.next_at),
            };
        }
        let then = State {
            summary_job: None,
            ..*s
        };
        if s.held == 0 {
            return Turn {
                then,
                says: None,
                again_at: None,
            };
        }
        return Turn {
            then: State {
                next_at: now + EVERY_MS,
                held: 0,
                summary_job: None,
            },
            says: Some(Says::Summary { count: s.held }),
            again_at: None,
        };
    }
    if now >= s.next_at {
        return Turn {
            then: State {
                next_at: now + EVERY_MS,
                held: 0,
                summary_job: s.summary_job,
            },
            says: Some(Says::One {
                pec: pec.clone(),
                others: s.held,
            }),
            again_at: None,
        };
    }
    let waiting = s.summary_job.is_some();
    Turn {
        then: State {
            held: s.held + 1,
            summary_job: Some(s.summary_job.unwrap_or(job)),
            ..*s
        },
        says: None,
        again_at: (!waiting).then_some(s.next_at),
    }
}

/// What a notice job needs besides its turn.
pub struct Facts<'a> {
    /// Who we are.
    pub us: Us<'a>,
    /// Now, and the ids.
    pub now: Now<'a>,
    /// The box.
    pub address: &'a str,
    /// Its notice address (ordinary e-mail).
    pub email: &'a str,
    /// The box's notices as read.
    pub state: State,
}

/// The batch of notice job `job` about `pec`: the box's new state (under
/// its guard), the notice as a relay job when one is due, the job's end.
pub fn batch(f: &Facts<'_>, job: JobId, pec: &Pec) -> Batch {
    let t = turn(&f.state, job, pec, f.now.ms);
    let mut b = Batch::at(f.now.ms);
    b.guard = Some(Guard::Notice {
        address: f.address.to_string(),
        seen: f.state,
        then: t.then,
    });
    if let Some(says) = &t.says {
        let domain = f.email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let bytes = b.blob(NewBlob::Bytes(message(f, says)));
        b.job(NewJob {
            key: String::new(),
            kind: JobKind::Relay,
            identificativo: None,
            // A null reverse path: nobody should answer or bounce a notice.
            mail_from: String::new(),
            recipients: vec![f.email.to_string()],
            next_hop: Some(domain.to_ascii_lowercase()),
            blob: Some(bytes),
            data: None,
            due_at: f.now.ms,
        });
    }
    b.end = Some((
        job,
        match t.again_at {
            Some(due_at) => JobEnd::Retry {
                error: "waiting: at most one notice a minute per box".into(),
                due_at,
            },
            None => JobEnd::Done,
        },
    ));
    b
}

/// One line of header text: control characters (a CR/LF smuggling a field
/// in) become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The notice: plain text in Italian, an ordinary message (not PEC).
fn message(f: &Facts<'_>, says: &Says) -> Vec<u8> {
    let when = |ms: i64| ItalianTime::from_unix(ms.div_euclid(1000)).human();
    let (subject, body) = match says {
        Says::One { pec, others } => {
            let subject = clean(&pec.subject);
            let mut body = format!(
                "Nella casella PEC {} è arrivato un nuovo messaggio PEC.\n\n\
                 Mittente: {}\nOggetto: {}\nRicevuto: {}\n",
                f.address,
                clean(&pec.from),
                subject,
                when(pec.at)
            );
            if *others > 0 {
                body.push_str(&format!(
                    "\nDall'avviso precedente sono arrivati anche {others} altri messaggi PEC.\n"
                ));
            }
            (format!("Nuovo messaggio PEC da {}", clean(&pec.from)), body)
        }
        Says::Summary { count } => (
            format!("{count} altri messaggi PEC"),
            format!(
                "Nella casella PEC {} sono arrivati {count} altri messaggi PEC \
                 dall'avviso precedente (al più un avviso al minuto).\n",
                f.address
            ),
        ),
    };
    let body = format!(
        "{body}\nIl contenuto si legge solo nella casella PEC.\n\
         Questo è un avviso automatico di {}: non è un messaggio PEC e non ha valore legale. \
         Per non riceverlo più: Impostazioni, Avviso di nuova PEC.\n",
        f.us.provider.name
    );
    let from_name = format!("{} (avviso)", f.us.provider.name);
    let display = if from_name.is_ascii() {
        quote(&from_name)
    } else {
        encoded_words(&from_name)
    };
    let mut m = String::new();
    m.push_str(&format!(
        "From: {display} <noreply@{}>\r\n",
        f.us.provider.domain
    ));
    m.push_str(&format!("To: <{}>\r\n", f.email));
    m.push_str(&format!("Subject: {}\r\n", prefixed_subject("", &subject)));
    m.push_str(&format!("Date: {}\r\n", f.now.italian().rfc5322()));
    m.push_str(&format!(
        "Message-ID: <{}.avviso@{}>\r\n",
        f.now.ids.token(),
        f.us.hostname
    ));
    // RFC 3834: an automatic message, so no autoresponder answers it.
    m.push_str("Auto-Submitted: auto-generated\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("Content-Type: text/plain; charset=UTF-8\r\n");
    m.push_str("Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    m.push_str(&quoted_printable(&body));
    m.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pec(n: i64) -> Pec {
        Pec {
            from: "bob@pec.beta.test".into(),
            subject: format!("Fattura {n}"),
            at: n,
        }
    }

    #[test]
    fn one_notice_a_minute_and_the_rest_counted_by_one_waiting_job() {
        let s = State::default();
        // The first PEC is told at once.
        let t = turn(&s, JobId(1), &pec(1), 1_000);
        assert_eq!(
            t.says,
            Some(Says::One {
                pec: pec(1),
                others: 0
            })
        );
        assert_eq!(t.again_at, None);
        let s = t.then;
        assert_eq!(s.next_at, 1_000 + EVERY_MS);
        // The second within the minute waits for its end, as the summary.
        let t = turn(&s, JobId(2), &pec(2), 2_000);
        assert_eq!((t.says.clone(), t.again_at), (None, Some(s.next_at)));
        let s = t.then;
        assert_eq!((s.held, s.summary_job), (1, Some(JobId(2))));
        // The third is only counted.
        let t = turn(&s, JobId(3), &pec(3), 3_000);
        assert_eq!((t.says.clone(), t.again_at), (None, None));
        let s = t.then;
        assert_eq!(s.held, 2);
        // Run early (a retry), the summary waits again.
        let t = turn(&s, JobId(2), &pec(2), 4_000);
        assert_eq!(
            (t.says.clone(), t.again_at, t.then),
            (None, Some(s.next_at), s)
        );
        // At the minute's end it tells both.
        let t = turn(&s, JobId(2), &pec(2), s.next_at);
        assert_eq!(t.says, Some(Says::Summary { count: 2 }));
        assert_eq!(
            t.then,
            State {
                next_at: s.next_at + EVERY_MS,
                held: 0,
                summary_job: None
            }
        );
    }

    #[test]
    fn a_notice_sent_before_the_summary_carries_the_count_and_the_summary_ends_quietly() {
        let s = State {
            next_at: 10_000,
            held: 2,
            summary_job: Some(JobId(7)),
        };
        let t = turn(&s, JobId(9), &pec(9), 10_500);
        assert_eq!(
            t.says,
            Some(Says::One {
                pec: pec(9),
                others: 2
            })
        );
        let s = t.then;
        assert_eq!(s.summary_job, Some(JobId(7)));
        // The summary job, late, waits for the new minute, then finds
        // nothing to tell.
        let t = turn(&s, JobId(7), &pec(7), 10_600);
        assert_eq!((t.says.clone(), t.again_at), (None, Some(s.next_at)));
        let t = turn(&s, JobId(7), &pec(7), s.next_at);
        assert_eq!((t.says.clone(), t.again_at), (None, None));
        assert_eq!(t.then.summary_job, None);
        assert_eq!(t.then.next_at, s.next_at);
    }

    #[test]
    fn the_notice_names_sender_subject_and_time_and_nothing_smuggles_a_field() {
        let provider = crate::pec::envelope::Provider {
            name: "Alpha PEC".into(),
            domain: "pec.alpha.test".into(),
        };
        let domains = vec!["pec.alpha.test".to_string()];
        let ids = crate::pec::ids::RandomIds;
        let f = Facts {
            us: Us {
                provider: &provider,
                domains: &domains,
                hostname: "mx.alpha.test",
            },
            now: Now {
                ms: 1_765_000_000_000,
                ids: &ids,
            },
            address: "alice@pec.alpha.test",
            email: "alice@plain.test",
            state: State::default(),
        };
        let p = Pec {
            from: "bob@pec.beta.test".into(),
            subject: "Ciao\r\nBcc: evil@x.test".into(),
            at: 1_765_000_000_000,
        };
        let b = batch(&f, JobId(4), &p);
        assert_eq!(b.jobs.len(), 1);
        assert_eq!(b.jobs[0].next_hop.as_deref(), Some("plain.test"));
        assert_eq!(b.jobs[0].recipients, vec!["alice@plain.test".to_string()]);
        let NewBlob::Bytes(m) = &b.blobs[0] else {
            panic!("a notice is not signed")
        };
        let m = String::from_utf8(m.clone()).unwrap();
        let (head, _) = m.split_once("\r\n\r\n").unwrap();
        assert!(!head.contains("\r\nBcc:"), "{head}");
        assert!(head.contains("Subject: Nuovo messaggio PEC da bob@pec.beta.test"));
        assert!(head.contains("Auto-Submitted: auto-generated"));
        assert!(!head.contains("posta-certificata"));
        assert!(matches!(b.end, Some((JobId(4), JobEnd::Done))));
    }
}

//! The delivery point (`pec-spec.md` §5.3) and mailbox deposits as
//! decisions.
//!
//! A busta for one of our users: stored in the mailbox and an avvenuta
//! consegna to the sender (completa, breve or sintetica, by `X-TipoRicevuta`
//! and Cc), or an avviso di mancata consegna when there is no such mailbox
//! or it is full; a plain notice to the user when the mailbox passes its
//! usage warning. A finished message (receipt, notice, anomaly): stored in
//! its addressee's mailbox. Every delivery is named after the work it comes
//! from ([`file_name_for`]), so a retry after a crash finds its own copy.

use crate::pec::classify::classify;
use crate::pec::daticert::Certified;
use crate::pec::delivery;
use crate::pec::receipt::{self, Consegna};
use crate::pec::types::{Errore, ReceiptType, Tipo};

use super::batch::{
    Batch, BlobRef, Delivery, Event, EventKind, JobEnd, JobId, JobKind, NewBlob, NewJob,
};
use super::{emit, Emitted, Now, Us};

/// A stable Maildir base name for an idempotency key; names sort in the
/// order the work was created (readers that list by name show mail in order).
pub fn file_name_for(key: &str, created_ms: i64, hostname: &str) -> String {
    let digest = openssl::sha::sha256(key.as_bytes());
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}.M{:06}K{hex}.{}",
        created_ms.div_euclid(1000),
        created_ms.rem_euclid(1000) * 1000,
        hostname.replace('/', "\\057").replace(':', "\\072")
    )
}

/// The job a delivery comes from.
#[derive(Clone, Copy)]
pub struct Work<'a> {
    /// Its id.
    pub id: JobId,
    /// Its idempotency key (names the delivery).
    pub key: &'a str,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// Attempts made before this one.
    pub attempts: i64,
    /// The one recipient it serves.
    pub recipient: &'a str,
    /// Its bytes.
    pub raw: &'a [u8],
    /// Their spool name.
    pub blob: &'a str,
}

impl Work<'_> {
    /// This work's delivery name for a given host.
    pub fn name(&self, hostname: &str) -> String {
        file_name_for(self.key, self.created_at, hostname)
    }

    fn delivery(&self, hostname: &str) -> Delivery {
        Delivery {
            address: self.recipient.to_string(),
            name: self.name(hostname),
            bytes: BlobRef::Spooled(self.blob.to_string()),
            created_at: self.created_at,
            attempts: self.attempts,
        }
    }
}

/// Whether a busta fits in its recipient's mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// It fits; with the usage before it and the quota, when there is one.
    Fits(Option<(u64, u64)>),
    /// Storing it would pass the quota.
    Full {
        /// Bytes used now.
        used: u64,
        /// The quota.
        limit: u64,
    },
}

/// What the delivery point knows about the recipient.
#[derive(Clone, Copy)]
pub struct Facts<'a> {
    /// Who we are.
    pub us: Us<'a>,
    /// Whether the recipient is a user of ours with a mailbox.
    pub known: bool,
    /// Whether the busta fits.
    pub room: Room,
    /// `[mailbox] quota_warning`, percent of the quota.
    pub quota_warning: u64,
    /// Now, and the ids.
    pub now: Now<'a>,
    /// Whether the recipient wants an ordinary e-mail of each new PEC
    /// (`flow::notice`).
    pub notice: bool,
}

/// A busta's delivery, decided.
#[derive(Debug)]
pub struct Outcome {
    /// What to commit.
    pub batch: Batch,
    /// An avvenuta consegna for a sender of ours (its latency is measured).
    pub consegna_to_our_sender: bool,
}

/// Why a delivery cannot be decided at all (the job fails for good).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotABusta;

impl std::fmt::Display for NotABusta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("busta without daticert.xml")
    }
}

/// Deliver a busta to one local recipient.
pub fn busta(f: &Facts<'_>, w: &Work<'_>) -> Result<Outcome, NotABusta> {
    let m = classify(w.raw);
    let d = m.daticert.as_ref().ok_or(NotABusta)?;
    let c = Certified::from(d);
    let mut b = Batch::at(f.now.ms);
    b.end = Some((w.id, JobEnd::Done));
    let e = f.now.emitter(&f.us);
    let rcpt = w.recipient;
    let id = &c.identificativo;
    let size = w.raw.len() as u64;
    if !f.known {
        let esteso = receipt::no_dest_esteso(&f.us.provider.name);
        let mut em = not_delivered(f, &mut b, &c, rcpt, Errore::NoDest, &esteso);
        em.event.error = Some(esteso);
        em.event.detail = Some(format!("no mailbox {rcpt}"));
        b.log(em.event);
        b.job(em.job);
        return Ok(Outcome {
            batch: b,
            consegna_to_our_sender: false,
        });
    }
    if let Room::Full { used, limit } = f.room {
        let esteso = receipt::full_box_esteso(&f.us.provider.name);
        let mut em = not_delivered(f, &mut b, &c, rcpt, Errore::Altro, &esteso);
        em.event.error = Some(esteso);
        em.event.detail = Some(format!(
            "mailbox of {rcpt} full: {used} bytes used of {limit}, busta of {size} bytes not stored"
        ));
        b.log(em.event);
        b.job(em.job);
        return Ok(Outcome {
            batch: b,
            consegna_to_our_sender: false,
        });
    }
    b.deliveries.push(w.delivery(f.us.hostname));
    let postacert = m.postacert.clone().map(|r| &w.raw[r]).unwrap_or(&[]);
    let kind = delivery::receipt_type_for(c.ricevuta, delivery::is_cc(postacert, rcpt));
    let breve;
    let consegna = match kind {
        ReceiptType::Completa => Consegna::Completa(postacert),
        ReceiptType::Breve => {
            breve = delivery::breve(postacert);
            Consegna::Breve(&breve)
        }
        ReceiptType::Sintetica => Consegna::Sintetica,
    };
    if let Room::Fits(Some((used, limit))) = f.room {
        if let Some((name, text)) = quota_warning(f, w, id, used, used + size, limit) {
            let bytes = b.blob(NewBlob::Bytes(text));
            b.deliveries.push(Delivery {
                address: rcpt.to_string(),
                name,
                bytes,
                created_at: w.created_at,
                attempts: 1,
            });
        }
    }
    let msg = receipt::avvenuta_consegna(&e, &c, rcpt, consegna);
    let em = emit(
        &f.us,
        &mut b,
        msg,
        Tipo::AvvenutaConsegna,
        EventKind::AvvenutaConsegna,
        &c,
        format!("consegna:{id}:{rcpt}"),
        &c.mittente,
    );
    let mut ev = em.event;
    ev.receipt_type = Some(kind.as_str().into());
    ev.detail = Some(format!("busta stored in the mailbox of {rcpt}"));
    b.log(ev);
    b.job(em.job);
    if f.notice {
        // Queued with the delivery, so a restart loses no notice.
        let pec = crate::flow::notice::Pec {
            from: c.mittente.clone(),
            subject: c.oggetto.clone().unwrap_or_default(),
            at: f.now.ms,
        };
        b.job(NewJob {
            key: format!("notice:{id}:{rcpt}"),
            kind: JobKind::Notice,
            identificativo: Some(id.clone()),
            mail_from: String::new(),
            recipients: vec![rcpt.to_string()],
            next_hop: None,
            blob: None,
            data: serde_json::to_string(&pec).ok(),
            due_at: f.now.ms,
        });
    }
    Ok(Outcome {
        batch: b,
        consegna_to_our_sender: f.us.is_local(&c.mittente),
    })
}

/// The signed avviso di mancata consegna to the sender for `rcpt`, keyed so
/// each recipient gets one whatever the reason.
fn not_delivered(
    f: &Facts<'_>,
    b: &mut Batch,
    c: &Certified,
    rcpt: &str,
    errore: Errore,
    esteso: &str,
) -> Emitted {
    let msg = receipt::errore_consegna(&f.now.emitter(&f.us), c, rcpt, errore, esteso);
    emit(
        &f.us,
        b,
        msg,
        Tipo::ErroreConsegna,
        EventKind::ErroreConsegna,
        c,
        format!("errore-consegna:{}:{rcpt}", c.identificativo),
        &c.mittente,
    )
}

/// Tell the user, once per crossing, that the mailbox passed
/// `[mailbox] quota_warning`: a plain message in the INBOX, not a PEC
/// receipt. `None` unless this busta crosses it.
fn quota_warning(
    f: &Facts<'_>,
    w: &Work<'_>,
    id: &str,
    before: u64,
    after: u64,
    limit: u64,
) -> Option<(String, Vec<u8>)> {
    let threshold = limit.saturating_mul(f.quota_warning) / 100;
    if before >= threshold || after < threshold {
        return None;
    }
    let now = f.now.italian();
    let domain = &f.us.provider.domain;
    let rcpt = w.recipient;
    let msgid = crate::pec::ids::message_id(f.now.ids, &now, domain);
    let used_pct = after.saturating_mul(100) / limit.max(1);
    let text = format!(
        "From: \"{name}\" <posta-certificata@{domain}>\r\n\
         To: <{rcpt}>\r\n\
         Subject: Casella PEC quasi piena ({used_pct}%)\r\n\
         Date: {date}\r\n\
         Message-ID: <{msgid}>\r\n\
         Auto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         La casella {rcpt} occupa {after} byte dei {limit} disponibili ({used_pct}%).\r\n\
         \r\n\
         Quando sara' piena, i messaggi PEC in arrivo non saranno consegnati e ai\r\n\
         mittenti arrivera' un avviso di mancata consegna. Per liberare spazio,\r\n\
         eliminare o archiviare i messaggi che non servono piu'.\r\n\
         \r\n\
         Messaggio informativo del gestore {name}: non e' una ricevuta PEC.\r\n",
        name = f.us.provider.name,
        date = now.rfc5322(),
    );
    let name = file_name_for(
        &format!("quota-warning:{id}:{rcpt}"),
        w.created_at,
        f.us.hostname,
    );
    Some((name, text.into_bytes()))
}

/// Store a finished message (a receipt, a notice, an anomaly) in its
/// addressee's mailbox; `tipo` and `msgid` are what its job recorded.
pub fn deposit(
    us: &Us<'_>,
    now: i64,
    w: &Work<'_>,
    identificativo: Option<&str>,
    tipo: Option<&str>,
    msgid: Option<String>,
) -> Batch {
    let mut b = Batch::at(now);
    b.end = Some((w.id, JobEnd::Done));
    b.deliveries.push(w.delivery(us.hostname));
    let mut ev = Event::new(EventKind::Deposito, now);
    ev.identificativo = identificativo.map(str::to_string);
    ev.recipients = Some(w.recipient.to_string());
    ev.generated_msgid = msgid;
    ev.detail = Some(format!(
        "{} stored in the mailbox of {}",
        tipo.unwrap_or("message"),
        w.recipient
    ));
    b.log(ev);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::{check, render, T0};
    use crate::pec::access::{check as access_check, Limits};
    use crate::pec::clock::ItalianTime;
    use crate::pec::daticert::Destinatario;
    use crate::pec::envelope::{busta_di_trasporto, Provider};
    use crate::pec::ids::SequentialIds;
    use crate::pec::types::RecipientType;

    fn busta_bytes(tipo_ricevuta: &str, cc: bool) -> Vec<u8> {
        let alpha = Provider {
            name: "Alpha PEC S.p.A.".into(),
            domain: "pec.alpha.test".into(),
        };
        let (to, ccl) = if cc {
            ("x@pec.alpha.test", "\r\nCc: b@pec.beta.test")
        } else {
            ("b@pec.beta.test", "")
        };
        let raw = format!("From: mario@pec.alpha.test\r\nTo: {to}{ccl}\r\nSubject: Fattura\r\nMessage-ID: <orig.1@client.example>\r\nX-TipoRicevuta: {tipo_ricevuta}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nIn allegato.\r\n--XX\r\nContent-Type: application/pdf; name=\"f.pdf\"\r\nContent-Disposition: attachment; filename=\"f.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8=\r\n--XX--\r\n");
        let mut rcpts = vec![to.to_string()];
        if cc {
            rcpts.push("b@pec.beta.test".into());
        }
        let acc = access_check(
            raw.as_bytes(),
            "mario@pec.alpha.test",
            &rcpts,
            None,
            &Limits::default(),
        )
        .unwrap();
        let d: Vec<Destinatario> = rcpts
            .iter()
            .map(|a| Destinatario {
                address: a.clone(),
                tipo: RecipientType::Certificato,
            })
            .collect();
        let ids = SequentialIds::starting_at(100);
        let when = ItalianTime::from_unix(T0 / 1000 - 60);
        let id = crate::pec::ids::identificativo(&ids, &when, "pec.alpha.test");
        let b = busta_di_trasporto(&alpha, &ids, &when, raw.as_bytes(), &acc, &id, &d);
        crate::golden::flat(&b.unsigned)
    }

    fn deliver(raw: &[u8], known: bool, room: Room) -> Outcome {
        deliver_noticed(raw, known, room, false)
    }

    fn deliver_noticed(raw: &[u8], known: bool, room: Room, notice: bool) -> Outcome {
        let beta = Provider {
            name: "Beta PEC S.p.A.".into(),
            domain: "pec.beta.test".into(),
        };
        let domains = vec!["pec.beta.test".to_string()];
        let ids = SequentialIds::default();
        let f = Facts {
            us: Us {
                provider: &beta,
                domains: &domains,
                hostname: "mx.pec.beta.test",
            },
            known,
            room,
            quota_warning: 90,
            now: Now { ms: T0, ids: &ids },
            notice,
        };
        let w = Work {
            id: JobId(7),
            key: "busta:pecd.x@pec.alpha.test:b@pec.beta.test",
            created_at: T0 - 1000,
            attempts: 0,
            recipient: "b@pec.beta.test",
            raw,
            blob: "seg-00000001.spool@0+100",
        };
        busta(&f, &w).unwrap()
    }

    #[test]
    fn golden_consegna_completa_breve_sintetica() {
        for (tipo, cc, name) in [
            ("completa", false, "deliver-completa"),
            ("breve", false, "deliver-breve"),
            ("completa", true, "deliver-cc-sintetica"),
        ] {
            let o = deliver(&busta_bytes(tipo, cc), true, Room::Fits(None));
            assert_eq!(o.batch.deliveries.len(), 1, "{name}");
            assert!(!o.consegna_to_our_sender, "the sender is Alpha's");
            check(name, &render(&o.batch));
        }
    }

    #[test]
    fn a_delivered_busta_queues_its_notice_when_the_box_wants_one() {
        let raw = busta_bytes("completa", false);
        let notices = |o: &Outcome| -> Vec<NewJob> {
            o.batch
                .jobs
                .iter()
                .filter(|j| j.kind == JobKind::Notice)
                .cloned()
                .collect()
        };
        assert!(notices(&deliver_noticed(&raw, true, Room::Fits(None), false)).is_empty());
        let full = Room::Full {
            used: 10,
            limit: 10,
        };
        assert!(notices(&deliver_noticed(&raw, true, full, true)).is_empty());
        let n = notices(&deliver_noticed(&raw, true, Room::Fits(None), true));
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].recipients, vec!["b@pec.beta.test".to_string()]);
        assert_eq!(n[0].due_at, T0);
        let pec: crate::flow::notice::Pec =
            serde_json::from_str(n[0].data.as_deref().unwrap()).unwrap();
        assert_eq!(pec.at, T0);
        assert!(pec.from.ends_with("@pec.alpha.test"), "{pec:?}");
    }

    #[test]
    fn golden_no_mailbox_full_mailbox_and_the_usage_warning() {
        let raw = busta_bytes("completa", false);
        let o = deliver(&raw, false, Room::Fits(None));
        assert!(o.batch.deliveries.is_empty());
        check("deliver-no-mailbox", &render(&o.batch));
        let o = deliver(
            &raw,
            true,
            Room::Full {
                used: 90,
                limit: 100,
            },
        );
        assert!(o.batch.deliveries.is_empty());
        check("deliver-full", &render(&o.batch));
        let limit = raw.len() as u64 * 10;
        let o = deliver(&raw, true, Room::Fits(Some((limit * 85 / 100, limit))));
        assert_eq!(o.batch.deliveries.len(), 2, "busta and warning");
        check("deliver-quota-warning", &render(&o.batch));
        // Already past the warning: no second one.
        let o = deliver(&raw, true, Room::Fits(Some((limit * 95 / 100, limit))));
        assert_eq!(o.batch.deliveries.len(), 1);
    }

    #[test]
    fn a_deposit_names_its_copy_after_the_work() {
        let p = Provider {
            name: "Beta".into(),
            domain: "pec.beta.test".into(),
        };
        let d = vec!["pec.beta.test".to_string()];
        let us = Us {
            provider: &p,
            domains: &d,
            hostname: "mx/x:1",
        };
        let w = Work {
            id: JobId(1),
            key: "ricevuta:m@x:b@pec.beta.test",
            created_at: 1_000_123,
            attempts: 2,
            recipient: "b@pec.beta.test",
            raw: b"x",
            blob: "seg@0+1",
        };
        let b = deposit(&us, 5, &w, Some("id"), Some("avvenuta-consegna"), None);
        assert_eq!(
            b.deliveries[0].name,
            file_name_for("ricevuta:m@x:b@pec.beta.test", 1_000_123, "mx/x:1")
        );
        assert!(b.deliveries[0].name.starts_with("1000.M123000K"));
        assert!(b.deliveries[0].name.ends_with(".mx\\057x\\0721"));
        assert_eq!(b.end, Some((JobId(1), JobEnd::Done)));
        check("deliver-deposit", &render(&b));
    }
}

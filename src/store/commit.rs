//! The one write door: [`Store::commit`] takes a [`Batch`] — what one step
//! of the provider decided — and writes it whole. Bytes first (spool
//! blobs, mailbox files, the quarantine copy), then every row in one
//! group-committed transaction, after the spool and the new directory
//! entries are synced: a row never names bytes that could be lost, and the
//! caller's answer (`250`, a job marked done) waits for the commit.
//!
//! A job of the batch with an empty key is keyed by its new blob's spool
//! name (`inbound:<blob>`): bytes received over SMTP have no other name
//! that is unique before they are spooled.

use crate::flow::batch::{Batch, BlobRef, Guard, JobEnd, NewBlob, NewJob, TimerOp};

use super::backend::Tx;
use super::queue::{Job, JobState};
use super::{quarantine, Result, Store, StoreError};

/// What a committed batch gives back.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// Whether the batch was written (false: its guard no longer held, and
    /// nothing was).
    pub applied: bool,
    /// The spool names of the batch's new blobs, in order.
    pub blobs: Vec<String>,
    /// For each job of the batch, whether it was new (false: a job with
    /// its key was queued already).
    pub new_jobs: Vec<bool>,
    /// The acceptance times (Unix ms) of the recipients an avvenuta
    /// consegna closed in this batch (consegna latency).
    pub delivered_sent_at: Vec<i64>,
    /// The new jobs due at once, written claimed by the batch's taker: the
    /// caller hands them to that node's scheduler.
    pub taken: Vec<Job>,
}

/// Blobs up to this size in all are appended to the spool by the writer
/// thread in the transaction that names them: one hand-off between threads
/// instead of two. Larger ones are appended by the caller first, so that a
/// large copy never holds up the writer.
const INLINE_BLOBS_MAX: usize = crate::smtp::DEFAULT_SPOOL_THRESHOLD;

impl Store {
    /// Write `batch` (see the module doc); resolves after the commit.
    pub async fn commit(&self, batch: Batch) -> Result<Committed> {
        // A batch of rows and small blobs only is staged without touching
        // a file: no trip through the blocking pool for it.
        let staged = if Self::stages_files(&batch) {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.stage(batch))
                .await
                .map_err(|e| StoreError::Commit(e.to_string()))??
        } else {
            self.stage(batch)?
        };
        self.commit_staged(staged).await
    }

    /// The rows of a batch whose bytes [`Store::stage`] wrote, in the next
    /// group commit; resolves after the commit.
    pub async fn commit_staged(&self, staged: Staged) -> Result<Committed> {
        let store = self.clone();
        self.write(move |db| store.apply(db, staged)).await
    }

    /// Whether staging `batch` writes or reads files (mailbox deliveries,
    /// a quarantine copy, spooled bytes, blobs too large to inline).
    fn stages_files(batch: &Batch) -> bool {
        let inline: usize = batch
            .blobs
            .iter()
            .map(|b| match b {
                NewBlob::Bytes(v) => v.len(),
                NewBlob::Sign(_) => 0,
            })
            .sum();
        !batch.deliveries.is_empty() || batch.quarantine.is_some() || inline > INLINE_BLOBS_MAX
    }

    /// Blocking form of [`Store::commit`].
    pub fn commit_blocking(&self, batch: Batch) -> Result<Committed> {
        let staged = self.stage(batch)?;
        let store = self.clone();
        self.write_blocking(move |db| store.apply(db, staged))
    }

    /// The bytes of a batch written where they go, before its rows
    /// (blocking: callers already off the async threads stage here and
    /// then [`Store::commit_staged`]).
    pub fn stage(&self, batch: Batch) -> Result<Staged> {
        let mut bytes = Vec::with_capacity(batch.blobs.len());
        for b in batch.blobs.iter() {
            match b {
                NewBlob::Bytes(v) => bytes.push(v.as_slice()),
                NewBlob::Sign(_) => {
                    return Err(StoreError::Commit(
                        "a message of the batch was not signed".into(),
                    ))
                }
            }
        }
        let read = |r: &BlobRef| -> Result<std::borrow::Cow<'_, [u8]>> {
            match r {
                BlobRef::New(i) => bytes
                    .get(*i)
                    .map(|b| std::borrow::Cow::Borrowed(*b))
                    .ok_or_else(|| StoreError::Commit(format!("no blob {i} in the batch"))),
                BlobRef::Spooled(name) => Ok(std::borrow::Cow::Owned(self.get_blob(name)?)),
            }
        };
        for d in &batch.deliveries {
            let b = read(&d.bytes)?;
            self.deliver(&d.address, &d.name, &b, d.created_at, d.attempts)
                .map_err(|e| StoreError::Mailbox(d.address.clone(), e))?;
        }
        let quarantine_file = match &batch.quarantine {
            Some(q) => {
                let b = read(&q.bytes)?;
                let file = quarantine::keep(&self.paths().data_dir, batch.now, &b)?;
                Some((file, b.len() as i64))
            }
            None => None,
        };
        let total: usize = bytes.iter().map(|b| b.len()).sum();
        let names = if total > INLINE_BLOBS_MAX {
            Some(
                bytes
                    .iter()
                    .map(|b| self.put_blob(b))
                    .collect::<std::io::Result<Vec<_>>>()?,
            )
        } else {
            None
        };
        Ok(Staged {
            batch,
            names,
            quarantine_file,
        })
    }

    /// The rows of a staged batch, in the writer's transaction.
    fn apply(&self, db: &dyn Tx, s: Staged) -> Result<Committed> {
        let Staged {
            batch,
            names,
            quarantine_file,
        } = s;
        let now = batch.now;
        let mut out = Committed::default();
        // First: a batch whose claim was lost writes nothing, not even
        // what its guard would let through.
        if let Some(f) = &batch.fence {
            if !db.claim_holds(f)? {
                return Err(StoreError::LostClaim);
            }
        }
        if let Some(Guard::TimerArmed(t)) = &batch.guard {
            if !db.timer_fired(t)? {
                // Nothing to do after all, and nothing left to hold.
                if let Some(f) = &batch.fence {
                    db.claim_end(&f.what)?;
                }
                return Ok(out);
            }
        }
        if let Some(Guard::Notice {
            address,
            seen,
            then,
        }) = &batch.guard
        {
            if !db.notice_swap(address, seen, then)? {
                return Err(StoreError::Changed(format!(
                    "the new-PEC notices of {address}"
                )));
            }
        }
        out.applied = true;
        out.blobs = match names {
            Some(n) => n,
            None => batch
                .blobs
                .iter()
                .map(|b| match b {
                    NewBlob::Bytes(v) => self.put_blob(v),
                    NewBlob::Sign(_) => unreachable_unsigned(),
                })
                .collect::<std::io::Result<Vec<_>>>()?,
        };
        let name_of = |r: &BlobRef| -> Result<String> {
            match r {
                BlobRef::Spooled(s) => Ok(s.clone()),
                BlobRef::New(i) => out
                    .blobs
                    .get(*i)
                    .cloned()
                    .ok_or_else(|| StoreError::Commit(format!("no blob {i} in the batch"))),
            }
        };
        if let Some(m) = &batch.message {
            db.message_insert(m)?;
        }
        let mut new_jobs = Vec::with_capacity(batch.jobs.len());
        for j in &batch.jobs {
            let blob = j.blob.as_ref().map(&name_of).transpose()?;
            let keyed;
            let j = match (j.key.is_empty(), &blob) {
                (false, _) => j,
                (true, Some(b)) => {
                    keyed = NewJob {
                        key: format!("{}:{b}", j.kind.as_str()),
                        ..j.clone()
                    };
                    &keyed
                }
                (true, None) => {
                    return Err(StoreError::Commit(
                        "a job of the batch has neither a key nor a blob".into(),
                    ))
                }
            };
            match batch.taker.as_ref().filter(|_| j.due_at <= now) {
                Some(t) => {
                    let until = now.saturating_add(t.lease_ms);
                    let id = db.job_enqueue_claimed(j, blob.as_deref(), now, &t.node, until)?;
                    new_jobs.push(id.is_some());
                    if let Some(id) = id {
                        out.taken.push(Job {
                            id,
                            key: j.key.clone(),
                            kind: j.kind,
                            identificativo: j.identificativo.clone(),
                            mail_from: j.mail_from.clone(),
                            recipients: j.recipients.clone(),
                            next_hop: j.next_hop.clone(),
                            blob,
                            data: j.data.clone(),
                            state: JobState::Pending,
                            attempts: 0,
                            last_error: None,
                            due_at: j.due_at,
                            created_at: now,
                            updated_at: now,
                            claimed_by: Some(t.node.clone()),
                            claimed_until: Some(until),
                            fence: 1,
                        });
                    }
                }
                None => new_jobs.push(db.job_enqueue_named(j, blob.as_deref(), now)?),
            }
        }
        let repeated =
            |i: &Option<usize>| i.is_some_and(|i| !new_jobs.get(i).copied().unwrap_or(true));
        for l in &batch.log {
            if !repeated(&l.unless_repeat_of) {
                db.log_append(&l.event)?;
            }
        }
        if let (Some(q), Some((file, size))) = (&batch.quarantine, quarantine_file) {
            if !repeated(&q.unless_repeat_of) {
                db.quarantine_insert(&quarantine::Quarantined {
                    id: 0,
                    identificativo: q.identificativo.clone(),
                    virus: q.virus.clone(),
                    sender: q.sender.clone(),
                    recipients: q.recipients.clone(),
                    point: q.point.to_string(),
                    file,
                    size,
                    at: now,
                })?;
            }
        }
        for t in &batch.timers {
            match t {
                TimerOp::Start {
                    identificativo,
                    recipient,
                    sent_at,
                    preavviso_due,
                    expire_due,
                } => db.timer_start(
                    identificativo,
                    recipient,
                    *sent_at,
                    *preavviso_due,
                    *expire_due,
                )?,
                TimerOp::Presa {
                    identificativo,
                    recipient,
                } => {
                    db.timer_presa(identificativo, recipient, now)?;
                }
                TimerOp::Close {
                    identificativo,
                    recipient,
                    by,
                } => {
                    db.timer_close(identificativo, recipient, now, by)?;
                }
                TimerOp::Delivered {
                    identificativo,
                    recipient,
                } => {
                    if let Some(sent) =
                        db.timer_close(identificativo, recipient, now, "ricevuta")?
                    {
                        out.delivered_sent_at.push(sent);
                    }
                }
                TimerOp::StopRelays { identificativo } => db.stop_relays(identificativo, now)?,
            }
        }
        match &batch.end {
            Some((id, JobEnd::Done)) => db.job_mark_done(*id, now)?,
            Some((id, JobEnd::Failed(e))) => db.job_mark_failed(*id, e, now)?,
            Some((id, JobEnd::Retry { error, due_at })) => {
                db.job_reschedule(*id, error, *due_at, now)?
            }
            None => {}
        }
        if let Some(f) = &batch.fence {
            db.claim_end(&f.what)?;
        }
        out.new_jobs = new_jobs;
        Ok(out)
    }
}

/// `stage` refused unsigned messages before the writer saw the batch.
fn unreachable_unsigned() -> std::io::Result<String> {
    Err(std::io::Error::other(
        "a message of the batch was not signed",
    ))
}

/// A batch whose bytes are written, its rows still to commit.
pub struct Staged {
    batch: Batch,
    /// The spool names, when the caller appended the blobs itself.
    names: Option<Vec<String>>,
    /// The quarantine file and its size.
    quarantine_file: Option<(String, i64)>,
}

#[cfg(test)]
mod tests {
    //! The deadlines with a clock the test moves: no daemon, no sleeping.
    use super::*;
    use crate::flow::batch::{Deadline, TimerOp};
    use crate::flow::{Now, Us};
    use crate::pec::clock::{Clock, ManualClock};
    use crate::pec::daticert::{Certified, Destinatario};
    use crate::pec::envelope::Provider;
    use crate::pec::ids::SequentialIds;
    use crate::pec::timers::{expiry_due, preavviso_due, TimerConfig};
    use crate::pec::types::{ReceiptType, RecipientType};

    const H: i64 = 3_600_000;

    #[tokio::test]
    async fn deadlines_fire_once_each_as_the_clock_passes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = ManualClock::at(1_765_000_000_000);
        let ids = SequentialIds::default();
        let p = Provider {
            name: "Alpha".into(),
            domain: "pec.alpha.test".into(),
        };
        let domains = vec!["pec.alpha.test".to_string()];
        let us = Us {
            provider: &p,
            domains: &domains,
            hostname: "mx.test",
        };
        let c = Certified {
            mittente: "mario@pec.alpha.test".into(),
            destinatari: vec![Destinatario {
                address: "b@pec.beta.test".into(),
                tipo: RecipientType::Certificato,
            }],
            risposte: "mario@pec.alpha.test".into(),
            oggetto: Some("x".into()),
            identificativo: "id-1@pec.alpha.test".into(),
            msgid: None,
            ricevuta: ReceiptType::Completa,
        };
        let t0 = clock.unix_ms();
        let cfg = TimerConfig {
            preavviso_after: 12 * H,
            expiry_after: 24 * H,
        };
        let mut b = Batch::at(t0);
        b.timers.push(TimerOp::Start {
            identificativo: c.identificativo.clone(),
            recipient: "b@pec.beta.test".into(),
            sent_at: t0,
            preavviso_due: preavviso_due(t0, &cfg),
            expire_due: expiry_due(t0, &cfg),
        });
        store.commit(b).await.unwrap();
        // What a claim would hand out, released again for the next look.
        let due = |clock: &ManualClock| {
            let store = store.clone();
            let now = clock.unix_ms();
            async move {
                let me = crate::store::claims::Claimant::new("node", 1);
                let want = crate::store::claims::Want {
                    timers: 10,
                    ..Default::default()
                };
                let got = store.claim(&me, now, want).await.unwrap();
                store.release_node("node").await.unwrap();
                got.timers.into_iter().map(|c| c.timer).collect::<Vec<_>>()
            }
        };
        clock.advance(12 * H - 1);
        assert!(due(&clock).await.is_empty(), "nothing before 12 h");
        clock.advance(1);
        let d = due(&clock).await;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].deadline, Deadline::Preavviso);
        let fire = |t: &crate::flow::batch::DueTimer| {
            let mut b = crate::flow::timers::fire(
                &us,
                &Now {
                    ms: clock.unix_ms(),
                    ids: &ids,
                },
                t,
                Some(&c),
            );
            // A stand-in for the signature: the store takes bytes.
            for blob in b.blobs.iter_mut() {
                if let NewBlob::Sign(u) = blob {
                    *blob = NewBlob::Bytes(u.entity.clone());
                }
            }
            b
        };
        let first = store.commit(fire(&d[0])).await.unwrap();
        assert!(first.applied && first.new_jobs == [true]);
        // The same deadline looked at again (a restart, another node) does nothing.
        let again = store.commit(fire(&d[0])).await.unwrap();
        assert!(!again.applied);
        assert!(due(&clock).await.is_empty(), "the 12 h warning fired once");
        clock.advance(12 * H);
        let d = due(&clock).await;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].deadline, Deadline::Expire);
        assert!(store.commit(fire(&d[0])).await.unwrap().applied);
        clock.advance(48 * H);
        assert!(due(&clock).await.is_empty(), "closed by the 24 h notice");
        store.close();
    }
}

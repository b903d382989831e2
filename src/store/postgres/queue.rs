//! The SQL of the work queue and the per-recipient PEC timers on
//! PostgreSQL: see `sqlite/queue.rs`.

use ::postgres::Row;

use super::PgDb;
use crate::store::queue::{
    BlobRef, Deadline, DueTimer, Job, JobId, JobState, Kind, Listing, NewJob, MAX_CRASHES,
};
use crate::store::{Result, StoreError};

pub(super) const COLS: &str = "id, key, kind, identificativo, mail_from, recipients, next_hop, blob, data, state, attempts, last_error, due_at, created_at, updated_at, claimed_by, claimed_until, fence";

pub(super) fn row_to_job(r: &Row) -> Result<Job> {
    let kind: String = r.get(2);
    let rcpts: String = r.get(5);
    let state: String = r.get(9);
    Ok(Job {
        id: JobId(r.get(0)),
        key: r.get(1),
        kind: Kind::parse(&kind).unwrap_or(Kind::Mailbox),
        identificativo: r.get(3),
        mail_from: r.get(4),
        recipients: serde_json::from_str(&rcpts).unwrap_or_default(),
        next_hop: r.get(6),
        blob: r.get(7),
        data: r.get(8),
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Commit(format!("unknown job state {state:?}")))?,
        attempts: r.get(10),
        last_error: r.get(11),
        due_at: r.get(12),
        created_at: r.get(13),
        updated_at: r.get(14),
        claimed_by: r.get(15),
        claimed_until: r.get(16),
        fence: r.get(17),
    })
}

fn jobs(rows: Vec<Row>) -> Result<Vec<Job>> {
    rows.iter().map(row_to_job).collect()
}

impl PgDb<'_> {
    /// Add a job unless one with the same key exists. True if added.
    pub(in crate::store) fn job_enqueue(&self, j: &NewJob, now: i64) -> Result<bool> {
        let blob = match &j.blob {
            None => None,
            Some(BlobRef::Spooled(s)) => Some(s.as_str()),
            Some(BlobRef::New(i)) => {
                return Err(StoreError::Commit(format!(
                    "job {} names new blob {i} outside its batch",
                    j.key
                )))
            }
        };
        self.job_enqueue_named(j, blob, now)
    }

    /// [`PgDb::job_enqueue`] with the blob's spool name given.
    pub(in crate::store) fn job_enqueue_named(
        &self,
        j: &NewJob,
        blob: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        Ok(self.job_insert(j, blob, now, None)?.is_some())
    }

    /// Queue a job as [`PgDb::job_enqueue_named`] does, already claimed by
    /// `node` until `until` (its first claim, fence 1); gives its id when
    /// it was new.
    pub(in crate::store) fn job_enqueue_claimed(
        &self,
        j: &NewJob,
        blob: Option<&str>,
        now: i64,
        node: &str,
        until: i64,
    ) -> Result<Option<JobId>> {
        self.job_insert(j, blob, now, Some((node, until)))
    }

    /// Insert a job unless its key is queued already, unclaimed or claimed
    /// by `claim` (node, until); gives its id when it was new.
    fn job_insert(
        &self,
        j: &NewJob,
        blob: Option<&str>,
        now: i64,
        claim: Option<(&str, i64)>,
    ) -> Result<Option<JobId>> {
        let rcpts = serde_json::to_string(&j.recipients).unwrap_or_else(|_| "[]".into());
        let (node, until) = claim.unzip();
        let fence: i64 = i64::from(node.is_some());
        let row = self.opt(
            "INSERT INTO jobs(key, kind, identificativo, mail_from, recipients, next_hop, blob, data, due_at, created_at, updated_at, claimed_by, claimed_until, fence)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13)
             ON CONFLICT (key) DO NOTHING RETURNING id",
            &[
                &j.key,
                &j.kind.as_str(),
                &j.identificativo,
                &j.mail_from,
                &rcpts,
                &j.next_hop,
                &blob,
                &j.data,
                &j.due_at,
                &now,
                &node,
                &until,
                &fence,
            ],
        )?;
        Ok(row.map(|r| JobId(r.get(0))))
    }

    /// The earliest due time of any pending job or live timer.
    pub(in crate::store) fn jobs_next_due(&self) -> Result<Option<i64>> {
        Ok(self
            .one(
                "SELECT least(
                    (SELECT min(due_at) FROM jobs WHERE state = 'pending' AND kind = 'mailbox'),
                    (SELECT min(due_at) FROM jobs WHERE state = 'pending' AND kind <> 'mailbox'),
                    (SELECT min(preavviso_due) FROM timers WHERE preavviso_due IS NOT NULL),
                    (SELECT min(expire_due) FROM timers WHERE expire_due IS NOT NULL))",
                &[],
            )?
            .get(0))
    }

    /// One job by id.
    pub(in crate::store) fn job_get(&self, id: JobId) -> Result<Option<Job>> {
        self.opt(&format!("SELECT {COLS} FROM jobs WHERE id = $1"), &[&id.0])?
            .as_ref()
            .map(row_to_job)
            .transpose()
    }

    /// The jobs of `which`, oldest first.
    pub(in crate::store) fn job_list(&self, which: Listing) -> Result<Vec<Job>> {
        let sql = match which {
            Listing::All => format!("SELECT {COLS} FROM jobs ORDER BY created_at, id"),
            Listing::Failed => {
                format!("SELECT {COLS} FROM jobs WHERE state = 'failed' ORDER BY created_at, id")
            }
            Listing::Waiting => format!(
                "SELECT {COLS} FROM jobs WHERE state IN ('pending', 'held') ORDER BY created_at, id"
            ),
        };
        jobs(self.rows(&sql, &[])?)
    }

    /// The job finished.
    pub(in crate::store) fn job_mark_done(&self, id: JobId, now: i64) -> Result<()> {
        self.exec(
            "UPDATE jobs SET state = 'done', attempts = attempts + 1, last_error = NULL, updated_at = $2 WHERE id = $1",
            &[&id.0, &now],
        )?;
        Ok(())
    }

    /// The job failed for good.
    pub(in crate::store) fn job_mark_failed(&self, id: JobId, error: &str, now: i64) -> Result<()> {
        self.exec(
            "UPDATE jobs SET state = 'failed', attempts = attempts + 1, last_error = $2, updated_at = $3 WHERE id = $1",
            &[&id.0, &error, &now],
        )?;
        Ok(())
    }

    /// The job failed for now; try again at `due_at`.
    pub(in crate::store) fn job_reschedule(
        &self,
        id: JobId,
        error: &str,
        due_at: i64,
        now: i64,
    ) -> Result<()> {
        self.exec(
            "UPDATE jobs SET attempts = attempts + 1, last_error = $2, due_at = $3, updated_at = $4 WHERE id = $1 AND state = 'pending'",
            &[&id.0, &error, &due_at, &now],
        )?;
        Ok(())
    }

    /// Make pending jobs due now (see `sqlite/queue.rs`). Returns how many.
    pub(in crate::store) fn jobs_retry_now(&self, id: Option<JobId>, now: i64) -> Result<usize> {
        let n = match id {
            Some(id) => self.exec(
                "UPDATE jobs SET state = 'pending', crashes = 0, due_at = $2, updated_at = $2 WHERE id = $1
                 AND (state IN ('pending', 'held') OR (state = 'failed' AND blob IS NOT NULL))",
                &[&id.0, &now],
            )?,
            None => self.exec(
                "UPDATE jobs SET due_at = $1, updated_at = $1 WHERE state = 'pending'",
                &[&now],
            )?,
        };
        Ok(n as usize)
    }

    /// Put every failed job whose bytes are still kept back in the queue.
    pub(in crate::store) fn jobs_retry_failed(&self, now: i64) -> Result<usize> {
        Ok(self.exec(
            "UPDATE jobs SET state = 'pending', crashes = 0, due_at = $1, updated_at = $1
             WHERE state = 'failed' AND blob IS NOT NULL",
            &[&now],
        )? as usize)
    }

    /// How many jobs are pending, held and failed.
    pub(in crate::store) fn job_counts(&self) -> Result<Vec<(JobState, i64)>> {
        let r = self.one(
            "SELECT (SELECT count(*) FROM jobs WHERE state = 'pending'),
                    (SELECT count(*) FROM jobs WHERE state = 'held'),
                    (SELECT count(*) FROM jobs WHERE state = 'failed')",
            &[],
        )?;
        Ok(vec![
            (JobState::Pending, r.get(0)),
            (JobState::Held, r.get(1)),
            (JobState::Failed, r.get(2)),
        ])
    }

    /// The process died while job `id` ran: count it, and hold the job once
    /// it has done so [`MAX_CRASHES`] times. Returns the job when just held.
    pub(in crate::store) fn job_record_crash(&self, id: JobId, now: i64) -> Result<Option<Job>> {
        self.exec(
            "UPDATE jobs SET crashes = crashes + 1, updated_at = $2 WHERE id = $1 AND state = 'pending'",
            &[&id.0, &now],
        )?;
        let held = self.exec(
            "UPDATE jobs SET state = 'held', last_error = $2, updated_at = $3, claimed_by = NULL, claimed_until = NULL
             WHERE id = $1 AND state = 'pending' AND crashes >= $4",
            &[
                &id.0,
                &format!("held: the process died {MAX_CRASHES} times while running this job"),
                &now,
                &MAX_CRASHES,
            ],
        )?;
        if held == 0 {
            return Ok(None);
        }
        self.job_get(id)
    }

    /// Cancel a pending job. True if it was pending.
    pub(in crate::store) fn job_cancel(&self, id: JobId, now: i64) -> Result<bool> {
        let n = self.exec(
            "UPDATE jobs SET state = 'cancelled', last_error = 'cancelled by the operator', updated_at = $2 WHERE id = $1 AND state = 'pending'",
            &[&id.0, &now],
        )?;
        Ok(n == 1)
    }

    /// Start both deadlines for a certified recipient (no-op if already started).
    pub(in crate::store) fn timer_start(
        &self,
        identificativo: &str,
        recipient: &str,
        sent_at: i64,
        preavviso_due: i64,
        expire_due: i64,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO timers(identificativo, recipient, sent_at, preavviso_due, expire_due) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (identificativo, recipient) DO NOTHING",
            &[&identificativo, &recipient, &sent_at, &preavviso_due, &expire_due],
        )?;
        Ok(())
    }

    /// A presa in carico arrived: only the 12 h warning stops.
    pub(in crate::store) fn timer_presa(
        &self,
        identificativo: &str,
        recipient: &str,
        at: i64,
    ) -> Result<bool> {
        let n = self.exec(
            "UPDATE timers SET presa_at = coalesce(presa_at, $3), preavviso_due = NULL
             WHERE identificativo = $1 AND recipient = $2 AND closed_at IS NULL",
            &[&identificativo, &recipient, &at],
        )?;
        Ok(n > 0)
    }

    /// A consegna or errore-consegna (or the final notice) closes the
    /// recipient; gives its acceptance time if it was open.
    pub(in crate::store) fn timer_close(
        &self,
        identificativo: &str,
        recipient: &str,
        at: i64,
        by: &str,
    ) -> Result<Option<i64>> {
        Ok(self
            .opt(
                "UPDATE timers SET closed_at = $3, closed_by = $4, preavviso_due = NULL, expire_due = NULL
                 WHERE identificativo = $1 AND recipient = $2 AND closed_at IS NULL RETURNING sent_at",
                &[&identificativo, &recipient, &at, &by],
            )?
            .map(|r| r.get(0)))
    }

    /// When each certified recipient of a message was taken in charge.
    pub(in crate::store) fn presa_times(&self, identificativo: &str) -> Result<Vec<(String, i64)>> {
        Ok(self
            .rows(
                "SELECT recipient, presa_at FROM timers WHERE identificativo = $1 AND presa_at IS NOT NULL",
                &[&identificativo],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// Disarm one deadline after its notice was queued. True if it was armed.
    pub(in crate::store) fn timer_fired(&self, t: &DueTimer) -> Result<bool> {
        let sql = match t.deadline {
            Deadline::Preavviso => "UPDATE timers SET preavviso_due = NULL WHERE identificativo = $1 AND recipient = $2 AND preavviso_due IS NOT NULL",
            Deadline::Expire => "UPDATE timers SET expire_due = NULL WHERE identificativo = $1 AND recipient = $2 AND expire_due IS NOT NULL",
        };
        Ok(self.exec(sql, &[&t.identificativo, &t.recipient])? > 0)
    }

    /// Whether a pending job (or a recent failed one) still names bytes in
    /// spool segment `segment`.
    pub(in crate::store) fn segment_in_use(
        &self,
        segment: &str,
        now: i64,
        failed_keep_ms: i64,
    ) -> Result<bool> {
        Ok(self
            .opt(
                "SELECT 1 FROM jobs WHERE starts_with(blob, $1 || '@')
                 AND (state = 'pending' OR (state = 'failed' AND updated_at > $2)) LIMIT 1",
                &[&segment, &(now - failed_keep_ms)],
            )?
            .is_some())
    }

    /// Spool segment `segment` was removed: no row names its bytes any more.
    pub(in crate::store) fn forget_segment(&self, segment: &str) -> Result<()> {
        self.exec(
            "UPDATE jobs SET blob = NULL WHERE starts_with(blob, $1 || '@')",
            &[&segment],
        )?;
        Ok(())
    }

    /// Drop finished jobs older than `keep_ms`. Returns rows removed.
    pub(in crate::store) fn jobs_purge_finished(&self, now: i64, keep_ms: i64) -> Result<usize> {
        Ok(self.exec(
            "DELETE FROM jobs WHERE state IN ('done', 'cancelled') AND blob IS NULL AND updated_at < $1",
            &[&(now - keep_ms)],
        )? as usize)
    }

    /// After the final notice the relay stops: fail pending relays of the
    /// busta whose certified recipients are all closed.
    pub(in crate::store) fn stop_relays(&self, identificativo: &str, now: i64) -> Result<()> {
        let rows = self.rows(
            "SELECT id, recipients FROM jobs WHERE identificativo = $1 AND kind = 'relay' AND state = 'pending'",
            &[&identificativo],
        )?;
        for r in rows {
            let id = JobId(r.get(0));
            let rcpts: Vec<String> = serde_json::from_str(r.get(1)).unwrap_or_default();
            // A recipient without a timer is an ordinary one: its relay ends
            // by its own time limit.
            let mut keep = false;
            for rc in &rcpts {
                let open: Option<bool> = self
                    .opt(
                        "SELECT closed_at IS NULL FROM timers WHERE identificativo = $1 AND recipient = $2",
                        &[&identificativo, rc],
                    )?
                    .map(|r| r.get(0));
                keep |= open.unwrap_or(true);
            }
            if !keep {
                self.job_mark_failed(id, "expired: final non-delivery notice sent", now)?;
            }
        }
        Ok(())
    }

    /// Relay jobs still pending (`pecd bench --dead-peer`).
    pub(in crate::store) fn pending_relays(&self) -> Result<i64> {
        Ok(self
            .one(
                "SELECT count(*) FROM jobs WHERE kind = 'relay' AND state = 'pending'",
                &[],
            )?
            .get(0))
    }
}

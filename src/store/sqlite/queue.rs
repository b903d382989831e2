//! The SQL of the work queue and the per-recipient PEC timers (`jobs`,
//! `timers`): see `store::queue`.

use rusqlite::{params, OptionalExtension, Row};

use super::Db;
use crate::store::queue::{
    BlobRef, Deadline, DueTimer, Job, JobId, JobState, Kind, Listing, NewJob, MAX_CRASHES,
};
use crate::store::{Result, StoreError};

impl rusqlite::ToSql for JobId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

pub(super) const COLS: &str = "id, key, kind, identificativo, mail_from, recipients, next_hop, blob, data, state, attempts, last_error, due_at, created_at, updated_at, claimed_by, claimed_until, fence";

pub(super) fn row_to_job(r: &Row<'_>) -> rusqlite::Result<Job> {
    let kind: String = r.get(2)?;
    let rcpts: String = r.get(5)?;
    Ok(Job {
        id: JobId(r.get(0)?),
        key: r.get(1)?,
        kind: Kind::parse(&kind).unwrap_or(Kind::Mailbox),
        identificativo: r.get(3)?,
        mail_from: r.get(4)?,
        recipients: serde_json::from_str(&rcpts).unwrap_or_default(),
        next_hop: r.get(6)?,
        blob: r.get(7)?,
        data: r.get(8)?,
        state: {
            let s: String = r.get(9)?;
            JobState::parse(&s).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    9,
                    rusqlite::types::Type::Text,
                    format!("unknown job state {s:?}").into(),
                )
            })?
        },
        attempts: r.get(10)?,
        last_error: r.get(11)?,
        due_at: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        claimed_by: r.get(15)?,
        claimed_until: r.get(16)?,
        fence: r.get(17)?,
    })
}

impl Db<'_> {
    /// Add a job unless one with the same key exists. True if added. Its blob
    /// must be stored already ([`Db::job_enqueue_named`] resolves a batch's new ones).
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

    /// [`Db::job_enqueue`] with the blob's spool name given.
    pub(in crate::store) fn job_enqueue_named(
        &self,
        j: &NewJob,
        blob: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        Ok(self.job_insert(j, blob, now, None)?.is_some())
    }

    /// Queue a job as [`Db::job_enqueue_named`] does, already claimed by
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
        let conn = self.sql();
        let rcpts = serde_json::to_string(&j.recipients).unwrap_or_else(|_| "[]".into());
        let (node, until) = claim.unzip();
        let n = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO jobs(key, kind, identificativo, mail_from, recipients, next_hop, blob, data, due_at, created_at, updated_at, claimed_by, claimed_until, fence)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?11 IS NOT NULL)",
            )?
            .execute(params![
                j.key,
                j.kind.as_str(),
                j.identificativo,
                j.mail_from,
                rcpts,
                j.next_hop,
                blob,
                j.data,
                j.due_at,
                now,
                node,
                until
            ])?;
        Ok((n == 1).then(|| JobId(conn.last_insert_rowid())))
    }

    /// The earliest due time of any pending job or live timer.
    pub(in crate::store) fn jobs_next_due(&self) -> Result<Option<i64>> {
        let conn = self.sql();
        Ok(conn.query_row(
            "SELECT min(t) FROM (
                SELECT min(due_at) AS t FROM jobs WHERE state = 'pending' AND kind = 'mailbox'
                UNION ALL SELECT min(due_at) FROM jobs WHERE state = 'pending' AND kind <> 'mailbox'
                UNION ALL SELECT min(preavviso_due) FROM timers WHERE preavviso_due IS NOT NULL
                UNION ALL SELECT min(expire_due) FROM timers WHERE expire_due IS NOT NULL)",
            [],
            |r| r.get(0),
        )?)
    }

    /// One job by id.
    pub(in crate::store) fn job_get(&self, id: JobId) -> Result<Option<Job>> {
        let conn = self.sql();
        Ok(conn
            .query_row(
                &format!("SELECT {COLS} FROM jobs WHERE id = ?1"),
                [id],
                row_to_job,
            )
            .optional()?)
    }

    /// The jobs of `which`, oldest first.
    pub(in crate::store) fn job_list(&self, which: Listing) -> Result<Vec<Job>> {
        let conn = self.sql();
        // Pending rows through the two partial indexes: the table also holds a
        // week of finished jobs.
        let sql = match which {
            Listing::All => format!("SELECT {COLS} FROM jobs ORDER BY created_at, id"),
            Listing::Failed => {
                format!("SELECT {COLS} FROM jobs WHERE state = 'failed' ORDER BY created_at, id")
            }
            Listing::Waiting => format!(
                "SELECT {COLS} FROM jobs WHERE state = 'pending' AND kind = 'mailbox'
                 UNION ALL SELECT {COLS} FROM jobs WHERE state = 'pending' AND kind <> 'mailbox'
                 UNION ALL SELECT {COLS} FROM jobs WHERE state = 'held'
                 ORDER BY created_at, id"
            ),
        };
        let mut st = conn.prepare(&sql)?;
        let rows = st.query_map([], row_to_job)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The job finished.
    pub(in crate::store) fn job_mark_done(&self, id: JobId, now: i64) -> Result<()> {
        let conn = self.sql();
        conn.prepare_cached(
            "UPDATE jobs SET state = 'done', attempts = attempts + 1, last_error = NULL, updated_at = ?2 WHERE id = ?1",
        )?
        .execute(params![id, now])?;
        Ok(())
    }

    /// The job failed for good.
    pub(in crate::store) fn job_mark_failed(&self, id: JobId, error: &str, now: i64) -> Result<()> {
        let conn = self.sql();
        conn.prepare_cached(
            "UPDATE jobs SET state = 'failed', attempts = attempts + 1, last_error = ?2, updated_at = ?3 WHERE id = ?1",
        )?
        .execute(params![id, error, now])?;
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
        let conn = self.sql();
        conn.prepare_cached(
            "UPDATE jobs SET attempts = attempts + 1, last_error = ?2, due_at = ?3, updated_at = ?4 WHERE id = ?1 AND state = 'pending'",
        )?
        .execute(params![id, error, due_at, now])?;
        Ok(())
    }

    /// Make pending jobs due now (one, or all with `None`; a held job, or a
    /// failed one whose message bytes are still kept, only by its id). Returns
    /// how many.
    pub(in crate::store) fn jobs_retry_now(&self, id: Option<JobId>, now: i64) -> Result<usize> {
        let conn = self.sql();
        match id {
            Some(id) => Ok(conn.execute(
                // A held or failed job runs again only when the operator names it.
                "UPDATE jobs SET state = 'pending', crashes = 0, due_at = ?2, updated_at = ?2 WHERE id = ?1
                 AND (state IN ('pending', 'held') OR (state = 'failed' AND blob IS NOT NULL))",
                params![id, now],
            )?),
            None => Ok(conn.execute(
                "UPDATE jobs SET due_at = ?1, updated_at = ?1 WHERE state = 'pending' AND kind = 'mailbox'",
                [now],
            )? + conn.execute(
                "UPDATE jobs SET due_at = ?1, updated_at = ?1 WHERE state = 'pending' AND kind <> 'mailbox'",
                [now],
            )?),
        }
    }

    /// Put every failed job whose message bytes are still kept back in the
    /// queue, due now (`pecd queue retry --failed`). Returns how many.
    pub(in crate::store) fn jobs_retry_failed(&self, now: i64) -> Result<usize> {
        Ok(self.sql().execute(
            "UPDATE jobs SET state = 'pending', crashes = 0, due_at = ?1, updated_at = ?1
             WHERE state = 'failed' AND blob IS NOT NULL",
            [now],
        )?)
    }

    /// How many jobs are pending, held and failed (the states an operator
    /// watches; finished ones are only kept a week for idempotency).
    pub(in crate::store) fn job_counts(&self) -> Result<Vec<(JobState, i64)>> {
        let conn = self.sql();
        let n = |sql: &str| {
            conn.prepare_cached(sql)?
                .query_row([], |r| r.get::<_, i64>(0))
        };
        Ok(vec![
            (
                JobState::Pending,
                n("SELECT count(*) FROM jobs WHERE state = 'pending' AND kind = 'mailbox'")?
                    + n("SELECT count(*) FROM jobs WHERE state = 'pending' AND kind <> 'mailbox'")?,
            ),
            (
                JobState::Held,
                n("SELECT count(*) FROM jobs WHERE state = 'held'")?,
            ),
            (
                JobState::Failed,
                n("SELECT count(*) FROM jobs WHERE state = 'failed'")?,
            ),
        ])
    }

    /// The process died while job `id` ran: count it, and hold the job once it
    /// has done so [`MAX_CRASHES`] times. Returns the job when it was just held.
    pub(in crate::store) fn job_record_crash(&self, id: JobId, now: i64) -> Result<Option<Job>> {
        let conn = self.sql();
        conn.execute(
            "UPDATE jobs SET crashes = crashes + 1, updated_at = ?2 WHERE id = ?1 AND state = 'pending'",
            params![id, now],
        )?;
        let held = conn.execute(
            "UPDATE jobs SET state = 'held', last_error = ?2, updated_at = ?3, claimed_by = NULL, claimed_until = NULL
             WHERE id = ?1 AND state = 'pending' AND crashes >= ?4",
            params![
                id,
                format!("held: the process died {MAX_CRASHES} times while running this job"),
                now,
                MAX_CRASHES
            ],
        )?;
        if held == 0 {
            return Ok(None);
        }
        self.job_get(id)
    }

    /// Cancel a pending job. True if it was pending.
    pub(in crate::store) fn job_cancel(&self, id: JobId, now: i64) -> Result<bool> {
        let conn = self.sql();
        let n = conn.execute(
            "UPDATE jobs SET state = 'cancelled', last_error = 'cancelled by the operator', updated_at = ?2 WHERE id = ?1 AND state = 'pending'",
            params![id, now],
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
        let conn = self.sql();
        conn.prepare_cached(
            "INSERT OR IGNORE INTO timers(identificativo, recipient, sent_at, preavviso_due, expire_due) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![identificativo, recipient, sent_at, preavviso_due, expire_due])?;
        Ok(())
    }

    /// A presa in carico arrived: only the 12 h warning stops. True if a live timer matched.
    pub(in crate::store) fn timer_presa(
        &self,
        identificativo: &str,
        recipient: &str,
        at: i64,
    ) -> Result<bool> {
        let conn = self.sql();
        let n = conn
            .prepare_cached(
                "UPDATE timers SET presa_at = coalesce(presa_at, ?3), preavviso_due = NULL
             WHERE identificativo = ?1 AND recipient = ?2 AND closed_at IS NULL",
            )?
            .execute(params![identificativo, recipient, at])?;
        Ok(n > 0)
    }

    /// A consegna or errore-consegna (or the final notice) closes the recipient.
    /// Gives its acceptance time (`sent_at`, ms) if it was open.
    pub(in crate::store) fn timer_close(
        &self,
        identificativo: &str,
        recipient: &str,
        at: i64,
        by: &str,
    ) -> Result<Option<i64>> {
        let conn = self.sql();
        Ok(conn.prepare_cached(
            "UPDATE timers SET closed_at = ?3, closed_by = ?4, preavviso_due = NULL, expire_due = NULL
             WHERE identificativo = ?1 AND recipient = ?2 AND closed_at IS NULL RETURNING sent_at",
        )?
        .query_row(params![identificativo, recipient, at, by], |r| r.get(0))
        .optional()?)
    }

    /// When each certified recipient of a message was taken in charge (Unix ms),
    /// from the verified presa in carico that stopped its timer.
    pub(in crate::store) fn presa_times(&self, identificativo: &str) -> Result<Vec<(String, i64)>> {
        let conn = self.sql();
        let mut st = conn.prepare_cached(
            "SELECT recipient, presa_at FROM timers WHERE identificativo = ?1 AND presa_at IS NOT NULL",
        )?;
        let rows = st.query_map([identificativo], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Disarm one deadline after its notice was queued. True if it was armed.
    pub(in crate::store) fn timer_fired(&self, t: &DueTimer) -> Result<bool> {
        let conn = self.sql();
        let col = match t.deadline {
            Deadline::Preavviso => "preavviso_due",
            Deadline::Expire => "expire_due",
        };
        let n = conn.execute(
            &format!("UPDATE timers SET {col} = NULL WHERE identificativo = ?1 AND recipient = ?2 AND {col} IS NOT NULL"),
            params![t.identificativo, t.recipient],
        )?;
        Ok(n > 0)
    }

    /// Whether the recipient is still open (no consegna, no final notice).
    #[cfg(test)]
    pub(in crate::store) fn timer_open(
        &self,
        identificativo: &str,
        recipient: &str,
    ) -> Result<bool> {
        let conn = self.sql();
        Ok(conn
            .query_row(
                "SELECT 1 FROM timers WHERE identificativo = ?1 AND recipient = ?2 AND closed_at IS NULL",
                params![identificativo, recipient],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Whether a pending job (or a failed one younger than `failed_keep_ms`,
    /// kept for the operator) still names bytes in spool segment `segment`.
    pub(in crate::store) fn segment_in_use(
        &self,
        segment: &str,
        now: i64,
        failed_keep_ms: i64,
    ) -> Result<bool> {
        let conn = self.sql();
        Ok(conn
            .query_row(
                "SELECT 1 FROM jobs WHERE blob LIKE ?1 || '@%'
                 AND (state = 'pending' OR (state = 'failed' AND updated_at > ?2)) LIMIT 1",
                params![segment, now - failed_keep_ms],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Spool segment `segment` was removed: no row names its bytes any more.
    pub(in crate::store) fn forget_segment(&self, segment: &str) -> Result<()> {
        let conn = self.sql();
        conn.execute(
            "UPDATE jobs SET blob = NULL WHERE blob LIKE ?1 || '@%'",
            [segment],
        )?;
        Ok(())
    }

    /// Drop finished jobs older than `keep_ms` (their idempotency keys are only
    /// needed while a replay after a crash is possible). Returns rows removed.
    pub(in crate::store) fn jobs_purge_finished(&self, now: i64, keep_ms: i64) -> Result<usize> {
        let conn = self.sql();
        Ok(conn.execute(
            "DELETE FROM jobs WHERE state IN ('done', 'cancelled') AND blob IS NULL AND updated_at < ?1",
            [now - keep_ms],
        )?)
    }

    /// After the final notice the relay stops: fail pending relays of the busta
    /// whose certified recipients are all closed.
    pub(in crate::store) fn stop_relays(&self, identificativo: &str, now: i64) -> Result<()> {
        // `kind <> 'mailbox'` spelled out: it lets SQLite use the partial index.
        let rows: Vec<(i64, String)> = self
            .sql()
            .prepare_cached(
                "SELECT id, recipients FROM jobs WHERE identificativo = ?1 AND kind = 'relay' AND state = 'pending' AND kind <> 'mailbox'",
            )?
            .query_map([identificativo], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, rcpts) in rows {
            let id = JobId(id);
            let rcpts: Vec<String> = serde_json::from_str(&rcpts).unwrap_or_default();
            // A recipient without a timer is an ordinary one: its relay ends by
            // its own time limit, which tells the sender (no receipt does).
            let mut keep = false;
            for r in &rcpts {
                let state: Option<bool> = self
                    .sql()
                    .prepare_cached(
                        "SELECT closed_at IS NULL FROM timers WHERE identificativo = ?1 AND recipient = ?2",
                    )?
                    .query_row(params![identificativo, r], |r| r.get(0))
                    .optional()?;
                keep |= state.unwrap_or(true);
            }
            if !keep {
                self.job_mark_failed(id, "expired: final non-delivery notice sent", now)?;
            }
        }
        Ok(())
    }

    /// Relay jobs still pending (`pecd bench --dead-peer`).
    pub(in crate::store) fn pending_relays(&self) -> Result<i64> {
        // `kind <> 'mailbox'` lets SQLite count from the partial index.
        Ok(self.sql().query_row(
            "SELECT count(*) FROM jobs WHERE kind = 'relay' AND state = 'pending' AND kind <> 'mailbox'",
            [],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::queue::{BlobRef, Deadline, DueTimer, Job, JobId, JobState, Kind, Listing};
    use crate::store::sqlite::{Db, MemDb};
    use crate::store::Result;

    fn db() -> MemDb {
        MemDb::new()
    }

    use crate::store::queue::test_job as job;

    /// What a claim at `now` would hand out, left unclaimed.
    fn due(c: &Db<'_>, now: i64, limit: usize) -> Result<Vec<Job>> {
        let got = c.claim_jobs("look", now, now + 1, limit, &Default::default())?;
        c.release_node("look")?;
        Ok(got.claimed)
    }

    /// The same for deadlines.
    fn due_timers(c: &Db<'_>, now: i64, limit: usize) -> Result<Vec<DueTimer>> {
        let got = c.claim_timers("look", now, now + 1, limit)?;
        c.release_node("look")?;
        Ok(got.into_iter().map(|(t, _)| t).collect())
    }

    #[test]
    fn mailbox_deliveries_come_first_then_by_due_time() {
        let m = db();
        let c = m.db();
        let mut late_mailbox = job("m", 30);
        late_mailbox.kind = Kind::Mailbox;
        c.job_enqueue(&job("r2", 20), 0).unwrap();
        c.job_enqueue(&job("r1", 10), 0).unwrap();
        c.job_enqueue(&late_mailbox, 0).unwrap();
        let keys = |n| -> Vec<String> {
            due(&c, 100, n)
                .unwrap()
                .into_iter()
                .map(|j| j.key)
                .collect()
        };
        assert_eq!(keys(10), ["m", "r1", "r2"]);
        assert_eq!(keys(2), ["m", "r1"]);
        assert_eq!(keys(1), ["m"]);
        assert!(due(&c, 15, 10).unwrap().iter().all(|j| j.key == "r1"));
    }

    #[test]
    fn enqueue_is_idempotent_and_due_respects_time() {
        let m = db();
        let c = m.db();
        assert!(c.job_enqueue(&job("k", 10), 0).unwrap());
        assert!(!c.job_enqueue(&job("k", 10), 0).unwrap());
        assert!(due(&c, 5, 10).unwrap().is_empty());
        let d = due(&c, 10, 10).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].recipients, vec!["b@y".to_string()]);
        c.job_reschedule(d[0].id, "421 busy", 50, 10).unwrap();
        assert_eq!(c.jobs_next_due().unwrap(), Some(50));
        c.job_mark_done(d[0].id, 60).unwrap();
        assert!(due(&c, 100, 10).unwrap().is_empty());
        assert_eq!(c.jobs_next_due().unwrap(), None);
    }

    #[test]
    fn segments_are_released_only_when_no_pending_job_names_them() {
        let m = db();
        let c = m.db();
        let mut a = job("a", 0);
        a.blob = Some(BlobRef::Spooled("seg-00000001.spool@0+10".into()));
        let mut b = job("b", 0);
        b.blob = Some(BlobRef::Spooled("seg-00000001.spool@10+5".into()));
        c.job_enqueue(&a, 0).unwrap();
        c.job_enqueue(&b, 0).unwrap();
        let ids: Vec<JobId> = due(&c, 0, 10).unwrap().iter().map(|j| j.id).collect();
        c.job_mark_done(ids[0], 10).unwrap();
        assert!(c.segment_in_use("seg-00000001.spool", 100, 1000).unwrap());
        assert!(!c.segment_in_use("seg-00000002.spool", 100, 1000).unwrap());
        c.job_mark_failed(ids[1], "x", 10).unwrap();
        assert!(
            c.segment_in_use("seg-00000001.spool", 100, 1000).unwrap(),
            "a recent failure keeps its bytes"
        );
        assert!(!c
            .segment_in_use("seg-00000001.spool", 10_000, 1000)
            .unwrap());
        c.forget_segment("seg-00000001.spool").unwrap();
        c.sql()
            .execute("UPDATE jobs SET state = 'done'", [])
            .unwrap();
        assert_eq!(c.jobs_purge_finished(1_000_000, 100).unwrap(), 2);
    }

    #[test]
    fn failed_jobs_are_listed_counted_and_retried_while_their_bytes_are_kept() {
        let m = db();
        let c = m.db();
        for k in ["kept", "released", "waiting"] {
            let mut j = job(k, 0);
            j.blob = Some(BlobRef::Spooled(format!("seg-1.spool@{k}")));
            c.job_enqueue(&j, 0).unwrap();
        }
        let id = |k: &str| {
            c.job_list(Listing::All)
                .unwrap()
                .into_iter()
                .find(|j| j.key == k)
                .unwrap()
                .id
        };
        c.job_mark_failed(id("kept"), "550 5.1.1 no such user", 5)
            .unwrap();
        c.job_mark_failed(id("released"), "550 5.7.1 refused", 5)
            .unwrap();
        c.sql()
            .execute("UPDATE jobs SET blob = NULL WHERE key = 'released'", [])
            .unwrap();
        let keys =
            |w| -> Vec<String> { c.job_list(w).unwrap().into_iter().map(|j| j.key).collect() };
        assert_eq!(keys(Listing::Waiting), ["waiting"]);
        assert_eq!(keys(Listing::Failed), ["kept", "released"]);
        assert_eq!(keys(Listing::All).len(), 3);
        let failed = |c: &Db<'_>| {
            c.job_counts()
                .unwrap()
                .into_iter()
                .find(|(s, _)| *s == JobState::Failed)
                .unwrap()
                .1
        };
        assert_eq!(failed(&c), 2, "the gauge counts what --failed lists");
        let f = &c.job_list(Listing::Failed).unwrap()[0];
        assert_eq!(f.last_error.as_deref(), Some("550 5.1.1 no such user"));
        assert_eq!(f.attempts, 1);

        // A failed job without its bytes cannot run again; one with them can.
        assert_eq!(c.jobs_retry_now(Some(id("released")), 10).unwrap(), 0);
        assert_eq!(c.jobs_retry_now(Some(id("kept")), 10).unwrap(), 1);
        assert_eq!(keys(Listing::Waiting), ["kept", "waiting"]);
        assert_eq!(due(&c, 10, 10).unwrap().len(), 2);
        // Retrying every pending job leaves failed ones failed.
        c.job_mark_failed(id("kept"), "again", 20).unwrap();
        c.jobs_retry_now(None, 30).unwrap();
        assert_eq!(failed(&c), 2);
        assert_eq!(
            c.jobs_retry_failed(40).unwrap(),
            1,
            "only the one with bytes"
        );
        assert_eq!(keys(Listing::Failed), ["released"]);
    }

    #[test]
    fn presa_stops_only_the_warning_and_consegna_closes() {
        let m = db();
        let c = m.db();
        c.timer_start("id", "b@y", 0, 100, 200).unwrap();
        assert!(c.timer_presa("id", "b@y", 50).unwrap());
        let d = due_timers(&c, 300, 10).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].deadline, Deadline::Expire);
        assert!(c
            .timer_close("id", "b@y", 60, "consegna")
            .unwrap()
            .is_some());
        assert!(due_timers(&c, 300, 10).unwrap().is_empty());
        assert!(!c.timer_open("id", "b@y").unwrap());
    }

    #[test]
    fn overdue_warning_is_skipped_when_the_final_deadline_passed_too() {
        let m = db();
        let c = m.db();
        c.timer_start("id", "b@y", 0, 100, 200).unwrap();
        let d = due_timers(&c, 150, 10).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].deadline, Deadline::Preavviso);
        let d = due_timers(&c, 250, 10).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].deadline, Deadline::Expire);
    }
}

//! The work queue and the per-recipient PEC timers.
//!
//! Every piece of pending work is a row with a `due_at`; every deadline is a
//! column, never a sleeping task, so a restart loses nothing. Rows carry an
//! idempotency `key` (identificativo + recipient + kind): enqueueing the same
//! work twice is a no-op, which is what keeps a replay after `kill -9` from
//! producing a second busta or a second receipt.

use super::{Db, Inspector, Result, Store};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

pub use crate::flow::batch::{BlobRef, Deadline, DueTimer, JobId, JobKind as Kind, NewJob};

use crate::flow::batch::Event;

impl rusqlite::ToSql for JobId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Waiting for its `due_at` (or running now).
    Pending,
    /// Finished.
    Done,
    /// Given up (the sender was told where the rules say so).
    Failed,
    /// Cancelled by the operator.
    Cancelled,
    /// The process died while running it too often: waits for `queue retry`.
    Held,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 5] = [
        JobState::Pending,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Held,
    ];

    /// Column value (and the word the CLI and metrics print).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Held => "held",
        }
    }

    /// Parse a column value.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A queued job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Row id (the CLI's ID).
    pub id: JobId,
    /// Idempotency key.
    pub key: String,
    /// What to do.
    pub kind: Kind,
    /// PEC message concerned.
    pub identificativo: Option<String>,
    /// Envelope sender.
    pub mail_from: String,
    /// Recipients.
    pub recipients: Vec<String>,
    /// Destination.
    pub next_hop: Option<String>,
    /// Spool file.
    pub blob: Option<String>,
    /// Kind-specific JSON.
    pub data: Option<String>,
    /// Where it stands.
    pub state: JobState,
    /// Attempts made.
    pub attempts: i64,
    /// Last error text.
    pub last_error: Option<String>,
    /// Next attempt (unix ms).
    pub due_at: i64,
    /// Creation time (unix ms).
    pub created_at: i64,
    /// Last change (unix ms).
    pub updated_at: i64,
}

const COLS: &str = "id, key, kind, identificativo, mail_from, recipients, next_hop, blob, data, state, attempts, last_error, due_at, created_at, updated_at";

fn row_to_job(r: &Row<'_>) -> rusqlite::Result<Job> {
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
    })
}

/// Add a job unless one with the same key exists. True if added. Its blob
/// must be stored already ([`enqueue_named`] resolves a batch's new ones).
pub fn enqueue(db: &Db<'_>, j: &NewJob, now: i64) -> Result<bool> {
    let blob = match &j.blob {
        None => None,
        Some(BlobRef::Spooled(s)) => Some(s.as_str()),
        Some(BlobRef::New(i)) => {
            return Err(super::StoreError::Commit(format!(
                "job {} names new blob {i} outside its batch",
                j.key
            )))
        }
    };
    enqueue_named(db, j, blob, now)
}

/// [`enqueue`] with the blob's spool name given.
pub(crate) fn enqueue_named(db: &Db<'_>, j: &NewJob, blob: Option<&str>, now: i64) -> Result<bool> {
    let conn = db.sql();
    let rcpts = serde_json::to_string(&j.recipients).unwrap_or_else(|_| "[]".into());
    let n = conn.prepare_cached(
        "INSERT OR IGNORE INTO jobs(key, kind, identificativo, mail_from, recipients, next_hop, blob, data, due_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
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
        now
    ])?;
    Ok(n == 1)
}

/// Ids of up to `limit` pending jobs due at `now`: mailbox deliveries first
/// (a sender waits for the accettazione), then the rest by due time. Both
/// read in index order, so a poll costs the same with a backlog of thousands.
pub fn due_ids(db: &Db<'_>, now: i64, limit: usize) -> Result<Vec<JobId>> {
    let conn = db.sql();
    let mut ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM jobs WHERE state = 'pending' AND kind = 'mailbox' AND due_at <= ?1 ORDER BY due_at, id LIMIT ?2",
        )?
        .query_map(params![now, limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if ids.len() < limit {
        let rest = conn
            .prepare_cached(
                "SELECT id FROM jobs WHERE state = 'pending' AND due_at <= ?1 AND kind <> 'mailbox' ORDER BY due_at, id LIMIT ?2",
            )?
            .query_map(params![now, (limit - ids.len()) as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        ids.extend(rest);
    }
    Ok(ids.into_iter().map(JobId).collect())
}

/// A job by id if it is still pending.
pub fn pending(db: &Db<'_>, id: JobId) -> Result<Option<Job>> {
    let conn = db.sql();
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM jobs WHERE id = ?1 AND state = 'pending'"
        ))?
        .query_row([id], row_to_job)
        .optional()?)
}

/// The earliest due time of any pending job or live timer.
pub fn next_due(db: &Db<'_>) -> Result<Option<i64>> {
    let conn = db.sql();
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
pub fn get(db: &Db<'_>, id: JobId) -> Result<Option<Job>> {
    let conn = db.sql();
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM jobs WHERE id = ?1"),
            [id],
            row_to_job,
        )
        .optional()?)
}

/// Which jobs [`list`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Work still to do: pending and held jobs.
    Waiting,
    /// Jobs given up, the ones the `failed` gauge counts.
    Failed,
    /// Every row, finished ones too.
    All,
}

/// The jobs of `which`, oldest first.
pub fn list(db: &Db<'_>, which: Listing) -> Result<Vec<Job>> {
    let conn = db.sql();
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
pub fn mark_done(db: &Db<'_>, id: JobId, now: i64) -> Result<()> {
    let conn = db.sql();
    conn.prepare_cached(
        "UPDATE jobs SET state = 'done', attempts = attempts + 1, last_error = NULL, updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok(())
}

/// The job failed for good.
pub fn mark_failed(db: &Db<'_>, id: JobId, error: &str, now: i64) -> Result<()> {
    let conn = db.sql();
    conn.prepare_cached(
        "UPDATE jobs SET state = 'failed', attempts = attempts + 1, last_error = ?2, updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, error, now])?;
    Ok(())
}

/// The job failed for now; try again at `due_at`.
pub fn reschedule(db: &Db<'_>, id: JobId, error: &str, due_at: i64, now: i64) -> Result<()> {
    let conn = db.sql();
    conn.prepare_cached(
        "UPDATE jobs SET attempts = attempts + 1, last_error = ?2, due_at = ?3, updated_at = ?4 WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![id, error, due_at, now])?;
    Ok(())
}

/// Make pending jobs due now (one, or all with `None`; a held job, or a
/// failed one whose message bytes are still kept, only by its id). Returns
/// how many.
pub fn retry_now(db: &Db<'_>, id: Option<JobId>, now: i64) -> Result<usize> {
    let conn = db.sql();
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
pub fn retry_failed(db: &Db<'_>, now: i64) -> Result<usize> {
    Ok(db.sql().execute(
        "UPDATE jobs SET state = 'pending', crashes = 0, due_at = ?1, updated_at = ?1
         WHERE state = 'failed' AND blob IS NOT NULL",
        [now],
    )?)
}

/// How many jobs are pending, held and failed (the states an operator
/// watches; finished ones are only kept a week for idempotency).
pub fn counts(db: &Db<'_>) -> Result<Vec<(JobState, i64)>> {
    let conn = db.sql();
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

/// Times the process may die while running one job before it is held.
pub const MAX_CRASHES: i64 = 3;

/// The process died while job `id` ran: count it, and hold the job once it
/// has done so [`MAX_CRASHES`] times. Returns the job when it was just held.
pub fn record_crash(db: &Db<'_>, id: JobId, now: i64) -> Result<Option<Job>> {
    let conn = db.sql();
    conn.execute(
        "UPDATE jobs SET crashes = crashes + 1, updated_at = ?2 WHERE id = ?1 AND state = 'pending'",
        params![id, now],
    )?;
    let held = conn.execute(
        "UPDATE jobs SET state = 'held', last_error = ?2, updated_at = ?3 WHERE id = ?1 AND state = 'pending' AND crashes >= ?4",
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
    get(db, id)
}

/// Cancel a pending job. True if it was pending.
pub fn cancel(db: &Db<'_>, id: JobId, now: i64) -> Result<bool> {
    let conn = db.sql();
    let n = conn.execute(
        "UPDATE jobs SET state = 'cancelled', last_error = 'cancelled by the operator', updated_at = ?2 WHERE id = ?1 AND state = 'pending'",
        params![id, now],
    )?;
    Ok(n == 1)
}

/// Start both deadlines for a certified recipient (no-op if already started).
pub fn timer_start(
    db: &Db<'_>,
    identificativo: &str,
    recipient: &str,
    sent_at: i64,
    preavviso_due: i64,
    expire_due: i64,
) -> Result<()> {
    let conn = db.sql();
    conn.prepare_cached(
        "INSERT OR IGNORE INTO timers(identificativo, recipient, sent_at, preavviso_due, expire_due) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![identificativo, recipient, sent_at, preavviso_due, expire_due])?;
    Ok(())
}

/// A presa in carico arrived: only the 12 h warning stops. True if a live timer matched.
pub fn timer_presa(db: &Db<'_>, identificativo: &str, recipient: &str, at: i64) -> Result<bool> {
    let conn = db.sql();
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
pub fn timer_close(
    db: &Db<'_>,
    identificativo: &str,
    recipient: &str,
    at: i64,
    by: &str,
) -> Result<Option<i64>> {
    let conn = db.sql();
    Ok(conn.prepare_cached(
        "UPDATE timers SET closed_at = ?3, closed_by = ?4, preavviso_due = NULL, expire_due = NULL
         WHERE identificativo = ?1 AND recipient = ?2 AND closed_at IS NULL RETURNING sent_at",
    )?
    .query_row(params![identificativo, recipient, at, by], |r| r.get(0))
    .optional()?)
}

/// When each certified recipient of a message was taken in charge (Unix ms),
/// from the verified presa in carico that stopped its timer.
pub fn presa_times(db: &Db<'_>, identificativo: &str) -> Result<Vec<(String, i64)>> {
    let conn = db.sql();
    let mut st = conn.prepare_cached(
        "SELECT recipient, presa_at FROM timers WHERE identificativo = ?1 AND presa_at IS NOT NULL",
    )?;
    let rows = st.query_map([identificativo], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Timers due by `now`.
pub fn due_timers(db: &Db<'_>, now: i64, limit: usize) -> Result<Vec<DueTimer>> {
    let conn = db.sql();
    let mut out = Vec::new();
    // A warning whose final deadline has also passed (the provider was down
    // through both) is not sent: the final notice says everything.
    for (col, extra, deadline) in [
        (
            "preavviso_due",
            " AND (expire_due IS NULL OR expire_due > ?1)",
            Deadline::Preavviso,
        ),
        ("expire_due", "", Deadline::Expire),
    ] {
        let mut st = conn.prepare_cached(&format!(
            "SELECT identificativo, recipient FROM timers WHERE {col} IS NOT NULL AND {col} <= ?1{extra} ORDER BY {col} LIMIT ?2"
        ))?;
        let rows = st.query_map(params![now, limit as i64], |r| {
            Ok(DueTimer {
                identificativo: r.get(0)?,
                recipient: r.get(1)?,
                deadline,
            })
        })?;
        for r in rows {
            out.push(r?);
        }
    }
    Ok(out)
}

/// Disarm one deadline after its notice was queued. True if it was armed.
pub fn timer_fired(db: &Db<'_>, t: &DueTimer) -> Result<bool> {
    let conn = db.sql();
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
pub fn timer_open(db: &Db<'_>, identificativo: &str, recipient: &str) -> Result<bool> {
    let conn = db.sql();
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
pub fn segment_in_use(db: &Db<'_>, segment: &str, now: i64, failed_keep_ms: i64) -> Result<bool> {
    let conn = db.sql();
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
pub fn forget_segment(db: &Db<'_>, segment: &str) -> Result<()> {
    let conn = db.sql();
    conn.execute(
        "UPDATE jobs SET blob = NULL WHERE blob LIKE ?1 || '@%'",
        [segment],
    )?;
    Ok(())
}

/// Drop finished jobs older than `keep_ms` (their idempotency keys are only
/// needed while a replay after a crash is possible). Returns rows removed.
pub fn purge_finished(db: &Db<'_>, now: i64, keep_ms: i64) -> Result<usize> {
    let conn = db.sql();
    Ok(conn.execute(
        "DELETE FROM jobs WHERE state IN ('done', 'cancelled') AND blob IS NULL AND updated_at < ?1",
        [now - keep_ms],
    )?)
}

/// After the final notice the relay stops: fail pending relays of the busta
/// whose certified recipients are all closed.
pub fn stop_relays(db: &Db<'_>, identificativo: &str, now: i64) -> Result<()> {
    // `kind <> 'mailbox'` spelled out: it lets SQLite use the partial index.
    let rows: Vec<(i64, String)> = db
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
            let state: Option<bool> = db
                .sql()
                .prepare_cached(
                    "SELECT closed_at IS NULL FROM timers WHERE identificativo = ?1 AND recipient = ?2",
                )?
                .query_row(params![identificativo, r], |r| r.get(0))
                .optional()?;
            keep |= state.unwrap_or(true);
        }
        if !keep {
            mark_failed(db, id, "expired: final non-delivery notice sent", now)?;
        }
    }
    Ok(())
}

/// Relay jobs still pending (`pecd bench --dead-peer`).
pub fn pending_relays(db: &Db<'_>) -> Result<i64> {
    // `kind <> 'mailbox'` lets SQLite count from the partial index.
    Ok(db.sql().query_row(
        "SELECT count(*) FROM jobs WHERE kind = 'relay' AND state = 'pending' AND kind <> 'mailbox'",
        [],
        |r| r.get(0),
    )?)
}

/// An operator's cancellation of a pending job, as `pecd queue cancel`
/// records it in one transaction.
#[derive(Debug, Clone)]
pub struct Cancellation {
    /// The job.
    pub id: JobId,
    /// The `annullamento` log row.
    pub event: Event,
    /// The non-delivery notices for the sender (their bytes spooled
    /// already), each with its log row.
    pub notices: Vec<(NewJob, Event)>,
    /// The message whose recipients' timers close (`annullamento`).
    pub identificativo: String,
    /// Those recipients.
    pub recipients: Vec<String>,
}

impl Store {
    /// One job by id.
    pub fn job_blocking(&self, id: JobId) -> Result<Option<Job>> {
        self.read_blocking(|db| get(db, id))
    }

    /// Make pending jobs due now (see [`retry_now`]); how many.
    pub fn retry_now_blocking(&self, id: Option<JobId>, now: i64) -> Result<usize> {
        self.write_blocking(move |db| retry_now(db, id, now))
    }

    /// Put every failed job whose bytes are kept back in the queue, due
    /// now; how many.
    pub fn retry_failed_blocking(&self, now: i64) -> Result<usize> {
        self.write_blocking(move |db| retry_failed(db, now))
    }

    /// Cancel a job (see [`Cancellation`]) at `now`; false (and nothing
    /// written) when it was no longer pending.
    pub fn cancel_job_blocking(&self, c: Cancellation, now: i64) -> Result<bool> {
        self.write_blocking(move |db| {
            if !cancel(db, c.id, now)? {
                return Ok(false);
            }
            super::log::append(db, &c.event)?;
            for (j, e) in &c.notices {
                enqueue(db, j, now)?;
                super::log::append(db, e)?;
            }
            for r in &c.recipients {
                timer_close(db, &c.identificativo, r, now, "annullamento")?;
            }
            Ok(true)
        })
    }

    /// Relay jobs still pending (`pecd bench --dead-peer`).
    pub fn pending_relays_blocking(&self) -> Result<i64> {
        self.read_blocking(pending_relays)
    }
}

impl Inspector {
    /// The jobs of `which`, oldest first.
    pub fn jobs(&self, which: Listing) -> Result<Vec<Job>> {
        self.run(|db| list(db, which))
    }

    /// How many jobs are pending, held and failed.
    pub fn job_counts(&self) -> Result<Vec<(JobState, i64)>> {
        self.run(counts)
    }

    /// One job by id.
    pub fn job(&self, id: JobId) -> Result<Option<Job>> {
        self.run(|db| get(db, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> crate::store::MemDb {
        crate::store::MemDb::new()
    }

    fn job(key: &str, due: i64) -> NewJob {
        NewJob {
            key: key.into(),
            kind: Kind::Relay,
            identificativo: Some("id@x".into()),
            mail_from: "a@x".into(),
            recipients: vec!["b@y".into()],
            next_hop: Some("y".into()),
            blob: None,
            data: None,
            due_at: due,
        }
    }

    fn due(c: &Db<'_>, now: i64, limit: usize) -> Result<Vec<Job>> {
        let ids = due_ids(c, now, limit)?;
        Ok(ids
            .into_iter()
            .filter_map(|id| pending(c, id).unwrap())
            .collect())
    }

    #[test]
    fn mailbox_deliveries_come_first_then_by_due_time() {
        let m = db();
        let c = m.db();
        let mut late_mailbox = job("m", 30);
        late_mailbox.kind = Kind::Mailbox;
        enqueue(&c, &job("r2", 20), 0).unwrap();
        enqueue(&c, &job("r1", 10), 0).unwrap();
        enqueue(&c, &late_mailbox, 0).unwrap();
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
        assert!(enqueue(&c, &job("k", 10), 0).unwrap());
        assert!(!enqueue(&c, &job("k", 10), 0).unwrap());
        assert!(due(&c, 5, 10).unwrap().is_empty());
        let d = due(&c, 10, 10).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].recipients, vec!["b@y".to_string()]);
        reschedule(&c, d[0].id, "421 busy", 50, 10).unwrap();
        assert_eq!(next_due(&c).unwrap(), Some(50));
        mark_done(&c, d[0].id, 60).unwrap();
        assert!(due(&c, 100, 10).unwrap().is_empty());
        assert_eq!(next_due(&c).unwrap(), None);
    }

    #[test]
    fn segments_are_released_only_when_no_pending_job_names_them() {
        let m = db();
        let c = m.db();
        let mut a = job("a", 0);
        a.blob = Some(BlobRef::Spooled("seg-00000001.spool@0+10".into()));
        let mut b = job("b", 0);
        b.blob = Some(BlobRef::Spooled("seg-00000001.spool@10+5".into()));
        enqueue(&c, &a, 0).unwrap();
        enqueue(&c, &b, 0).unwrap();
        let ids: Vec<JobId> = due(&c, 0, 10).unwrap().iter().map(|j| j.id).collect();
        mark_done(&c, ids[0], 10).unwrap();
        assert!(segment_in_use(&c, "seg-00000001.spool", 100, 1000).unwrap());
        assert!(!segment_in_use(&c, "seg-00000002.spool", 100, 1000).unwrap());
        mark_failed(&c, ids[1], "x", 10).unwrap();
        assert!(
            segment_in_use(&c, "seg-00000001.spool", 100, 1000).unwrap(),
            "a recent failure keeps its bytes"
        );
        assert!(!segment_in_use(&c, "seg-00000001.spool", 10_000, 1000).unwrap());
        forget_segment(&c, "seg-00000001.spool").unwrap();
        c.sql()
            .execute("UPDATE jobs SET state = 'done'", [])
            .unwrap();
        assert_eq!(purge_finished(&c, 1_000_000, 100).unwrap(), 2);
    }

    #[test]
    fn failed_jobs_are_listed_counted_and_retried_while_their_bytes_are_kept() {
        let m = db();
        let c = m.db();
        for k in ["kept", "released", "waiting"] {
            let mut j = job(k, 0);
            j.blob = Some(BlobRef::Spooled(format!("seg-1.spool@{k}")));
            enqueue(&c, &j, 0).unwrap();
        }
        let id = |k: &str| {
            list(&c, Listing::All)
                .unwrap()
                .into_iter()
                .find(|j| j.key == k)
                .unwrap()
                .id
        };
        mark_failed(&c, id("kept"), "550 5.1.1 no such user", 5).unwrap();
        mark_failed(&c, id("released"), "550 5.7.1 refused", 5).unwrap();
        c.sql()
            .execute("UPDATE jobs SET blob = NULL WHERE key = 'released'", [])
            .unwrap();
        let keys = |w| -> Vec<String> { list(&c, w).unwrap().into_iter().map(|j| j.key).collect() };
        assert_eq!(keys(Listing::Waiting), ["waiting"]);
        assert_eq!(keys(Listing::Failed), ["kept", "released"]);
        assert_eq!(keys(Listing::All).len(), 3);
        let failed = |c: &Db<'_>| {
            counts(c)
                .unwrap()
                .into_iter()
                .find(|(s, _)| *s == JobState::Failed)
                .unwrap()
                .1
        };
        assert_eq!(failed(&c), 2, "the gauge counts what --failed lists");
        let f = &list(&c, Listing::Failed).unwrap()[0];
        assert_eq!(f.last_error.as_deref(), Some("550 5.1.1 no such user"));
        assert_eq!(f.attempts, 1);

        // A failed job without its bytes cannot run again; one with them can.
        assert_eq!(retry_now(&c, Some(id("released")), 10).unwrap(), 0);
        assert_eq!(retry_now(&c, Some(id("kept")), 10).unwrap(), 1);
        assert_eq!(keys(Listing::Waiting), ["kept", "waiting"]);
        assert_eq!(due(&c, 10, 10).unwrap().len(), 2);
        // Retrying every pending job leaves failed ones failed.
        mark_failed(&c, id("kept"), "again", 20).unwrap();
        retry_now(&c, None, 30).unwrap();
        assert_eq!(failed(&c), 2);
        assert_eq!(retry_failed(&c, 40).unwrap(), 1, "only the one with bytes");
        assert_eq!(keys(Listing::Failed), ["released"]);
    }

    #[test]
    fn presa_stops_only_the_warning_and_consegna_closes() {
        let m = db();
        let c = m.db();
        timer_start(&c, "id", "b@y", 0, 100, 200).unwrap();
        assert!(timer_presa(&c, "id", "b@y", 50).unwrap());
        let d = due_timers(&c, 300, 10).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].deadline, Deadline::Expire);
        assert!(timer_close(&c, "id", "b@y", 60, "consegna")
            .unwrap()
            .is_some());
        assert!(due_timers(&c, 300, 10).unwrap().is_empty());
        assert!(!timer_open(&c, "id", "b@y").unwrap());
    }

    #[test]
    fn overdue_warning_is_skipped_when_the_final_deadline_passed_too() {
        let m = db();
        let c = m.db();
        timer_start(&c, "id", "b@y", 0, 100, 200).unwrap();
        let d = due_timers(&c, 150, 10).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].deadline, Deadline::Preavviso);
        let d = due_timers(&c, 250, 10).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].deadline, Deadline::Expire);
    }
}

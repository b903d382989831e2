//! The work queue and the per-recipient PEC timers.
//!
//! Every piece of pending work is a row with a `due_at`; every deadline is a
//! column, never a sleeping task, so a restart loses nothing. Rows carry an
//! idempotency `key` (identificativo + recipient + kind): enqueueing the same
//! work twice is a no-op, which is what keeps a replay after `kill -9` from
//! producing a second busta or a second receipt.

use super::{Inspector, Result, Store};
use serde::Serialize;

pub use crate::flow::batch::{
    BlobRef, Claimed, Deadline, DueTimer, Fence, JobId, JobKind as Kind, NewJob,
};

use crate::flow::batch::Event;

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
    /// The node running it now (its claim), if any.
    pub claimed_by: Option<String>,
    /// Until when that claim holds unless renewed (unix ms).
    pub claimed_until: Option<i64>,
    /// The fencing token of its latest claim.
    pub fence: i64,
}

impl Job {
    /// The claim this job was handed out under, for the batch that ends it.
    pub fn claim(&self) -> Option<Fence> {
        self.claimed_by.as_ref().map(|node| Fence {
            what: Claimed::Job(self.id),
            node: node.clone(),
            token: self.fence,
        })
    }
}

/// Which jobs a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Work still to do: pending and held jobs.
    Waiting,
    /// Jobs given up, the ones the `failed` gauge counts.
    Failed,
    /// Every row, finished ones too.
    All,
}

/// Times the process may die while running one job before it is held.
pub const MAX_CRASHES: i64 = 3;

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
        self.read_blocking(|db| db.job_get(id))
    }

    /// Make pending jobs due now (one, or all with `None`; a held job, or
    /// a failed one whose message bytes are still kept, only by its id);
    /// how many.
    pub fn retry_now_blocking(&self, id: Option<JobId>, now: i64) -> Result<usize> {
        self.write_blocking(move |db| db.jobs_retry_now(id, now))
    }

    /// Put every failed job whose bytes are kept back in the queue, due
    /// now; how many.
    pub fn retry_failed_blocking(&self, now: i64) -> Result<usize> {
        self.write_blocking(move |db| db.jobs_retry_failed(now))
    }

    /// Cancel a job (see [`Cancellation`]) at `now`; false (and nothing
    /// written) when it was no longer pending.
    pub fn cancel_job_blocking(&self, c: Cancellation, now: i64) -> Result<bool> {
        self.write_blocking(move |db| {
            if !db.job_cancel(c.id, now)? {
                return Ok(false);
            }
            db.log_append(&c.event)?;
            for (j, e) in &c.notices {
                db.job_enqueue(j, now)?;
                db.log_append(e)?;
            }
            for r in &c.recipients {
                db.timer_close(&c.identificativo, r, now, "annullamento")?;
            }
            Ok(true)
        })
    }

    /// Relay jobs still pending (`pecd bench --dead-peer`).
    pub fn pending_relays_blocking(&self) -> Result<i64> {
        self.read_blocking(|db| db.pending_relays())
    }
}

impl Inspector {
    /// The jobs of `which`, oldest first.
    pub fn jobs(&self, which: Listing) -> Result<Vec<Job>> {
        self.run(|db| db.job_list(which))
    }

    /// How many jobs are pending, held and failed.
    pub fn job_counts(&self) -> Result<Vec<(JobState, i64)>> {
        self.run(|db| db.job_counts())
    }

    /// One job by id.
    pub fn job(&self, id: JobId) -> Result<Option<Job>> {
        self.run(|db| db.job_get(id))
    }
}

/// A relay job keyed `key`, due at `due`: the store's tests' fixture.
#[cfg(test)]
pub(crate) fn test_job(key: &str, due: i64) -> crate::flow::batch::NewJob {
    crate::flow::batch::NewJob {
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

//! One small executor per job kind: load the facts the flow needs, call the
//! flow (`crate::flow`), sign what it left to sign, and commit its batch
//! through the store's one write door. What a failure means — try again
//! after a backoff, or give up — is decided here once for every kind.

mod deliver;
mod judge;
mod mailbox;
mod notice;
mod relay;
pub mod timer;

use std::sync::Arc;

use crate::flow::batch::{Batch, Fence, JobEnd};
use crate::store::queue::{Job, Kind};
use crate::store::{Committed, StoreError};

use super::Ctx;

/// How a job attempt failed.
#[derive(Debug)]
pub(super) enum Fail {
    /// Try again later.
    Temporary(String),
    /// A guarded state moved under the decision (`StoreError::Changed`):
    /// decide again on the new state (at once where the executor can,
    /// else as `Temporary`).
    Changed(String),
    /// Give up.
    Permanent(String),
    /// This node's claim on the work lapsed and another node has it now:
    /// nothing of the outcome was written, and nothing more is to be done
    /// here.
    LostClaim,
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        match e {
            StoreError::LostClaim => Fail::LostClaim,
            e => Fail::Temporary(e.to_string()),
        }
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Fail {
        Fail::Temporary(e.to_string())
    }
}

impl From<super::SignError> for Fail {
    fn from(e: super::SignError) -> Fail {
        Fail::Temporary(e.to_string())
    }
}

impl From<tokio::task::JoinError> for Fail {
    fn from(e: tokio::task::JoinError) -> Fail {
        Fail::Temporary(e.to_string())
    }
}

/// Tell the sender of a job held after crashes (see [`relay::held`]).
pub async fn relay_held(ctx: &Arc<Ctx>, job: &Job) {
    relay::held(ctx, job).await
}

/// Run one claimed job to its end (its outcome committed under its claim).
pub async fn run(ctx: &Arc<Ctx>, job: Job) {
    let fence = job.claim();
    let r = match job.kind {
        Kind::Mailbox => mailbox::run(ctx, &job).await,
        Kind::LocalBusta => deliver::run(ctx, &job).await,
        Kind::Relay => relay::run(ctx, &job).await,
        Kind::Inbound => judge::run(ctx, &job).await,
        Kind::Notice => notice::run(ctx, &job).await,
    };
    let mut batch = match r {
        Ok(()) => return,
        Err(Fail::LostClaim) => {
            lost(&job);
            return;
        }
        Err(Fail::Temporary(error)) | Err(Fail::Changed(error)) => {
            let delay = backoff(ctx, job.attempts);
            tracing::warn!(job = %job.id, kind = job.kind.as_str(), error = %error, retry_in = ?delay, "job failed, will retry");
            let now = ctx.unix_ms();
            let mut b = Batch::at(now);
            b.end = Some((
                job.id,
                JobEnd::Retry {
                    error,
                    due_at: now + delay.as_millis() as i64,
                },
            ));
            b
        }
        Err(Fail::Permanent(e)) => {
            tracing::error!(job = %job.id, kind = job.kind.as_str(), error = %e, "job failed for good");
            crate::flow::relay::failed(
                ctx.unix_ms(),
                job.id,
                job.identificativo.as_deref(),
                &job.recipients,
                job.kind.as_str(),
                &e,
            )
        }
    };
    batch.fence = fence.clone();
    match ctx.store.commit(batch).await {
        Ok(_) => {}
        Err(StoreError::LostClaim) => lost(&job),
        Err(e) => {
            tracing::error!(error = %e, job = %job.id, "could not record job outcome");
            // Free for the next look rather than held until the lease ends.
            if let Some(f) = fence {
                let _ = ctx.store.release(f).await;
            }
        }
    }
}

/// Another node took the job over after our lease lapsed (we were stalled
/// or cut off from the store): its outcome is theirs to record.
fn lost(job: &Job) {
    tracing::warn!(job = %job.id, kind = job.kind.as_str(),
        "the claim on this job lapsed and another node has it now: this run's outcome is dropped");
}

/// Exponential backoff shortened by up to 25 % jitter, between `[queue] retry_initial` and `retry_max`.
pub(super) fn backoff(ctx: &Ctx, attempts: i64) -> std::time::Duration {
    let cfg = ctx.cfg();
    let q = &cfg.queue;
    let initial = cfg.duration(&q.retry_initial, std::time::Duration::from_secs(60));
    let max = cfg.duration(&q.retry_max, std::time::Duration::from_secs(3600));
    let mut b = [0u8; 2];
    let _ = openssl::rand::rand_bytes(&mut b);
    let unit = u16::from_le_bytes(b) as f64 / u16::MAX as f64;
    let ms = crate::pec::timers::retry_delay(
        attempts.max(0) as u32,
        initial.as_millis() as u64,
        max.as_millis() as u64,
        0.25,
        unit,
    );
    std::time::Duration::from_millis(ms.max(1))
}

/// Sign a decided batch (on the blocking pool: RSA is CPU work) and commit
/// it under `claim`, the claim of the work it ends (written only while that
/// holds); the work it queued due now goes to this node's scheduler.
pub(super) async fn commit(
    ctx: &Arc<Ctx>,
    claim: Option<Fence>,
    mut batch: Batch,
) -> Result<Committed, Fail> {
    batch.fence = claim;
    let more = !batch.jobs.is_empty();
    batch.taker = Some(ctx.taker());
    let mut done = if batch
        .blobs
        .iter()
        .any(|b| matches!(b, crate::flow::batch::NewBlob::Sign(_)))
    {
        // Signing is CPU work off the async threads; the bytes are staged
        // in the same trip through the blocking pool.
        let ctx2 = ctx.clone();
        let staged = tokio::task::spawn_blocking(move || -> Result<_, Fail> {
            ctx2.sign_batch(&mut batch)?;
            ctx2.store.stage(batch).map_err(Fail::from_commit)
        })
        .await??;
        ctx.store.commit_staged(staged).await
    } else {
        ctx.store.commit(batch).await
    }
    .map_err(Fail::from_commit)?;
    if more {
        ctx.hand_over(std::mem::take(&mut done.taken));
    }
    Ok(done)
}

/// The job's message bytes from the spool.
fn blob_of(ctx: &Ctx, job: &Job) -> Result<Vec<u8>, Fail> {
    let name = job
        .blob
        .as_deref()
        .ok_or_else(|| Fail::Permanent("job has no message file".into()))?;
    ctx.store.get_blob(name).map_err(|e| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
        ) {
            Fail::Permanent(format!("spool bytes {name} are missing"))
        } else {
            Fail::Temporary(e.to_string())
        }
    })
}

/// The `tipo` and `msgid` a notice job records in its data.
fn job_data(job: &Job) -> (Option<String>, Option<String>) {
    let v: serde_json::Value = job
        .data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(serde_json::Value::Null);
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    (s("tipo"), s("msgid"))
}

/// The one recipient a mailbox or local-busta job serves.
fn sole_recipient(job: &Job) -> Result<&str, Fail> {
    job.recipients
        .first()
        .map(String::as_str)
        .ok_or_else(|| Fail::Permanent("no recipient".into()))
}

/// The job as the delivery flows name it.
fn work<'a>(job: &'a Job, raw: &'a [u8]) -> Result<crate::flow::deliver::Work<'a>, Fail> {
    Ok(crate::flow::deliver::Work {
        id: job.id,
        key: &job.key,
        created_at: job.created_at,
        attempts: job.attempts,
        recipient: sole_recipient(job)?,
        raw,
        blob: job.blob.as_deref().unwrap_or_default(),
    })
}

impl Fail {
    /// A store error from committing a batch with deliveries: a missing
    /// mailbox is final, a failing disk is not.
    fn from_commit(e: StoreError) -> Fail {
        match e {
            StoreError::LostClaim => Fail::LostClaim,
            StoreError::Mailbox(a, crate::store::maildir::DeliveryError::Io(io)) => {
                Fail::Temporary(format!("{a}: {io}"))
            }
            StoreError::Mailbox(a, e) => Fail::Permanent(format!("{a}: {e}")),
            e @ StoreError::Changed(_) => Fail::Changed(e.to_string()),
            e => Fail::Temporary(e.to_string()),
        }
    }
}

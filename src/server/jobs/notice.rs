//! The notice of a new PEC at the box owner's ordinary address: the box's
//! notice state, then `flow::notice::batch` (the notice itself leaves as a
//! relay job of that batch).

use std::sync::Arc;

use crate::flow::batch::{Batch, JobEnd};
use crate::flow::notice::Pec;
use crate::store::queue::Job;

use super::{commit, sole_recipient, Ctx, Fail};

/// How many times a turn is decided again at once when another notice job
/// of the same box committed first (beyond that, the job's retry).
const TRIES: usize = 5;

/// Tell the box's owner of the job's PEC, or count it.
pub(super) async fn run(ctx: &Arc<Ctx>, job: &Job) -> Result<(), Fail> {
    let pec: Pec = job
        .data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .ok_or_else(|| Fail::Permanent("notice job without its PEC's facts".into()))?;
    let mut tries = 0;
    loop {
        tries += 1;
        match turn(ctx, job, &pec).await {
            Err(Fail::Changed(_)) if tries < TRIES => continue,
            r => return r,
        }
    }
}

/// One decision on the box's state as read now, committed under its guard.
async fn turn(ctx: &Arc<Ctx>, job: &Job, pec: &Pec) -> Result<(), Fail> {
    let rcpt = sole_recipient(job)?.to_string();
    let ctx2 = ctx.clone();
    let state = tokio::task::spawn_blocking(move || ctx2.store.notice_blocking(&rcpt)).await??;
    let rcpt = sole_recipient(job)?;
    let batch = match &state {
        // The user stopped the notices since the delivery.
        None => {
            let mut b = Batch::at(ctx.unix_ms());
            b.end = Some((job.id, JobEnd::Done));
            b
        }
        Some((email, state)) => crate::flow::notice::batch(
            &crate::flow::notice::Facts {
                us: ctx.us(),
                now: ctx.now(),
                address: rcpt,
                email,
                state: *state,
            },
            job.id,
            pec,
        ),
    };
    commit(ctx, job.claim(), batch).await?;
    Ok(())
}

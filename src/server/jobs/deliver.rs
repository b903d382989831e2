//! The delivery point for one local recipient of a busta: whether the
//! mailbox exists and has room, then `flow::deliver::busta`.

use std::sync::Arc;

use crate::flow::deliver::Room;
use crate::store::queue::Job;

use super::{blob_of, commit, sole_recipient, work, Ctx, Fail};

/// Deliver the job's busta.
pub(super) async fn run(ctx: &Arc<Ctx>, job: &Job) -> Result<(), Fail> {
    let raw = blob_of(ctx, job)?;
    let rcpt = sole_recipient(job)?.to_string();
    let ctx2 = ctx.clone();
    let job2 = job.clone();
    // Mailbox usage and signing are blocking work.
    let (mut outcome, ours) = tokio::task::spawn_blocking(move || -> Result<_, Fail> {
        let known = ctx2.store.mailbox_exists(&rcpt)?;
        let w = work(&job2, &raw)?;
        let room = if known {
            room_for(&ctx2, &rcpt, &w.name(&ctx2.provider().hostname), raw.len() as u64)?
        } else {
            Room::Fits(None)
        };
        let facts = crate::flow::deliver::Facts {
            us: ctx2.us(),
            known,
            room,
            quota_warning: ctx2.cfg().quota_warning(),
            now: ctx2.now(),
            notice: known && ctx2.store.notice_blocking(&rcpt)?.is_some(),
        };
        let o = crate::flow::deliver::busta(&facts, &w).map_err(|e| Fail::Permanent(e.to_string()))?;
        if let crate::flow::deliver::Room::Full { used, limit } = room {
            tracing::warn!(%rcpt, used, limit, size = raw.len(), "mailbox full: busta not delivered");
        }
        let ours = o.consegna_to_our_sender;
        Ok((o, ours))
    })
    .await??;
    let batch = std::mem::take(&mut outcome.batch);
    commit(ctx, job.claim(), batch).await?;
    if ours {
        // Our own sender: this job was queued by the acceptance.
        ctx.metrics
            .consegna_after((ctx.unix_ms() - job.created_at) as f64 / 1000.0);
    }
    Ok(())
}

/// Check a busta of `size` bytes against `rcpt`'s quota. A copy this very
/// job already stored (a retry after a crash) always fits: it is counted.
fn room_for(ctx: &Ctx, rcpt: &str, name: &str, size: u64) -> Result<Room, Fail> {
    let Some(limit) = ctx.quota_of_blocking(rcpt) else {
        return Ok(Room::Fits(None));
    };
    let temporary = |e| Fail::Temporary(format!("mailbox usage of {rcpt}: {e}"));
    let used = ctx.store.mailbox_used(rcpt).map_err(temporary)?;
    // The retry check lists `cur/`: only when the quota would refuse.
    if used.saturating_add(size) <= limit
        || ctx.store.already_delivered(rcpt, name).map_err(temporary)?
    {
        return Ok(Room::Fits(Some((used, limit))));
    }
    Ok(Room::Full { used, limit })
}

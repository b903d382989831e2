//! The scheduler: one loop that sleeps until the earliest due time stored
//! in the database (a job or a deadline), hands what is due to the
//! executors (`jobs`) with bounded concurrency, and wakes early when new
//! work is committed. The crash guard and the backoff live here too.
//!
//! Every job is idempotent by construction: deliveries are named after the
//! job's key, follow-up work is queued under unique keys in the same
//! transaction that ends the job, so a job interrupted by a crash simply
//! runs again after the restart.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::flow::batch::{Batch, Event, EventKind};
use crate::store::queue::{JobId, Kind};

use super::{jobs, Ctx};

/// How often housekeeping runs.
const SWEEP_EVERY_MS: i64 = 60_000;
/// How often due 12 h / 24 h deadlines are looked for: they have
/// second-scale meaning, and this spares a query per job completion.
const TIMER_CHECK_MS: i64 = 200;

/// Run until shutdown.
pub async fn run(ctx: Arc<Ctx>) {
    let slots = ctx.cfg().queue.workers.max(1);
    let permits = Arc::new(Semaphore::new(slots));
    let mut shutdown = ctx.shutdown.clone();
    let mut next_sweep = 0;
    let mut next_timer_check = 0;
    // Jobs that ended since the due list was last read. That list is a
    // snapshot: it may predate the commit of a run that has just ended (and
    // left `running`), and such a job must not run twice (a relay would send
    // its message again). Cleared before each read, filled after each commit.
    let ended: Arc<Mutex<HashSet<JobId>>> = Arc::default();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = ctx.unix_ms();
        if now >= next_sweep {
            next_sweep = now + SWEEP_EVERY_MS;
            let ctx2 = ctx.clone();
            tokio::task::spawn_blocking(move || sweep(&ctx2));
        }
        if now >= next_timer_check {
            next_timer_check = now + TIMER_CHECK_MS;
            for t in ctx.store.due_timers(now, 200).await.unwrap_or_default() {
                if let Err(e) = jobs::timer::fire(&ctx, &t).await {
                    tracing::error!(error = ?e, id = %t.identificativo, "timer notice failed; will retry");
                }
            }
        }
        let mut started = 0;
        let free = permits.available_permits();
        if free > 0 {
            let busy: HashSet<JobId> = ctx.running.lock().map(|r| r.clone()).unwrap_or_default();
            if let Ok(mut e) = ended.lock() {
                e.clear();
            }
            let due = ctx
                .store
                .due_jobs(now, free, busy)
                .await
                .unwrap_or_default();
            for job in due {
                if ended.lock().map(|e| e.contains(&job.id)).unwrap_or(true) {
                    continue;
                }
                let fresh = ctx
                    .running
                    .lock()
                    .map(|mut r| r.insert(job.id))
                    .unwrap_or(false);
                if !fresh {
                    continue;
                }
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    if let Ok(mut r) = ctx.running.lock() {
                        r.remove(&job.id);
                    }
                    break;
                };
                started += 1;
                let ctx2 = ctx.clone();
                let ended2 = ended.clone();
                tokio::spawn(async move {
                    let id = job.id;
                    let marker = ctx2.inflight.enter(id);
                    jobs::run(&ctx2, job).await;
                    drop(marker);
                    // Order matters: marked ended before it leaves `running`.
                    if let Ok(mut e) = ended2.lock() {
                        e.insert(id);
                    }
                    if let Ok(mut r) = ctx2.running.lock() {
                        r.remove(&id);
                    }
                    drop(permit);
                    ctx2.wake.notify_one();
                });
            }
        }
        if started > 0 {
            continue;
        }
        let next = ctx.store.next_due().await.ok().flatten();
        let wait = match next {
            Some(t) if t > now => Duration::from_millis((t - now) as u64),
            _ => Duration::from_secs(1),
        }
        .min(Duration::from_millis((next_timer_check - now).max(1) as u64))
        .min(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.wake.notified() => {
                // Under load every finishing job wakes us: let a few finish
                // together so one query hands out several jobs.
                if permits.available_permits() < slots {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            _ = shutdown.changed() => {}
        }
    }
    // Let in-flight jobs finish (the caller bounds this with the grace period).
    let _ = permits.acquire_many(slots as u32).await;
}

/// Housekeeping: close relay connections idle too long; the store forgets
/// old finished jobs, collects spool bytes no work names, and purges what
/// the law no longer keeps.
fn sweep(ctx: &Ctx) {
    ctx.relay.get().prune_idle();
    if let Err(e) = ctx.store.sweep(ctx.unix_ms()) {
        tracing::warn!(error = %e, "housekeeping failed; will try again");
    }
}

/// Jobs the previous process left running when it died (from the in-flight
/// file): count each crash, and hold a job that has crashed the process
/// [`crate::store::queue::MAX_CRASHES`] times. A held busta is not
/// delivered: its sender gets an avviso di mancata consegna for each
/// recipient, and the PEC log records the hold. `pecd queue retry ID`
/// releases it.
pub async fn after_crash(ctx: &Arc<Ctx>, ids: &[JobId]) {
    for &id in ids {
        let now = ctx.unix_ms();
        let job = match ctx.store.record_crash(id, now).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                tracing::warn!(job = %id, "the process died while this job ran; it will run again");
                continue;
            }
            Err(e) => {
                tracing::error!(job = %id, error = %e, "could not record a crashed job");
                continue;
            }
        };
        let why = job.last_error.clone().unwrap_or_default();
        tracing::error!(job = %id, kind = job.kind.as_str(), reason = %why, "job held");
        let mut ev = Event::new(EventKind::LavoroSospeso, now);
        ev.identificativo = job.identificativo.clone();
        ev.sender = Some(job.mail_from.clone()).filter(|s| !s.is_empty());
        ev.recipients = Some(job.recipients.join(", "));
        ev.error = Some(why);
        ev.detail = Some(format!("job {} {} held", job.id, job.kind.as_str()));
        let mut b = Batch::at(now);
        b.log(ev);
        if let Err(e) = ctx.store.commit(b).await {
            tracing::error!(job = %id, error = %e, "could not log a held job");
        }
        let ours = job.identificativo.as_deref().is_some_and(|i| !i.is_empty());
        if ours && matches!(job.kind, Kind::Relay | Kind::LocalBusta) {
            jobs::relay_held(ctx, &job).await;
        }
    }
}

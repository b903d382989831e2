//! The scheduler: one loop that looks for due work (jobs every
//! `CLAIM_CHECK_MS` while a slot is free, deadlines every
//! `TIMER_CHECK_MS`), claims what is due for this node
//! (`Store::claim`: each job and deadline to one node at a time, under a
//! lease and a fencing token), hands it to the executors (`jobs`) with
//! bounded concurrency, and wakes early when new work is committed. The
//! claims of running jobs are renewed by a task of their own; a clean stop
//! releases them ([`release_claims`]). The crash guard lives here too.
//!
//! Every job is idempotent by construction: deliveries are named after the
//! job's key, follow-up work is queued under unique keys in the same
//! transaction that ends the job, so a job interrupted by a crash simply
//! runs again after the restart (or on another node, once the lease of the
//! dead one lapses).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::flow::batch::{Batch, Event, EventKind};
use crate::store::claims::{Claimant, Want};
use crate::store::queue::{Fence, Job, JobId, Kind};

use super::{jobs, Ctx};

/// How often housekeeping runs.
const SWEEP_EVERY_MS: i64 = 60_000;
/// How often due 12 h / 24 h deadlines are looked for: they have
/// second-scale meaning, and this spares a query per job completion.
const TIMER_CHECK_MS: i64 = 200;
/// How often due jobs are claimed from the store while none comes to hand
/// otherwise: the next hop of a message is handed over by the commit that
/// queued it (`Ctx::hand_over`), so the store is asked only for retries
/// come due, work queued by other nodes or commands, and lapsed claims.
const CLAIM_CHECK_MS: i64 = 50;
/// Deadlines of each kind claimed at one time (fired one after another).
const TIMERS_PER_CHECK: usize = 200;

/// This node as the store's claims name it: `[cluster] node` and `lease`
/// (restart-only keys: fixed for the life of the process).
fn claimant(ctx: &Ctx) -> Claimant {
    let cluster = ctx.cfg().cluster.clone();
    Claimant::new(&cluster.node(), cluster.lease().as_millis() as i64)
}

/// Record this node's first heartbeat, before it says it runs; the start
/// time its later heartbeats carry.
pub async fn announce(ctx: &Ctx) -> i64 {
    let started = ctx.unix_ms();
    beat(ctx, &claimant(ctx), started).await;
    started
}

/// Run until shutdown (`started`: from [`announce`]).
pub async fn run(ctx: Arc<Ctx>, started: i64) {
    let me = claimant(&ctx);
    let slots = ctx.cfg().queue.workers.max(1);
    let permits = Arc::new(Semaphore::new(slots));
    let mut shutdown = ctx.shutdown.clone();
    let mut next_sweep = 0;
    let mut next_timer_check = 0;
    let mut next_claim_check = 0;
    // The claims of the jobs running now, renewed by their own task so a
    // busy loop (a long run of deadlines to fire) cannot let them lapse.
    let held: Arc<Mutex<HashMap<JobId, Fence>>> = Arc::default();
    let renewer = tokio::spawn(renew(ctx.clone(), me.clone(), held.clone(), started));
    // Jobs this node's commits wrote claimed by it (`Ctx::hand_over`),
    // waiting for a slot: mailbox deliveries first, as the claims order them.
    let mut handoff = ctx.handoff_rx.lock().ok().and_then(|mut r| r.take());
    let mut ready: [VecDeque<Job>; 2] = Default::default();
    loop {
        if *shutdown.borrow() {
            break;
        }
        if let Some(rx) = handoff.as_mut() {
            while let Ok(job) = rx.try_recv() {
                if let (Some(fence), Ok(mut h)) = (job.claim(), held.lock()) {
                    h.insert(job.id, fence);
                }
                let lane = usize::from(job.kind != Kind::Mailbox);
                ready[lane].push_back(job);
            }
        }
        let mut started = 0;
        for lane in ready.iter_mut() {
            while !lane.is_empty() {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    break;
                };
                if let Some(job) = lane.pop_front() {
                    start(&ctx, &held, job, permit);
                    started += 1;
                }
            }
        }
        let now = ctx.unix_ms();
        if now >= next_sweep {
            next_sweep = now + SWEEP_EVERY_MS;
            let ctx2 = ctx.clone();
            tokio::task::spawn_blocking(move || sweep(&ctx2));
        }
        let timers = if now >= next_timer_check {
            next_timer_check = now + TIMER_CHECK_MS;
            TIMERS_PER_CHECK
        } else {
            0
        };
        let free = if now >= next_claim_check {
            permits.available_permits()
        } else {
            0
        };
        if free > 0 || timers > 0 {
            // Our running jobs are never handed to us twice, even if a
            // stalled renewal let their claim lapse.
            let skip = ctx.running.lock().map(|r| r.clone()).unwrap_or_default();
            let want = Want {
                jobs: free,
                timers,
                skip,
            };
            let claims = match ctx.store.claim(&me, now, want).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "could not claim due work; will try again");
                    Default::default()
                }
            };
            // Fewer than asked for: nothing more is due in the store now.
            if free > 0 && claims.jobs.len() < free {
                next_claim_check = now + CLAIM_CHECK_MS;
            }
            for (id, node) in &claims.taken_over {
                tracing::warn!(job = %id, node = %node,
                    "took over a job whose node let its lease lapse (counted as a crash of the job)");
            }
            for job in &claims.held {
                hold(&ctx, job).await;
            }
            for job in claims.jobs {
                let Some(fence) = job.claim() else { continue };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    // Only this loop takes permits, and it claimed no more
                    // than were free: give the claim back all the same.
                    let _ = ctx.store.release(fence).await;
                    continue;
                };
                if let Ok(mut h) = held.lock() {
                    h.insert(job.id, fence);
                }
                start(&ctx, &held, job, permit);
                started += 1;
            }
            for t in claims.timers {
                let fence = t.fence.clone();
                match jobs::timer::fire(&ctx, &t.timer, fence.clone()).await {
                    Ok(()) => {}
                    Err(jobs::Fail::LostClaim) => tracing::warn!(id = %t.timer.identificativo,
                        recipient = %t.timer.recipient, "another node fires this deadline now"),
                    Err(e) => {
                        tracing::error!(error = ?e, id = %t.timer.identificativo, "timer notice failed; will retry");
                        // Due again at the next look, here or on another node.
                        let _ = ctx.store.release(fence).await;
                    }
                }
            }
        }
        // Every free slot filled: more may be due at once.
        if started > 0 && permits.available_permits() == 0 {
            continue;
        }
        // No look at the store's next due time: with a free slot the next
        // claim check is at most CLAIM_CHECK_MS away, and with none a
        // finishing job wakes us first, so it could only add a query per
        // finished job.
        let now = ctx.unix_ms();
        let wait = Duration::from_millis((next_timer_check - now).max(1) as u64)
            .min(Duration::from_secs(1));
        let wait = if next_claim_check > now {
            wait.min(Duration::from_millis((next_claim_check - now) as u64))
        } else {
            wait
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.wake.notified() => {
                // Under load every finishing job wakes us: let a few finish
                // together so one claim hands out several jobs.
                if permits.available_permits() < slots {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            _ = shutdown.changed() => {}
        }
    }
    // Let in-flight jobs finish (the caller bounds this with the grace
    // period), their claims renewed meanwhile.
    let _ = permits.acquire_many(slots as u32).await;
    renewer.abort();
}

/// Run `job` (claimed, its fence in `held`) in a task of its own holding
/// `permit`; its claim leaves `held` when it ends.
fn start(
    ctx: &Arc<Ctx>,
    held: &Arc<Mutex<HashMap<JobId, Fence>>>,
    job: Job,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let id = job.id;
    if let Ok(mut r) = ctx.running.lock() {
        r.insert(id);
    }
    let ctx2 = ctx.clone();
    let held2 = held.clone();
    tokio::spawn(async move {
        jobs::run(&ctx2, job).await;
        if let Ok(mut h) = held2.lock() {
            h.remove(&id);
        }
        if let Ok(mut r) = ctx2.running.lock() {
            r.remove(&id);
        }
        drop(permit);
        ctx2.wake.notify_one();
    });
}

/// This node's heartbeat (`pecd cluster status`).
async fn beat(ctx: &Ctx, me: &Claimant, started: i64) {
    if let Err(e) = ctx.store.beat(&me.node, started, ctx.unix_ms()).await {
        tracing::warn!(error = %e, node = %me.node, "could not record this node's heartbeat");
    }
}

/// Renew the claims of the running jobs every third of the lease, so a
/// claim is renewed twice before it could lapse, and beat with them.
async fn renew(ctx: Arc<Ctx>, me: Claimant, held: Arc<Mutex<HashMap<JobId, Fence>>>, started: i64) {
    let every = Duration::from_millis((me.lease_ms / 3).max(1) as u64);
    loop {
        tokio::time::sleep(every).await;
        beat(&ctx, &me, started).await;
        let fences: Vec<Fence> = held
            .lock()
            .map(|h| h.values().cloned().collect())
            .unwrap_or_default();
        if fences.is_empty() {
            continue;
        }
        match ctx.store.renew(&me, ctx.unix_ms(), fences).await {
            Ok(lost) => {
                for f in lost {
                    tracing::warn!(claim = ?f.what, token = f.token,
                        "claim lost while the work ran (another node took it): its outcome here will be refused");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not renew the claims of running jobs"),
        }
    }
}

/// A clean stop: every claim of this node is given back, so what it leaves
/// unfinished is neither counted as a crash nor kept from others for a
/// lease.
pub async fn release_claims(ctx: &Ctx) {
    let node = ctx.cfg().cluster.node();
    if let Err(e) = ctx.store.release_node(&node).await {
        tracing::warn!(error = %e, node = %node,
            "could not release this node's claims: the next start counts them as crashes");
    }
    if let Err(e) = ctx.store.node_stopped(&node, ctx.unix_ms()).await {
        tracing::warn!(error = %e, node = %node, "could not record this node's stop");
    }
}

/// Housekeeping: close relay connections idle too long and forget the
/// shared login failure counts past their time; the store forgets old
/// finished jobs, collects spool bytes no work names, and purges what the
/// law no longer keeps.
fn sweep(ctx: &Ctx) {
    ctx.relay.get().prune_idle();
    ctx.throttle.sweep();
    if let Err(e) = ctx.store.sweep(ctx.unix_ms()) {
        tracing::warn!(error = %e, "housekeeping failed; will try again");
    }
}

/// At start: the claims this node's previous run left (it died: `kill -9`,
/// an abort, the OOM killer) are taken back at once and each job counted
/// as a crash; a job that has crashed the process
/// [`crate::store::queue::MAX_CRASHES`] times is held (see [`hold`]).
pub async fn after_crash(ctx: &Arc<Ctx>) {
    let node = ctx.cfg().cluster.node();
    let r = match ctx.store.recover(&node, ctx.unix_ms()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, node = %node, "could not take back the claims of the last run");
            return;
        }
    };
    for id in r.again {
        tracing::warn!(job = %id, "the process died while this job ran; it will run again");
    }
    for job in &r.held {
        hold(ctx, job).await;
    }
}

/// A job held after crashing its node too often: not run again. A held
/// busta is not delivered: its sender gets an avviso di mancata consegna
/// for each recipient, and the PEC log records the hold. `pecd queue retry
/// ID` releases it.
async fn hold(ctx: &Arc<Ctx>, job: &Job) {
    let now = ctx.unix_ms();
    let id = job.id;
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
        jobs::relay_held(ctx, job).await;
    }
}

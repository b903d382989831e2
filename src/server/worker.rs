//! The worker: one loop that sleeps until the earliest due time stored in the
//! database (a job or a timer), runs what is due with bounded concurrency,
//! and records each outcome and its log events in one transaction.
//!
//! Each job is idempotent by construction: deliveries use file names derived
//! from the job key, follow-up work is enqueued under unique keys in the same
//! transaction that marks the job done. A job interrupted by a crash simply
//! runs again after restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::pec::classify::{classify, PecMessage};
use crate::pec::clock::ItalianTime;
use crate::pec::daticert::{Certified, Daticert};
use crate::pec::delivery;
use crate::pec::envelope::busta_di_anomalia;
use crate::pec::receipt::{self, Consegna, Emitter, Preavviso};
use crate::pec::reception::{self, AnomalyReason, ReceptionInput, Verdict};
use crate::pec::types::{Errore, ReceiptType, RecipientType, Tipo};
use crate::relay::{NextHop, Outcome, TlsPolicy};
use crate::store::log::{Event, EventKind};
use crate::store::queue::{self, Deadline, DueTimer, Job, JobId, Kind, NewJob};
use crate::store::{self, maildir, users, StoreError};

use crate::flow::{event_for, message_id_of};

fn our_provider(ctx: &Ctx) -> crate::pec::envelope::Provider {
    ctx.us().provider.clone()
}

fn timer_config(ctx: &Ctx) -> crate::pec::timers::TimerConfig {
    ctx.timer_config()
}

fn route_job(
    ctx: &Ctx,
    key: String,
    identificativo: &str,
    to: &str,
    blob: &str,
    data: serde_json::Value,
    due: i64,
) -> NewJob {
    crate::flow::route(
        &ctx.us(),
        key,
        identificativo,
        to,
        crate::flow::batch::BlobRef::Spooled(blob.to_string()),
        Some(data.to_string()),
        due,
    )
}
use super::Ctx;

/// How a job attempt ended.
enum Fail {
    /// Try again later.
    Temporary(String),
    /// Give up.
    Permanent(String),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Temporary(e.to_string())
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Fail {
        Fail::Temporary(e.to_string())
    }
}

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
    let ended: Arc<std::sync::Mutex<std::collections::HashSet<crate::store::queue::JobId>>> =
        Arc::default();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = store::now_ms();
        if now >= next_sweep {
            next_sweep = now + SWEEP_EVERY_MS;
            let ctx2 = ctx.clone();
            tokio::task::spawn_blocking(move || sweep(&ctx2));
        }
        // Deadlines have second-scale meaning: looking a few times a second
        // is enough, and spares a query per job completion under load.
        let timers = if now >= next_timer_check {
            next_timer_check = now + TIMER_CHECK_MS;
            ctx.store
                .read(move |c| queue::due_timers(c, now, 200))
                .await
        } else {
            Ok(Vec::new())
        };
        if let Ok(due) = timers {
            for t in due {
                if let Err(e) = fire_timer(&ctx, &t).await {
                    tracing::error!(error = %e, id = %t.identificativo, "timer notice failed; will retry");
                }
            }
        }
        let mut started = 0;
        let free = permits.available_permits();
        if free > 0 {
            let busy: std::collections::HashSet<crate::store::queue::JobId> =
                ctx.running.lock().map(|r| r.clone()).unwrap_or_default();
            if let Ok(mut e) = ended.lock() {
                e.clear();
            }
            // Running jobs are still pending in the table: read past them by
            // id, and load whole rows only for the ones that will run.
            let limit = free + busy.len();
            let jobs = ctx
                .store
                .read(move |c| {
                    let mut jobs = Vec::new();
                    for id in queue::due_ids(c, now, limit)? {
                        if jobs.len() == free {
                            break;
                        }
                        if busy.contains(&id) {
                            continue;
                        }
                        jobs.extend(queue::pending(c, id)?);
                    }
                    Ok(jobs)
                })
                .await
                .unwrap_or_default();
            for job in jobs {
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
                    run_job(&ctx2, job).await;
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
        let next = ctx.store.read(queue::next_due).await.ok().flatten();
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

async fn run_job(ctx: &Arc<Ctx>, job: Job) {
    let r = match job.kind {
        Kind::Mailbox => mailbox(ctx, &job).await,
        Kind::LocalBusta => local_busta(ctx, &job).await,
        Kind::Relay => relay(ctx, &job).await,
        Kind::Inbound => inbound(ctx, &job).await,
    };
    let now = store::now_ms();
    let outcome = match r {
        Ok(()) => return,
        Err(Fail::Temporary(e)) => {
            let delay = backoff(ctx, job.attempts);
            tracing::warn!(job = %job.id, kind = job.kind.as_str(), error = %e, retry_in = ?delay, "job failed, will retry");
            let id = job.id;
            let due = now + delay.as_millis() as i64;
            ctx.store
                .write(move |c| queue::reschedule(c, id, &e, due, now))
                .await
        }
        Err(Fail::Permanent(e)) => {
            tracing::error!(job = %job.id, kind = job.kind.as_str(), error = %e, "job failed for good");
            let mut ev = Event::new(EventKind::LavoroFallito, now);
            ev.identificativo = job.identificativo.clone();
            ev.recipients = Some(job.recipients.join(", "));
            ev.error = Some(e.clone());
            ev.detail = Some(format!("job {} {}", job.id, job.kind.as_str()));
            let id = job.id;
            ctx.store
                .write(move |c| {
                    queue::mark_failed(c, id, &e, now)?;
                    store::log::append(c, &ev)?;
                    Ok(())
                })
                .await
        }
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, job = %job.id, "could not record job outcome");
    }
}

const SWEEP_EVERY_MS: i64 = 60_000;
/// How often due 12 h / 24 h deadlines are looked for.
const TIMER_CHECK_MS: i64 = 200;
/// A spool segment is kept this long after its last write (a minute: any
/// straggler is done).
const SEGMENT_SETTLE: Duration = Duration::from_secs(60);
/// Finished jobs are forgotten after a week, and a failed job stops holding
/// its bytes for the operator; the PEC log keeps the record.
const JOB_KEEP_MS: i64 = 7 * 86_400_000;

/// Housekeeping: close relay connections idle too long, remove spool
/// segments no pending work names, forget old finished jobs, and purge PEC
/// log rows and quarantined messages past the legal 30 months.
fn sweep(ctx: &Ctx) {
    let now = store::now_ms();
    ctx.relay.get().prune_idle();
    for (seg, age) in ctx.store.spool().old_segments() {
        if age < SEGMENT_SETTLE {
            continue;
        }
        let s2 = seg.clone();
        let used = ctx
            .store
            .read_blocking(move |c| queue::segment_in_use(c, &s2, now, JOB_KEEP_MS))
            .unwrap_or(true);
        if used {
            continue;
        }
        if ctx.store.spool().remove_segment(&seg).is_ok() {
            let _ = ctx
                .store
                .write_blocking(move |c| queue::forget_segment(c, &seg));
        }
    }
    let _ = ctx.store.write_blocking(move |c| {
        queue::purge_finished(c, now, JOB_KEEP_MS)?;
        store::log::purge_expired(c, now)?;
        Ok(())
    });
    // Rows first, files after the commit: a crash in between leaves an
    // orphan file (harmless), never a row naming a missing file.
    let expired = ctx
        .store
        .write_blocking(move |c| store::quarantine::purge_expired(c, now))
        .unwrap_or_default();
    let dir = store::quarantine::dir(&ctx.store.paths().data_dir);
    for f in expired {
        if let Err(e) = std::fs::remove_file(dir.join(&f)) {
            tracing::warn!(file = %f, error = %e, "quarantine sweep: could not remove");
        }
    }
}

/// Exponential backoff shortened by up to 25 % jitter, between `[queue] retry_initial` and `retry_max`.
fn backoff(ctx: &Ctx, attempts: i64) -> Duration {
    let cfg = ctx.cfg();
    let q = &cfg.queue;
    let initial = cfg.duration(&q.retry_initial, Duration::from_secs(60));
    let max = cfg.duration(&q.retry_max, Duration::from_secs(3600));
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
    Duration::from_millis(ms.max(1))
}

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

fn job_data(job: &Job) -> serde_json::Value {
    job.data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn data_str(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.as_str()).map(str::to_string)
}

/// The one recipient a mailbox or local-busta job serves.
fn sole_recipient(job: &Job) -> Result<String, Fail> {
    job.recipients
        .first()
        .cloned()
        .ok_or_else(|| Fail::Permanent("no recipient".into()))
}

/// Store a finished message in a local mailbox.
async fn mailbox(ctx: &Arc<Ctx>, job: &Job) -> Result<(), Fail> {
    let rcpt = sole_recipient(job)?;
    let bytes = blob_of(ctx, job)?;
    let name = maildir::file_name_for(&job.key, job.created_at, &ctx.provider().hostname);
    let store = ctx.store.clone();
    let r2 = rcpt.clone();
    let (created, attempts) = (job.created_at, job.attempts);
    let delivered =
        tokio::task::spawn_blocking(move || store.deliver(&r2, &name, &bytes, created, attempts))
            .await
            .map_err(|e| Fail::Temporary(e.to_string()))?;
    match delivered {
        Ok(_) => {}
        Err(maildir::DeliveryError::Io(e)) => return Err(Fail::Temporary(e.to_string())),
        Err(e) => return Err(Fail::Permanent(format!("{rcpt}: {e}"))),
    }
    let data = job_data(job);
    let now = store::now_ms();
    let mut ev = Event::new(EventKind::Deposito, now);
    ev.identificativo = job.identificativo.clone();
    ev.recipients = Some(rcpt.clone());
    ev.generated_msgid = data_str(&data, "msgid");
    ev.detail = Some(format!(
        "{} stored in the mailbox of {rcpt}",
        data_str(&data, "tipo").unwrap_or_else(|| "message".into())
    ));
    complete(ctx, job.id, ev, None).await
}

/// Record a job as done, with its log event and the follow-up work it
/// produced, in one transaction; then nudge the loop for the follow-ups.
async fn complete(ctx: &Ctx, id: JobId, ev: Event, follow: Option<NewJob>) -> Result<(), Fail> {
    let now = store::now_ms();
    let more = follow.is_some();
    ctx.store
        .write(move |c| {
            queue::mark_done(c, id, now)?;
            store::log::append(c, &ev)?;
            if let Some(j) = &follow {
                queue::enqueue(c, j, now)?;
            }
            Ok(())
        })
        .await?;
    if more {
        ctx.wake.notify_one();
    }
    Ok(())
}

/// The busta's certification data, or why it has none.
fn busta_facts(bytes: &[u8]) -> Result<(PecMessage, Daticert), Fail> {
    let m = classify(bytes);
    let d = m
        .daticert
        .clone()
        .ok_or_else(|| Fail::Permanent("busta without daticert.xml".into()))?;
    Ok((m, d))
}

/// Signed bytes of a built message, written to the spool.
fn sign_to_spool(
    ctx: &Ctx,
    msg: &crate::pec::types::Unsigned,
) -> Result<(String, Option<String>), Fail> {
    let signed = ctx.sign(msg).map_err(|e| Fail::Temporary(e.to_string()))?;
    let blob = ctx.store.put_blob(&signed)?;
    Ok((blob, message_id_of(msg)))
}

/// What emitting one receipt or notice commits: its log event and the job
/// that carries it to its addressee.
type Emitted = (Event, NewJob);

/// Sign `msg` about message `c`, spool it, and prepare the `event` row and the
/// job (idempotency `key`) that brings it to `to`.
fn emit(
    ctx: &Ctx,
    msg: &crate::pec::types::Unsigned,
    tipo: Tipo,
    event: EventKind,
    c: &Certified,
    key: String,
    to: &str,
) -> Result<Emitted, Fail> {
    let (blob, msgid) = sign_to_spool(ctx, msg)?;
    ctx.metrics.receipt(tipo.as_str());
    let now_ms = store::now_ms();
    let mut ev = event_for(event, now_ms, c);
    ev.generated_msgid = msgid.clone();
    let job = route_job(
        ctx,
        key,
        &c.identificativo,
        to,
        &blob,
        serde_json::json!({"tipo": tipo.as_str(), "msgid": msgid}),
        now_ms,
    );
    Ok((ev, job))
}

/// Delivery point for one local recipient of a busta: store it and emit the
/// avvenuta consegna, or the avviso di mancata consegna if there is no such mailbox.
async fn local_busta(ctx: &Arc<Ctx>, job: &Job) -> Result<(), Fail> {
    let rcpt = sole_recipient(job)?;
    let bytes = blob_of(ctx, job)?;
    let ctx2 = ctx.clone();
    let key = job.key.clone();
    let (created, attempts) = (job.created_at, job.attempts);
    let prepared = tokio::task::spawn_blocking(move || -> Result<(Event, NewJob), Fail> {
        let (m, d) = busta_facts(&bytes)?;
        let certified = Certified::from(&d);
        let root = &ctx2.store.paths().mail;
        let a = rcpt.clone();
        let known = ctx2.store.read_blocking(move |c| users::exists(c, &a))?
            && maildir::exists(root, &rcpt);
        let p = our_provider(&ctx2);
        let now = ctx2.now_secs();
        let e = Emitter {
            provider: &p,
            ids: ctx2.ids.as_ref(),
            when: ItalianTime::from_unix(now),
        };
        let id = certified.identificativo.clone();
        let name = maildir::file_name_for(&key, created, &ctx2.provider().hostname);
        let room = if known {
            room_for(&ctx2, &rcpt, &name, bytes.len() as u64)?
        } else {
            Room::Fits(None)
        };
        if let Room::Full { used, limit } = room {
            let esteso = receipt::full_box_esteso(&ctx2.provider().name);
            let (mut ev, j) =
                not_delivered(&ctx2, &e, &certified, &rcpt, Errore::Altro, &esteso)?;
            tracing::warn!(%rcpt, identificativo = %id, used, limit, size = bytes.len(), "mailbox full: busta not delivered");
            ev.error = Some(esteso);
            ev.detail = Some(format!(
                "mailbox of {rcpt} full: {used} bytes used of {limit}, busta of {} bytes not stored",
                bytes.len()
            ));
            return Ok((ev, j));
        }
        if known {
            let name = maildir::file_name_for(&key, created, &ctx2.provider().hostname);
            match ctx2.store.deliver(&rcpt, &name, &bytes, created, attempts) {
                Ok(_) => {}
                Err(maildir::DeliveryError::Io(e)) => return Err(Fail::Temporary(e.to_string())),
                Err(e) => return Err(Fail::Permanent(e.to_string())),
            }
            let postacert = m.postacert.clone().map(|r| &bytes[r]).unwrap_or(&[]);
            let kind =
                delivery::receipt_type_for(certified.ricevuta, delivery::is_cc(postacert, &rcpt));
            let breve;
            let consegna = match kind {
                ReceiptType::Completa => Consegna::Completa(postacert),
                ReceiptType::Breve => {
                    breve = delivery::breve(postacert);
                    Consegna::Breve(&breve)
                }
                ReceiptType::Sintetica => Consegna::Sintetica,
            };
            if let Room::Fits(Some((used, limit))) = room {
                quota_warning(&ctx2, &rcpt, &id, used, used + bytes.len() as u64, limit, created);
            }
            let msg = receipt::avvenuta_consegna(&e, &certified, &rcpt, consegna);
            let (mut ev, j) = emit(
                &ctx2,
                &msg,
                Tipo::AvvenutaConsegna,
                EventKind::AvvenutaConsegna,
                &certified,
                format!("consegna:{id}:{rcpt}"),
                &certified.mittente,
            )?;
            ev.receipt_type = Some(kind.as_str().into());
            ev.detail = Some(format!("busta stored in the mailbox of {rcpt}"));
            if ctx2.is_local(&certified.mittente) {
                // Our own sender: this job was queued by the acceptance.
                ctx2.metrics
                    .consegna_after((store::now_ms() - created) as f64 / 1000.0);
            }
            Ok((ev, j))
        } else {
            let esteso = receipt::no_dest_esteso(&ctx2.provider().name);
            let (mut ev, j) =
                not_delivered(&ctx2, &e, &certified, &rcpt, Errore::NoDest, &esteso)?;
            ev.error = Some(esteso);
            ev.detail = Some(format!("no mailbox {rcpt}"));
            Ok((ev, j))
        }
    })
    .await
    .map_err(|e| Fail::Temporary(e.to_string()))??;
    let (ev, follow) = prepared;
    complete(ctx, job.id, ev, Some(follow)).await
}

/// Whether a busta fits in its recipient's mailbox.
enum Room {
    /// It fits; with the usage before it and the quota, when there is one.
    Fits(Option<(u64, u64)>),
    /// Storing it would pass the quota.
    Full { used: u64, limit: u64 },
}

/// Check a busta of `size` bytes against `rcpt`'s quota. A copy this very
/// job already stored (a retry after a crash) always fits: it is counted.
fn room_for(ctx: &Ctx, rcpt: &str, name: &str, size: u64) -> Result<Room, Fail> {
    let a = rcpt.to_string();
    let setting = ctx
        .store
        .read_blocking(move |c| users::quota(c, &a))?
        .unwrap_or(users::Quota::Default);
    let Some(limit) = setting.limit(ctx.cfg().default_quota()) else {
        return Ok(Room::Fits(None));
    };
    let root = maildir::mailbox_path(&ctx.store.paths().mail, rcpt)
        .map_err(|e| Fail::Permanent(e.to_string()))?;
    let used = store::quota::usage(&root)
        .map_err(|e| Fail::Temporary(format!("mailbox usage of {rcpt}: {e}")))?
        .bytes;
    if used.saturating_add(size) <= limit || maildir::delivered(&root, name) {
        return Ok(Room::Fits(Some((used, limit))));
    }
    Ok(Room::Full { used, limit })
}

/// Tell the user, once per crossing, that the mailbox passed
/// `[mailbox] quota_warning`: a plain message in the INBOX, not a PEC
/// receipt. Best effort: a failure is logged, the delivery stands.
fn quota_warning(
    ctx: &Ctx,
    rcpt: &str,
    id: &str,
    before: u64,
    after: u64,
    limit: u64,
    created: i64,
) {
    let pct = ctx.cfg().quota_warning();
    let threshold = limit.saturating_mul(pct) / 100;
    if before >= threshold || after < threshold {
        return;
    }
    let now = ItalianTime::from_unix(ctx.now_secs());
    let domain = ctx.domain();
    let msgid = crate::pec::ids::message_id(ctx.ids.as_ref(), &now, domain);
    let used_pct = after.saturating_mul(100) / limit.max(1);
    let text = format!(
        "From: \"{name}\" <posta-certificata@{domain}>\r\n\
         To: <{rcpt}>\r\n\
         Subject: Casella PEC quasi piena ({used_pct}%)\r\n\
         Date: {date}\r\n\
         Message-ID: <{msgid}>\r\n\
         Auto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         La casella {rcpt} occupa {after} byte dei {limit} disponibili ({used_pct}%).\r\n\
         \r\n\
         Quando sara' piena, i messaggi PEC in arrivo non saranno consegnati e ai\r\n\
         mittenti arrivera' un avviso di mancata consegna. Per liberare spazio,\r\n\
         eliminare o archiviare i messaggi che non servono piu'.\r\n\
         \r\n\
         Messaggio informativo del gestore {name}: non e' una ricevuta PEC.\r\n",
        name = ctx.provider().name,
        date = now.rfc5322(),
    );
    let name = maildir::file_name_for(
        &format!("quota-warning:{id}:{rcpt}"),
        created,
        &ctx.provider().hostname,
    );
    match ctx.store.deliver(rcpt, &name, text.as_bytes(), created, 1) {
        Ok(_) => tracing::info!(%rcpt, used = after, limit, "mailbox usage warning delivered"),
        Err(e) => tracing::warn!(%rcpt, error = %e, "mailbox usage warning not delivered"),
    }
}

/// Where mail for `domain` goes: a static route, else its MX hosts.
async fn next_hops(ctx: &Ctx, domain: &str) -> Result<Vec<NextHop>, Fail> {
    let tls = if ctx.index().is_certified(domain) {
        TlsPolicy::Required
    } else {
        TlsPolicy::Opportunistic
    };
    let cfg = ctx.cfg();
    if let Some(hop) = cfg.route_for(domain) {
        let (host, port) = hop
            .rsplit_once(':')
            .ok_or_else(|| Fail::Permanent(format!("route {hop}: no port")))?;
        let port = port
            .parse()
            .map_err(|_| Fail::Permanent(format!("route {hop}: bad port")))?;
        let host = host.trim_matches(['[', ']']).to_string();
        return Ok(vec![NextHop {
            tls_name: host.clone(),
            host,
            port,
            tls,
        }]);
    }
    let servers: Vec<std::net::SocketAddr> = if cfg.dns.nameservers.is_empty() {
        crate::relay::dns::system_nameservers()
    } else {
        cfg.dns
            .nameservers
            .iter()
            .filter_map(|s| {
                s.parse()
                    .ok()
                    .or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 53).into()))
            })
            .collect()
    };
    let ips = crate::relay::dns::resolve_mx(&servers, domain)
        .await
        .map_err(Fail::Temporary)?;
    Ok(ips
        .into_iter()
        // Dial the address our resolver found, but check the certificate
        // against the exchanger's name: that is what a peer's certificate names.
        .map(|(name, ip)| NextHop {
            host: ip.to_string(),
            tls_name: name,
            port: cfg.dns.smtp_port,
            tls,
        })
        .collect())
}

/// Send a message to another provider (or an ordinary MX).
async fn relay(ctx: &Arc<Ctx>, job: &Job) -> Result<(), Fail> {
    let domain = job
        .next_hop
        .clone()
        .ok_or_else(|| Fail::Permanent("relay job without destination".into()))?;
    let bytes = blob_of(ctx, job)?;
    let cfg = ctx.cfg();
    let (hops, mut outcome) = if cfg.route_for(&domain).is_none() && !cfg.dns.mx_lookups {
        // A refusal, not a retry: no later attempt could find a next hop,
        // and the sender is told now rather than after the 24 h deadline.
        let why = format!(
            "5.4.4 no route to {domain}: no [[route]] names it and [dns] mx_lookups = false \
             (this provider relays only along its configured routes)"
        );
        (Vec::new(), Outcome::Permanent(why))
    } else {
        (
            next_hops(ctx, &domain).await?,
            Outcome::Temporary(format!("{domain}: no next hop")),
        )
    };
    let mut used = None;
    // One relay for the whole job, even if a reload replaces it meanwhile.
    let client = ctx.relay.get();
    for hop in &hops {
        outcome = client
            .send(hop, &job.mail_from, &job.recipients, &bytes)
            .await;
        ctx.metrics.relay_attempt(match outcome {
            Outcome::Sent => "ok",
            Outcome::Temporary(_) => "temporary",
            Outcome::Permanent(_) => "permanent",
        });
        used = Some(format!("{}:{}", hop.host, hop.port));
        if !matches!(outcome, Outcome::Temporary(_)) {
            break;
        }
    }
    let data = job_data(job);
    let is_busta = data_str(&data, "tipo").as_deref() == Some(Tipo::PostaCertificata.as_str());
    let now = store::now_ms();
    match outcome {
        Outcome::Sent => {
            let mut ev = Event::new(
                if is_busta {
                    EventKind::InoltroBusta
                } else {
                    EventKind::Inoltro
                },
                now,
            );
            ev.identificativo = job.identificativo.clone();
            ev.sender = Some(job.mail_from.clone());
            ev.recipients = Some(job.recipients.join(", "));
            ev.generated_msgid = data_str(&data, "msgid");
            ev.detail = Some(format!(
                "{} sent to {domain} via {}",
                data_str(&data, "tipo").unwrap_or_default(),
                used.unwrap_or_default()
            ));
            complete(ctx, job.id, ev, None).await
        }
        Outcome::Temporary(e) => {
            let expire = timer_config(ctx).expiry_after;
            if is_busta && now > job.created_at + expire {
                // The 24 h notice of a certified recipient is the timers'
                // duty; an ordinary one has no timer and is told here.
                let why = format!("not delivered within the time limit: {e}");
                undelivered(ctx, job, &why, Finish::Failed, Certificati::LeaveToTimers).await?;
                return Ok(());
            }
            Err(Fail::Temporary(e))
        }
        Outcome::Permanent(e) => {
            if is_busta {
                refused_by_peer(ctx, job, &e).await?;
                Ok(())
            } else {
                Err(Fail::Permanent(e))
            }
        }
    }
}

/// Jobs the previous process left running when it died (from the in-flight
/// file): count each crash, and hold a job that has crashed the process
/// [`queue::MAX_CRASHES`] times. A held busta is not delivered: its sender
/// gets an avviso di mancata consegna for each certified recipient, and the
/// PEC log records the hold. `pecd queue retry ID` releases it.
pub async fn after_crash(ctx: &Arc<Ctx>, ids: &[JobId]) {
    for &id in ids {
        let now = store::now_ms();
        let held = ctx
            .store
            .write(move |c| queue::record_crash(c, id, now))
            .await;
        let job = match held {
            Ok(Some(job)) => job,
            Ok(None) => {
                tracing::warn!(
                    job = %id,
                    "the process died while this job ran; it will run again"
                );
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
        ev.error = Some(why.clone());
        ev.detail = Some(format!("job {} {} held", job.id, job.kind.as_str()));
        if let Err(e) = ctx.store.write(move |c| store::log::append(c, &ev)).await {
            tracing::error!(job = %id, error = %e, "could not log a held job");
        }
        let ours = job.identificativo.as_deref().is_some_and(|i| !i.is_empty());
        if ours && matches!(job.kind, Kind::Relay | Kind::LocalBusta) {
            let why = "messaggio sospeso: ha causato ripetuti errori interni del gestore";
            match undelivered(ctx, &job, why, Finish::Held, Certificati::Notify).await {
                Ok(()) | Err(Fail::Permanent(_)) => {}
                Err(Fail::Temporary(e)) => {
                    tracing::error!(job = %id, error = %e, "could not tell the sender of a held job");
                }
            }
        }
    }
}

/// What becomes of a job whose recipients are told it was not delivered.
enum Finish {
    /// The peer refused it: failed.
    Failed,
    /// It kept crashing the process: already held.
    Held,
}

/// A peer refused a busta for good: tell the sender for each recipient
/// (a signed errore-consegna for a certified one, the non-certified notice
/// for an ordinary one).
async fn refused_by_peer(ctx: &Arc<Ctx>, job: &Job, error: &str) -> Result<(), Fail> {
    undelivered(ctx, job, error, Finish::Failed, Certificati::Notify).await
}

/// Whether [`undelivered`] speaks for the certified recipients too.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Certificati {
    /// An errore-consegna each, and their timers closed.
    Notify,
    /// Left to their 24 h timers (the relay ran out of time): only the
    /// ordinary recipients are told here.
    LeaveToTimers,
}

/// Tell the sender of a busta that it was not delivered to the job's
/// recipients: a signed errore-consegna for each certified one (timers
/// closed), an RFC 3464 notice, not certified, for each ordinary one (the
/// rules give it no receipt, but the sender must hear); then finish the job.
async fn undelivered(
    ctx: &Arc<Ctx>,
    job: &Job,
    error: &str,
    finish: Finish,
    certificati: Certificati,
) -> Result<(), Fail> {
    let id = job.identificativo.clone().unwrap_or_default();
    let (certified, accepted_at) = load_accepted(ctx, &id).await?;
    let ctx2 = ctx.clone();
    let rcpts = job.recipients.clone();
    let err = error.to_string();
    let job_id = job.id;
    // The header block of the busta, for the notice's text/rfc822-headers.
    let busta_headers = blob_of(ctx, job).ok().map(|mut b| {
        let (_, end) = crate::pec::headers::raw_fields(&b);
        b.truncate(end);
        b
    });
    let (events, jobs, closed) = tokio::task::spawn_blocking(move || -> Result<Told, Fail> {
        let p = our_provider(&ctx2);
        let when = ItalianTime::from_unix(ctx2.now_secs());
        let e = Emitter {
            provider: &p,
            ids: ctx2.ids.as_ref(),
            when,
        };
        let now_ms = store::now_ms();
        let mut events = Vec::new();
        let mut jobs = Vec::new();
        let mut closed = Vec::new();
        for r in &rcpts {
            let certified_rcpt = certified
                .destinatari
                .iter()
                .any(|d| d.address.eq_ignore_ascii_case(r) && d.tipo == RecipientType::Certificato);
            if certified_rcpt && certificati == Certificati::LeaveToTimers {
                continue;
            }
            let mut ev = event_for(EventKind::InoltroFallito, now_ms, &certified);
            ev.error = Some(err.clone());
            ev.detail = Some(format!("refused for {r}"));
            if certified_rcpt {
                let esteso = format!("5.0.0 - {} - {}", p.name, err.replace(['\r', '\n'], " "));
                let msg = receipt::errore_consegna(&e, &certified, r, Errore::Altro, &esteso);
                let (notice, j) = emit(
                    &ctx2,
                    &msg,
                    Tipo::ErroreConsegna,
                    EventKind::ErroreConsegna,
                    &certified,
                    format!("errore-consegna:{}:{r}", certified.identificativo),
                    &certified.mittente,
                )?;
                ev.generated_msgid = notice.generated_msgid;
                jobs.push(j);
                closed.push(r.clone());
            } else {
                let (notice, j) = esterno_notice(
                    &ctx2,
                    &certified,
                    r,
                    &err,
                    ItalianTime::from_unix(accepted_at / 1000),
                    busta_headers.as_deref(),
                )?;
                ev.generated_msgid = notice.generated_msgid.clone();
                events.push(ev);
                events.push(notice);
                jobs.push(j);
                continue;
            }
            events.push(ev);
        }
        Ok((events, jobs, closed))
    })
    .await
    .map_err(|e| Fail::Temporary(e.to_string()))??;
    let now = store::now_ms();
    let err = error.to_string();
    ctx.store
        .write(move |c| {
            if let Finish::Failed = finish {
                queue::mark_failed(c, job_id, &err, now)?;
            }
            for e in &events {
                store::log::append(c, e)?;
            }
            for j in &jobs {
                queue::enqueue(c, j, now)?;
            }
            for r in &closed {
                queue::timer_close(c, &id, r, now, "rifiuto-definitivo")?;
            }
            Ok(())
        })
        .await?;
    ctx.wake.notify_one();
    Ok(())
}

/// What telling a sender commits: log events, the jobs carrying the
/// notices, and the certified recipients whose timers close.
type Told = (Vec<Event>, Vec<NewJob>, Vec<String>);

/// The non-certified delivery-failure notice to the sender of `c` for the
/// ordinary recipient `rcpt`, spooled: its log event
/// (`mancata-consegna-esterno`, which the sent status reads) and the job
/// that stores it in the sender's mailbox.
fn esterno_notice(
    ctx: &Ctx,
    c: &Certified,
    rcpt: &str,
    error: &str,
    accepted: ItalianTime,
    busta_headers: Option<&[u8]>,
) -> Result<Emitted, Fail> {
    let when = ItalianTime::from_unix(ctx.now_secs());
    let notice = crate::pec::notice::esterno_failure(
        &our_provider(ctx),
        ctx.ids.as_ref(),
        &when,
        &crate::pec::notice::EsternoFailure {
            certified: c,
            recipient: rcpt,
            error,
            reporting_host: &ctx.provider().hostname,
            accepted,
            original_headers: busta_headers,
        },
    );
    let msgid = Some(notice.message_id);
    let blob = ctx.store.put_blob(&notice.bytes)?;
    let now_ms = store::now_ms();
    let mut ev = event_for(EventKind::MancataConsegnaEsterno, now_ms, c);
    ev.recipients = Some(rcpt.to_string());
    ev.error = Some(error.replace(['\r', '\n'], " "));
    ev.generated_msgid = msgid.clone();
    ev.detail = Some(format!(
        "not delivered to the ordinary address {rcpt}; non-certified notice to {}",
        c.mittente
    ));
    let job = route_job(
        ctx,
        format!("mancata-consegna-esterno:{}:{rcpt}", c.identificativo),
        &c.identificativo,
        &c.mittente,
        &blob,
        serde_json::json!({"tipo": crate::pec::notice::ESTERNO_FAILED, "msgid": msgid}),
        now_ms,
    );
    Ok((ev, job))
}

/// The certification data of a message we accepted, and when (Unix ms).
async fn load_accepted(ctx: &Ctx, identificativo: &str) -> Result<(Certified, i64), Fail> {
    let id = identificativo.to_string();
    let m = ctx
        .store
        .read(move |db| store::messages::accepted_at(db, &id))
        .await?;
    let at = m.unwrap_or_else(store::now_ms);
    Ok((load_certified(ctx, identificativo).await?, at))
}

/// The certification data of a message we accepted.
async fn load_certified(ctx: &Ctx, identificativo: &str) -> Result<Certified, Fail> {
    let id = identificativo.to_string();
    let xml = ctx
        .store
        .read(move |db| store::messages::daticert_of(db, &id))
        .await?;
    let xml = xml.ok_or_else(|| Fail::Permanent(format!("unknown message {identificativo}")))?;
    let d = Daticert::parse(xml.as_bytes()).map_err(|e| Fail::Permanent(format!("{e:?}")))?;
    Ok(Certified::from(&d))
}

/// Reception point: scan and judge a received message and dispatch it.
async fn inbound(ctx: &Arc<Ctx>, job: &Job) -> Result<(), Fail> {
    let bytes = blob_of(ctx, job)?;
    let virus = scan_inbound(ctx, job, &bytes).await?;
    let ctx2 = ctx.clone();
    let job2 = job.clone();
    let Judged {
        events,
        jobs,
        timers,
        quarantine,
    } = tokio::task::spawn_blocking(move || match virus {
        Some(v) => judge_infected(&ctx2, &job2, &bytes, &v),
        None => judge(&ctx2, &job2, &bytes),
    })
    .await
    .map_err(|e| Fail::Temporary(e.to_string()))??;
    let id = job.id;
    let now = store::now_ms();
    let consegne = ctx
        .store
        .write(move |c| {
            let mut consegne = Vec::new();
            queue::mark_done(c, id, now)?;
            // A notice already queued (the same busta or receipt received
            // twice) is not emitted again: drop the events that announce it.
            // (Receptions themselves are logged each time: they happened.)
            let mut repeated = Vec::new();
            for j in &jobs {
                if !queue::enqueue(c, j, now)? {
                    repeated.extend(job_msgid(j));
                }
            }
            let repeat = |e: &Event| {
                matches!(
                    e.event,
                    EventKind::PresaInCarico
                        | EventKind::RilevazioneVirus
                        | EventKind::ErroreConsegna
                ) && e
                    .generated_msgid
                    .as_ref()
                    .is_some_and(|m| repeated.contains(m))
            };
            if let Some(q) = &quarantine {
                // A busta received again is quarantined once.
                if !events
                    .iter()
                    .any(|e| e.event == EventKind::RilevazioneVirus && repeat(e))
                {
                    store::quarantine::insert(c, q)?;
                }
            }
            for e in &events {
                if repeat(e) {
                    continue;
                }
                store::log::append(c, e)?;
            }
            for t in &timers {
                match t {
                    TimerUpdate::Presa(id, r) => {
                        queue::timer_presa(c, id, r, now)?;
                    }
                    TimerUpdate::Close(id, r, by) => {
                        queue::timer_close(c, id, r, now, by)?;
                    }
                    TimerUpdate::Consegna(id, r) => {
                        if let Some(sent) = queue::timer_close(c, id, r, now, "ricevuta")? {
                            consegne.push((now - sent) as f64 / 1000.0);
                        }
                    }
                }
            }
            Ok(consegne)
        })
        .await?;
    for s in consegne {
        ctx.metrics.consegna_after(s);
    }
    ctx.wake.notify_one();
    Ok(())
}

/// The Message-ID a queued job's message carries (from its data).
fn job_msgid(j: &NewJob) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(j.data.as_deref()?).ok()?;
    data_str(&v, "msgid")
}

enum TimerUpdate {
    Presa(String, String),
    Close(String, String, &'static str),
    /// Closed by an avvenuta consegna: also timed for the metrics.
    Consegna(String, String),
}

/// What judging one received message commits.
#[derive(Default)]
struct Judged {
    events: Vec<Event>,
    jobs: Vec<NewJob>,
    timers: Vec<TimerUpdate>,
    /// An infected message kept (its file is already written).
    quarantine: Option<store::quarantine::Quarantined>,
}

/// Step 1 of the reception point (`pec-spec.md` §5.2): scan the message as
/// received. clamd decodes the MIME parts itself, so this covers what a user
/// would open: `postacert.eml` and its attachments in a busta, or the parts
/// of ordinary mail before it is wrapped in a busta di anomalia.
/// `Some(virus)` when infected. A failed scan under `on_error = "tempfail"`
/// fails the job for now: it is retried later, and nothing unscanned is
/// delivered.
async fn scan_inbound(ctx: &Ctx, job: &Job, bytes: &[u8]) -> Result<Option<String>, Fail> {
    let scanner = ctx.scanner();
    let Some(s) = &*scanner else {
        return Ok(None);
    };
    let r = s.scan(bytes).await;
    ctx.metrics.virus_scan("reception", &r);
    match r {
        Ok(crate::antivirus::Verdict::Clean) => Ok(None),
        Ok(crate::antivirus::Verdict::Infected(v)) => Ok(Some(v)),
        Err(e) => match s.on_error {
            crate::config::OnError::Tempfail => Err(Fail::Temporary(format!(
                "virus scan failed, the message waits for clamd: {e}"
            ))),
            crate::config::OnError::Accept => {
                let identificativo = classify(bytes).daticert.map(|d| d.identificativo);
                tracing::warn!(job = %job.id, identificativo = ?identificativo, error = %e,
                    "received message judged without a virus scan (antivirus.on_error = \"accept\")");
                Ok(None)
            }
        },
    }
}

/// The signed avviso di mancata consegna to the sender for `rcpt`, keyed so
/// each recipient gets one whatever the reason.
fn not_delivered(
    ctx: &Ctx,
    e: &Emitter<'_>,
    certified: &Certified,
    rcpt: &str,
    errore: Errore,
    esteso: &str,
) -> Result<(Event, NewJob), Fail> {
    let msg = receipt::errore_consegna(e, certified, rcpt, errore, esteso);
    emit(
        ctx,
        &msg,
        Tipo::ErroreConsegna,
        EventKind::ErroreConsegna,
        certified,
        format!("errore-consegna:{}:{rcpt}", certified.identificativo),
        &certified.mittente,
    )
}

/// A verified busta's certified facts and the job's local recipients split
/// into those its daticert lists and the others.
fn busta_recipients(
    ctx: &Ctx,
    job: &Job,
    message: &PecMessage,
    local_recipients: &[String],
) -> Result<(Certified, Vec<String>, Vec<String>), Fail> {
    let d = message
        .daticert
        .as_ref()
        .ok_or_else(|| Fail::Permanent("busta without daticert".into()))?;
    let envelope: Vec<String> = job
        .recipients
        .iter()
        .filter(|r| ctx.is_local(r))
        .cloned()
        .collect();
    let (ours, unlisted) = reception::split_recipients(&envelope, local_recipients);
    Ok((Certified::from(d), ours, unlisted))
}

/// Reception point, infected message: nothing is delivered and the bytes
/// go to the quarantine. A busta that passes every other check gets an avviso
/// di rilevazione virus to the sender's provider instead of the presa in
/// carico; anything else (ordinary mail, a receipt, an unverifiable message)
/// is logged and kept, with no provider to tell and no busta di anomalia.
fn judge_infected(ctx: &Ctx, job: &Job, bytes: &[u8], virus: &str) -> Result<Judged, Fail> {
    let now = ctx.now_secs();
    let verdict = receive(ctx, bytes, now);
    let now_ms = store::now_ms();
    let p = our_provider(ctx);
    let e = Emitter {
        provider: &p,
        ids: ctx.ids.as_ref(),
        when: ItalianTime::from_unix(now),
    };
    let mut judged = Judged::default();
    let (message, what) = match &verdict {
        Verdict::Busta {
            message,
            provider,
            receipt_mailbox,
            local_recipients,
            ..
        } => {
            let (c, ours, _) = busta_recipients(ctx, job, message, local_recipients)?;
            if !ours.is_empty() {
                let esteso = receipt::virus_esteso(&p.name, virus);
                let msg = receipt::rilevazione_virus(&e, &c, receipt_mailbox, &ours, &esteso);
                // Keyed like the presa in carico it replaces: a busta the
                // peer sends twice gets one notice.
                let (ev, j) = emit(
                    ctx,
                    &msg,
                    Tipo::RilevazioneVirus,
                    EventKind::RilevazioneVirus,
                    &c,
                    format!("virus:{}:{}", c.identificativo, ours.join(",")),
                    receipt_mailbox,
                )?;
                for r in &ours {
                    let mut ev = ev.clone();
                    ev.recipients = Some(r.clone());
                    ev.error = Some(esteso.clone());
                    ev.detail = Some(format!(
                        "busta from {provider} not delivered to {r}; notice to {receipt_mailbox}"
                    ));
                    judged.events.push(ev);
                }
                judged.jobs.push(j);
            }
            (message, "busta di trasporto")
        }
        Verdict::Receipt { message, .. } => (message, "receipt"),
        // Whether the sender's provider is told waits for the revocation
        // answer, as for a clean busta; nothing is delivered meanwhile.
        Verdict::Postpone { reason } => return Err(Fail::Temporary(reason.clone())),
        Verdict::Anomaly {
            reason: AnomalyReason::NotPec,
            message,
        } => (message, "ordinary mail"),
        Verdict::Anomaly { message, .. } => (message, "unverified PEC message"),
    };
    let identificativo = message.daticert.as_ref().map(|d| d.identificativo.clone());
    let mut ev = Event::new(EventKind::Virus, now_ms);
    ev.identificativo = identificativo.clone();
    ev.sender = message.from_address.clone().or(Some(job.mail_from.clone()));
    ev.recipients = Some(job.recipients.join(", "));
    ev.subject = message.subject.clone();
    ev.msgid = message.message_id.clone();
    ev.error = Some(format!("virus {virus}"));
    ev.detail = Some(format!("{what} not delivered, quarantined"));
    judged.events.push(ev);
    let file = store::quarantine::keep(&ctx.store.paths().data_dir, now_ms, bytes)?;
    judged.quarantine = Some(store::quarantine::Quarantined {
        id: 0,
        identificativo,
        virus: virus.to_string(),
        sender: job.mail_from.clone(),
        recipients: job.recipients.join(", "),
        point: "reception".into(),
        file,
        size: bytes.len() as i64,
        at: now_ms,
    });
    Ok(judged)
}

/// Sender's provider, on a peer's avviso di rilevazione virus about one of
/// our messages: an avviso di mancata consegna per virus to our sender for
/// each recipient it covers, and their timers closed (no 12 h / 24 h notice
/// follows). A peer speaks only for recipients in its own domains; a notice
/// about a message we did not accept is only logged.
fn virus_reported(
    ctx: &Ctx,
    e: &Emitter<'_>,
    d: &Daticert,
    provider: &str,
) -> Result<(Vec<Emitted>, Vec<TimerUpdate>), Fail> {
    let id = d.identificativo.clone();
    let ours = ctx
        .store
        .read_blocking(move |db| store::messages::daticert_of(db, &id))?;
    let Some(xml) = ours else {
        return Ok((Vec::new(), Vec::new()));
    };
    let ours = Daticert::parse(xml.as_bytes()).map_err(|e| Fail::Permanent(format!("{e:?}")))?;
    let c = Certified::from(&ours);
    let index = ctx.index();
    let peer = index.providers.iter().find(|p| p.name == provider);
    let served =
        |r: &str| peer.is_some_and(|p| r.rsplit_once('@').is_some_and(|(_, dom)| p.manages(dom)));
    let ours_listed = |r: &str| {
        c.destinatari
            .iter()
            .any(|x| x.address.eq_ignore_ascii_case(r.trim()))
    };
    let covered: Vec<String> = if d.ricezione.is_empty() {
        c.destinatari
            .iter()
            .map(|x| x.address.to_ascii_lowercase())
            .filter(|r| served(r))
            .collect()
    } else {
        d.ricezione
            .iter()
            .map(|r| r.trim().to_ascii_lowercase())
            .filter(|r| served(r) && ours_listed(r))
            .collect()
    };
    let esteso = d
        .errore_esteso
        .clone()
        .filter(|x| !x.trim().is_empty())
        .unwrap_or_else(|| receipt::virus_esteso(provider, "virus"));
    let mut emitted = Vec::new();
    let mut timers = Vec::new();
    for r in covered {
        let msg = receipt::errore_consegna(e, &c, &r, Errore::Virus, &esteso);
        let (mut ev, j) = emit(
            ctx,
            &msg,
            Tipo::ErroreConsegna,
            EventKind::ErroreConsegna,
            &c,
            format!("virus-consegna:{}:{r}", c.identificativo),
            &c.mittente,
        )?;
        ev.recipients = Some(r.clone());
        ev.error = Some(esteso.clone());
        ev.detail = Some(format!("virus reported by {provider}"));
        emitted.push((ev, j));
        timers.push(TimerUpdate::Close(
            c.identificativo.clone(),
            r,
            "rilevazione-virus",
        ));
    }
    Ok((emitted, timers))
}

fn judge(ctx: &Ctx, job: &Job, bytes: &[u8]) -> Result<Judged, Fail> {
    let now = ctx.now_secs();
    let verdict = receive(ctx, bytes, now);
    let now_ms = store::now_ms();
    let blob = job.blob.clone().unwrap_or_default();
    let p = our_provider(ctx);
    let e = Emitter {
        provider: &p,
        ids: ctx.ids.as_ref(),
        when: ItalianTime::from_unix(now),
    };
    let mut events = Vec::new();
    let mut jobs = Vec::new();
    let mut timers = Vec::new();
    match verdict {
        Verdict::Busta {
            message,
            verified,
            provider,
            receipt_mailbox,
            local_recipients,
        } => {
            // The envelope is not signed: only the recipients the daticert
            // lists are certified; a replay to anyone else is an anomaly.
            let (c, ours, unlisted) = busta_recipients(ctx, job, &message, &local_recipients)?;
            if !unlisted.is_empty() {
                let reason = AnomalyReason::NotAddressed(unlisted.clone());
                let (mut ev, mut js) = anomaly_for(ctx, &e, bytes, &reason, &message, &unlisted)?;
                ev.identificativo = Some(c.identificativo.clone());
                events.push(ev);
                jobs.append(&mut js);
            }
            if !ours.is_empty() {
                let mut ev = event_for(EventKind::BustaRicevuta, now_ms, &c);
                ev.detail = Some(format!(
                    "from {provider} (signer SHA-1 {}{}), for {}",
                    verified.sha1_fingerprint,
                    revocation_note(&verified),
                    ours.join(", ")
                ));
                events.push(ev);
                let presa = receipt::presa_in_carico(&e, &c, &receipt_mailbox, &ours);
                // Keyed by what it certifies, so a busta the peer sends twice
                // (our 250 lost on the way) gets one presa in carico, not two.
                let (mut ev, j) = emit(
                    ctx,
                    &presa,
                    Tipo::PresaInCarico,
                    EventKind::PresaInCarico,
                    &c,
                    format!("presa:{}:{}", c.identificativo, ours.join(",")),
                    &receipt_mailbox,
                )?;
                ev.detail = Some(format!("to {receipt_mailbox} for {}", ours.join(", ")));
                events.push(ev);
                jobs.push(j);
            }
            for r in ours {
                jobs.push(NewJob {
                    key: format!("busta:{}:{r}", c.identificativo),
                    kind: Kind::LocalBusta,
                    identificativo: Some(c.identificativo.clone()),
                    mail_from: job.mail_from.clone(),
                    recipients: vec![r],
                    next_hop: None,
                    blob: Some(crate::flow::batch::BlobRef::Spooled(blob.clone())),
                    data: None,
                    due_at: now_ms,
                });
            }
        }
        Verdict::Receipt {
            tipo,
            message,
            provider,
            verified,
        } => {
            let d = message.daticert.clone();
            let id = d
                .as_ref()
                .map(|d| d.identificativo.clone())
                .unwrap_or_default();
            let mut ev = match &d {
                Some(d) => event_for(EventKind::Ricevuta(tipo), now_ms, &Certified::from(d)),
                None => Event::new(EventKind::Ricevuta(tipo), now_ms),
            };
            ev.generated_msgid = message.message_id.clone();
            ev.detail = Some(format!("from {provider}{}", revocation_note(&verified)));
            if let Some(d) = &d {
                match tipo {
                    Tipo::PresaInCarico => {
                        for r in &d.ricezione {
                            timers.push(TimerUpdate::Presa(id.clone(), r.to_ascii_lowercase()));
                        }
                    }
                    Tipo::AvvenutaConsegna => {
                        if let Some(r) = &d.consegna {
                            timers.push(TimerUpdate::Consegna(id.clone(), r.to_ascii_lowercase()));
                        }
                    }
                    Tipo::ErroreConsegna => {
                        if let Some(r) = &d.consegna {
                            timers.push(TimerUpdate::Close(
                                id.clone(),
                                r.to_ascii_lowercase(),
                                "ricevuta",
                            ));
                        }
                    }
                    Tipo::RilevazioneVirus => {
                        let (emitted, closed) = virus_reported(ctx, &e, d, &provider)?;
                        if emitted.is_empty() {
                            ev.error = Some("no recipient of ours it may speak for".into());
                        }
                        for (ev, j) in emitted {
                            events.push(ev);
                            jobs.push(j);
                        }
                        timers.extend(closed);
                    }
                    Tipo::PreavvisoErroreConsegna => {
                        let fin = d
                            .errore_esteso
                            .as_deref()
                            .is_some_and(|x| x.trim_start().starts_with("5.4.1"));
                        if fin {
                            ev.event = EventKind::MancataConsegna24h;
                            ev.error = d.errore_esteso.clone();
                            if let Some(r) = &d.consegna {
                                timers.push(TimerUpdate::Close(
                                    id.clone(),
                                    r.to_ascii_lowercase(),
                                    "preavviso-5.4.1",
                                ));
                            }
                        }
                    }
                    _ => {}
                }
            }
            let receipt_box = ctx.receipt_address();
            // The signature verified, so its Message-ID names this receipt:
            // a peer sending it again (its 250 lost) must reach the mailbox
            // once, even if the copy differs in unsigned bytes.
            let copy = message
                .message_id
                .as_deref()
                .map(|m| m.trim().trim_matches(['<', '>']).to_string())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| dedup_key(bytes));
            for r in &job.recipients {
                if r.eq_ignore_ascii_case(&receipt_box) {
                    // Provider-to-provider traffic: consumed, never shown to users.
                    continue;
                }
                jobs.push(NewJob {
                    key: format!("ricevuta:{copy}:{r}"),
                    kind: Kind::Mailbox,
                    identificativo: Some(id.clone()),
                    mail_from: String::new(),
                    recipients: vec![r.clone()],
                    next_hop: None,
                    blob: Some(crate::flow::batch::BlobRef::Spooled(blob.clone())),
                    data: Some(
                        serde_json::json!({"tipo": tipo.as_str(), "msgid": message.message_id})
                            .to_string(),
                    ),
                    due_at: now_ms,
                });
            }
            events.push(ev);
        }
        // Like a scanner that cannot answer: the job waits and is judged again.
        Verdict::Postpone { reason } => return Err(Fail::Temporary(reason)),
        Verdict::Anomaly { reason, message } => {
            let (mut ev, mut js) = anomaly_for(ctx, &e, bytes, &reason, &message, &job.recipients)?;
            ev.sender = ev.sender.or(Some(job.mail_from.clone()));
            events.push(ev);
            jobs.append(&mut js);
        }
    }
    Ok(Judged {
        events,
        jobs,
        timers,
        quarantine: None,
    })
}

/// The reception point's verdict on `bytes` at `now`, with the live index,
/// trust roots and revocation checker (its answers counted in the metrics).
fn receive(ctx: &Ctx, bytes: &[u8], now: i64) -> Verdict {
    let checker = ctx.revocation.get();
    let revocation = Counted {
        inner: &*checker,
        metrics: &ctx.metrics,
    };
    reception::receive(&ReceptionInput {
        raw: bytes,
        index: &ctx.index(),
        trust: Some(&ctx.trust.get()),
        revocation: Some(&revocation),
        our_domains: &ctx.provider().domains,
        now,
    })
}

/// The revocation checker with each answer counted in the metrics.
struct Counted<'a> {
    inner: &'a dyn crate::pec::revocation::RevocationCheck,
    metrics: &'a crate::metrics::Metrics,
}

impl crate::pec::revocation::RevocationCheck for Counted<'_> {
    fn policy(&self) -> crate::pec::revocation::Policy {
        self.inner.policy()
    }

    fn check(
        &self,
        req: &crate::pec::revocation::StatusRequest<'_>,
    ) -> crate::pec::revocation::Revocation {
        let r = self.inner.check(req);
        self.metrics.revocation_check(&r);
        r
    }
}

/// `; revocation …` for a log detail, when the check says something worth
/// keeping (a source that answered, or that none did under `soft_fail`).
fn revocation_note(v: &crate::pec::smime::Verified) -> String {
    use crate::pec::revocation::Status;
    match &v.revocation {
        Some(r) if r.status != Status::NotChecked => {
            if r.status == Status::Unavailable {
                tracing::warn!(signer = %v.sha1_fingerprint, "accepted under soft_fail: revocation {r}");
            }
            format!("; revocation {r}")
        }
        _ => String::new(),
    }
}

/// A signed busta di anomalia around `bytes` for `recipients`: its log
/// event and one mailbox job per recipient (none for our receipt mailbox).
fn anomaly_for(
    ctx: &Ctx,
    e: &Emitter<'_>,
    bytes: &[u8],
    reason: &AnomalyReason,
    message: &PecMessage,
    recipients: &[String],
) -> Result<(Event, Vec<NewJob>), Fail> {
    let msg = busta_di_anomalia(
        e.provider,
        ctx.ids.as_ref(),
        &e.when,
        bytes,
        &reason.italian(),
    );
    let (ablob, msgid) = sign_to_spool(ctx, &msg)?;
    let now_ms = store::now_ms();
    let mut ev = Event::new(EventKind::Anomalia, now_ms);
    ev.sender = message.from_address.clone();
    ev.recipients = Some(recipients.join(", "));
    ev.subject = message.subject.clone();
    ev.msgid = message.message_id.clone();
    ev.generated_msgid = msgid.clone();
    ev.error = Some(reason.english());
    let receipt_box = ctx.receipt_address();
    let jobs = recipients
        .iter()
        // Our receipt mailbox is no user's: the anomaly is logged; a
        // Maildir job would only fail ("no such mailbox").
        .filter(|r| !r.eq_ignore_ascii_case(&receipt_box))
        .map(|r| NewJob {
            key: format!("anomalia:{}:{r}", dedup_key(bytes)),
            kind: Kind::Mailbox,
            identificativo: None,
            mail_from: String::new(),
            recipients: vec![r.clone()],
            next_hop: None,
            blob: Some(crate::flow::batch::BlobRef::Spooled(ablob.clone())),
            data: Some(serde_json::json!({"tipo": "anomalia", "msgid": msgid}).to_string()),
            due_at: now_ms,
        })
        .collect();
    Ok((ev, jobs))
}

/// What identifies an unverifiable received message across repeated
/// transmissions: the digest of its bytes. A peer that sends again after
/// losing our `250` sends the same bytes; an altered copy under the same
/// Message-ID is another message and gets its own anomaly envelope.
fn dedup_key(bytes: &[u8]) -> String {
    openssl::sha::sha256(bytes)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A 12 h or 24 h deadline passed: queue the notice to the sender.
async fn fire_timer(ctx: &Arc<Ctx>, t: &DueTimer) -> Result<(), String> {
    let certified = match load_certified(ctx, &t.identificativo).await {
        Ok(c) => Some(c),
        Err(Fail::Permanent(e)) => {
            tracing::error!(error = %e, "timer for an unknown message; disarming");
            None
        }
        Err(Fail::Temporary(e)) => return Err(e),
    };
    let ctx2 = ctx.clone();
    let t2 = t.clone();
    let built = match certified {
        None => None,
        Some(c) => Some(
            tokio::task::spawn_blocking(move || -> Result<(Event, NewJob), String> {
                let p = our_provider(&ctx2);
                let e = Emitter {
                    provider: &p,
                    ids: ctx2.ids.as_ref(),
                    when: ItalianTime::from_unix(ctx2.now_secs()),
                };
                let (stage, label) = match t2.deadline {
                    Deadline::Preavviso => (Preavviso::Ore12, "12h"),
                    Deadline::Expire => (Preavviso::Ore24, "24h"),
                };
                let msg = receipt::preavviso(&e, &c, &t2.recipient, stage);
                let (mut ev, j) = emit(
                    &ctx2,
                    &msg,
                    Tipo::PreavvisoErroreConsegna,
                    EventKind::PreavvisoErroreConsegna,
                    &c,
                    format!("preavviso-{label}:{}:{}", c.identificativo, t2.recipient),
                    &c.mittente,
                )
                .map_err(|f| match f {
                    Fail::Temporary(e) | Fail::Permanent(e) => e,
                })?;
                ev.detail = Some(format!("{label} notice for {}", t2.recipient));
                if stage == Preavviso::Ore24 {
                    ev.error = Some(receipt::expiry_esteso(&p.name));
                }
                Ok((ev, j))
            })
            .await
            .map_err(|e| e.to_string())??,
        ),
    };
    let t3 = t.clone();
    let now = store::now_ms();
    ctx.store
        .write(move |c| {
            if !queue::timer_fired(c, &t3)? {
                return Ok(());
            }
            if let Some((ev, j)) = &built {
                store::log::append(c, ev)?;
                queue::enqueue(c, j, now)?;
            }
            if t3.deadline == Deadline::Expire {
                queue::timer_close(c, &t3.identificativo, &t3.recipient, now, "scadenza-24h")?;
                queue::stop_relays(c, &t3.identificativo, now)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?;
    ctx.wake.notify_one();
    Ok(())
}

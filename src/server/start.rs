//! Starting a provider: binding the listeners, building the `Ctx` and
//! spawning every task; `Running` stops them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use super::listeners::{imap_listener, new_relay, pop3_listener, smtp_listener};
use super::{
    admin_http, auth, ensure_dev_pki, inbound, index::watch_index, load_index, load_signer,
    load_trust, reload, scheduler, sealer, submission, throttle_config, web, Ctx,
};
use crate::config::Config;
use crate::live::Live;
use crate::pec::clock::SystemClock;
use crate::pec::ids::RandomIds;
use crate::store::Store;

/// Listener addresses actually bound (ports may have been 0 in the config).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Bound {
    /// SMTP submission (STARTTLS).
    pub submission: Option<SocketAddr>,
    /// SMTP submission (implicit TLS).
    pub submissions: Option<SocketAddr>,
    /// Reception point.
    pub inbound: Option<SocketAddr>,
    /// IMAP (STARTTLS).
    pub imap: Option<SocketAddr>,
    /// IMAP (implicit TLS).
    pub imaps: Option<SocketAddr>,
    /// POP3 (STLS).
    #[serde(default)]
    pub pop3: Option<SocketAddr>,
    /// POP3 (implicit TLS).
    #[serde(default)]
    pub pop3s: Option<SocketAddr>,
    /// Webmail (HTTPS).
    #[serde(default)]
    pub web: Option<SocketAddr>,
}

/// A provider running inside this process.
pub struct Running {
    /// Shared context.
    pub ctx: Arc<Ctx>,
    /// Where it listens.
    pub bound: Bound,
    /// What a configuration reload swaps.
    pub reloader: reload::Reloader,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stop accepting, let sessions and jobs finish within `grace`, close the store.
    pub async fn stop(self, grace: Duration) {
        let _ = self.shutdown_tx.send(true);
        self.ctx.wake.notify_waiters();
        let all = futures_join(self.tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("shutdown grace period over; remaining work stays queued");
        }
        // A job cut short by the grace period did not crash the process.
        scheduler::release_claims(&self.ctx).await;
        let store = self.ctx.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// glibc raises its mmap threshold to the size of each large block freed (up
/// to 32 MiB): after the first 19 MiB argon2id check, every message buffer
/// and hash block came from the per-thread heaps and stayed resident there,
/// putting a loaded daemon at 400-500 MB. A fixed threshold keeps large
/// blocks in mmap, returned on free (pecd bench --dead-peer: 420 -> ~80 MiB).
fn pin_mmap_threshold() {
    crate::sys::mallopt::mmap_threshold(128 * 1024);
}

async fn bind(addr: &Option<String>, key: &str) -> Result<Option<TcpListener>, String> {
    match addr {
        None => Ok(None),
        Some(a) => TcpListener::bind(a)
            .await
            .map(Some)
            .map_err(|e| format!("{key} {a}: {e}")),
    }
}

/// Start a provider from a loaded config inside the current tokio runtime.
pub async fn start(cfg: Config) -> Result<Running, String> {
    pin_mmap_threshold();
    ensure_dev_pki(&cfg)?;
    let problems = cfg.validate(true);
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let signer = load_signer(&cfg).map_err(|e| e.to_string())?;
    let (trust, trust_pems) = load_trust(&cfg).map_err(|e| e.to_string())?;
    let revocation = crate::trust_fetch::Checker::for_config(&cfg).map_err(|e| e.to_string())?;
    tracing::info!(
        revocation = cfg.trust.revocation.as_str(),
        soft_fail = cfg.trust.soft_fail,
        crl_files = cfg.trust.crl.len(),
        "peers' signing certificates: revocation checks {}",
        cfg.trust.revocation.as_str()
    );
    let index = load_index(&cfg.resolve(&cfg.trust.index)).map_err(|e| e.to_string())?;
    let acceptor = crate::tls::acceptor_for_config(
        &cfg.resolve(&cfg.tls.certificate),
        &cfg.resolve(&cfg.tls.key),
    )
    .map_err(|e| e.to_string())?;
    let data_dir = cfg.data_dir();
    let database = super::database::database(&cfg).map_err(|e| e.to_string())?;
    let store = {
        let (d, db) = (data_dir.clone(), database.clone());
        let on_pg = db != crate::store::Database::Sqlite;
        tokio::task::spawn_blocking(move || Store::open_with(&d, &db))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| match on_pg {
                true => format!("store (backend = \"postgresql\"): {e}"),
                false => format!("{}: {e}", data_dir.display()),
            })?
    };
    // Files an older pecd (or one started under a wider umask) left
    // readable by others; in the background, as a big store takes a while.
    let dd = data_dir.clone();
    tokio::task::spawn_blocking(move || {
        let t = crate::store::modes::tighten(&dd);
        if t.changed > 0 {
            tracing::warn!(paths = t.changed, data_dir = %dd.display(),
                "files and folders readable by other users made private (0600/0700)");
        }
        for e in &t.errors {
            tracing::warn!(error = %e, "mode not checked or not narrowed");
        }
    });
    let totp_key = match cfg.web.address() {
        None => None,
        Some(_) => {
            let path = cfg.totp_key_path();
            let st = store.clone();
            let key = tokio::task::spawn_blocking(move || {
                let key = crate::auth::totp_key::TotpKey::load_or_create(&path)
                    .map_err(|e| e.to_string())?;
                let n = auth::seal_plain_totp_secrets(&st, &key)?;
                if n > 0 {
                    tracing::info!(
                        users = n,
                        "second-factor secrets stored in plain hex are now sealed with web.totp_key_file"
                    );
                }
                Ok::<_, String>(key)
            })
            .await
            .map_err(|e| e.to_string())??;
            Some(Arc::new(key))
        }
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (handoff, handoff_rx) = tokio::sync::mpsc::unbounded_channel();
    let relay = new_relay(&cfg, trust_pems.clone());
    let l_sub = bind(&cfg.listen.submission, "listen.submission").await?;
    let l_subs = bind(&cfg.listen.submissions, "listen.submissions").await?;
    let l_in = bind(&cfg.listen.inbound, "listen.inbound").await?;
    let l_imap = bind(&cfg.listen.imap, "listen.imap").await?;
    let l_imaps = bind(&cfg.listen.imaps, "listen.imaps").await?;
    let l_pop3 = bind(&cfg.listen.pop3, "listen.pop3").await?;
    let l_pop3s = bind(&cfg.listen.pop3s, "listen.pop3s").await?;
    let l_web = bind(&cfg.web.address(), "web.listen").await?;
    let l_admin = bind(&cfg.admin.address(), "admin.listen").await?;
    let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let bound = Bound {
        submission: local(&l_sub),
        submissions: local(&l_subs),
        inbound: local(&l_in),
        imap: local(&l_imap),
        imaps: local(&l_imaps),
        pop3: local(&l_pop3),
        pop3s: local(&l_pop3s),
        web: local(&l_web),
    };
    let clock: Arc<dyn crate::pec::clock::Clock> = Arc::new(SystemClock);
    // With a cluster's database the failure counts are shared, so a guess
    // on one node counts on all; one SQLite node keeps them in memory.
    let throttle = Arc::new(if store.is_shared() {
        crate::throttle::LoginThrottle::shared(
            throttle_config(&cfg),
            Arc::new(store.clone()),
            clock.clone(),
        )
    } else {
        crate::throttle::LoginThrottle::new(throttle_config(&cfg))
    });
    let scanner = crate::antivirus::Scanner::from_config(&cfg).map_err(|e| e.to_string())?;
    match &scanner {
        None => tracing::warn!("no [antivirus] section: running without virus checks"),
        Some(s) => match s.version().await {
            Ok(v) => {
                tracing::info!(clamd = %s.endpoint, version = %v, max_scan_size = s.max_scan_size,
                "virus checks on (clamd's StreamMaxLength must be at least max_scan_size)");
                // In the background: the probes stream max_scan_size bytes
                // and a nested archive.
                let s = s.clone();
                tokio::spawn(async move {
                    match s.check_stream_limit().await {
                        Ok(None) => tracing::info!(
                            max_scan_size = s.max_scan_size,
                            "clamd takes streams of antivirus.max_scan_size"
                        ),
                        Ok(Some(problem)) => tracing::warn!("{problem}"),
                        Err(e) => tracing::warn!(error = %e,
                            "clamd's StreamMaxLength could not be checked"),
                    }
                    match s.check_recursion().await {
                        Ok(None) => tracing::info!(
                            depth = crate::antivirus::probe::PROBE_DEPTH,
                            "clamd flags the EICAR test file nested past its MaxRecursion"
                        ),
                        Ok(Some(problem)) => tracing::warn!("{problem}"),
                        Err(e) => tracing::warn!(error = %e,
                            "clamd's MaxRecursion and AlertExceedsMax could not be checked"),
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, on_error = ?s.on_error,
                "clamd does not answer: scans will fail until it does"),
        },
    }
    let memory = crate::memory::MemoryBudget::new(cfg.memory_budget());
    let ctx = Arc::new(Ctx {
        provider: cfg.provider.clone(),
        pec_provider: crate::pec::envelope::Provider {
            name: cfg.provider.name.clone(),
            domain: cfg.provider_domain().to_string(),
        },
        config: Live::new(cfg),
        store,
        signer: Live::new(signer),
        trust: Live::new(trust),
        revocation: Live::new(revocation),
        index: RwLock::new(Arc::new(index)),
        clock,
        ids: Arc::new(RandomIds),
        relay: Live::new(relay),
        wake: Notify::new(),
        handoff,
        handoff_rx: Mutex::new(Some(handoff_rx)),
        running: Mutex::new(HashSet::new()),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        shutdown: shutdown_rx.clone(),
        throttle,
        password_checks: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ),
        seals: sealer::Shared::default(),
        scanner: Live::new(scanner),
        totp_key,
    });
    let mut tasks = Vec::new();
    // Every listener declared once: its name (config key, metrics label,
    // health entry), its socket and what it speaks.
    use crate::smtp::Mode;
    enum Speaks {
        Smtp(Mode, bool),
        Imap(bool),
        Pop3(bool),
        Https,
    }
    let declared = [
        ("submission", l_sub, Speaks::Smtp(Mode::Submission, false)),
        ("submissions", l_subs, Speaks::Smtp(Mode::Submission, true)),
        ("inbound", l_in, Speaks::Smtp(Mode::Inbound, false)),
        ("imap", l_imap, Speaks::Imap(false)),
        ("imaps", l_imaps, Speaks::Imap(true)),
        ("pop3", l_pop3, Speaks::Pop3(false)),
        ("pop3s", l_pop3s, Speaks::Pop3(true)),
        ("web", l_web, Speaks::Https),
    ];
    // One POP3 session per maildrop, whichever of the two ports it came in on.
    let pop3_locks = crate::pop3::MaildropLocks::new();
    let cfg = ctx.cfg();
    let incoming = ctx.store.paths().data_dir.join("incoming");
    crate::smtp::remove_spool_leftovers(&incoming)
        .map_err(|e| format!("{}: {e}", incoming.display()))?;
    let mut watched = Vec::new();
    let mut listeners = Vec::new();
    for (name, l, speaks) in declared {
        let Some(l) = l else { continue };
        let sd = shutdown_rx.clone();
        let task = match speaks {
            Speaks::Smtp(mode, implicit) => {
                let mut c = crate::smtp::SmtpConfig::new(&ctx.provider.hostname, mode);
                c.implicit_tls = implicit;
                c.connections = ctx.metrics.connections(name);
                c.memory = memory.clone();
                c.spool_dir = incoming.clone();
                c.message_memory_factor = match mode {
                    Mode::Submission => crate::memory::SUBMISSION_FACTOR,
                    Mode::Inbound => crate::memory::INBOUND_FACTOR,
                };
                let c = Live::new(smtp_listener(&cfg, acceptor.clone(), &c));
                listeners.push((name, reload::Listener::Smtp(c.clone())));
                match mode {
                    Mode::Submission => {
                        let b = Arc::new(submission::SubmissionBackend::new(ctx.clone()));
                        tokio::spawn(crate::smtp::serve(l, c, b, sd))
                    }
                    Mode::Inbound => {
                        let b = Arc::new(inbound::InboundBackend::new(ctx.clone()));
                        tokio::spawn(crate::smtp::serve(l, c, b, sd))
                    }
                }
            }
            Speaks::Imap(implicit) => {
                let mut c =
                    crate::imap::ImapConfig::new(ctx.mailboxes(), implicit, acceptor.clone());
                c.throttle = ctx.throttle.clone();
                c.connections = ctx.metrics.connections(name);
                let c = Live::new(imap_listener(&cfg, acceptor.clone(), &c));
                listeners.push((name, reload::Listener::Imap(c.clone())));
                let auth = Arc::new(auth::UserAuth::new(ctx.clone()));
                tokio::spawn(crate::imap::serve(l, c, auth, sd))
            }
            Speaks::Pop3(implicit) => {
                let mut c =
                    crate::pop3::Pop3Config::new(ctx.mailboxes(), implicit, acceptor.clone());
                c.locks = pop3_locks.clone();
                c.connections = ctx.metrics.connections(name);
                let c = Live::new(pop3_listener(&cfg, acceptor.clone(), &c));
                listeners.push((name, reload::Listener::Pop3(c.clone())));
                let auth = Arc::new(auth::UserAuth::new(ctx.clone()));
                tokio::spawn(crate::pop3::serve(l, c, auth, sd))
            }
            Speaks::Https => {
                let tls = Live::new(acceptor.clone());
                listeners.push((name, reload::Listener::Web(tls.clone())));
                tokio::spawn(web::serve(
                    l,
                    ctx.clone(),
                    tls,
                    ctx.metrics.connections(name),
                    memory.clone(),
                    sd,
                ))
            }
        };
        watched.push((name, task.abort_handle()));
        tasks.push(task);
    }
    if let Some(l) = l_admin {
        let w = admin_http::Watched { listeners: watched };
        tasks.push(tokio::spawn(admin_http::serve(
            l,
            ctx.clone(),
            w,
            shutdown_rx.clone(),
        )));
    }
    // Before the scheduler picks anything: a job that was running when the
    // last process died is counted, and held if it keeps killing it.
    scheduler::after_crash(&ctx).await;
    let started = scheduler::announce(&ctx).await;
    tasks.push(tokio::spawn(scheduler::run(ctx.clone(), started)));
    tasks.push(tokio::spawn(watch_index(ctx.clone())));
    tasks.push(tokio::spawn(sealer::run(ctx.clone())));
    let info = serde_json::to_string_pretty(&bound).unwrap_or_default();
    let _ = std::fs::write(ctx.store.paths().data_dir.join("listeners.json"), info);
    tracing::info!(?bound, domain = ctx.domain(), "pecd provider running");
    if cfg.listen.proxy_protocol {
        tracing::info!(
            "[listen] proxy_protocol: every listener but [admin] requires a PROXY protocol v2 header first"
        );
    }
    match crate::sys::adjtimex::read() {
        Ok(c) => match crate::pec::clock::clock_warning(c.synchronised, c.estimated_error_us) {
            Some(w) => tracing::warn!("{w}"),
            None => tracing::info!(
                estimated_error_ms = c.estimated_error_us / 1000,
                "system clock synchronised"
            ),
        },
        Err(e) => tracing::warn!(error = %e, "the clock state cannot be read (adjtimex)"),
    }
    let reloader = reload::Reloader::new(ctx.clone(), listeners, memory, trust_pems);
    Ok(Running {
        ctx,
        bound,
        reloader,
        shutdown_tx,
        tasks,
    })
}

//! Configuration reload without a restart (`SIGHUP`, `systemctl reload pecd`).
//!
//! The whole new state is built first: the file is parsed and checked as
//! `pecd check-config` does (every problem collected), then the signer, the
//! trust roots, the provider index and the TLS context are loaded. Only when
//! all of that succeeded is anything swapped; otherwise every problem is
//! logged and the running configuration stays in force, untouched.
//!
//! What a swap changes is what the *next* user of each part reads: the next
//! accepted connection (SMTP, IMAP, POP3, webmail) gets the new TLS
//! certificate and limits, the next signature the new signing certificate,
//! the next relay job the new routes.
//! A session keeps the snapshot it started with and is never dropped.
//!
//! Keys only a restart can change (sockets, the data folder, the logger,
//! `[provider]`, `queue.workers`) keep their running values; a reload that
//! changes them says so in a warning. Users need nothing here: they live in
//! the database and every login reads them.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::listeners::{imap_listener, new_relay, pop3_listener, smtp_listener};
use super::{check_trust, load_index, load_signer_keyed, load_trust, throttle_config, Ctx};
use crate::config::Config;
use crate::imap::ImapConfig;
use crate::live::Live;
use crate::memory::MemoryBudget;
use crate::smtp::SmtpConfig;

/// The settings cell of one listener.
pub(super) enum Listener {
    /// An SMTP listener (submission, submissions, inbound).
    Smtp(Live<SmtpConfig>),
    /// An IMAP listener (imap, imaps).
    Imap(Live<ImapConfig>),
    /// A POP3 listener (pop3, pop3s).
    Pop3(Live<crate::pop3::Pop3Config>),
    /// The webmail's TLS context (its limits are read from the config).
    Web(Live<crate::tls::Acceptor>),
}

impl Listener {
    /// The TLS context its next connection would get.
    fn tls(&self) -> Option<crate::tls::Acceptor> {
        match self {
            Listener::Smtp(l) => l.get().tls.clone(),
            Listener::Imap(l) => Some(l.get().tls.clone()),
            Listener::Pop3(l) => Some(l.get().tls.clone()),
            Listener::Web(l) => Some((*l.get()).clone()),
        }
    }
}

/// Everything a reload swaps, with what it needs to tell old from new.
struct Parts {
    ctx: Arc<Ctx>,
    listeners: Vec<(&'static str, Listener)>,
    memory: Arc<MemoryBudget>,
    /// The `[trust] ca` files in force: unchanged roots keep the trust
    /// store (and its cache of verified chains) and the relay's pool.
    roots: Mutex<Vec<Vec<u8>>>,
}

/// Reloads a running provider's configuration; cheap to clone.
#[derive(Clone)]
pub struct Reloader(Arc<Parts>);

/// The new state, complete, before anything is swapped.
struct Next {
    cfg: Config,
    restart_only: Vec<&'static str>,
    signer: crate::pec::smime::Signer,
    trust: crate::pec::smime::Trust,
    revocation: crate::trust_fetch::Checker,
    roots: Vec<Vec<u8>>,
    index: crate::pec::index::ProviderIndex,
    tls: crate::tls::Acceptor,
    scanner: Option<crate::antivirus::Scanner>,
}

/// What a successful reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// The parts that differ from before (`tls.certificate`, `limits`, …).
    pub changed: Vec<String>,
    /// Keys that differ but need a restart; their old values stay in force.
    pub need_restart: Vec<String>,
}

impl Reloader {
    pub(super) fn new(
        ctx: Arc<Ctx>,
        listeners: Vec<(&'static str, Listener)>,
        memory: Arc<MemoryBudget>,
        roots: Vec<Vec<u8>>,
    ) -> Reloader {
        Reloader(Arc::new(Parts {
            ctx,
            listeners,
            memory,
            roots: Mutex::new(roots),
        }))
    }

    /// Read `path` again and apply it, or refuse it whole; the outcome is
    /// logged either way (`configuration reloaded` / `reload refused`).
    pub async fn reload(&self, path: &Path) -> Result<Reloaded, Vec<String>> {
        let me = self.clone();
        let path = path.to_path_buf();
        // File reads, certificate parsing and the index: off the async workers.
        tokio::task::spawn_blocking(move || me.reload_blocking(&path))
            .await
            .unwrap_or_else(|e| Err(vec![format!("reload task failed: {e}")]))
    }

    /// [`Reloader::reload`] on the calling thread.
    pub fn reload_blocking(&self, path: &Path) -> Result<Reloaded, Vec<String>> {
        // Two reloads at once would compare against a state being replaced.
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        match self.build(path) {
            Ok(next) => {
                let done = self.apply(next);
                for key in &done.need_restart {
                    tracing::warn!(
                        file = %path.display(),
                        key = %key,
                        "{}: {key} changed, but only a restart applies it; the running value stays in force",
                        path.display()
                    );
                }
                let changed = if done.changed.is_empty() {
                    "nothing".to_string()
                } else {
                    done.changed.join(", ")
                };
                tracing::info!(
                    file = %path.display(),
                    changed = %changed,
                    "configuration reloaded"
                );
                Ok(done)
            }
            Err(problems) => {
                for p in &problems {
                    tracing::error!(file = %path.display(), "reload refused: {}", naming(path, p));
                }
                tracing::error!(
                    file = %path.display(),
                    problems = problems.len(),
                    "reload refused: {} not applied, the running configuration stays in force",
                    path.display()
                );
                Err(problems)
            }
        }
    }

    /// Everything the new configuration needs, loaded, or every problem.
    fn build(&self, path: &Path) -> Result<Next, Vec<String>> {
        // The same checks as `pecd check-config`, so an operator who ran it
        // first is told nothing new here.
        let (cfg, mut problems) = Config::load_reporting(path);
        let Some(mut cfg) = cfg else {
            return Err(dedup(problems));
        };
        problems.extend(cfg.validate(true));
        problems.extend(check_trust(&cfg));
        if !problems.is_empty() {
            return Err(dedup(problems));
        }
        let restart_only = cfg.keep_restart_only(&self.0.ctx.cfg());
        for w in cfg.warnings() {
            tracing::warn!("{w}");
        }
        // check_trust loaded each of these already, but a file may have
        // changed since; what is installed is what is loaded here.
        let signer = load_signer_keyed(&cfg).map_err(|e| e.to_string());
        let trust = load_trust(&cfg).map_err(|e| e.to_string());
        let revocation = crate::trust_fetch::Checker::for_config(&cfg).map_err(|e| e.to_string());
        let index =
            load_index(&cfg.resolve(&cfg.trust.index)).map_err(|e| format!("trust.index: {e}"));
        let tls = crate::tls::acceptor_for_config(
            &cfg.resolve(&cfg.tls.certificate),
            &cfg.resolve(&cfg.tls.key),
        )
        .map_err(|e| e.to_string());
        let scanner = crate::antivirus::Scanner::from_config(&cfg).map_err(|e| e.to_string());
        match (signer, trust, revocation, index, tls, scanner) {
            (Ok(signer), Ok((trust, roots)), Ok(revocation), Ok(index), Ok(tls), Ok(scanner)) => {
                Ok(Next {
                    cfg,
                    restart_only,
                    signer,
                    trust,
                    revocation,
                    roots,
                    index,
                    tls,
                    scanner,
                })
            }
            (signer, trust, revocation, index, tls, scanner) => Err(dedup(
                [
                    signer.err(),
                    trust.err(),
                    revocation.err(),
                    index.err(),
                    tls.err(),
                    scanner.err(),
                ]
                .into_iter()
                .flatten()
                .collect(),
            )),
        }
    }

    /// Swap every part; nothing here can fail.
    fn apply(&self, next: Next) -> Reloaded {
        let parts = &self.0;
        let ctx = &parts.ctx;
        let old = ctx.cfg();
        let cfg = next.cfg;
        let mut changed: Vec<String> = Vec::new();
        let der = |c: Option<&openssl::x509::X509Ref>| c.and_then(|c| c.to_der().ok());
        let old_tls = parts
            .listeners
            .first()
            .and_then(|(_, l)| l.tls())
            .and_then(|a| der(a.context().certificate()));
        if old_tls != der(next.tls.context().certificate()) {
            changed.push("tls.certificate".into());
        }
        if ctx.signer.get().cert.to_der().ok() != next.signer.cert.to_der().ok() {
            changed.push("signing.certificate".into());
        }
        ctx.signer.set(Arc::new(next.signer));
        {
            let mut roots = parts.roots.lock().unwrap_or_else(|p| p.into_inner());
            let roots_changed = *roots != next.roots;
            if roots_changed {
                changed.push("trust.ca".into());
                ctx.trust.set(Arc::new(next.trust));
            }
            if roots_changed
                || old.queue.relay_timeout != cfg.queue.relay_timeout
                || old.queue.max_connections_per_peer != cfg.queue.max_connections_per_peer
            {
                // Idle pooled connections go with the old relay; jobs that
                // hold it finish on it.
                ctx.relay.set(Arc::new(new_relay(&cfg, next.roots.clone())));
                *roots = next.roots;
            }
        }
        // Its caches go with it: what a CRL file or a responder says now is
        // asked again.
        let t = (&old.trust, &cfg.trust);
        if t.0.revocation != t.1.revocation || t.0.crl != t.1.crl || t.0.soft_fail != t.1.soft_fail
        {
            changed.push("trust.revocation".into());
        }
        ctx.revocation.set(Arc::new(next.revocation));
        let providers = next.index.providers.len();
        if let Ok(mut g) = ctx.index.write() {
            *g = Arc::new(next.index);
        }
        // The line SIGHUP has always logged, which scripts may wait for.
        tracing::info!(providers, "provider index reloaded");
        if old.antivirus != cfg.antivirus {
            // Scans already running finish with the scanner they started with.
            ctx.scanner.set(Arc::new(next.scanner));
            tracing::info!(
                on = cfg.antivirus.is_some(),
                "antivirus settings reloaded{}",
                if cfg.antivirus.is_none() {
                    ": running without virus checks"
                } else {
                    ""
                }
            );
            changed.push("antivirus".into());
        }
        ctx.throttle.set_config(throttle_config(&cfg));
        parts.memory.set_limit(cfg.memory_budget());
        for (_, l) in &parts.listeners {
            match l {
                Listener::Smtp(c) => {
                    c.set(Arc::new(smtp_listener(&cfg, next.tls.clone(), &c.get())))
                }
                Listener::Imap(c) => {
                    c.set(Arc::new(imap_listener(&cfg, next.tls.clone(), &c.get())))
                }
                Listener::Pop3(c) => {
                    c.set(Arc::new(pop3_listener(&cfg, next.tls.clone(), &c.get())))
                }
                Listener::Web(c) => c.set(Arc::new(next.tls.clone())),
            }
        }
        for (name, differs) in [
            ("limits", old.limits != cfg.limits),
            ("web", old.web != cfg.web),
            ("route", old.routes != cfg.routes),
            ("dns", old.dns != cfg.dns),
            ("queue", old.queue != cfg.queue),
            ("timers", old.timers != cfg.timers),
            ("trust", old.trust != cfg.trust),
            ("signing", old.signing != cfg.signing),
            ("tls", old.tls != cfg.tls),
        ] {
            if differs {
                changed.push(name.into());
            }
        }
        ctx.config.set(Arc::new(cfg));
        Reloaded {
            changed,
            need_restart: next.restart_only.iter().map(|k| k.to_string()).collect(),
        }
    }
}

/// Each problem once, in the order found.
fn dedup(problems: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    problems
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

/// A problem on one line (a TOML error spans several), prefixed with the
/// file it is about unless it names it already.
fn naming(path: &Path, problem: &str) -> String {
    let name = path.display().to_string();
    let one_line = problem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if one_line.starts_with(&name) {
        one_line
    } else {
        format!("{name}: {one_line}")
    }
}

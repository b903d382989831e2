//! The running provider: wires the configuration, the store, the signer, the
//! provider index and the listeners together, and runs the scheduler that
//! moves queued work along.
//!
//! The path of a message (see `docs/architecture.md`):
//! SMTP submission -> `submission` (flow::submit, sign, Store::commit, 250)
//! -> `scheduler` -> `jobs::mailbox` / `jobs::relay` -> peer's `inbound`
//! -> peer's `jobs::judge` (flow::receive) and `jobs::deliver` (flow::deliver,
//! receipts) -> back to the sender.

mod admin_http;
pub mod auth;
pub mod database;
mod devpki;
pub mod inbound;
mod index;
mod jobs;
mod listeners;
mod load;
pub mod reload;
pub mod scheduler;
pub mod sealer;
mod start;
pub mod submission;
pub mod web;

pub use devpki::ensure_dev_pki;
pub use index::reload_index;
pub use load::{
    check_trust, load_index, load_signer, load_signer_keyed, load_trust, LoadError, PinError,
};
pub use start::{start, Bound, Running};

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::pec::smime::Trust;
use tokio::sync::{watch, Notify};

use crate::config::{Config, ProviderSection};
use crate::live::Live;
use crate::pec::clock::Clock;
use crate::pec::ids::IdSource;
use crate::pec::index::ProviderIndex;
use crate::pec::smime::Signer;
use crate::pec::types::{RecipientType, Unsigned};
use crate::relay::Relay;
use crate::store::Store;

/// Everything a session or a job needs, shared.
///
/// What a reload may replace (see [`reload`]) sits in [`Live`] cells: the
/// configuration, the signer, the trust roots and the relay that uses them.
/// Code that needs one consistent view takes one snapshot (`ctx.cfg()`)
/// and reads it, rather than reading the cell twice.
pub struct Ctx {
    /// The configuration in force; `[provider]` and the other keys only a
    /// restart changes always hold the values the process started with.
    config: Live<Config>,
    /// `[provider]`, fixed for the life of the process.
    provider: ProviderSection,
    /// The same, as the receipts name it.
    pec_provider: crate::pec::envelope::Provider,
    /// Database and files.
    pub store: Store,
    /// Our S/MIME signer.
    pub signer: Live<Signer>,
    /// Trusted roots for peer signatures.
    pub trust: Live<Trust>,
    /// Revocation checks of peer signatures (`[trust] revocation`, `crl`,
    /// `soft_fail`), with their caches; rebuilt on reload.
    pub revocation: Live<crate::trust_fetch::Checker>,
    /// The provider index, replaced on reload.
    pub index: RwLock<Arc<ProviderIndex>>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Id source.
    pub ids: Arc<dyn IdSource>,
    /// Outbound SMTP (rebuilt when a reload changes its roots or timeout).
    pub relay: Live<Relay>,
    /// Nudges the scheduler when new work is committed.
    pub wake: Notify,
    /// New jobs a commit of this node wrote claimed by it, on their way to
    /// its scheduler (see [`Ctx::hand_over`]).
    pub handoff: tokio::sync::mpsc::UnboundedSender<crate::store::queue::Job>,
    /// The scheduler's end of `handoff`, taken when it starts.
    pub handoff_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<crate::store::queue::Job>>>,
    /// Jobs being worked on right now (never picked twice).
    pub running: Mutex<HashSet<crate::store::queue::JobId>>,
    /// Flips to true on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// The operator's counters and gauges (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Failed-login slowdown shared by SMTP AUTH and IMAP.
    pub throttle: Arc<crate::throttle::LoginThrottle>,
    /// Password checks running at once. Each argon2id check holds 19 MiB, so
    /// a burst of logins must queue instead of multiplying that by the burst.
    pub password_checks: tokio::sync::Semaphore,
    /// The daily log seals' state (`/health`, metrics).
    pub seals: sealer::Shared,
    /// clamd and the attachment rules; `None`: no `[antivirus]`, nothing
    /// scanned. Rebuilt by a reload that changes `[antivirus]`.
    pub scanner: Live<Option<crate::antivirus::Scanner>>,
    /// The key of the second-factor secrets (`[web] totp_key_file`), read
    /// at start; `None` when the webmail is off.
    pub totp_key: Option<Arc<crate::auth::totp_key::TotpKey>>,
}

/// Our signer refused to sign (a token gone, a key that no longer loads).
#[derive(Debug)]
pub struct SignError(pub crate::pec::smime::SmimeError);

impl std::fmt::Display for SignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "signing: {}", self.0)
    }
}

impl std::error::Error for SignError {}

/// S/MIME signatures made by every provider in this process (for `pecd bench`).
pub static SIGNATURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Ctx {
    /// The quota in force for `address` in bytes (its own, else the
    /// provider's default); `None` for no limit.
    pub async fn quota_of(&self, address: &str) -> Option<u64> {
        let setting = self.store.quota(address).await;
        self.quota_limit(setting)
    }

    /// [`Ctx::quota_of`] on the calling (blocking) thread.
    pub fn quota_of_blocking(&self, address: &str) -> Option<u64> {
        let setting = self.store.quota_blocking(address);
        self.quota_limit(setting)
    }

    fn quota_limit(
        &self,
        setting: crate::store::Result<Option<crate::store::users::Quota>>,
    ) -> Option<u64> {
        setting
            .ok()
            .flatten()
            .unwrap_or(crate::store::users::Quota::Default)
            .limit(self.cfg().default_quota())
    }

    /// The configuration in force now.
    pub fn cfg(&self) -> Arc<Config> {
        self.config.get()
    }

    /// The scanner in force now (`None`: no `[antivirus]`).
    pub fn scanner(&self) -> Arc<Option<crate::antivirus::Scanner>> {
        self.scanner.get()
    }

    /// The provider domain.
    pub fn domain(&self) -> &str {
        self.provider
            .domains
            .first()
            .map(String::as_str)
            .unwrap_or("")
    }

    /// `[provider]` (never changed by a reload).
    pub fn provider(&self) -> &ProviderSection {
        &self.provider
    }

    /// Whether `domain` is one of ours (case-insensitive).
    fn is_local_domain(&self, domain: &str) -> bool {
        self.provider
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Our receipt address, `posta-certificata@<provider domain>`.
    pub fn receipt_address(&self) -> String {
        format!("posta-certificata@{}", self.domain())
    }

    /// The current index.
    pub fn index(&self) -> Arc<ProviderIndex> {
        self.index
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Whether an address is in one of our domains.
    pub fn is_local(&self, address: &str) -> bool {
        address
            .rsplit_once('@')
            .is_some_and(|(_, d)| self.is_local_domain(d))
    }

    /// `certificato` for our domains and the index's, `esterno` otherwise.
    pub fn recipient_type(&self, address: &str) -> RecipientType {
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if self.is_local_domain(domain) || self.index().is_certified(domain) {
            RecipientType::Certificato
        } else {
            RecipientType::Esterno
        }
    }

    /// Sign a built message with a fresh boundary.
    pub fn sign(&self, msg: &Unsigned) -> Result<Vec<u8>, SignError> {
        SIGNATURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.metrics.signature();
        let boundary = crate::pec::ids::boundary(self.ids.as_ref());
        self.signer.get().sign(msg, &boundary).map_err(SignError)
    }

    /// Sign every message a flow left in `batch` to sign, counting each
    /// receipt by its type.
    pub fn sign_batch(&self, batch: &mut crate::flow::batch::Batch) -> Result<(), SignError> {
        use crate::flow::batch::NewBlob;
        for b in batch.blobs.iter_mut() {
            if let NewBlob::Sign(u) = b {
                if let Some((_, tipo)) = u
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("X-Ricevuta"))
                {
                    self.metrics.receipt(tipo);
                }
                *b = NewBlob::Bytes(self.sign(u)?);
            }
        }
        Ok(())
    }

    /// Who we are, as the flows need it.
    pub fn us(&self) -> crate::flow::Us<'_> {
        crate::flow::Us {
            provider: &self.pec_provider,
            domains: &self.provider.domains,
            hostname: &self.provider.hostname,
        }
    }

    /// Now (from the one clock) and the id source, for a flow.
    pub fn now(&self) -> crate::flow::Now<'_> {
        crate::flow::Now {
            ms: self.clock.unix_ms(),
            ids: self.ids.as_ref(),
        }
    }

    /// Every user's mailbox.
    pub fn mailboxes(&self) -> crate::store::mailbox::Mailboxes {
        self.store.mailboxes(&self.provider.hostname)
    }

    /// This node as the taker of the new due work it commits
    /// (`[cluster] node` and `lease`).
    pub fn taker(&self) -> crate::flow::batch::Taker {
        let cluster = &self.cfg().cluster;
        crate::flow::batch::Taker {
            node: cluster.node(),
            lease_ms: cluster.lease().as_millis() as i64,
        }
    }

    /// Hand the jobs a commit wrote claimed by this node to its scheduler,
    /// and wake it for the rest.
    pub fn hand_over(&self, taken: Vec<crate::store::queue::Job>) {
        for job in taken {
            // A scheduler gone (shutdown): the claim lapses or is released.
            let _ = self.handoff.send(job);
        }
        self.wake.notify_one();
    }

    /// Unix milliseconds now, from the one clock.
    pub fn unix_ms(&self) -> i64 {
        self.clock.unix_ms()
    }

    /// `[timers]` in milliseconds.
    pub fn timer_config(&self) -> crate::pec::timers::TimerConfig {
        let cfg = self.cfg();
        let t = &cfg.timers;
        let pre = cfg.duration(&t.preavviso_after, Duration::from_secs(12 * 3600));
        let exp = cfg.duration(&t.expire_after, Duration::from_secs(24 * 3600));
        crate::pec::timers::TimerConfig {
            preavviso_after: pre.as_millis() as i64,
            expiry_after: exp.as_millis() as i64,
        }
    }

    /// Unix seconds now.
    pub fn now_secs(&self) -> i64 {
        self.clock.now()
    }
}

/// Create a user's mailbox with the standard folders.
pub fn create_mailbox(mail_root: &Path, address: &str) -> Result<PathBuf, String> {
    crate::imap::create_mailbox(mail_root, address).map_err(|e| format!("{address}: {e}"))
}

/// The login throttle's tunables from `[limits]`.
pub fn throttle_config(cfg: &Config) -> crate::throttle::ThrottleConfig {
    let d = crate::throttle::ThrottleConfig::default();
    crate::throttle::ThrottleConfig {
        base_delay: cfg.duration(&cfg.limits.login_delay, d.base_delay),
        max_delay: cfg.duration(&cfg.limits.login_max_delay, d.max_delay),
        ..d
    }
}

//! The running provider: wires the configuration, the store, the signer, the
//! provider index and the listeners together, and runs the worker that moves
//! queued work along.
//!
//! The path of a message (see `docs/architecture.md`):
//! SMTP submission -> `submission` (pec::access, sign, one transaction, 250)
//! -> `worker` (Maildir delivery / relay) -> peer's `inbound` (pec::reception)
//! -> peer's `worker` (delivery point, receipts) -> back to the sender.

mod admin_http;
pub mod auth;
pub mod database;
pub mod inbound;
mod jobs;
pub mod reload;
pub mod scheduler;
pub mod sealer;
pub mod submission;
pub mod web;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::pec::smime::Trust;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::config::{Config, ProviderSection};
use crate::live::Live;
use crate::pec::clock::{Clock, SystemClock};
use crate::pec::ids::{IdSource, RandomIds};
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
    /// Nudges the worker when new work is committed.
    pub wake: Notify,
    /// Jobs being worked on right now (never picked twice).
    pub running: Mutex<HashSet<crate::store::queue::JobId>>,
    /// The same, in a file a crash leaves behind (the crash-loop guard).
    pub inflight: Arc<crate::store::inflight::Inflight>,
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
        self.ctx.inflight.clear();
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

/// Generate the development PKI when the config allows it and files are missing.
pub fn ensure_dev_pki(cfg: &Config) -> Result<(), String> {
    if cfg.signing.pkcs11_uri().is_some() {
        // A token's key belongs to a real CA's certificate, never a dev one.
        return Ok(());
    }
    let files = [
        &cfg.signing.certificate,
        &cfg.signing.key,
        &cfg.tls.certificate,
        &cfg.tls.key,
    ];
    let missing = files.iter().any(|p| !cfg.resolve(p).exists());
    if !missing || !cfg.signing.generate_if_missing {
        return Ok(());
    }
    let ca_cert = cfg
        .trust
        .ca
        .first()
        .or(cfg.signing.chain.first())
        .map(|p| cfg.resolve(p))
        .unwrap_or_else(|| {
            cfg.resolve(&cfg.signing.certificate)
                .with_file_name("ca.pem")
        });
    let ca_key = ca_cert.with_extension("key");
    tracing::warn!(
        signing = %cfg.resolve(&cfg.signing.certificate).display(),
        "certificate files missing: generating a THROWAWAY development CA, signing and TLS certificate (set [signing] generate_if_missing = false in production)"
    );
    crate::certs::write_dev_pki(
        &crate::certs::DevPkiPaths {
            ca_cert: &ca_cert,
            ca_key: Some(&ca_key),
            signing_cert: &cfg.resolve(&cfg.signing.certificate),
            signing_key: &cfg.resolve(&cfg.signing.key),
            tls_cert: &cfg.resolve(&cfg.tls.certificate),
            tls_key: &cfg.resolve(&cfg.tls.key),
        },
        &cfg.provider.name,
        cfg.provider_domain(),
        &cfg.provider.hostname,
    )
    .map_err(|e| format!("generating development certificates: {e}"))?;
    let idx = cfg.resolve(&cfg.trust.index);
    if !idx.exists() {
        let text = crate::layout::own_index_text(&cfg.provider.name, cfg.provider_domain());
        let rel = pathdiff(
            &cfg.resolve(&cfg.signing.certificate),
            idx.parent().unwrap_or(Path::new(".")),
        );
        let text = text.replace("certs/signing.pem", &rel);
        std::fs::write(&idx, text).map_err(|e| format!("{}: {e}", idx.display()))?;
    }
    Ok(())
}

fn pathdiff(target: &Path, base: &Path) -> String {
    let t: Vec<_> = target.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = t.iter().zip(b.iter()).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return target.display().to_string();
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out.display().to_string()
}

/// Why the trust or signing material the configuration names does not load.
#[derive(Debug)]
pub enum LoadError {
    /// A file cannot be read: the file and why.
    Read(PathBuf, std::io::Error),
    /// The provider index does not parse: the file and why.
    Index(PathBuf, crate::pec::index::IndexError),
    /// `trust.ca` makes no trust store.
    TrustCa(crate::pec::smime::SmimeError),
    /// A `pkcs11:` key without `signing.pkcs11_module`.
    NoPkcs11Module,
    /// The token's PIN is not at hand.
    Pin(PinError),
    /// The token does not give the key.
    TokenKey(crate::sys::pkcs11::Pkcs11Error),
    /// The signing certificate and chain do not go with the token's key:
    /// the key's URI and why.
    TokenSigner(String, crate::pec::smime::SmimeError),
    /// The signing certificate, key and chain files make no signer.
    Signer(crate::pec::smime::SmimeError),
    /// [`load_signer_keyed`]: an error of the file-based signer, under
    /// `signing.certificate`.
    SigningCertificate(Box<LoadError>),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Read(p, e) => write!(f, "{}: {e}", p.display()),
            LoadError::Index(p, e) => write!(f, "{}: {}", p.display(), e.0),
            LoadError::TrustCa(e) => write!(f, "trust.ca: {e}"),
            LoadError::NoPkcs11Module => {
                f.write_str("signing.pkcs11_module: a pkcs11: key needs the token's module")
            }
            LoadError::Pin(e) => write!(f, "{e}"),
            LoadError::TokenKey(e) => write!(f, "signing.key: {e}"),
            LoadError::TokenSigner(uri, e) => write!(f, "signing: the token's key {uri}: {e}"),
            LoadError::Signer(e) => write!(f, "signing: {e}"),
            LoadError::SigningCertificate(e) => write!(f, "signing.certificate: {e}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Why the PKCS#11 token's PIN is not at hand.
#[derive(Debug)]
pub enum PinError {
    /// Neither `signing.pin_file` nor the environment variable.
    Missing,
    /// `signing.pin_file` cannot be read: the file and why.
    Unreadable(PathBuf, std::io::Error),
    /// `signing.pin_file` is readable by others: the file and its mode.
    Exposed(PathBuf, u32),
    /// `signing.pin_file`'s first line is empty.
    Empty(PathBuf),
}

impl std::fmt::Display for PinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinError::Missing => write!(
                f,
                "signing: the PKCS#11 token needs its PIN: set signing.pin_file or {} in the environment",
                crate::config::PIN_ENV
            ),
            PinError::Unreadable(p, e) => write!(f, "signing.pin_file {}: {e}", p.display()),
            PinError::Exposed(p, mode) => write!(
                f,
                "signing.pin_file {}: readable by others (mode {mode:o}): chmod 600 it",
                p.display()
            ),
            PinError::Empty(p) => write!(f, "signing.pin_file {}: empty", p.display()),
        }
    }
}

impl std::error::Error for PinError {}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| LoadError::Read(path.to_path_buf(), e))
}

/// Load the provider index named by `[trust] index`.
pub fn load_index(path: &Path) -> Result<ProviderIndex, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Read(path.to_path_buf(), e))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let is_ldif = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ldif"));
    let r = if is_ldif {
        ProviderIndex::from_ldif(&text)
    } else {
        ProviderIndex::from_toml(&text, &|rel: &str| read(&base.join(rel)))
    };
    r.map_err(|e| LoadError::Index(path.to_path_buf(), e))
}

/// The `[trust] ca` roots, parsed, and the PEM files they came from.
pub fn load_trust(cfg: &Config) -> Result<(Trust, Vec<Vec<u8>>), LoadError> {
    let mut pems = Vec::new();
    for p in &cfg.trust.ca {
        pems.push(read(&cfg.resolve(p))?);
    }
    let refs: Vec<&[u8]> = pems.iter().map(Vec::as_slice).collect();
    let store = crate::pec::smime::trust_store_from_pem(&refs).map_err(LoadError::TrustCa)?;
    Ok((store, pems))
}

/// The signing key and certificate chain the configuration names.
pub fn load_signer(cfg: &Config) -> Result<Signer, LoadError> {
    let cert = read(&cfg.resolve(&cfg.signing.certificate))?;
    let mut chain = Vec::new();
    for p in &cfg.signing.chain {
        chain.extend(read(&cfg.resolve(p))?);
    }
    if let Some(uri) = cfg.signing.pkcs11_uri() {
        let module = cfg
            .signing
            .pkcs11_module
            .as_ref()
            .map(|m| cfg.resolve(m))
            .ok_or(LoadError::NoPkcs11Module)?;
        let mut pin = pkcs11_pin(cfg).map_err(LoadError::Pin)?;
        let key = crate::sys::pkcs11::load_private_key(&module, uri, &pin);
        wipe(&mut pin);
        let key = key.map_err(LoadError::TokenKey)?;
        return Signer::with_key(&cert, key, &chain)
            .map_err(|e| LoadError::TokenSigner(uri.to_string(), e));
    }
    let key = read(&cfg.resolve(&cfg.signing.key))?;
    Signer::from_pem(&cert, &key, &chain).map_err(LoadError::Signer)
}

/// [`load_signer`], its errors under the config key they concern.
pub fn load_signer_keyed(cfg: &Config) -> Result<Signer, LoadError> {
    load_signer(cfg).map_err(|e| match cfg.signing.pkcs11_uri() {
        // The token's errors name their own key.
        Some(_) => e,
        None => LoadError::SigningCertificate(Box::new(e)),
    })
}

/// The token's PIN: the first line of `[signing] pin_file` (which only
/// pecd's user may read), else `$PECD_PKCS11_PIN`.
fn pkcs11_pin(cfg: &Config) -> Result<String, PinError> {
    use std::os::unix::fs::PermissionsExt;
    let Some(f) = &cfg.signing.pin_file else {
        return std::env::var(crate::config::PIN_ENV).map_err(|_| PinError::Missing);
    };
    let path = cfg.resolve(f);
    let meta = std::fs::metadata(&path).map_err(|e| PinError::Unreadable(path.clone(), e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(PinError::Exposed(path, meta.permissions().mode() & 0o777));
    }
    let mut text =
        std::fs::read_to_string(&path).map_err(|e| PinError::Unreadable(path.clone(), e))?;
    let pin = text.lines().next().unwrap_or("").to_string();
    wipe(&mut text);
    if pin.is_empty() {
        return Err(PinError::Empty(path));
    }
    Ok(pin)
}

/// Overwrite a secret before its memory goes back to the allocator.
fn wipe(s: &mut String) {
    // Zero bytes are valid UTF-8: no unsafe needed to overwrite in place.
    let zeros = "\0".repeat(s.len());
    s.replace_range(.., &zeros);
}

/// Problems with the trust material (certificates that do not load, index
/// errors): the loading `serve` does, without starting anything. A file
/// [`Config::validate`] already reports as missing is not loaded again, so
/// each problem is reported once.
pub fn check_trust(cfg: &Config) -> Vec<String> {
    let mut p = Vec::new();
    let missing = |f: &PathBuf| !cfg.resolve(f).exists();
    let token = cfg.signing.pkcs11_uri().is_some();
    let generate_pending = cfg.signing.generate_if_missing
        && !token
        && [
            &cfg.signing.certificate,
            &cfg.signing.key,
            &cfg.tls.certificate,
            &cfg.tls.key,
        ]
        .into_iter()
        .any(missing);
    if !generate_pending {
        let mut signing_files = vec![&cfg.signing.certificate];
        if !token {
            signing_files.push(&cfg.signing.key);
        }
        signing_files.extend(&cfg.signing.pkcs11_module);
        signing_files.extend(&cfg.signing.pin_file);
        if !signing_files
            .into_iter()
            .chain(&cfg.signing.chain)
            .any(missing)
        {
            if let Err(e) = load_signer_keyed(cfg) {
                p.push(e.to_string());
            }
        }
        if !missing(&cfg.tls.certificate) && !missing(&cfg.tls.key) {
            if let Err(e) = crate::tls::acceptor_for_config(
                &cfg.resolve(&cfg.tls.certificate),
                &cfg.resolve(&cfg.tls.key),
            ) {
                p.push(e.to_string());
            }
        }
        if !cfg.trust.ca.iter().any(missing) {
            if let Err(e) = load_trust(cfg) {
                p.push(e.to_string());
            }
        }
    }
    // CRL files that exist must parse (validate reports the missing ones).
    if !cfg.trust.crl.iter().any(missing) {
        if let Err(e) = crate::trust_fetch::Checker::for_config(cfg) {
            p.push(e.to_string());
        }
    }
    // The index does not depend on the certificates being generated.
    let idx = cfg.resolve(&cfg.trust.index);
    if idx.exists() {
        if let Err(e) = load_index(&idx) {
            p.push(format!("trust.index: {e}"));
        }
    }
    p
}

/// Create a user's mailbox with the standard folders.
pub fn create_mailbox(mail_root: &Path, address: &str) -> Result<PathBuf, String> {
    crate::imap::create_mailbox(mail_root, address).map_err(|e| format!("{address}: {e}"))
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

/// The login throttle's tunables from `[limits]`.
pub fn throttle_config(cfg: &Config) -> crate::throttle::ThrottleConfig {
    let d = crate::throttle::ThrottleConfig::default();
    crate::throttle::ThrottleConfig {
        base_delay: cfg.duration(&cfg.limits.login_delay, d.base_delay),
        max_delay: cfg.duration(&cfg.limits.login_max_delay, d.max_delay),
        ..d
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
    let database = database::database(&cfg).map_err(|e| e.to_string())?;
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
    let (inflight, crashed) = crate::store::inflight::Inflight::open(&data_dir.join("inflight"))
        .map_err(|e| format!("{}: {e}", data_dir.join("inflight").display()))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
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
    let throttle = Arc::new(crate::throttle::LoginThrottle::new(throttle_config(&cfg)));
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
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
        relay: Live::new(relay),
        wake: Notify::new(),
        running: Mutex::new(HashSet::new()),
        inflight,
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
    // Before the worker picks anything: a job that was running when the
    // last process died is counted, and held if it keeps killing it.
    scheduler::after_crash(&ctx, &crashed).await;
    tasks.push(tokio::spawn(scheduler::run(ctx.clone())));
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

/// The outbound SMTP client `[queue]` and `[trust] ca` describe.
fn new_relay(cfg: &Config, roots: Vec<Vec<u8>>) -> Relay {
    Relay::new(
        &cfg.provider.hostname,
        roots,
        cfg.duration(&cfg.queue.relay_timeout, Duration::from_secs(300)),
        cfg.queue.workers as u32,
        cfg.queue.max_connections_per_peer,
    )
}

/// An SMTP listener's settings from `cfg` and `tls`, keeping what belongs to
/// the listener rather than to the configuration (its mode, gauge, memory
/// budget and spool) from `base`: at start and at each reload.
fn smtp_listener(
    cfg: &Config,
    tls: crate::tls::Acceptor,
    base: &crate::smtp::SmtpConfig,
) -> crate::smtp::SmtpConfig {
    let mut c = submission::smtp_config(cfg, tls, base.implicit_tls, base.mode);
    c.connections = base.connections.clone();
    c.memory = base.memory.clone();
    c.spool_threshold = base.spool_threshold;
    c.spool_dir = base.spool_dir.clone();
    c.message_memory_factor = base.message_memory_factor;
    c.memory_wait = base.memory_wait;
    c.proxy_protocol = cfg.listen.proxy_protocol;
    c
}

/// The IMAP counterpart of [`smtp_listener`].
fn imap_listener(
    cfg: &Config,
    tls: crate::tls::Acceptor,
    base: &crate::imap::ImapConfig,
) -> crate::imap::ImapConfig {
    let mut c = base.clone();
    c.tls = tls;
    c.max_literal = cfg.max_message_size();
    let limits = &cfg.limits;
    c.max_connections_per_ip = limits.max_connections_per_ip;
    c.command_timeout = cfg.duration(&limits.command_timeout, base.command_timeout);
    c.data_timeout = cfg.duration(&limits.data_timeout, base.data_timeout);
    c.max_bad_commands = limits.max_bad_commands;
    c.proxy_protocol = cfg.listen.proxy_protocol;
    c
}

/// A POP3 listener's settings from `cfg`, the rest kept from `base`.
fn pop3_listener(
    cfg: &Config,
    tls: crate::tls::Acceptor,
    base: &crate::pop3::Pop3Config,
) -> crate::pop3::Pop3Config {
    let mut c = base.clone();
    c.tls = tls;
    let limits = &cfg.limits;
    c.max_connections = limits.max_connections;
    c.max_connections_per_ip = limits.max_connections_per_ip;
    c.command_timeout = cfg.duration(&limits.command_timeout, base.command_timeout);
    c.data_timeout = cfg.duration(&limits.data_timeout, base.data_timeout);
    c.max_bad_commands = limits.max_bad_commands;
    c.proxy_protocol = cfg.listen.proxy_protocol;
    c
}

/// Reload the index when its file changes (checked every `index_check_interval`).
/// Both are read again on each round: a reload may have changed them.
async fn watch_index(ctx: Arc<Ctx>) {
    let index_path = |ctx: &Ctx| {
        let cfg = ctx.cfg();
        cfg.resolve(&cfg.trust.index)
    };
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut path = index_path(&ctx);
    let mut last = stamp(&path);
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let every = {
            let cfg = ctx.cfg();
            cfg.duration(&cfg.trust.index_check_interval, Duration::from_secs(2))
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let now_path = index_path(&ctx);
        if now_path != path {
            // The reload that named the new file has loaded it already.
            path = now_path;
            last = stamp(&path);
            continue;
        }
        let now = stamp(&path);
        if now != last {
            last = now;
            reload_index(&ctx);
        }
    }
}

/// Re-read the index file; on error keep the old one and say why.
pub fn reload_index(ctx: &Ctx) {
    let cfg = ctx.cfg();
    let path = cfg.resolve(&cfg.trust.index);
    match load_index(&path) {
        Ok(idx) => {
            let n = idx.providers.len();
            if let Ok(mut g) = ctx.index.write() {
                *g = Arc::new(idx);
            }
            tracing::info!(providers = n, "provider index reloaded");
        }
        Err(e) => {
            tracing::error!(error = %e, "provider index not reloaded; keeping the previous one")
        }
    }
}

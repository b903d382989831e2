//! The TOML configuration (`docs/configuration.md` documents every key).
//!
//! Key names are a contract with admins and scripts. Every table denies
//! unknown keys, so a typo is an error naming the key instead of a setting
//! silently ignored. [`Config::validate`] lists every remaining problem at
//! once, each prefixed with its key, so `pecd check-config` can print them all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[provider]`
    pub provider: ProviderSection,
    /// `[signing]`
    pub signing: SigningSection,
    /// `[tls]`
    pub tls: TlsSection,
    /// `[listen]`
    #[serde(default)]
    pub listen: ListenSection,
    /// `[trust]`
    #[serde(default)]
    pub trust: TrustSection,
    /// `[limits]`
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[[route]]`
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    /// `[dns]`
    #[serde(default)]
    pub dns: DnsSection,
    /// `[queue]`
    #[serde(default)]
    pub queue: QueueSection,
    /// `[timers]`
    #[serde(default)]
    pub timers: TimersSection,
    /// `[admin]`
    #[serde(default)]
    pub admin: AdminSection,
    /// `[log]`
    #[serde(default)]
    pub log: LogSection,
    /// `[mailbox]`
    #[serde(default)]
    pub mailbox: MailboxSection,
    /// `[web]`
    #[serde(default)]
    pub web: WebSection,
    /// `[antivirus]`; absent: nothing is scanned.
    #[serde(default)]
    pub antivirus: Option<AntivirusSection>,
    /// `[blobs]`: where message bytes are kept.
    #[serde(default)]
    pub blobs: BlobsSection,
    /// `[store]`: where the store's rows are kept.
    #[serde(default)]
    pub store: StoreSection,
    /// `[cluster]`: this node's name and how long its claims on work hold.
    #[serde(default)]
    pub cluster: ClusterSection,
    /// `[api]`: the public API's limits (issue 25).
    #[serde(default)]
    pub api: ApiSection,
    /// Folder of the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[provider]`: who we are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    /// Descriptive provider name (`gestore-emittente`).
    pub name: String,
    /// Certified domains served; the first is the provider domain.
    pub domains: Vec<String>,
    /// Host name for SMTP banners and generated ids.
    pub hostname: String,
    /// Folder of the database, spool and mailboxes.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// `[signing]`: the S/MIME signer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSection {
    /// Signing certificate (PEM).
    pub certificate: PathBuf,
    /// Signing key: a PEM file, or the RFC 7512 URI (`pkcs11:…`) of a key
    /// kept in a PKCS#11 token.
    pub key: PathBuf,
    /// Extra certificates embedded in each signature.
    #[serde(default)]
    pub chain: Vec<PathBuf>,
    /// Generate a throwaway development PKI when the files are missing.
    #[serde(default = "yes")]
    pub generate_if_missing: bool,
    /// The token vendor's PKCS#11 module (`.so`), for a `pkcs11:` key.
    #[serde(default)]
    pub pkcs11_module: Option<PathBuf>,
    /// File holding the token's PIN; without it, [`PIN_ENV`].
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
}

/// The environment variable holding the PKCS#11 PIN when `[signing]
/// pin_file` is not set: never the config file, which backups and
/// `pecd check` output carry around.
pub const PIN_ENV: &str = "PECD_PKCS11_PIN";

impl SigningSection {
    /// The key's PKCS#11 URI when the key is kept in a token.
    pub fn pkcs11_uri(&self) -> Option<&str> {
        self.key.to_str().filter(|k| k.starts_with("pkcs11:"))
    }

    /// Problems with the PKCS#11 keys that need no file to be found.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self.pkcs11_uri() {
            Some(uri) => {
                let lower = uri.to_ascii_lowercase();
                if lower.contains("pin-value") || lower.contains("pin-source") {
                    p.push(format!(
                        "signing.key: the PIN never goes in the config file: drop it from the URI and use signing.pin_file or {PIN_ENV}"
                    ));
                }
                if self.pkcs11_module.is_none() {
                    p.push(
                        "signing.pkcs11_module: a pkcs11: key needs the token's PKCS#11 module (the vendor's .so)"
                            .into(),
                    );
                }
            }
            None => {
                for (key, set) in [
                    ("signing.pkcs11_module", self.pkcs11_module.is_some()),
                    ("signing.pin_file", self.pin_file.is_some()),
                ] {
                    if set {
                        p.push(format!(
                            "{key}: only for a key in a token (signing.key = \"pkcs11:…\")"
                        ));
                    }
                }
            }
        }
        p
    }
}

fn yes() -> bool {
    true
}

/// `[tls]`: the server certificate for every listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Certificate chain (PEM).
    pub certificate: PathBuf,
    /// Key (PEM).
    pub key: PathBuf,
}

/// `[listen]`: socket addresses; an absent key disables that listener.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// SMTP submission with STARTTLS (587).
    pub submission: Option<String>,
    /// SMTP submission over implicit TLS (465).
    pub submissions: Option<String>,
    /// Reception point, MX (25).
    pub inbound: Option<String>,
    /// IMAP with STARTTLS (143).
    pub imap: Option<String>,
    /// IMAP over implicit TLS (993).
    pub imaps: Option<String>,
    /// POP3 with STLS (110).
    pub pop3: Option<String>,
    /// POP3 over implicit TLS (995).
    pub pop3s: Option<String>,
    /// Every listener above and `[web] listen` require a PROXY protocol v2
    /// header first (a TCP load balancer in front); off by default.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// `[admin]`: the operator's HTTP listener (`/metrics`, `/health`): plain
/// HTTP, meant for loopback, never the users' web listener. Like every
/// listener, off unless its address is written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// `host:port`, or `"off"` (the default) for none.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: default_admin_listen(),
        }
    }
}

fn default_admin_listen() -> String {
    // Absent means off, as for the `[listen]` keys: a listener nobody asked
    // for takes a port another provider on the machine may want.
    "off".into()
}

impl AdminSection {
    /// The address to bind, or `None` when the listener is turned off.
    pub fn address(&self) -> Option<String> {
        let l = self.listen.trim();
        (!l.is_empty() && !l.eq_ignore_ascii_case("off")).then(|| l.to_string())
    }
}

/// `[mailbox]`: what each user's mailbox may hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxSection {
    /// Quota of users without their own (`pecd user quota`), e.g. `"2GB"`;
    /// absent or `"none"`: no limit.
    pub default_quota: Option<String>,
    /// Usage (percent of the quota) at which the user is told the box is
    /// nearly full, e.g. `"90%"`.
    #[serde(default = "default_quota_warning")]
    pub quota_warning: String,
}

impl Default for MailboxSection {
    fn default() -> Self {
        MailboxSection {
            default_quota: None,
            quota_warning: default_quota_warning(),
        }
    }
}

/// `[web]`: the users' webmail (HTTPS with the `[tls]` certificate); off
/// unless `listen` is written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// `host:port`, or `"off"` (the default) for none.
    #[serde(default = "default_web_listen")]
    pub listen: String,
    /// A session unused for this long is gone (default `30m`).
    #[serde(default = "default_session_idle")]
    pub session_idle: String,
    /// Longest time for a TLS handshake, and for each request's head (an
    /// idle keep-alive connection waits no longer for its next request).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: String,
    /// Slowest average rate of a request body, per second, after a grace
    /// of `header_timeout` (`"0"`: no minimum).
    #[serde(default = "default_body_min_rate")]
    pub body_min_rate: String,
    /// Largest file the verifier takes without a session.
    #[serde(default = "default_verify_max_size")]
    pub verify_max_size: String,
    /// Verifications without a session in progress at once, uploads included.
    #[serde(default = "default_verify_concurrency")]
    pub verify_concurrency: usize,
    /// A session this old is gone however much it is used (default `12h`).
    #[serde(default = "default_session_max")]
    pub session_max: String,
    /// The key that seals second-factor secrets in the database (default
    /// `totp.key` beside this file; made if missing).
    #[serde(default = "default_totp_key_file")]
    pub totp_key_file: PathBuf,
}

impl Default for WebSection {
    fn default() -> Self {
        WebSection {
            listen: default_web_listen(),
            session_idle: default_session_idle(),
            header_timeout: default_header_timeout(),
            body_min_rate: default_body_min_rate(),
            verify_max_size: default_verify_max_size(),
            verify_concurrency: default_verify_concurrency(),
            session_max: default_session_max(),
            totp_key_file: default_totp_key_file(),
        }
    }
}

fn default_header_timeout() -> String {
    "10s".into()
}

/// A phone on a poor link still sends this much; a client trickling bytes
/// to hold a connection does not.
fn default_body_min_rate() -> String {
    "1KB".into()
}

fn default_verify_max_size() -> String {
    "10MB".into()
}

/// A few at once keep the verifier useful without letting anonymous
/// clients take the CPU and the memory budget.
fn default_verify_concurrency() -> usize {
    4
}

fn default_session_max() -> String {
    "12h".into()
}

fn default_totp_key_file() -> PathBuf {
    PathBuf::from("totp.key")
}

fn default_quota_warning() -> String {
    "90%".into()
}

/// A quota as written in the config or on the command line: a size, or
/// `"none"` for no limit.
pub fn parse_quota(s: &str) -> Result<Option<u64>, ValueError> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    match parse_size(s)? {
        0 => Err(ValueError::ZeroQuota(s.to_string())),
        n => Ok(Some(n as u64)),
    }
}

/// `"90%"` (or `"90"`) as a percentage from 1 to 100.
pub fn parse_percent(s: &str) -> Result<u64, ValueError> {
    let t = s.trim();
    let n: u64 = t
        .strip_suffix('%')
        .unwrap_or(t)
        .trim()
        .parse()
        .map_err(|_| ValueError::malformed(s, "a percentage like \"90%\""))?;
    if (1..=100).contains(&n) {
        Ok(n)
    } else {
        Err(ValueError::NotAPercentage(s.to_string()))
    }
}

fn default_web_listen() -> String {
    "off".into()
}

fn default_session_idle() -> String {
    "30m".into()
}

impl WebSection {
    /// `header_timeout` (validated; 10 s otherwise).
    pub fn header_timeout(&self) -> Duration {
        parse_duration(&self.header_timeout).unwrap_or(Duration::from_secs(10))
    }

    /// `body_min_rate` in bytes per second, 0 for none (validated).
    pub fn body_min_rate(&self) -> usize {
        parse_size(&self.body_min_rate).unwrap_or(1000)
    }

    /// `verify_max_size` in bytes (validated).
    pub fn verify_max_size(&self) -> usize {
        parse_size(&self.verify_max_size).unwrap_or(10_000_000)
    }

    /// Problems of the request limits, each as `web.key: message`.
    fn limit_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match parse_duration(&self.header_timeout) {
            Ok(d) if d.is_zero() => p.push("web.header_timeout: must be longer than 0".into()),
            Ok(_) => {}
            Err(e) => p.push(format!("web.header_timeout: {e}")),
        }
        if let Err(e) = parse_size(&self.body_min_rate) {
            p.push(format!("web.body_min_rate: {e}"));
        }
        match parse_size(&self.verify_max_size) {
            Ok(0) => p.push("web.verify_max_size: must be at least 1 byte".into()),
            Ok(_) => {}
            Err(e) => p.push(format!("web.verify_max_size: {e}")),
        }
        if self.verify_concurrency == 0 {
            p.push("web.verify_concurrency: must be at least 1".into());
        }
        p
    }

    /// The address to bind, or `None` when the webmail is turned off.
    pub fn address(&self) -> Option<String> {
        let l = self.listen.trim();
        (!l.is_empty() && !l.eq_ignore_ascii_case("off")).then(|| l.to_string())
    }
}

/// `[log]`: how `serve` writes its diagnostics to stderr, and how the PEC
/// log's daily seals are time-stamped.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// RFC 3161 time-stamping authority (`http://…`), or `"none"` for a
    /// development provider whose seals are signed only. Required: absent,
    /// `serve` refuses to start (see [`LogSection::tsa`]).
    #[serde(default)]
    pub tsa_url: Option<String>,
    /// PEM roots the TSA's certificate must chain to (required with `tsa_url`).
    #[serde(default)]
    pub tsa_ca: Option<PathBuf>,
    /// The TSA policy to ask for (dotted OID), if the TSA has several.
    #[serde(default)]
    pub tsa_policy: Option<String>,
    /// How long one request to the TSA may take.
    #[serde(default = "default_tsa_timeout")]
    pub tsa_timeout: String,
    /// First wait before asking a TSA that failed again (doubling).
    #[serde(default = "default_seal_retry_initial")]
    pub seal_retry_initial: String,
    /// Longest wait between two tries.
    #[serde(default = "default_seal_retry_max")]
    pub seal_retry_max: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::default(),
            tsa_url: None,
            tsa_ca: None,
            tsa_policy: None,
            tsa_timeout: default_tsa_timeout(),
            seal_retry_initial: default_seal_retry_initial(),
            seal_retry_max: default_seal_retry_max(),
        }
    }
}

/// The `[log] tsa_url` value that says, on purpose, "no time stamps".
pub const NO_TSA: &str = "none";

impl LogSection {
    /// The TSA's URL; None when `tsa_url` is absent or `"none"`.
    pub fn tsa(&self) -> Option<&str> {
        self.tsa_url
            .as_deref()
            .filter(|u| !u.trim().eq_ignore_ascii_case(NO_TSA))
    }

    /// Whether the configuration says `tsa_url = "none"`: seals signed,
    /// not time-stamped, by choice.
    pub fn tsa_disabled(&self) -> bool {
        self.tsa_url
            .as_deref()
            .is_some_and(|u| u.trim().eq_ignore_ascii_case(NO_TSA))
    }
}

fn default_tsa_timeout() -> String {
    "30s".into()
}

fn default_seal_retry_initial() -> String {
    "1m".into()
}

fn default_seal_retry_max() -> String {
    "1h".into()
}

/// The shape of each diagnostic line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `[trust]`: whom we believe.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSection {
    /// Root certificates (PEM files) that issue provider certificates.
    #[serde(default)]
    pub ca: Vec<PathBuf>,
    /// Provider index (`.toml` or `.ldif`).
    #[serde(default = "default_index")]
    pub index: PathBuf,
    /// How often the index file is checked for changes.
    #[serde(default = "default_index_check")]
    pub index_check_interval: String,
    /// Whether and how peers' signing certificates are checked for
    /// revocation (`off`, `crl`, `ocsp`, `ocsp+crl`).
    #[serde(default)]
    pub revocation: crate::pec::revocation::Mode,
    /// CRL files (PEM or DER) consulted before the distribution points.
    #[serde(default)]
    pub crl: Vec<PathBuf>,
    /// Accept a signature whose revocation status no source could give
    /// (`true`), or retry its inbound job later (`false`).
    #[serde(default)]
    pub soft_fail: bool,
}

impl Default for TrustSection {
    fn default() -> Self {
        TrustSection {
            ca: Vec::new(),
            index: default_index(),
            index_check_interval: default_index_check(),
            revocation: crate::pec::revocation::Mode::default(),
            crl: Vec::new(),
            soft_fail: false,
        }
    }
}

fn default_index() -> PathBuf {
    PathBuf::from("index.toml")
}

fn default_index_check() -> String {
    "2s".into()
}

/// `[limits]`: sizes and abuse protection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest message accepted, e.g. `"30MB"`.
    #[serde(default = "default_max_size")]
    pub max_message_size: String,
    /// Most recipients per message.
    #[serde(default = "default_max_rcpt")]
    pub max_recipients: usize,
    /// Concurrent connections per listener.
    #[serde(default = "default_max_conn")]
    pub max_connections: usize,
    /// Concurrent connections from one IP (IPv6: one /64) per listener.
    #[serde(default = "default_max_conn_per_ip")]
    pub max_connections_per_ip: usize,
    /// Networks of peer providers (`"192.0.2.0/24"`, `"2001:db8::/48"`, or
    /// one address), whose hosts get `max_connections_per_peer` on the
    /// inbound listener instead of `max_connections_per_ip`.
    #[serde(default)]
    pub peer_networks: Vec<String>,
    /// Concurrent inbound connections from one host of `peer_networks`.
    #[serde(default = "default_max_conn_per_peer")]
    pub max_connections_per_peer: usize,
    /// Longest time for one whole command line (SMTP and IMAP), idle wait included.
    #[serde(default = "default_cmd_timeout")]
    pub command_timeout: String,
    /// Longest time for one whole SMTP DATA transfer (and an IMAP command with literals).
    #[serde(default = "default_data_timeout")]
    pub data_timeout: String,
    /// Bad commands (refused recipients and senders, failed logins, syntax
    /// errors) answered in one session; the next one gets `421` / `BYE`.
    #[serde(default = "default_max_bad_commands")]
    pub max_bad_commands: usize,
    /// Login delay after the first failure for an address or network; doubles per failure.
    #[serde(default = "default_login_delay")]
    pub login_delay: String,
    /// Cap of the login delay, and of the time an attempt may queue.
    #[serde(default = "default_login_max_delay")]
    pub login_max_delay: String,
    /// RAM all sessions together may hold for message bytes, e.g. `"256MB"`.
    #[serde(default = "default_memory_budget")]
    pub memory_budget: String,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_message_size: default_max_size(),
            max_recipients: default_max_rcpt(),
            max_connections: default_max_conn(),
            max_connections_per_ip: default_max_conn_per_ip(),
            peer_networks: Vec::new(),
            max_connections_per_peer: default_max_conn_per_peer(),
            command_timeout: default_cmd_timeout(),
            data_timeout: default_data_timeout(),
            max_bad_commands: default_max_bad_commands(),
            login_delay: default_login_delay(),
            login_max_delay: default_login_max_delay(),
            memory_budget: default_memory_budget(),
        }
    }
}

fn default_max_size() -> String {
    "30MB".into()
}
fn default_max_rcpt() -> usize {
    100
}
fn default_max_conn() -> usize {
    500
}
fn default_max_conn_per_ip() -> usize {
    20
}
fn default_max_conn_per_peer() -> usize {
    100
}
fn default_cmd_timeout() -> String {
    "5m".into()
}
/// 30 MB at a slow 64 KB/s still fits; a trickling client does not.
fn default_data_timeout() -> String {
    "10m".into()
}
/// Twice the old engine default of 10: a client fixing typos is not cut off.
fn default_max_bad_commands() -> usize {
    20
}
fn default_login_delay() -> String {
    "500ms".into()
}
fn default_login_max_delay() -> String {
    "30s".into()
}
fn default_memory_budget() -> String {
    "256MB".into()
}

/// `[[route]]`: a static next hop for a domain.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Recipient domain.
    pub domain: String,
    /// `host:port` of the next hop.
    pub next_hop: String,
}

/// `[dns]`: resolver used for MX lookups.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// Name servers (`ip:port`); empty means the system resolver.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// SMTP port of the mail exchangers found (25; other values only for test networks).
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// Look up MX records for domains without a `[[route]]`; `false` keeps
    /// every relay on the configured routes (nothing leaves a development machine).
    #[serde(default = "yes")]
    pub mx_lookups: bool,
}

fn default_smtp_port() -> u16 {
    25
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            nameservers: Vec::new(),
            smtp_port: default_smtp_port(),
            mx_lookups: true,
        }
    }
}

/// `[queue]`: retries and shutdown.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    /// First retry delay.
    #[serde(default = "default_retry_initial")]
    pub retry_initial: String,
    /// Longest retry delay.
    #[serde(default = "default_retry_max")]
    pub retry_max: String,
    /// Jobs run at once.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Time allowed for in-flight work on SIGTERM.
    #[serde(default = "default_grace")]
    pub shutdown_grace: String,
    /// Time a peer may take to connect, or to answer one SMTP step.
    #[serde(default = "default_relay_timeout")]
    pub relay_timeout: String,
    /// Connections open at once to one next hop of a provider in the index
    /// (ordinary mail hosts get [`crate::relay::MAX_PER_OTHER_HOST`]).
    #[serde(default = "default_max_conn_per_peer_hop")]
    pub max_connections_per_peer: usize,
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            workers: default_workers(),
            shutdown_grace: default_grace(),
            relay_timeout: default_relay_timeout(),
            max_connections_per_peer: default_max_conn_per_peer_hop(),
        }
    }
}

/// RFC 5321 §4.5.3.2 asks clients to wait 5 minutes for most replies.
fn default_relay_timeout() -> String {
    "5m".into()
}
fn default_retry_initial() -> String {
    "1m".into()
}
fn default_retry_max() -> String {
    "1h".into()
}
fn default_workers() -> usize {
    96
}
/// A peer caps one client IP at 20 unless it lists ours in its `peer_networks`.
fn default_max_conn_per_peer_hop() -> usize {
    20
}
fn default_grace() -> String {
    "30s".into()
}

/// `[antivirus]`: clamd and the attachment rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AntivirusSection {
    /// `unix:/path` or `tcp:host:port` of clamd.
    pub clamd: String,
    /// Longest a scan may take, connection included.
    #[serde(default = "default_av_timeout")]
    pub timeout: String,
    /// Largest stream sent to clamd; at least `limits.max_message_size`.
    #[serde(default)]
    pub max_scan_size: Option<String>,
    /// What to do when clamd fails.
    #[serde(default)]
    pub on_error: OnError,
    /// Attachment extensions refused at submission (lower case, no dot).
    #[serde(default = "default_blocked_extensions")]
    pub blocked_extensions: Vec<String>,
}

/// `[antivirus] on_error`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Answer 451 / retry the inbound job: nothing unscanned gets in.
    #[default]
    Tempfail,
    /// Let the message in unscanned and log it.
    Accept,
}

fn default_av_timeout() -> String {
    "30s".into()
}

/// Executable and script types, after AgID's indications and the lists
/// published by PEC providers (PosteCert).
pub const DEFAULT_BLOCKED_EXTENSIONS: &[&str] = &[
    "ade",
    "adp",
    "app",
    "application",
    "appref-ms",
    "asp",
    "aspx",
    "asx",
    "bas",
    "bat",
    "cer",
    "chm",
    "cmd",
    "cnt",
    "com",
    "cpl",
    "crt",
    "csh",
    "der",
    "diagcab",
    "exe",
    "fxp",
    "gadget",
    "grp",
    "hlp",
    "hpj",
    "hta",
    "htc",
    "inf",
    "ins",
    "isp",
    "its",
    "jar",
    "jnlp",
    "js",
    "jse",
    "ksh",
    "lnk",
    "mad",
    "maf",
    "mag",
    "mam",
    "maq",
    "mar",
    "mas",
    "mat",
    "mau",
    "mav",
    "maw",
    "mcf",
    "mda",
    "mdb",
    "mde",
    "mdt",
    "mdw",
    "mdz",
    "msc",
    "msh",
    "msh1",
    "msh2",
    "mshxml",
    "msh1xml",
    "msh2xml",
    "msi",
    "msp",
    "mst",
    "msu",
    "ops",
    "osd",
    "pcd",
    "pif",
    "pl",
    "plg",
    "prf",
    "prg",
    "printerexport",
    "ps1",
    "ps1xml",
    "ps2",
    "ps2xml",
    "psc1",
    "psc2",
    "psd1",
    "psdm1",
    "pst",
    "py",
    "pyc",
    "pyo",
    "pyw",
    "pyz",
    "pyzw",
    "reg",
    "scf",
    "scr",
    "sct",
    "shb",
    "shs",
    "theme",
    "tmp",
    "url",
    "vb",
    "vbe",
    "vbp",
    "vbs",
    "vhd",
    "vhdx",
    "vsmacros",
    "vsw",
    "webpnp",
    "website",
    "ws",
    "wsb",
    "wsc",
    "wsf",
    "wsh",
    "xbap",
    "xll",
    "xnk",
];

fn default_blocked_extensions() -> Vec<String> {
    DEFAULT_BLOCKED_EXTENSIONS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl AntivirusSection {
    /// `max_scan_size` in bytes (validated); defaults to `limits.max_message_size`
    /// plus room for the busta around it.
    pub fn max_scan_size(&self, max_message_size: usize) -> usize {
        self.max_scan_size
            .as_deref()
            .and_then(|v| parse_size(v).ok())
            .unwrap_or(max_message_size.saturating_add(max_message_size / 2 + 65536))
    }
}

/// `[timers]`: the non-delivery deadlines of `pec-spec.md` §6.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimersSection {
    /// Warning when neither presa in carico nor consegna arrived.
    #[serde(default = "default_preavviso")]
    pub preavviso_after: String,
    /// Final notice when no consegna arrived.
    #[serde(default = "default_expire")]
    pub expire_after: String,
}

impl Default for TimersSection {
    fn default() -> Self {
        TimersSection {
            preavviso_after: default_preavviso(),
            expire_after: default_expire(),
        }
    }
}

fn default_preavviso() -> String {
    "12h".into()
}
fn default_expire() -> String {
    "24h".into()
}

/// `[cluster]`: who this node is among the nodes sharing one store, and
/// how long the work it claims stays its own without renewal.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// This node's name, unique among the nodes; the host name if unset.
    #[serde(default)]
    pub node: Option<String>,
    /// How long a claim holds unless renewed: how long a dead node's work
    /// waits before another node takes it.
    #[serde(default = "default_lease")]
    pub lease: String,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            node: None,
            lease: default_lease(),
        }
    }
}

fn default_lease() -> String {
    "30s".into()
}

/// The shortest `[cluster] lease`: claims are renewed every third of it,
/// and a renewal is a write that waits for its group commit.
pub const MIN_LEASE: Duration = Duration::from_secs(3);

/// Longest node name: it is written in every claimed row.
const MAX_NODE_NAME: usize = 64;

impl ClusterSection {
    /// This node's name: `node`, else the host name, else `localhost`.
    pub fn node(&self) -> String {
        self.node
            .clone()
            .or_else(crate::sys::hostname::get)
            .unwrap_or_else(|| "localhost".into())
    }

    /// `lease`, validated ([`MIN_LEASE`] when it is not).
    pub fn lease(&self) -> Duration {
        parse_duration(&self.lease)
            .ok()
            .filter(|d| *d >= MIN_LEASE)
            .unwrap_or(MIN_LEASE)
    }

    /// Problems, each as `key: message`.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(n) = &self.node {
            if n.is_empty()
                || n.len() > MAX_NODE_NAME
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                p.push(format!(
                    "cluster.node: {n:?} is not a node name (1 to {MAX_NODE_NAME} letters, digits, '-', '_' or '.')"
                ));
            }
        }
        match parse_duration(&self.lease) {
            Ok(d) if d < MIN_LEASE => p.push(format!(
                "cluster.lease: must be at least {}s (claims are renewed every third of it)",
                MIN_LEASE.as_secs()
            )),
            Ok(_) => {}
            Err(e) => p.push(format!("cluster.lease: {e}")),
        }
        p
    }
}

/// `[api]`: limits of the public API (`/api/v1` with tokens).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Requests one API token may make: `"10/s"`, `"600/m"`, `"1000/h"`.
    #[serde(default = "default_api_rate")]
    pub rate: String,
    /// Requests a token may make at once above the rate after a pause.
    #[serde(default = "default_api_burst")]
    pub burst: u32,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            rate: default_api_rate(),
            burst: default_api_burst(),
        }
    }
}

fn default_api_rate() -> String {
    "10/s".into()
}

fn default_api_burst() -> u32 {
    20
}

/// An `[api] rate` that is not `N/s`, `N/m` or `N/h`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadApiRate(String);

impl std::fmt::Display for BadApiRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}: give requests per second, minute or hour, e.g. \"10/s\", \"600/m\", \"1000/h\" (more than 0)",
            self.0
        )
    }
}

impl std::error::Error for BadApiRate {}

/// `N/s`, `N/m` or `N/h` as requests per second.
pub fn parse_api_rate(s: &str) -> Result<f64, BadApiRate> {
    let bad = || BadApiRate(s.to_string());
    let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
    let n: f64 = n.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    if !n.is_finite() || n <= 0.0 {
        return Err(bad());
    }
    Ok(n / per)
}

impl ApiSection {
    /// `rate` in requests per second (the default's when it is not valid).
    pub fn rate_per_second(&self) -> f64 {
        parse_api_rate(&self.rate).unwrap_or(10.0)
    }

    /// `burst`, at least 1.
    pub fn burst(&self) -> u32 {
        self.burst.max(1)
    }

    /// Problems, each as `key: message`.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = parse_api_rate(&self.rate) {
            p.push(format!("api.rate: {e}"));
        }
        if self.burst == 0 {
            p.push("api.burst: must be at least 1".into());
        }
        p
    }
}

/// Where `[blobs]` keeps message bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobsBackend {
    /// Files under `data_dir`.
    #[default]
    Local,
    /// An S3-compatible object store.
    S3,
}

/// `[blobs]`: where message bytes are kept, files under `data_dir` or an
/// S3-compatible object store shared by the nodes of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobsSection {
    /// `local` (default) or `s3`.
    #[serde(default)]
    pub backend: BlobsBackend,
    /// The store's URL, `http://host:port` or `https://host`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The bucket, pecd's alone.
    #[serde(default)]
    pub bucket: Option<String>,
    /// The region the requests are signed for; `us-east-1` when not written.
    #[serde(default)]
    pub region: Option<String>,
    /// `http://host/bucket/key` (MinIO, Ceph and most self-hosted stores)
    /// rather than `http://bucket.host/key` (AWS's default).
    #[serde(default)]
    pub path_style: bool,
    /// File holding the access key id; without it, `AWS_ACCESS_KEY_ID`.
    #[serde(default)]
    pub access_key_file: Option<PathBuf>,
    /// File holding the secret key; without it, `AWS_SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
}

/// The region S3-compatible servers expect when none is configured.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

impl BlobsSection {
    /// Problems that need no file, each as `key: message`.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.backend != BlobsBackend::S3 {
            for (key, set) in [
                ("blobs.endpoint", self.endpoint.is_some()),
                ("blobs.bucket", self.bucket.is_some()),
                ("blobs.region", self.region.is_some()),
                ("blobs.path_style", self.path_style),
                ("blobs.access_key_file", self.access_key_file.is_some()),
                ("blobs.secret_key_file", self.secret_key_file.is_some()),
            ] {
                if set {
                    p.push(format!("{key}: only with blobs.backend = \"s3\""));
                }
            }
            return p;
        }
        match self.endpoint.as_deref().map(crate::objstore::Endpoint::parse) {
            None => p.push(
                "blobs.endpoint: required with backend = \"s3\" (the store's URL, like \"http://127.0.0.1:9000\")".into(),
            ),
            Some(Err(e)) => p.push(format!("blobs.endpoint: {e}")),
            Some(Ok(e)) if e.is_ip() && !self.path_style => p.push(format!(
                "blobs.path_style: {e} is an IP address, which has no bucket subdomains: set path_style = true"
            )),
            Some(Ok(_)) => {}
        }
        match &self.bucket {
            None => p.push("blobs.bucket: required with backend = \"s3\"".into()),
            Some(b) if !crate::objstore::valid_bucket_name(b) => p.push(format!(
                "blobs.bucket: {b:?} is not a bucket name (3 to 63 lowercase letters, digits, '-' and '.')"
            )),
            Some(_) => {}
        }
        if self.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            p.push("blobs.region: must not be empty".into());
        }
        p
    }
}

/// Which database `[store]` keeps the rows in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// `pecd.sqlite3` under `data_dir`.
    #[default]
    Sqlite,
    /// A PostgreSQL server.
    Postgresql,
}

/// `[store]`: where users, the PEC log, the queue, the timers and the
/// accepted messages are kept: SQLite under `data_dir` (the default), or
/// a PostgreSQL database.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite` (default) or `postgresql`.
    #[serde(default)]
    pub backend: StoreBackend,
    /// libpq-style URL (`postgresql://user@host/db`, a Unix socket with
    /// `?host=/run/postgresql`) or `key=value` string.
    #[serde(default)]
    pub url: Option<String>,
    /// File whose first line is the password (mode 0600); without it,
    /// `PGPASSWORD`, else the URL's own or none.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connections kept at most (default [`DEFAULT_STORE_POOL`]).
    #[serde(default)]
    pub pool: Option<usize>,
}

/// `[store] pool` when not written.
pub const DEFAULT_STORE_POOL: usize = 16;

impl StoreSection {
    /// Problems that need no file, each as `key: message`.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.backend != StoreBackend::Postgresql {
            for (key, set) in [
                ("store.url", self.url.is_some()),
                ("store.password_file", self.password_file.is_some()),
                ("store.pool", self.pool.is_some()),
            ] {
                if set {
                    p.push(format!("{key}: only with store.backend = \"postgresql\""));
                }
            }
            return p;
        }
        match &self.url {
            None => p.push(
                "store.url: required with backend = \"postgresql\" (like \"postgresql://pecd@/pecd?host=/run/postgresql\")".into(),
            ),
            // Its syntax is the driver's to judge: `check-config` connects.
            Some(u) if u.trim().is_empty() => p.push("store.url: must not be empty".into()),
            Some(_) => {}
        }
        if let Some(n) = self.pool {
            if !(1..=1000).contains(&n) {
                p.push(format!("store.pool: {n} is not between 1 and 1000"));
            }
        }
        p
    }
}

/// Why `[store]` gives no database to talk to.
#[derive(Debug)]
pub enum StoreConfigError {
    /// `store.url` is not written.
    NoUrl,
    /// The password cannot be had.
    Password(crate::objstore::CredentialsError),
}

impl std::fmt::Display for StoreConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreConfigError::NoUrl => {
                write!(f, "store.url: required with store.backend = \"postgresql\"")
            }
            StoreConfigError::Password(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StoreConfigError {}

/// Why `[blobs]` gives no object store to talk to.
#[derive(Debug)]
pub enum BlobsError {
    /// A key `backend = "s3"` needs is not written.
    Missing(&'static str),
    /// `blobs.endpoint` is not a URL of a server.
    Endpoint(crate::objstore::EndpointError),
    /// The access keys cannot be had.
    Credentials(crate::objstore::CredentialsError),
}

impl std::fmt::Display for BlobsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobsError::Missing(key) => write!(f, "{key}: required with blobs.backend = \"s3\""),
            BlobsError::Endpoint(e) => write!(f, "blobs.endpoint: {e}"),
            BlobsError::Credentials(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BlobsError {}

/// Errors loading a configuration file.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Io(PathBuf, std::io::Error),
    /// The file is not valid TOML or has unknown/missing keys.
    Parse(PathBuf, toml::de::Error),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            ConfigError::Parse(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The configuration a system install reads when nothing else is given.
pub const SYSTEM_CONFIG: &str = "/etc/pecd/pecd.toml";
/// The configuration of a checkout, relative to the working directory.
pub const LOCAL_CONFIG: &str = "config/pecd.toml";
/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "PECD_CONFIG";

/// The configuration file to use: `--config`, else `$PECD_CONFIG`, else
/// `./config/pecd.toml`, else `/etc/pecd/pecd.toml`.
///
/// An explicit choice (flag or variable) is taken as given even when the
/// file is missing, so the error names the file the operator asked for
/// rather than silently falling back to another one. With no choice and no
/// file, the error lists every place looked at.
pub fn locate(flag: Option<&Path>) -> Result<PathBuf, NoConfigFile> {
    locate_in(
        flag,
        std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()),
        &[Path::new(LOCAL_CONFIG), Path::new(SYSTEM_CONFIG)],
    )
}

fn locate_in(
    flag: Option<&Path>,
    env: Option<std::ffi::OsString>,
    defaults: &[&Path],
) -> Result<PathBuf, NoConfigFile> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = env {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = defaults.iter().find(|p| p.is_file()) {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| ".".into());
    let looked: Vec<String> = defaults
        .iter()
        .map(|p| {
            if p.is_absolute() {
                p.display().to_string()
            } else {
                format!("./{} (in {cwd})", p.display())
            }
        })
        .collect();
    Err(NoConfigFile { looked })
}

/// No configuration file named and none where one is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoConfigFile {
    /// The places looked at, as the operator would write them.
    pub looked: Vec<String>,
}

impl std::fmt::Display for NoConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no configuration file: --config not given, {CONFIG_ENV} not set, and none of {} exists",
            self.looked.join(", ")
        )
    }
}

impl std::error::Error for NoConfigFile {}

/// Why a size, duration, quota, percentage or address written in the
/// configuration (or on the command line) is not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// Not of the form expected: the value and the form (`a size like "30MB"`).
    Malformed {
        /// The value as written.
        value: String,
        /// What it should look like.
        expected: &'static str,
    },
    /// A unit not known for this kind of value.
    UnknownUnit {
        /// The value as written.
        value: String,
        /// The unit found.
        unit: String,
        /// `size` or `duration`.
        kind: &'static str,
    },
    /// A size too large to count in bytes.
    TooLarge(String),
    /// A quota of zero, which would refuse all mail.
    ZeroQuota(String),
    /// A percentage outside 1% to 100%.
    NotAPercentage(String),
    /// Not `host:port`: the value and the resolver's reason.
    NotHostPort {
        /// The value as written.
        value: String,
        /// Why it does not parse or resolve.
        reason: String,
    },
    /// `host:port` resolving to no address.
    NoAddress(String),
}

impl ValueError {
    fn malformed(value: &str, expected: &'static str) -> ValueError {
        ValueError::Malformed {
            value: value.to_string(),
            expected,
        }
    }
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueError::Malformed { value, expected } => write!(f, "{value:?} is not {expected}"),
            ValueError::UnknownUnit { value, unit, kind } => {
                write!(f, "unknown {kind} unit {unit:?} in {value:?}")
            }
            ValueError::TooLarge(v) => write!(f, "{v:?} is too large"),
            ValueError::ZeroQuota(v) => write!(
                f,
                "{v:?}: a quota of 0 would refuse all mail; say \"none\" for no limit"
            ),
            ValueError::NotAPercentage(v) => write!(f, "{v:?}: must be between 1% and 100%"),
            ValueError::NotHostPort { value, reason } => {
                write!(f, "{value:?} is not host:port ({reason})")
            }
            ValueError::NoAddress(v) => write!(f, "{v:?} resolves to no address"),
        }
    }
}

impl std::error::Error for ValueError {}

/// Parse `"30MB"`, `"512KB"`, `"1GB"`, `"1048576"` into bytes (powers of 1000 for
/// KB/MB/GB as the law's "30 MB" means, KiB/MiB/GiB for binary).
pub fn parse_size(s: &str) -> Result<usize, ValueError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| ValueError::malformed(s, "a size like \"30MB\""))?;
    let mult: usize = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        other => {
            return Err(ValueError::UnknownUnit {
                value: s.to_string(),
                unit: other.to_string(),
                kind: "size",
            })
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| ValueError::TooLarge(s.to_string()))
}

/// Parse `"250ms"`, `"30s"`, `"5m"`, `"12h"`, `"2d"` into a duration.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| ValueError::malformed(s, "a duration like \"30s\", \"5m\" or \"12h\""))?;
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        other => {
            return Err(ValueError::UnknownUnit {
                value: s.to_string(),
                unit: other.to_string(),
                kind: "duration",
            })
        }
    })
}

fn parse_addr(s: &str) -> Result<SocketAddr, ValueError> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .map_err(|e| ValueError::NotHostPort {
            value: s.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| ValueError::NoAddress(s.to_string()))
}

impl Config {
    /// Read and parse a file; relative paths are resolved against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Io(path.to_path_buf(), e))?;
        Config::load_text(path, &text)
    }

    /// Like [`Config::load`], but for `check-config`: a key error does not
    /// stop the check. Each unknown key or badly typed value is reported as
    /// `table.key: message`, its line is set aside and the rest is parsed
    /// again, so the caller can still validate everything else.
    pub fn load_reporting(path: &Path) -> (Option<Config>, Vec<String>) {
        let mut text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return (None, vec![format!("{}: {e}", path.display())]),
        };
        let mut problems = Vec::new();
        // Each round removes at least one line, so this ends; the cap is a guard.
        for _ in 0..256 {
            let e = match toml::from_str::<Config>(&text) {
                Ok(_) => break,
                Err(e) => e,
            };
            match e.span().and_then(|r| key_lines(&text, r)) {
                Some((key, lines)) => {
                    problems.push(format!("{key}: {}", e.message().trim()));
                    text = text
                        .split_inclusive('\n')
                        .enumerate()
                        .filter(|(i, _)| !lines.contains(i))
                        .map(|(_, l)| l)
                        .collect();
                }
                None => {
                    problems.push(format!("{}: {e}", path.display()));
                    return (None, problems);
                }
            }
        }
        match Config::load_text(path, &text) {
            Ok(c) => (Some(c), problems),
            Err(e) => {
                problems.push(e.to_string());
                (None, problems)
            }
        }
    }

    fn load_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        Config::from_str_at(text, &base).map_err(|e| ConfigError::Parse(path.to_path_buf(), e))
    }

    /// Parse TOML text whose relative paths resolve against `base`.
    pub fn from_str_at(text: &str, base: &Path) -> Result<Config, toml::de::Error> {
        let mut c: Config = toml::from_str(text)?;
        c.base_dir = base.to_path_buf();
        for d in &mut c.provider.domains {
            *d = d.trim().to_ascii_lowercase();
        }
        for r in &mut c.routes {
            r.domain = r.domain.trim().to_ascii_lowercase();
        }
        Ok(c)
    }

    /// Resolve a path from the config against the config file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The provider domain (first of `provider.domains`).
    pub fn provider_domain(&self) -> &str {
        self.provider
            .domains
            .first()
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Whether `domain` is one of ours (case-insensitive).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.provider
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Absolute data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.resolve(&self.provider.data_dir)
    }

    /// Absolute path of `[web] totp_key_file`.
    pub fn totp_key_path(&self) -> PathBuf {
        self.resolve(&self.web.totp_key_file)
    }

    /// Maximum message size in bytes (validated).
    pub fn max_message_size(&self) -> usize {
        parse_size(&self.limits.max_message_size).unwrap_or(30_000_000)
    }

    /// `[limits] memory_budget` in bytes (validated).
    pub fn memory_budget(&self) -> usize {
        parse_size(&self.limits.memory_budget).unwrap_or(256_000_000)
    }

    /// `[mailbox] default_quota` in bytes; `None` for no limit (validated).
    pub fn default_quota(&self) -> Option<u64> {
        self.mailbox
            .default_quota
            .as_deref()
            .and_then(|q| parse_quota(q).ok().flatten())
    }

    /// `[mailbox] quota_warning` as a percentage (validated; 90 otherwise).
    pub fn quota_warning(&self) -> u64 {
        parse_percent(&self.mailbox.quota_warning).unwrap_or(90)
    }

    /// A duration key, already validated; falls back to `default` if it is not.
    pub fn duration(&self, value: &str, default: Duration) -> Duration {
        parse_duration(value).unwrap_or(default)
    }

    /// Address of a listener key, if configured and valid.
    pub fn listen_addr(&self, value: &Option<String>) -> Option<SocketAddr> {
        value.as_deref().and_then(|v| parse_addr(v).ok())
    }

    /// `[limits] peer_networks`, parsed.
    pub fn peer_networks(&self) -> Vec<crate::throttle::IpNet> {
        // validate() has refused a bad entry; one that slipped through is skipped.
        self.limits
            .peer_networks
            .iter()
            .filter_map(|n| crate::throttle::IpNet::parse(n).ok())
            .collect()
    }

    /// The static next hop for a domain.
    pub fn route_for(&self, domain: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| r.domain.eq_ignore_ascii_case(domain))
            .map(|r| r.next_hop.as_str())
    }

    /// Put back the settings of `running` that only a restart can change
    /// (sockets, the data folder, the logger, who we are, the worker pool)
    /// and name each key that differed. A reload applies the rest.
    pub fn keep_restart_only(&mut self, running: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        macro_rules! keep {
            ($($field:ident).+, $key:literal) => {
                if self.$($field).+ != running.$($field).+ {
                    changed.push($key);
                    self.$($field).+ = running.$($field).+.clone();
                }
            };
        }
        keep!(provider.name, "provider.name");
        keep!(provider.domains, "provider.domains");
        keep!(provider.hostname, "provider.hostname");
        keep!(provider.data_dir, "provider.data_dir");
        keep!(listen.submission, "listen.submission");
        keep!(listen.submissions, "listen.submissions");
        keep!(listen.inbound, "listen.inbound");
        keep!(listen.imap, "listen.imap");
        keep!(listen.imaps, "listen.imaps");
        keep!(listen.pop3, "listen.pop3");
        keep!(listen.pop3s, "listen.pop3s");
        keep!(listen.proxy_protocol, "listen.proxy_protocol");
        keep!(web.listen, "web.listen");
        keep!(web.totp_key_file, "web.totp_key_file");
        keep!(admin.listen, "admin.listen");
        keep!(log.format, "log.format");
        keep!(queue.workers, "queue.workers");
        keep!(blobs, "blobs");
        keep!(store, "store");
        keep!(cluster, "cluster");
        changed
    }

    /// The password of `[store]`: the first line of `password_file`
    /// (refused unless only its owner can read it), else `PGPASSWORD`,
    /// else none (the URL's own, or an authentication without one).
    pub fn store_password(&self) -> Result<Option<String>, StoreConfigError> {
        match &self.store.password_file {
            Some(f) => crate::objstore::read_secret_file("store.password_file", &self.resolve(f))
                .map(Some)
                .map_err(StoreConfigError::Password),
            None => Ok(std::env::var("PGPASSWORD").ok().filter(|v| !v.is_empty())),
        }
    }

    /// The object store `[blobs]` names, its access keys read (from the
    /// key files or the environment); None for `backend = "local"`.
    pub fn s3_settings(&self) -> Result<Option<crate::objstore::Settings>, BlobsError> {
        let b = &self.blobs;
        if b.backend != BlobsBackend::S3 {
            return Ok(None);
        }
        let endpoint = b
            .endpoint
            .as_deref()
            .ok_or(BlobsError::Missing("blobs.endpoint"))?;
        let endpoint = crate::objstore::Endpoint::parse(endpoint).map_err(BlobsError::Endpoint)?;
        let bucket = b
            .bucket
            .clone()
            .ok_or(BlobsError::Missing("blobs.bucket"))?;
        let access = b.access_key_file.as_ref().map(|f| self.resolve(f));
        let secret = b.secret_key_file.as_ref().map(|f| self.resolve(f));
        let keys = crate::objstore::Settings::load_keys(access.as_deref(), secret.as_deref())
            .map_err(BlobsError::Credentials)?;
        Ok(Some(crate::objstore::Settings {
            endpoint,
            bucket,
            region: b.region.clone().unwrap_or_else(|| DEFAULT_S3_REGION.into()),
            path_style: b.path_style,
            keys,
            timeout: crate::objstore::DEFAULT_TIMEOUT,
        }))
    }

    /// Settings that are valid but weaken the provider, each as `key:
    /// message`: `check-config` prints them and `serve` logs them at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.log.tsa_disabled() {
            w.push(format!(
                "log.tsa_url: \"{NO_TSA}\": the PEC log's daily seals are signed but NOT time-stamped, so anyone holding the signing key can rewrite, rechain and reseal past days unnoticed; a development setting: a provider sets the URL of its time-stamping authority (DPR 68/2005 art. 10 c. 2)"
            ));
        }
        if self.blobs.backend == BlobsBackend::S3 {
            // Until the store is wired to it (issue 22), say so rather than
            // let an operator believe the bytes are in the bucket.
            w.push(
                "blobs.backend: \"s3\" is checked but not used yet: this version still keeps message bytes in files under provider.data_dir".into(),
            );
        }
        if self.store.backend == StoreBackend::Postgresql {
            // The rows are shared, the files are not (issue 22's later
            // steps): two nodes on one database would each hold half of
            // every mailbox.
            w.push(
                "store.backend: \"postgresql\" keeps users, the PEC log, the queue and the timers in PostgreSQL, but mailboxes and message bytes are still files under provider.data_dir on this node: this is not yet a cluster, run one pecd per database".into(),
            );
        }
        if let Some(a) = self.admin.address() {
            if let Some(why) = reachable_from_outside(&a) {
                w.push(format!(
                    "admin.listen: {a:?} {why}: /metrics and /health answer anyone, without authentication, over plain HTTP; bind it to 127.0.0.1 (or ::1), or keep the port behind a firewall"
                ));
            }
        }
        w
    }

    /// Every problem, each as `key: message`. Empty means valid.
    ///
    /// `check_files` also requires the certificate files to exist unless the
    /// config allows generating them.
    pub fn validate(&self, check_files: bool) -> Vec<String> {
        let mut p = Vec::new();
        if self.provider.name.trim().is_empty() {
            p.push("provider.name: must not be empty".into());
        }
        if self.provider.domains.is_empty() {
            p.push("provider.domains: list at least one certified domain".into());
        }
        if self.provider_domain().len() > 200 {
            // Identificativi are `<~45 octets>@<provider domain>` and must stay within 250.
            p.push("provider.domains: the first domain is longer than 200 characters".into());
        }
        for d in &self.provider.domains {
            if !valid_domain(d) {
                p.push(format!("provider.domains: {d:?} is not a domain name"));
            }
        }
        if !valid_domain(&self.provider.hostname) {
            p.push(format!(
                "provider.hostname: {:?} is not a host name",
                self.provider.hostname
            ));
        }
        for (key, v) in [
            ("listen.submission", &self.listen.submission),
            ("listen.submissions", &self.listen.submissions),
            ("listen.inbound", &self.listen.inbound),
            ("listen.imap", &self.listen.imap),
            ("listen.imaps", &self.listen.imaps),
            ("listen.pop3", &self.listen.pop3),
            ("listen.pop3s", &self.listen.pop3s),
        ] {
            if let Some(v) = v {
                if let Err(e) = parse_addr(v) {
                    p.push(format!("{key}: {e}"));
                }
            }
        }
        if let Some(q) = &self.mailbox.default_quota {
            if let Err(e) = parse_quota(q) {
                p.push(format!("mailbox.default_quota: {e}"));
            }
        }
        if let Err(e) = parse_percent(&self.mailbox.quota_warning) {
            p.push(format!("mailbox.quota_warning: {e}"));
        }
        if let Some(v) = self.web.address() {
            if let Err(e) = parse_addr(&v) {
                p.push(format!("web.listen: {e}"));
            }
        }
        if parse_duration(&self.web.session_idle).is_ok_and(|d| d.is_zero()) {
            p.push("web.session_idle: must be longer than 0".into());
        }
        p.extend(self.web.limit_problems());
        if parse_duration(&self.web.session_max).is_ok_and(|d| d.is_zero()) {
            p.push("web.session_max: must be longer than 0".into());
        }
        match parse_size(&self.limits.max_message_size) {
            Ok(n) if n < 1000 => p.push("limits.max_message_size: too small".into()),
            Ok(_) => {}
            Err(e) => p.push(format!("limits.max_message_size: {e}")),
        }
        match parse_size(&self.limits.memory_budget) {
            // One largest submission must fit, or it could never be taken.
            Ok(n) if n / crate::memory::SUBMISSION_FACTOR < self.max_message_size() => {
                p.push(format!(
                    "limits.memory_budget: must be at least {} x limits.max_message_size ({} bytes)",
                    crate::memory::SUBMISSION_FACTOR,
                    self.max_message_size()
                        .saturating_mul(crate::memory::SUBMISSION_FACTOR)
                ))
            }
            Ok(_) => {}
            Err(e) => p.push(format!("limits.memory_budget: {e}")),
        }
        if self.limits.max_recipients < 50 {
            p.push(format!(
                "limits.max_recipients: {} is below the 50 recipients the PEC rules require (DM 2/11/2005 art. 12)",
                self.limits.max_recipients
            ));
        }
        if self.limits.max_connections == 0 {
            p.push("limits.max_connections: must be at least 1".into());
        }
        if self.limits.max_connections_per_ip == 0 {
            p.push("limits.max_connections_per_ip: must be at least 1".into());
        }
        if self.limits.max_connections_per_peer == 0 {
            p.push("limits.max_connections_per_peer: must be at least 1".into());
        }
        for n in &self.limits.peer_networks {
            if let Err(e) = crate::throttle::IpNet::parse(n) {
                p.push(format!("limits.peer_networks: {e}"));
            }
        }
        if self.limits.max_bad_commands == 0 {
            p.push("limits.max_bad_commands: must be at least 1".into());
        }
        if let (Ok(a), Ok(b)) = (
            parse_duration(&self.limits.login_delay),
            parse_duration(&self.limits.login_max_delay),
        ) {
            if a > b {
                p.push("limits.login_delay: must not exceed limits.login_max_delay".into());
            }
        }
        for (key, v) in [
            ("limits.command_timeout", &self.limits.command_timeout),
            ("limits.data_timeout", &self.limits.data_timeout),
        ] {
            if parse_duration(v).is_ok_and(|d| d.is_zero()) {
                p.push(format!("{key}: must be longer than 0"));
            }
        }
        if self.queue.workers == 0 {
            p.push("queue.workers: must be at least 1".into());
        }
        p.extend(self.cluster.problems());
        p.extend(self.api.problems());
        if self.queue.max_connections_per_peer == 0 {
            p.push("queue.max_connections_per_peer: must be at least 1".into());
        }
        for (key, v) in [
            ("limits.command_timeout", &self.limits.command_timeout),
            ("limits.data_timeout", &self.limits.data_timeout),
            ("limits.login_delay", &self.limits.login_delay),
            ("limits.login_max_delay", &self.limits.login_max_delay),
            (
                "trust.index_check_interval",
                &self.trust.index_check_interval,
            ),
            ("queue.retry_initial", &self.queue.retry_initial),
            ("queue.retry_max", &self.queue.retry_max),
            ("queue.shutdown_grace", &self.queue.shutdown_grace),
            ("queue.relay_timeout", &self.queue.relay_timeout),
            ("web.session_idle", &self.web.session_idle),
            ("web.session_max", &self.web.session_max),
            ("timers.preavviso_after", &self.timers.preavviso_after),
            ("timers.expire_after", &self.timers.expire_after),
            ("log.tsa_timeout", &self.log.tsa_timeout),
            ("log.seal_retry_initial", &self.log.seal_retry_initial),
            ("log.seal_retry_max", &self.log.seal_retry_max),
        ] {
            if let Err(e) = parse_duration(v) {
                p.push(format!("{key}: {e}"));
            }
        }
        if let Some(av) = &self.antivirus {
            if let Err(e) = crate::antivirus::endpoint::Endpoint::parse(&av.clamd) {
                p.push(format!("antivirus.clamd: {e}"));
            }
            match parse_duration(&av.timeout) {
                Ok(d) if d.is_zero() => p.push("antivirus.timeout: must be longer than 0".into()),
                Ok(_) => {}
                Err(e) => p.push(format!("antivirus.timeout: {e}")),
            }
            if let Some(v) = &av.max_scan_size {
                match parse_size(v) {
                    Ok(n) if n < self.max_message_size() => p.push(format!(
                        "antivirus.max_scan_size: must be at least limits.max_message_size ({} bytes)",
                        self.max_message_size()
                    )),
                    Ok(_) => {}
                    Err(e) => p.push(format!("antivirus.max_scan_size: {e}")),
                }
            }
            for (i, e) in av.blocked_extensions.iter().enumerate() {
                let e = e.trim_start_matches('.');
                if e.is_empty() || !e.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    p.push(format!(
                        "antivirus.blocked_extensions[{i}]: {e:?} is not a file extension"
                    ));
                }
            }
        }
        if let (Ok(a), Ok(b)) = (
            parse_duration(&self.timers.preavviso_after),
            parse_duration(&self.timers.expire_after),
        ) {
            if a >= b {
                p.push("timers.preavviso_after: must be shorter than timers.expire_after".into());
            }
        }
        if self.log.tsa_url.is_none() {
            // Without the daily time stamp anyone holding the signing key
            // can rewrite, rechain and reseal past days: a choice the
            // configuration must state, never a default.
            p.push(format!(
                "log.tsa_url: not set: the URL of your time-stamping authority (RFC 3161, http://…) for the daily time stamp of the PEC log (DPR 68/2005 art. 10 c. 2), with log.tsa_ca; or tsa_url = \"{NO_TSA}\" for a development provider whose log seals are signed but not time-stamped"
            ));
        }
        if let Some(u) = self.log.tsa() {
            // The token is signed: plain HTTP is RFC 3161's own transport.
            if !u.starts_with("http://") || u.len() <= "http://".len() {
                p.push(format!(
                    "log.tsa_url: {u:?} must be an http:// URL (the TSA's reply is signed; https is not supported)"
                ));
            }
            if self.log.tsa_ca.is_none() {
                p.push(
                    "log.tsa_ca: required with log.tsa_url (the TSA's reply is checked against it)"
                        .into(),
                );
            }
        }
        if let Some(pol) = &self.log.tsa_policy {
            if let Err(e) = crate::pec::tsa::oid_from_dotted(pol) {
                p.push(format!("log.tsa_policy: {e}"));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !valid_domain(&r.domain) {
                p.push(format!(
                    "route[{i}].domain: {:?} is not a domain name",
                    r.domain
                ));
            }
            if let Err(e) = parse_addr(&r.next_hop) {
                p.push(format!("route[{i}].next_hop: {e}"));
            }
        }
        for (i, ns) in self.dns.nameservers.iter().enumerate() {
            if ns.parse::<SocketAddr>().is_err() && ns.parse::<std::net::IpAddr>().is_err() {
                p.push(format!("dns.nameservers[{i}]: {ns:?} is not ip or ip:port"));
            }
        }
        p.extend(self.signing.problems());
        p.extend(self.blobs.problems());
        p.extend(self.store.problems());
        if check_files {
            // A certificate for a token's key is never generated: only its
            // owner's CA can issue one.
            let token = self.signing.pkcs11_uri().is_some();
            let generate = self.signing.generate_if_missing && !token;
            let mut need = vec![
                ("signing.certificate", &self.signing.certificate),
                ("tls.certificate", &self.tls.certificate),
                ("tls.key", &self.tls.key),
            ];
            if !token {
                need.push(("signing.key", &self.signing.key));
            }
            for (key, f) in [
                ("signing.pkcs11_module", &self.signing.pkcs11_module),
                ("signing.pin_file", &self.signing.pin_file),
            ] {
                if let Some(f) = f {
                    need.push((key, f));
                }
            }
            for c in &self.signing.chain {
                need.push(("signing.chain", c));
            }
            for c in &self.trust.ca {
                need.push(("trust.ca", c));
            }
            if let Some(c) = &self.log.tsa_ca {
                let full = self.resolve(c);
                if !full.exists() {
                    p.push(format!("log.tsa_ca: {} does not exist", full.display()));
                }
            }
            for (key, path) in need {
                let full = self.resolve(path);
                if !generate && !full.exists() {
                    p.push(format!("{key}: {} does not exist", full.display()));
                }
            }
            let idx = self.resolve(&self.trust.index);
            if !idx.exists() {
                p.push(format!("trust.index: {} does not exist", idx.display()));
            }
            if let (StoreBackend::Postgresql, Some(f)) =
                (self.store.backend, &self.store.password_file)
            {
                if let Err(e) =
                    crate::objstore::check_key_file("store.password_file", &self.resolve(f))
                {
                    p.push(e.to_string());
                }
            }
            if self.blobs.backend == BlobsBackend::S3 {
                for (key, f) in [
                    ("blobs.access_key_file", &self.blobs.access_key_file),
                    ("blobs.secret_key_file", &self.blobs.secret_key_file),
                ] {
                    if let Some(f) = f {
                        if let Err(e) = crate::objstore::check_key_file(key, &self.resolve(f)) {
                            p.push(e.to_string());
                        }
                    }
                }
            }
            // Never generated: a missing CRL is always the operator's to fix.
            for c in &self.trust.crl {
                let full = self.resolve(c);
                if !full.exists() {
                    p.push(format!("trust.crl: {} does not exist", full.display()));
                }
            }
        }
        p
    }
}

/// For an error at `span`: the dotted key (`limits.max_recipients`,
/// `route[0].next_hop`) and the line numbers of its `key = value` entry.
/// None when the span is not inside such an entry (a header, a whole table).
fn key_lines(text: &str, span: std::ops::Range<usize>) -> Option<(String, std::ops::Range<usize>)> {
    let first = text[..span.start.min(text.len())].matches('\n').count();
    let last = text[..span.end.min(text.len())]
        .trim_end_matches(['\r', '\n'])
        .matches('\n')
        .count()
        .max(first);
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(first)?.trim();
    if line.starts_with('[') || line.starts_with('#') {
        return None;
    }
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let mut table = String::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for l in &lines[..first] {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let n = counts.entry(name.trim().to_string()).or_insert(0);
            table = format!("{}[{}]", name.trim(), *n);
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
        }
    }
    let path = if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    };
    Some((path, first..last + 1))
}

/// Why a listener's `host:port` may be reached from other hosts, or None
/// for loopback.
fn reachable_from_outside(addr: &str) -> Option<&'static str> {
    match addr.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => Some("listens on every interface"),
        Ok(a) if a.ip().is_loopback() => None,
        Ok(_) => Some("listens on an address other hosts can reach"),
        Err(_) => {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            (!host.eq_ignore_ascii_case("localhost"))
                .then_some("may listen on an address other hosts can reach")
        }
    }
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[provider]
name = "Alpha PEC S.p.A."
domains = ["PEC.alpha.test"]
hostname = "mx.alpha.test"
[signing]
certificate = "certs/signing.pem"
key = "certs/signing.key"
[tls]
certificate = "certs/tls.pem"
key = "certs/tls.key"
[log]
tsa_url = "none"
"#;

    /// MINIMAL with `keys` in its `[log]` table instead of `tsa_url = "none"`.
    fn with_log(keys: &str) -> String {
        MINIMAL.replace("tsa_url = \"none\"\n", keys)
    }

    #[test]
    fn memory_budget_must_hold_one_largest_submission() {
        let c = Config::from_str_at(MINIMAL, Path::new("/etc/pecd")).unwrap();
        assert_eq!(c.memory_budget(), 256_000_000);
        let at = |budget: &str| {
            let text = format!(
                "{MINIMAL}\n[limits]\nmax_message_size = \"10MB\"\nmemory_budget = \"{budget}\"\n"
            );
            Config::from_str_at(&text, Path::new("/etc/pecd"))
                .unwrap()
                .validate(false)
        };
        assert!(at("60MB").is_empty(), "{:?}", at("60MB"));
        let p = at("59MB");
        assert!(
            p.len() == 1 && p[0].starts_with("limits.memory_budget: must be at least 6 x"),
            "{p:?}"
        );
        assert!(at("lots")[0].starts_with("limits.memory_budget: "));
    }

    #[test]
    fn restart_only_keys_keep_their_running_values_and_the_rest_changes() {
        let running = Config::from_str_at(MINIMAL, Path::new("/etc/pecd")).unwrap();
        let edited = MINIMAL.replace("mx.alpha.test", "mx2.alpha.test")
            + "[listen]\nimap = \"127.0.0.1:1143\"\nproxy_protocol = true\n[queue]\nworkers = 4\nretry_max = \"5m\"\n[limits]\nmax_recipients = 60\n";
        let mut new = Config::from_str_at(&edited, Path::new("/etc/pecd")).unwrap();
        let changed = new.keep_restart_only(&running);
        assert_eq!(
            changed,
            [
                "provider.hostname",
                "listen.imap",
                "listen.proxy_protocol",
                "queue.workers"
            ]
        );
        assert_eq!(new.provider, running.provider);
        assert_eq!(new.listen, running.listen);
        assert_eq!(new.queue.workers, running.queue.workers);
        assert_eq!(new.queue.retry_max, "5m");
        assert_eq!(new.limits.max_recipients, 60);
        assert!(new.clone().keep_restart_only(&running).is_empty());
    }

    #[test]
    fn store_defaults_to_sqlite_and_a_postgresql_table_gives_its_settings() {
        use std::os::unix::fs::PermissionsExt;
        let c = Config::from_str_at(MINIMAL, Path::new("/etc/pecd")).unwrap();
        assert_eq!(c.store, StoreSection::default());
        assert_eq!(c.store.backend, StoreBackend::Sqlite);
        // PostgreSQL keys without the backend, and a backend without its URL.
        let c = Config::from_str_at(
            &format!("{MINIMAL}\n[store]\nurl = \"postgresql://x@/y\"\npool = 4\n"),
            Path::new("/etc/pecd"),
        )
        .unwrap();
        let p = c.validate(false);
        assert!(
            p.contains(&"store.url: only with store.backend = \"postgresql\"".to_string()),
            "{p:?}"
        );
        assert!(
            p.contains(&"store.pool: only with store.backend = \"postgresql\"".to_string()),
            "{p:?}"
        );
        let c = Config::from_str_at(
            &format!("{MINIMAL}\n[store]\nbackend = \"postgresql\"\npool = 0\n"),
            Path::new("/etc/pecd"),
        )
        .unwrap();
        let p = c.validate(false);
        assert!(
            p.iter().any(|p| p.starts_with("store.url: required")),
            "{p:?}"
        );
        assert!(p.iter().any(|p| p.starts_with("store.pool: 0")), "{p:?}");
        assert!(Config::from_str_at(
            &format!("{MINIMAL}\n[store]\nbackend = \"mysql\"\n"),
            Path::new("/etc/pecd"),
        )
        .is_err());

        // The password file: first line, only its owner may read it.
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pg-password");
        std::fs::write(&pw, "s3cr3t\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            "{MINIMAL}\n[store]\nbackend = \"postgresql\"\nurl = \"postgresql://pecd@/pecd?host=/run/postgresql\"\npassword_file = \"pg-password\"\n"
        );
        let c = Config::from_str_at(&text, dir.path()).unwrap();
        assert!(c.validate(false).is_empty(), "{:?}", c.validate(false));
        assert_eq!(c.store_password().unwrap().as_deref(), Some("s3cr3t"));
        assert!(c.warnings().iter().any(|w| w.contains("not yet a cluster")));
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = c.store_password().unwrap_err().to_string();
        assert!(
            e.contains("store.password_file") && e.contains("chmod 600"),
            "{e}"
        );
        assert!(c
            .validate(true)
            .iter()
            .any(|p| p.starts_with("store.password_file")));

        // Restart-only: the database a running daemon writes to stays.
        let running = Config::from_str_at(MINIMAL, dir.path()).unwrap();
        let mut new = c.clone();
        assert_eq!(new.keep_restart_only(&running), ["store"]);
        assert_eq!(new.store, running.store);
    }

    #[test]
    fn blobs_default_to_local_files_and_an_s3_table_gives_its_settings() {
        use std::os::unix::fs::PermissionsExt;
        let c = Config::from_str_at(MINIMAL, Path::new("/etc/pecd")).unwrap();
        assert_eq!(c.blobs, BlobsSection::default());
        assert_eq!(c.blobs.backend, BlobsBackend::Local);
        assert!(c.s3_settings().unwrap().is_none());

        let dir = tempfile::tempdir().unwrap();
        for (f, v) in [
            ("s3-access", "AKIAEXAMPLE\n"),
            ("s3-secret", "  s3cr3t  \nignored\n"),
        ] {
            std::fs::write(dir.path().join(f), v).unwrap();
            std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        let text = format!(
            "{MINIMAL}\n[blobs]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"pecd\"\npath_style = true\naccess_key_file = \"s3-access\"\nsecret_key_file = \"s3-secret\"\n"
        );
        let c = Config::from_str_at(&text, dir.path()).unwrap();
        assert!(c.validate(false).is_empty(), "{:?}", c.validate(false));
        let s = c.s3_settings().unwrap().unwrap();
        assert_eq!(s.endpoint.to_string(), "http://127.0.0.1:9000");
        assert_eq!(
            (s.bucket.as_str(), s.region.as_str()),
            ("pecd", "us-east-1")
        );
        assert!(s.path_style);
        assert_eq!(s.keys.access_key, "AKIAEXAMPLE");
        assert_eq!(s.keys.secret_key, "s3cr3t");

        // Restart-only: the store a running daemon writes to stays.
        let running = Config::from_str_at(MINIMAL, dir.path()).unwrap();
        let mut new = c.clone();
        assert_eq!(new.keep_restart_only(&running), ["blobs"]);
        assert_eq!(new.blobs, running.blobs);
    }

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = Config::from_str_at(MINIMAL, Path::new("/etc/pecd")).unwrap();
        assert_eq!(c.provider_domain(), "pec.alpha.test");
        assert_eq!(c.max_message_size(), 30_000_000);
        assert_eq!(c.data_dir(), PathBuf::from("/etc/pecd/data"));
        assert!(c.validate(false).is_empty(), "{:?}", c.validate(false));
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{MINIMAL}\n[limits]\nmax_mesage_size = \"1MB\"\n");
        let e = Config::from_str_at(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_mesage_size"), "{e}");
    }

    #[test]
    fn revocation_keys_and_their_defaults() {
        use crate::pec::revocation::Mode;
        let c = Config::from_str_at(MINIMAL, Path::new(".")).unwrap();
        assert_eq!(
            c.trust.revocation,
            Mode::OcspCrl,
            "absent: the production default"
        );
        assert!(!c.trust.soft_fail && c.trust.crl.is_empty());
        let text = format!(
            "{MINIMAL}\n[trust]\nrevocation = \"crl\"\ncrl = [\"crl/ca.crl\"]\nsoft_fail = true\n"
        );
        let c = Config::from_str_at(&text, Path::new("/etc/pecd")).unwrap();
        assert_eq!(c.trust.revocation, Mode::Crl);
        assert!(c.trust.soft_fail);
        assert_eq!(
            c.resolve(&c.trust.crl[0]),
            Path::new("/etc/pecd/crl/ca.crl")
        );
        assert!(
            c.validate(true)
                .iter()
                .any(|p| p == "trust.crl: /etc/pecd/crl/ca.crl does not exist"),
            "a missing CRL file is named"
        );
        let bad = format!("{MINIMAL}\n[trust]\nrevocation = \"crl+ocsp\"\n");
        let e = Config::from_str_at(&bad, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("revocation"), "{e}");
        // What `pecd init` writes, and the shipped development config.
        let ports = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        for (mode, text) in [
            (
                Mode::Off,
                crate::layout::provider_config_text("A", "a.test", "mx.a.test", ports),
            ),
            (
                Mode::OcspCrl,
                crate::layout::provider_config_text_with(
                    "A",
                    "a.test",
                    "mx.a.test",
                    "0.0.0.0",
                    ports,
                    Mode::OcspCrl,
                ),
            ),
            (
                Mode::Off,
                std::fs::read_to_string(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pecd.toml"),
                )
                .unwrap(),
            ),
        ] {
            let c = Config::from_str_at(&text, Path::new(".")).unwrap();
            assert_eq!(c.trust.revocation, mode);
        }
    }

    #[test]
    fn validate_lists_every_problem_with_its_key() {
        let text = MINIMAL.replace("mx.alpha.test", "bad host!")
            + "\n[limits]\nmax_recipients = 10\nmax_message_size = \"ten\"\n[timers]\npreavviso_after = \"30h\"\n";
        let c = Config::from_str_at(&text, Path::new(".")).unwrap();
        let p = c.validate(false);
        for key in [
            "provider.hostname",
            "limits.max_recipients",
            "limits.max_message_size",
            "timers.preavviso_after",
        ] {
            assert!(
                p.iter().any(|l| l.starts_with(key)),
                "{key} missing in {p:?}"
            );
        }
    }

    #[test]
    fn api_rate_is_requests_per_second_minute_or_hour() {
        let c = Config::from_str_at(MINIMAL, Path::new(".")).unwrap();
        assert_eq!((c.api.rate_per_second(), c.api.burst()), (10.0, 20));
        assert_eq!(parse_api_rate("600/m"), Ok(10.0));
        assert_eq!(parse_api_rate(" 7200 / h "), Ok(2.0));
        for bad in ["10", "0/s", "-1/s", "ten/s", "10/d", "NaN/s"] {
            assert!(parse_api_rate(bad).is_err(), "{bad}");
        }
        let text = format!("{MINIMAL}\n[api]\nrate = \"fast\"\nburst = 0\n");
        let p = Config::from_str_at(&text, Path::new("."))
            .unwrap()
            .validate(false);
        assert!(p.iter().any(|l| l.starts_with("api.rate: ")), "{p:?}");
        assert!(p.iter().any(|l| l.starts_with("api.burst: ")), "{p:?}");
    }

    #[test]
    fn cluster_node_defaults_to_the_host_name_and_lease_to_30s() {
        let c = Config::from_str_at(MINIMAL, Path::new(".")).unwrap();
        assert_eq!(Some(c.cluster.node()), crate::sys::hostname::get());
        assert_eq!(c.cluster.lease(), Duration::from_secs(30));
        assert!(c.validate(false).iter().all(|l| !l.starts_with("cluster.")));
        let with = |cluster: &str| {
            let text = format!("{MINIMAL}\n[cluster]\n{cluster}\n");
            Config::from_str_at(&text, Path::new(".")).unwrap()
        };
        let c = with("node = \"node-2.dc1\"\nlease = \"1m\"");
        assert_eq!(c.cluster.node(), "node-2.dc1");
        assert_eq!(c.cluster.lease(), Duration::from_secs(60));
        assert!(c.validate(false).is_empty(), "{:?}", c.validate(false));
        for (bad, key) in [
            ("node = \"\"", "cluster.node: "),
            ("node = \"a b\"", "cluster.node: "),
            ("lease = \"1s\"", "cluster.lease: must be at least 3s"),
            ("lease = \"soon\"", "cluster.lease: "),
        ] {
            let p = with(bad).validate(false);
            assert!(p.iter().any(|l| l.starts_with(key)), "{bad}: {p:?}");
        }
        let text = format!("{MINIMAL}\n[cluster]\nnodes = 3\n");
        assert!(Config::from_str_at(&text, Path::new(".")).is_err());
    }

    #[test]
    fn a_token_key_needs_its_module_and_never_its_pin_in_the_file() {
        let with = |signing: &str| {
            let text = MINIMAL.replace(
                "key = \"certs/signing.key\"\n[tls]",
                &format!("{signing}\n[tls]"),
            );
            let c = Config::from_str_at(&text, Path::new("/etc/pecd")).unwrap();
            (
                c.signing.pkcs11_uri().map(str::to_string),
                c.validate(false),
            )
        };
        let uri = "pkcs11:token=pecd;object=signing;type=private";
        let (u, p) = with(&format!("key = \"{uri}\"\npkcs11_module = \"/usr/lib/softhsm/libsofthsm2.so\"\npin_file = \"pin\""));
        assert_eq!(u.as_deref(), Some(uri));
        assert!(p.is_empty(), "{p:?}");
        let (_, p) = with(&format!("key = \"{uri}\""));
        assert!(
            p.iter().any(|l| l.starts_with("signing.pkcs11_module: ")),
            "{p:?}"
        );
        let (_, p) = with(&format!(
            "key = \"{uri}?pin-value=1234\"\npkcs11_module = \"m.so\""
        ));
        assert!(
            p.iter()
                .any(|l| l.starts_with("signing.key: the PIN never goes in the config file")),
            "{p:?}"
        );
        let (u, p) =
            with("key = \"certs/signing.key\"\npkcs11_module = \"m.so\"\npin_file = \"pin\"");
        assert_eq!(u, None);
        for key in ["signing.pkcs11_module: only", "signing.pin_file: only"] {
            assert!(
                p.iter().any(|l| l.starts_with(key)),
                "{key} missing in {p:?}"
            );
        }
        // No `pin` key: deny_unknown_fields names it.
        let text = MINIMAL.replace("[tls]", "pin = \"1234\"\n[tls]");
        assert!(Config::from_str_at(&text, Path::new(".")).is_err());
    }

    #[test]
    fn the_tsa_keys_are_checked_together() {
        let check = |log: &str| {
            let c = Config::from_str_at(&with_log(log), Path::new(".")).unwrap();
            c.validate(false)
        };
        let p = check(
            "tsa_url = \"https://tsa.test/\"\ntsa_policy = \"1.x\"\nseal_retry_max = \"ever\"\n",
        );
        for key in [
            "log.tsa_url: ",
            "log.tsa_ca: required",
            "log.tsa_policy: ",
            "log.seal_retry_max: ",
        ] {
            assert!(
                p.iter().any(|l| l.starts_with(key)),
                "{key} missing in {p:?}"
            );
        }
        let ok = check("tsa_url = \"http://tsa.test/\"\ntsa_ca = \"tsa.pem\"\ntsa_policy = \"1.3.6.1.4.1.1\"\n");
        assert!(ok.is_empty(), "{ok:?}");
        let c = Config::from_str_at(MINIMAL, Path::new(".")).unwrap();
        assert_eq!(c.log.tsa(), None);
        assert!(c.log.tsa_disabled());
        assert_eq!(c.log.seal_retry_initial, "1m");
    }

    #[test]
    fn tsa_url_must_be_set_and_none_is_a_warning() {
        // Absent: refused, saying what to set.
        let c = Config::from_str_at(&with_log(""), Path::new(".")).unwrap();
        let p = c.validate(false);
        assert!(
            p.len() == 1
                && p[0].starts_with("log.tsa_url: not set")
                && p[0].contains("tsa_url = \"none\""),
            "{p:?}"
        );
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        // "none", said on purpose: valid, with a warning.
        let c = Config::from_str_at(MINIMAL, Path::new(".")).unwrap();
        assert!(c.validate(false).is_empty(), "{:?}", c.validate(false));
        let w = c.warnings();
        assert!(
            w.len() == 1
                && w[0].starts_with("log.tsa_url: \"none\"")
                && w[0].contains("NOT time-stamped"),
            "{w:?}"
        );
        // A TSA: neither.
        let c = Config::from_str_at(
            &with_log("tsa_url = \"http://tsa.test/\"\ntsa_ca = \"tsa.pem\"\n"),
            Path::new("."),
        )
        .unwrap();
        assert!(c.validate(false).is_empty() && c.warnings().is_empty());
        assert_eq!(c.log.tsa(), Some("http://tsa.test/"));
    }

    #[test]
    fn an_admin_listener_other_hosts_can_reach_is_a_warning() {
        for (listen, warned) in [
            ("0.0.0.0:2980", true),
            ("[::]:2980", true),
            ("192.0.2.7:2980", true),
            ("127.0.0.1:2980", false),
            ("[::1]:2980", false),
            ("localhost:2980", false),
            ("off", false),
        ] {
            let text = format!("{MINIMAL}\n[admin]\nlisten = \"{listen}\"\n");
            let c = Config::from_str_at(&text, Path::new(".")).unwrap();
            let w = c.warnings();
            let admin: Vec<_> = w
                .iter()
                .filter(|l| l.starts_with("admin.listen: "))
                .collect();
            assert_eq!(admin.len(), usize::from(warned), "{listen}: {w:?}");
            if warned {
                assert!(
                    admin[0].contains("/metrics and /health")
                        && admin[0].contains("without authentication"),
                    "{w:?}"
                );
            }
        }
    }

    #[test]
    fn load_reporting_lists_every_key_error_and_keeps_going() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pecd.toml");
        let text = format!(
            "{MINIMAL}\n[limits]\nmax_mesage_size = \"1MB\"\nmax_recipients = \"many\"\n\n[[route]]\ndomain = \"a.test\"\nnext_hop = \"127.0.0.1:25\"\nhop = 1\n[timers]\npreavviso_after = \"soon\"\n"
        );
        std::fs::write(&path, text).unwrap();
        let (cfg, p) = Config::load_reporting(&path);
        let cfg = cfg.expect("the rest still parses");
        assert!(
            p[0].starts_with("limits.max_mesage_size: unknown field"),
            "{p:?}"
        );
        assert!(p[1].starts_with("limits.max_recipients: "), "{p:?}");
        assert!(p[2].starts_with("route[0].hop: unknown field"), "{p:?}");
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(cfg
            .validate(false)
            .iter()
            .any(|l| l.starts_with("timers.preavviso_after")));
    }

    #[test]
    fn log_format_defaults_to_text_and_names_a_bad_value() {
        let c = Config::from_str_at(MINIMAL, Path::new(".")).unwrap();
        assert_eq!(c.log.format, LogFormat::Text);
        let c = Config::from_str_at(
            &with_log("tsa_url = \"none\"\nformat = \"json\"\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pecd.toml");
        std::fs::write(&path, with_log("tsa_url = \"none\"\nformat = \"xml\"\n")).unwrap();
        let (_, p) = Config::load_reporting(&path);
        assert!(p.len() == 1 && p[0].starts_with("log.format: "), "{p:?}");
    }

    #[test]
    fn session_limits_have_defaults_and_are_validated() {
        let c = Config::from_str_at(MINIMAL, Path::new(".")).unwrap();
        assert_eq!(c.limits.max_connections_per_ip, 20);
        assert_eq!(c.limits.max_bad_commands, 20);
        assert_eq!(c.limits.data_timeout, "10m");
        assert_eq!(c.limits.login_delay, "500ms");
        assert_eq!(c.limits.login_max_delay, "30s");
        let text = format!(
            "{MINIMAL}\n[limits]\nmax_connections_per_ip = 0\nmax_bad_commands = 0\ndata_timeout = \"0s\"\nlogin_delay = \"1m\"\nlogin_max_delay = \"30s\"\ncommand_timeout = \"slow\"\n"
        );
        let p = Config::from_str_at(&text, Path::new("."))
            .unwrap()
            .validate(false);
        for key in [
            "limits.max_connections_per_ip",
            "limits.max_bad_commands",
            "limits.data_timeout",
            "limits.login_delay",
            "limits.command_timeout",
        ] {
            assert!(
                p.iter().any(|l| l.starts_with(key)),
                "{key} missing in {p:?}"
            );
        }
    }

    #[test]
    fn peer_caps_have_defaults_and_are_validated() {
        let c = Config::from_str_at(MINIMAL, Path::new(".")).unwrap();
        assert!(c.limits.peer_networks.is_empty());
        assert_eq!(c.limits.max_connections_per_peer, 100);
        assert_eq!(c.queue.max_connections_per_peer, 20);
        assert!(c.validate(false).is_empty(), "{:?}", c.validate(false));
        let text = format!(
            "{MINIMAL}\n[limits]\npeer_networks = [\"192.0.2.0/24\", \"2001:db8::7\"]\nmax_connections_per_peer = 300\n[queue]\nmax_connections_per_peer = 90\n"
        );
        let c = Config::from_str_at(&text, Path::new(".")).unwrap();
        assert!(c.validate(false).is_empty(), "{:?}", c.validate(false));
        assert_eq!(c.limits.max_connections_per_peer, 300);
        assert_eq!(c.queue.max_connections_per_peer, 90);
        let nets = c.peer_networks();
        assert_eq!(nets.len(), 2);
        assert!(nets[0].contains("192.0.2.200".parse().unwrap()));
        assert!(nets[1].contains("2001:db8::7".parse().unwrap()));
        let text = format!(
            "{MINIMAL}\n[limits]\npeer_networks = [\"192.0.2.1/24\", \"peer.example\"]\nmax_connections_per_peer = 0\n[queue]\nmax_connections_per_peer = 0\n"
        );
        let p = Config::from_str_at(&text, Path::new("."))
            .unwrap()
            .validate(false);
        assert_eq!(
            p.iter()
                .filter(|l| l.starts_with("limits.peer_networks: "))
                .count(),
            2,
            "{p:?}"
        );
        for key in [
            "limits.max_connections_per_peer",
            "queue.max_connections_per_peer",
        ] {
            assert!(
                p.iter().any(|l| l.starts_with(key)),
                "{key} missing in {p:?}"
            );
        }
    }

    #[test]
    fn locate_prefers_flag_then_env_then_the_first_existing_default() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
        std::fs::write(&b, "").unwrap();
        let defaults = [a.as_path(), b.as_path()];
        let flag = Path::new("/flag.toml");
        let env = || Some(std::ffi::OsString::from("/env.toml"));
        assert_eq!(locate_in(Some(flag), env(), &defaults).unwrap(), flag);
        assert_eq!(
            locate_in(None, env(), &defaults).unwrap(),
            PathBuf::from("/env.toml")
        );
        assert_eq!(locate_in(None, None, &defaults).unwrap(), b);
        std::fs::remove_file(&b).unwrap();
        let e = locate_in(None, None, &defaults).unwrap_err().to_string();
        assert!(e.contains(&a.display().to_string()) && e.contains(&b.display().to_string()));
        assert!(e.contains("--config") && e.contains(CONFIG_ENV), "{e}");
    }

    #[test]
    fn web_listener_is_off_unless_written_with_30m_sessions() {
        let c = Config::from_str_at(MINIMAL, Path::new(".")).unwrap();
        assert_eq!(c.web.address(), None, "no [web]: no webmail");
        assert_eq!(
            c.duration(&c.web.session_idle, Duration::ZERO),
            Duration::from_secs(1800)
        );
        // A [web] table without `listen` is off too.
        let text = format!("{MINIMAL}\n[web]\nsession_idle = \"1h\"\n");
        let c = Config::from_str_at(&text, Path::new(".")).unwrap();
        assert_eq!(c.web.address(), None);
        let text = format!("{MINIMAL}\n[web]\nlisten = \"127.0.0.1:2443\"\n");
        let c = Config::from_str_at(&text, Path::new(".")).unwrap();
        assert_eq!(c.web.address().as_deref(), Some("127.0.0.1:2443"));
        assert_eq!(
            c.duration(&c.web.session_max, Duration::ZERO),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(c.totp_key_path(), Path::new("./totp.key"));
        let text = format!("{MINIMAL}\n[web]\nlisten = \"off\"\nsession_idle = \"0s\"\n");
        let c = Config::from_str_at(&text, Path::new(".")).unwrap();
        assert_eq!(c.web.address(), None);
        assert!(c
            .validate(false)
            .iter()
            .any(|p| p.starts_with("web.session_idle")));
    }

    #[test]
    fn web_request_limits_default_and_are_checked() {
        let c = Config::from_str_at(MINIMAL, Path::new(".")).unwrap();
        assert_eq!(c.web.header_timeout(), Duration::from_secs(10));
        assert_eq!(c.web.body_min_rate(), 1000);
        assert_eq!(c.web.verify_max_size(), 10_000_000);
        assert_eq!(c.web.verify_concurrency, 4);
        let text = format!(
            "{MINIMAL}\n[web]\nheader_timeout = \"2s\"\nbody_min_rate = \"0\"\nverify_max_size = \"1MB\"\nverify_concurrency = 1\n"
        );
        let c = Config::from_str_at(&text, Path::new(".")).unwrap();
        assert!(c.validate(false).is_empty(), "{:?}", c.validate(false));
        assert_eq!(c.web.header_timeout(), Duration::from_secs(2));
        assert_eq!(c.web.body_min_rate(), 0);
        let text = format!(
            "{MINIMAL}\n[web]\nheader_timeout = \"0s\"\nbody_min_rate = \"fast\"\nverify_max_size = \"0\"\nverify_concurrency = 0\n"
        );
        let p = Config::from_str_at(&text, Path::new("."))
            .unwrap()
            .validate(false);
        for key in [
            "web.header_timeout",
            "web.body_min_rate",
            "web.verify_max_size",
            "web.verify_concurrency",
        ] {
            assert!(p.iter().any(|p| p.starts_with(key)), "{key}: {p:?}");
        }
    }

    #[test]
    fn admin_listener_is_off_unless_written() {
        let c = Config::from_str_at(MINIMAL, Path::new(".")).unwrap();
        assert_eq!(c.admin.address(), None, "no [admin]: no listener");
        let text = format!("{MINIMAL}\n[admin]\nlisten = \"127.0.0.1:2980\"\n");
        let c = Config::from_str_at(&text, Path::new(".")).unwrap();
        assert_eq!(c.admin.address().as_deref(), Some("127.0.0.1:2980"));
        let text = format!("{MINIMAL}\n[admin]\nlisten = \"off\"\n");
        let c = Config::from_str_at(&text, Path::new(".")).unwrap();
        assert_eq!(c.admin.address(), None);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("30MB").unwrap(), 30_000_000);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert!(parse_size("3 parsecs").is_err());
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43200));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn value_errors_say_what_was_written_and_what_was_wanted() {
        let said = |r: Result<(), ValueError>| r.unwrap_err().to_string();
        assert_eq!(
            said(parse_size("3 parsecs").map(drop)),
            "unknown size unit \"PARSECS\" in \"3 parsecs\""
        );
        assert_eq!(
            said(parse_size("big").map(drop)),
            "\"big\" is not a size like \"30MB\""
        );
        assert_eq!(
            said(parse_size("99999999999999999999GB").map(drop)),
            "\"99999999999999999999GB\" is not a size like \"30MB\""
        );
        assert_eq!(
            said(parse_size("99999999999GB").map(drop)),
            "\"99999999999GB\" is too large"
        );
        assert_eq!(
            said(parse_duration("5y").map(drop)),
            "unknown duration unit \"y\" in \"5y\""
        );
        assert_eq!(
            said(parse_quota("0").map(drop)),
            "\"0\": a quota of 0 would refuse all mail; say \"none\" for no limit"
        );
        assert_eq!(
            said(parse_percent("120%").map(drop)),
            "\"120%\": must be between 1% and 100%"
        );
        assert!(matches!(
            parse_addr("no-port"),
            Err(ValueError::NotHostPort { .. })
        ));
    }
}

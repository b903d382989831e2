//! POP3 (RFC 1939) for users who download their PEC: `CAPA` (RFC 2449),
//! `UIDL`, `TOP`, `USER`/`PASS`, `AUTH PLAIN` (RFC 5034) and `STLS` (RFC 2595)
//! or implicit TLS, over the INBOX of the same Maildir IMAP serves.
//!
//! Shape as [`crate::imap`]: [`serve`] takes a bound listener and a shutdown
//! signal, one task per connection ([`session`]), a semaphore and a per-host
//! cap on connections. Parsing and the multi-line encoding are sans-IO
//! ([`command`]); the snapshot a session locks is [`maildrop`].
//!
//! Security rules: no credentials before TLS; logins go through the
//! provider-wide throttle ([`Pop3Auth`] is implemented by the same
//! `UserAuth` as SMTP and IMAP); one POP3 session per maildrop at a time
//! (RFC 1939 §8, `-ERR [IN-USE]`); lines are bounded ([`command::MAX_LINE`]),
//! a whole line must arrive within `command_timeout`, a silent client is
//! logged out after `idle_timeout`, and `max_bad_commands` ends a probing
//! session. `RETR` streams from the file in fixed chunks.

pub mod command;
pub mod maildrop;
pub mod session;

use std::collections::HashSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Wrong user or password.
    Invalid,
    /// Too many failures from this address or network: try later.
    Throttled,
}

/// Checks user credentials behind the shared login throttle.
pub trait Pop3Auth: Send + Sync + 'static {
    /// Ok(canonical lower-case address), or why not.
    fn login(
        &self,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> impl Future<Output = Result<String, LoginRefused>> + Send;
}

/// Maildrops locked by a POP3 session (RFC 1939 §8: exclusive access),
/// shared by the `pop3` and `pop3s` listeners.
#[derive(Debug, Default)]
pub struct MaildropLocks(Mutex<HashSet<String>>);

/// A held maildrop lock; dropping it releases the maildrop.
#[derive(Debug)]
pub struct MaildropLock {
    locks: Arc<MaildropLocks>,
    address: String,
}

impl MaildropLocks {
    /// A fresh, empty set.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Lock `address`'s maildrop, unless another session has it.
    pub fn try_lock(self: &Arc<Self>, address: &str) -> Option<MaildropLock> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.insert(address.to_string()).then(|| MaildropLock {
            locks: self.clone(),
            address: address.to_string(),
        })
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        let mut g = self.locks.0.lock().unwrap_or_else(|p| p.into_inner());
        g.remove(&self.address);
    }
}

/// Settings of one POP3 listener.
#[derive(Clone)]
pub struct Pop3Config {
    /// Every user's mailbox.
    pub mailboxes: crate::store::mailbox::Mailboxes,
    /// Host name in the greeting.
    pub hostname: String,
    /// TLS from the first byte (pop3s, 995) instead of STLS (110).
    pub implicit_tls: bool,
    /// Server TLS context.
    pub tls: crate::tls::Acceptor,
    /// Silence allowed between commands (RFC 1939 §3: at least 10 minutes).
    pub idle_timeout: Duration,
    /// Longest time for one command line, from its first byte to its end.
    pub command_timeout: Duration,
    /// Longest time for one `RETR` or `TOP` response to be written.
    pub data_timeout: Duration,
    /// Maximum simultaneous connections.
    pub max_connections: usize,
    /// Maximum simultaneous connections from one client host.
    pub max_connections_per_ip: usize,
    /// Bad commands and failed logins answered in one session; the next ends it.
    pub max_bad_commands: usize,
    /// Maildrops in use (share one between the listeners).
    pub locks: Arc<MaildropLocks>,
    /// Open connections, for the metrics.
    pub connections: crate::metrics::ConnectionGauge,
    /// A PROXY protocol v2 header first on every connection
    /// (`[listen] proxy_protocol`).
    pub proxy_protocol: bool,
}

impl Pop3Config {
    /// A configuration with the usual defaults for the other knobs.
    pub fn new(
        mailboxes: crate::store::mailbox::Mailboxes,
        implicit_tls: bool,
        tls: crate::tls::Acceptor,
    ) -> Self {
        Self {
            hostname: mailboxes.hostname().to_string(),
            mailboxes,
            implicit_tls,
            tls,
            idle_timeout: Duration::from_secs(10 * 60),
            command_timeout: Duration::from_secs(5 * 60),
            data_timeout: Duration::from_secs(10 * 60),
            max_connections: 1000,
            max_connections_per_ip: 20,
            max_bad_commands: 20,
            locks: MaildropLocks::new(),
            connections: crate::metrics::ConnectionGauge::detached(),
            proxy_protocol: false,
        }
    }
}

/// Accept connections until `shutdown` turns true; each one gets a session task.
///
/// `cfg` may be a [`crate::live::Live`] cell: each connection takes the
/// settings current when it is accepted (see [`crate::accept`]).
pub async fn serve<A: Pop3Auth>(
    listener: TcpListener,
    cfg: impl Into<crate::live::Live<Pop3Config>>,
    auth: Arc<A>,
    shutdown: watch::Receiver<bool>,
) {
    crate::accept::serve(
        "pop3",
        listener,
        cfg.into(),
        shutdown,
        session::refuse,
        move |tcp, ip, cfg, sd| session::run(tcp, ip, cfg, auth.clone(), sd),
    )
    .await
}

crate::accept::admission_from_fields!(Pop3Config);

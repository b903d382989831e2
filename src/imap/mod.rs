//! Mailbox access for users: an IMAP4rev1 server over the Maildir store.
//!
//! Shape (mini-redis style): [`serve`] takes an already bound listener and a
//! shutdown signal; one task per connection ([`session`]); a semaphore caps
//! connections. The wire format is imap-codec's: its `Fragmentizer` splits
//! lines and literals (so an oversized literal is skipped without desyncing
//! the stream) and its codecs parse commands and serialise every response.
//! The mailbox model ([`crate::store::mailbox`]: UIDs, flags, folders, shared with the web) and the message
//! structure ([`mime`]) are ours; commands on them run on blocking threads
//! ([`engine`]) because they are file-system work.
//!
//! Security rules (issue 4): LOGIN and AUTHENTICATE PLAIN only over TLS
//! (`LOGINDISABLED` before STARTTLS); failed logins are slowed down per
//! address and per network ([`crate::throttle`]); a session only ever resolves
//! names inside its own user's Maildir.
//!
//! Abuse limits (issue 9): connections per client host, a deadline for each
//! whole command (a client trickling bytes is cut off), and `* BYE` after
//! `max_bad_commands` BAD or failed-login answers.

pub mod engine;
pub mod mime;
pub mod session;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::throttle::LoginThrottle;

/// Checks user credentials (the same users as SMTP submission).
pub trait ImapAuth: Send + Sync + 'static {
    /// Ok(canonical lower-case address) or Err(()) for bad credentials.
    fn authenticate(
        &self,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> impl Future<Output = Result<String, ()>> + Send;

    /// The user's mailbox quota in bytes (`None`: no limit), read at login.
    fn quota(&self, _address: &str) -> impl Future<Output = Option<u64>> + Send {
        async { None }
    }
}

/// Settings of one IMAP listener.
#[derive(Clone)]
pub struct ImapConfig {
    /// Every user's mailbox.
    pub mailboxes: crate::store::mailbox::Mailboxes,
    /// Host name in the greeting.
    pub hostname: String,
    /// TLS from the first byte (imaps, 993) instead of STARTTLS (143).
    pub implicit_tls: bool,
    /// Server TLS context.
    pub tls: crate::tls::Acceptor,
    /// Largest literal accepted (APPEND size limit), in bytes.
    pub max_literal: usize,
    /// Inactivity timeout (RFC 3501 asks for at least 30 minutes).
    pub idle_timeout: Duration,
    /// How often a selected or idling session looks at the Maildir.
    pub poll_interval: Duration,
    /// Maximum simultaneous connections.
    pub max_connections: usize,
    /// Maximum simultaneous connections from one client host; more get `* BYE`.
    pub max_connections_per_ip: usize,
    /// Longest time for one command, from its first byte to its last.
    pub command_timeout: Duration,
    /// Longest time for one command carrying literals (APPEND).
    pub data_timeout: Duration,
    /// BAD or failed-login commands answered in one session; the next gets `* BYE`.
    pub max_bad_commands: usize,
    /// Login throttle (share it with SMTP AUTH).
    pub throttle: Arc<LoginThrottle>,
    /// Open connections, for the metrics.
    pub connections: crate::metrics::ConnectionGauge,
    /// A PROXY protocol v2 header first on every connection
    /// (`[listen] proxy_protocol`).
    pub proxy_protocol: bool,
}

impl ImapConfig {
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
            max_literal: 64 * 1024 * 1024,
            idle_timeout: Duration::from_secs(30 * 60),
            poll_interval: Duration::from_millis(250),
            max_connections: 1000,
            max_connections_per_ip: 20,
            command_timeout: Duration::from_secs(5 * 60),
            data_timeout: Duration::from_secs(10 * 60),
            max_bad_commands: 20,
            throttle: Arc::new(LoginThrottle::default()),
            connections: crate::metrics::ConnectionGauge::detached(),
            proxy_protocol: false,
        }
    }
}

/// Accept connections until `shutdown` turns true; each one gets a session task.
///
/// `cfg` may be a [`crate::live::Live`] cell: each connection takes the
/// settings current when it is accepted (see [`crate::accept`]).
pub async fn serve<A: ImapAuth>(
    listener: TcpListener,
    cfg: impl Into<crate::live::Live<ImapConfig>>,
    auth: Arc<A>,
    shutdown: watch::Receiver<bool>,
) {
    crate::accept::serve(
        "imap",
        listener,
        cfg.into(),
        shutdown,
        session::refuse,
        move |tcp, ip, cfg, sd| session::run(tcp, ip, cfg, auth.clone(), sd),
    )
    .await
}

crate::accept::admission_from_fields!(ImapConfig);

/// Create an empty Maildir (and the default Sent/Drafts/Trash folders) for a new user.
pub fn create_mailbox(mail_root: &Path, address: &str) -> std::io::Result<PathBuf> {
    crate::store::mailbox::create_user(mail_root, address).map_err(|e| match e {
        crate::store::mailbox::StoreError::Io(e) => e,
        other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
    })
}

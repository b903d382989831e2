//! SMTP server protocol engine shared by the PEC access point (submission,
//! `Mode::Submission`) and the reception point (inbound MX, `Mode::Inbound`).
//!
//! Everything protocol-level lives here; what to do with a sender, a
//! recipient or a message is the [`Backend`]'s business (the PEC logic).
//!
//! Shape (after mini-redis and Stalwart):
//! - [`serve`] takes an already bound listener and a shutdown signal, caps
//!   connections with a semaphore and drains sessions on shutdown.
//! - a session is one `enum State` whose variants are named after what they
//!   wait for; it is generic over the stream so plain TCP and TLS share code.
//! - parsing is sans-IO: [`command::parse`] takes one line, [`data::DataReader`]
//!   takes bytes in any chunking; both are table-tested against hostile input
//!   (the SMTP smuggling table sits next to the DATA parser).
//! - every reply comes from a constructor in [`reply`].

pub mod command;
pub mod data;
mod incoming;
mod listener;
pub mod reply;
mod session;
pub mod stream;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::memory::MemoryBudget;

pub use incoming::remove_leftovers as remove_spool_leftovers;
pub use incoming::unlinked_file as unlinked_spool_file;
pub use listener::serve;
pub use reply::Reply;
pub use stream::{SmtpStream, Stream};

/// Which side of the PEC provider a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Access point: users submit mail; AUTH (over TLS) is required before MAIL.
    Submission,
    /// Reception point: other providers deliver to us; no AUTH offered.
    Inbound,
}

/// Listener configuration.
#[derive(Clone)]
pub struct SmtpConfig {
    /// Our name in the banner (`220 <hostname> ESMTP pecd`) and the EHLO reply.
    pub hostname: String,
    /// Submission or inbound.
    pub mode: Mode,
    /// TLS handshake right after accept (port 465); needs `tls`.
    pub implicit_tls: bool,
    /// TLS context; STARTTLS is offered when set and the session is not yet encrypted.
    pub tls: Option<crate::tls::Acceptor>,
    /// Largest message accepted (advertised with SIZE), in bytes.
    pub max_message_size: usize,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// Longest time for one command line, from our last reply to its line end.
    pub command_timeout: Duration,
    /// Longest DATA phase, from 354 to the terminator.
    pub data_timeout: Duration,
    /// Concurrent sessions; more are told `421 4.7.0` and closed.
    pub max_connections: usize,
    /// Concurrent sessions from one client host; more are told `421 4.7.0` and closed.
    pub max_connections_per_ip: usize,
    /// Networks whose hosts get `max_connections_per_peer` instead (peer
    /// providers; the inbound listener only).
    pub peer_networks: Vec<crate::throttle::IpNet>,
    /// Concurrent sessions from one host of `peer_networks`.
    pub max_connections_per_peer: usize,
    /// Bad commands (refused MAIL/RCPT included) tolerated before `421 4.7.0` and close.
    pub max_errors: usize,
    /// Open connections, for the metrics.
    pub connections: crate::metrics::ConnectionGauge,
    /// Memory shared by every session's message bytes (`[limits] memory_budget`).
    pub memory: Arc<MemoryBudget>,
    /// DATA bytes a session keeps in memory before it spools them to a file.
    pub spool_threshold: usize,
    /// Where DATA past `spool_threshold` goes (unlinked files).
    pub spool_dir: PathBuf,
    /// Memory the backend needs for a finished message, as a multiple of its
    /// size; reserved before it is handed over.
    pub message_memory_factor: usize,
    /// How long a finished message waits for that memory before `452 4.3.1`.
    pub memory_wait: Duration,
    /// A PROXY protocol v2 header first on every connection
    /// (`[listen] proxy_protocol`); its client stands for the TCP peer.
    pub proxy_protocol: bool,
}

/// Default [`SmtpConfig::spool_threshold`]: well above a usual PEC message,
/// so the fast path never touches the disk.
pub const DEFAULT_SPOOL_THRESHOLD: usize = 256 * 1024;

impl SmtpConfig {
    /// A configuration with the usual defaults (RFC 5321 §4.5.3.2 timeouts).
    pub fn new(hostname: impl Into<String>, mode: Mode) -> Self {
        SmtpConfig {
            hostname: hostname.into(),
            mode,
            implicit_tls: false,
            tls: None,
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            command_timeout: Duration::from_secs(5 * 60),
            data_timeout: Duration::from_secs(10 * 60),
            max_connections: 256,
            max_connections_per_ip: 20,
            peer_networks: Vec::new(),
            max_connections_per_peer: 100,
            max_errors: 10,
            connections: crate::metrics::ConnectionGauge::detached(),
            memory: MemoryBudget::unlimited(),
            spool_threshold: DEFAULT_SPOOL_THRESHOLD,
            spool_dir: std::env::temp_dir(),
            message_memory_factor: 1,
            memory_wait: Duration::from_secs(5),
            proxy_protocol: false,
        }
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("hostname", &self.hostname)
            .field("mode", &self.mode)
            .field("implicit_tls", &self.implicit_tls)
            .field("tls", &self.tls.is_some())
            .field("max_message_size", &self.max_message_size)
            .field("max_recipients", &self.max_recipients)
            .field("command_timeout", &self.command_timeout)
            .field("data_timeout", &self.data_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("peer_networks", &self.peer_networks)
            .field("max_connections_per_peer", &self.max_connections_per_peer)
            .field("max_errors", &self.max_errors)
            .field("memory_budget", &self.memory.limit())
            .field("spool_threshold", &self.spool_threshold)
            .field("spool_dir", &self.spool_dir)
            .field("message_memory_factor", &self.message_memory_factor)
            .field("memory_wait", &self.memory_wait)
            .field("proxy_protocol", &self.proxy_protocol)
            .finish()
    }
}

/// What the backend knows about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Client address.
    pub peer: SocketAddr,
    /// True once the channel is encrypted (implicit TLS or STARTTLS).
    pub tls: bool,
    /// Name given in EHLO/HELO.
    pub helo: Option<String>,
    /// Canonical address returned by [`Backend::authenticate`].
    pub auth_user: Option<String>,
}

/// The current transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse-path without `<>`, `""` for the null sender.
    pub mail_from: String,
    /// Accepted forward-paths, in order.
    pub rcpt_to: Vec<String>,
    /// `SIZE=` given with MAIL.
    pub size_param: Option<usize>,
    /// `BODY=8BITMIME` given with MAIL.
    pub body_8bit: bool,
}

/// The PEC logic behind a listener. Errors are complete SMTP replies
/// (build them with [`Reply`] constructors).
pub trait Backend: Send + Sync + 'static {
    /// Check credentials; `Ok` carries the canonical user address.
    fn authenticate(
        &self,
        info: &SessionInfo,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<String, Reply>> + Send;

    /// Accept or refuse a reverse-path.
    fn mail_from(
        &self,
        info: &SessionInfo,
        from: &str,
    ) -> impl Future<Output = Result<(), Reply>> + Send;

    /// Accept or refuse one recipient; `env` holds those accepted so far.
    fn rcpt_to(
        &self,
        info: &SessionInfo,
        env: &Envelope,
        rcpt: &str,
    ) -> impl Future<Output = Result<(), Reply>> + Send;

    /// Take the message (exact bytes, dot-unstuffed, CRLF, terminator removed)
    /// and answer for it; answer 250 only once it is safely stored.
    fn data(
        &self,
        info: &SessionInfo,
        env: &Envelope,
        message: Vec<u8>,
    ) -> impl Future<Output = Reply> + Send;
}

//! Outbound SMTP to peer providers and ordinary MX hosts (lettre client,
//! native-tls, i.e. OpenSSL).
//!
//! Connections are pooled per next hop, so bursts to a busy peer reuse
//! them; a pooled connection is used without the NOOP probe lettre's own
//! pool sends before every message (a round trip per message): if it went
//! stale, the MAIL command fails before anything was sent, and the message
//! goes out on a fresh connection. MAIL, RCPT and DATA go in one write when
//! the peer offers PIPELINING (RFC 2920). TLS is required toward providers in the index (their
//! certificates must chain to `[trust] ca`) and opportunistic toward ordinary
//! domains, as most MX hosts on the open internet present certificates no one
//! could verify.

pub mod dns;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use lettre::address::Envelope;
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::Address;

/// How hard to insist on TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsPolicy {
    /// STARTTLS with a certificate verified against our trust roots.
    Required,
    /// STARTTLS when offered, certificate not verified; plain otherwise.
    Opportunistic,
}

/// Where to send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextHop {
    /// Host name or IP to connect to.
    pub host: String,
    /// Name the peer's TLS certificate must carry (the MX host name; else `host`).
    pub tls_name: String,
    /// TCP port.
    pub port: u16,
    /// TLS policy.
    pub tls: TlsPolicy,
}

/// The single classification of a delivery attempt: retries and notices read only this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The peer accepted the message.
    Sent,
    /// Try again later (connection refused, timeout, TLS failure, 4xx).
    Temporary(String),
    /// Do not try again (5xx, malformed addresses).
    Permanent(String),
}

/// Why the TLS settings for a next hop could not be made.
#[derive(Debug)]
enum TlsSetupError {
    /// The cache's lock was poisoned by a panic.
    Poisoned,
    /// A `[trust] ca` root is not a certificate lettre takes.
    Root(lettre::transport::smtp::Error),
    /// The native TLS connector refused the settings.
    Build(lettre::transport::smtp::Error),
}

impl std::error::Error for TlsSetupError {}

impl std::fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsSetupError::Poisoned => f.write_str("relay TLS cache poisoned"),
            TlsSetupError::Root(e) | TlsSetupError::Build(e) => write!(f, "{e}"),
        }
    }
}

/// Why a transaction on a client's own session ([`send_on`]) gave no reply
/// to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// MAIL got no reply (an I/O error or silence): nothing was sent.
    NoReplyToMail(String),
    /// A refusal, or a failure at a later step.
    Failed(Outcome),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NoReplyToMail(e)
            | SendError::Failed(Outcome::Temporary(e) | Outcome::Permanent(e)) => f.write_str(e),
            SendError::Failed(Outcome::Sent) => f.write_str("sent"),
        }
    }
}

impl std::error::Error for SendError {}

/// Classify a lettre error once, for every caller.
pub fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    let text = e.to_string();
    if e.is_permanent() {
        Outcome::Permanent(text)
    } else {
        // Transient replies, timeouts, TLS and connection failures, and
        // anything unknown: retrying is the choice that loses nothing.
        Outcome::Temporary(text)
    }
}

/// An open connection and whether its server takes pipelined commands.
struct Peer {
    conn: AsyncSmtpConnection,
    pipelining: bool,
}

/// A connection kept open for the next message, since `since`.
struct Idle {
    peer: Peer,
    since: Instant,
}

/// Pooled connections idle longer than this are closed, not reused.
const IDLE_MAX: Duration = Duration::from_secs(30);

/// Connections open at once to one next hop that is not a provider of the
/// index. A host caps connections per client IP (pecd's `[limits]
/// max_connections_per_ip` defaults to 20, as does Postfix's destination
/// concurrency): beyond it every extra attempt would be a `421` and a retry
/// minutes later, so jobs wait for a slot instead. Providers of the index
/// get `[queue] max_connections_per_peer`, as their operators can agree on
/// a higher cap (`[limits] peer_networks` on their side).
pub const MAX_PER_OTHER_HOST: usize = 20;

/// The SMTP client side of the provider.
pub struct Relay {
    hello: ClientId,
    roots: Vec<Vec<u8>>,
    timeout: Duration,
    pool_size: usize,
    /// Slots per next hop of a provider in the index ([`TlsPolicy::Required`]).
    per_peer: usize,
    /// TLS settings per hop, built once (building loads the system roots).
    tls: Mutex<HashMap<NextHop, TlsParameters>>,
    idle: Mutex<HashMap<NextHop, Vec<Idle>>>,
    /// Connection slots per next hop.
    slots: Mutex<HashMap<NextHop, Arc<Semaphore>>>,
}

/// Why a transaction failed.
enum Failed {
    /// MAIL got no reply (an I/O error or silence): nothing was sent, and on
    /// a pooled connection the peer has probably closed it meanwhile.
    Mail(String),
    /// A refusal, or a failure at any later step.
    After(Outcome),
}

/// `step` within `limit`; silence is a temporary failure named after the step.
async fn within<T>(
    limit: Duration,
    step: &str,
    f: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, Outcome> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(|e| classify(&e)),
        Err(_) => Err(Outcome::Temporary(format!(
            "no answer to {step} within {}s",
            limit.as_secs()
        ))),
    }
}

impl Relay {
    /// A relay that says `EHLO hello`, trusts the given PEM roots for required
    /// TLS, keeps up to `pool_size` connections open per next hop, and opens
    /// at most `per_peer` at once to a hop of a provider in the index.
    pub fn new(
        hello: &str,
        roots: Vec<Vec<u8>>,
        timeout: Duration,
        pool_size: u32,
        per_peer: usize,
    ) -> Relay {
        Relay {
            hello: ClientId::Domain(hello.to_string()),
            roots,
            timeout,
            pool_size: pool_size.max(1) as usize,
            per_peer: per_peer.max(1),
            tls: Mutex::new(HashMap::new()),
            idle: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn hop_slots(&self, hop: &NextHop) -> Arc<Semaphore> {
        let mut g = match self.slots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let n = match hop.tls {
            TlsPolicy::Required => self.per_peer,
            TlsPolicy::Opportunistic => MAX_PER_OTHER_HOST,
        };
        g.entry(hop.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(n)))
            .clone()
    }

    fn tls_parameters(&self, hop: &NextHop) -> Result<TlsParameters, TlsSetupError> {
        let mut cache = self.tls.lock().map_err(|_| TlsSetupError::Poisoned)?;
        if let Some(p) = cache.get(hop) {
            return Ok(p.clone());
        }
        let mut params = TlsParameters::builder(hop.tls_name.clone());
        params = match hop.tls {
            TlsPolicy::Required => {
                for pem in &self.roots {
                    let cert = Certificate::from_pem(pem).map_err(TlsSetupError::Root)?;
                    params = params.add_root_certificate(cert);
                }
                params
            }
            TlsPolicy::Opportunistic => params
                .dangerous_accept_invalid_certs(true)
                .dangerous_accept_invalid_hostnames(true),
        };
        let params = params.build_native().map_err(TlsSetupError::Build)?;
        cache.insert(hop.clone(), params.clone());
        Ok(params)
    }

    async fn connect(&self, hop: &NextHop) -> Result<Peer, Outcome> {
        let params = self
            .tls_parameters(hop)
            .map_err(|e| Outcome::Temporary(format!("TLS setup: {e}")))?;
        let tcp = tcp_connect(&hop.host, hop.port, self.timeout)
            .await
            .map_err(|e| {
                Outcome::Temporary(format!("connect to {}:{}: {e}", hop.host, hop.port))
            })?;
        let mut conn = within(
            self.timeout,
            "the greeting and EHLO",
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
        )
        .await?;
        let upgrade = match hop.tls {
            TlsPolicy::Required => true,
            TlsPolicy::Opportunistic => conn.can_starttls(),
        };
        if upgrade {
            within(self.timeout, "STARTTLS", conn.starttls(params, &self.hello)).await?;
        }
        // lettre keeps only the EHLO keywords it knows, and PIPELINING is not
        // one: ask once more, once per connection, to save two round trips on
        // every message sent over it.
        let ehlo = within(
            self.timeout,
            "EHLO",
            conn.command(Ehlo::new(self.hello.clone())),
        )
        .await?;
        let pipelining = ehlo.message().any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
        });
        Ok(Peer { conn, pipelining })
    }

    fn checkout(&self, hop: &NextHop) -> Option<Peer> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(hop)?;
        while let Some(i) = list.pop() {
            if i.since.elapsed() < IDLE_MAX && !i.peer.conn.has_broken() {
                return Some(i.peer);
            }
        }
        None
    }

    fn checkin(&self, hop: &NextHop, peer: Peer) {
        if peer.conn.has_broken() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(hop.clone()).or_default();
            // As many as jobs may send at once: one opened beyond the pool is
            // closed after a single message, a TLS handshake wasted.
            if list.len() < self.pool_size {
                list.push(Idle {
                    peer,
                    since: Instant::now(),
                });
            }
        }
    }

    /// Close pooled connections idle too long (housekeeping).
    pub fn prune_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            for list in idle.values_mut() {
                list.retain(|i| i.since.elapsed() < IDLE_MAX);
            }
            idle.retain(|_, list| !list.is_empty());
        }
    }

    /// One SMTP transaction on `conn`, each step within `limit`; the reply
    /// to the message. With `pipelining`, MAIL, RCPT and DATA leave in one
    /// write and their replies are read in order: one round trip where lock
    /// step takes two plus one per recipient. Each round trip costs two task
    /// wake-ups on a busy machine, and a next hop takes only so many
    /// connections at once, so they bound the relay's throughput.
    async fn transact(
        conn: &mut AsyncSmtpConnection,
        pipelining: bool,
        env: &Envelope,
        bytes: &[u8],
        limit: Duration,
    ) -> Result<Response, Failed> {
        let mut params = Vec::new();
        if !bytes.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let non_ascii = |a: &Address| !AsRef::<str>::as_ref(a).is_ascii();
        if (env.from().is_some_and(non_ascii) || env.to().iter().any(non_ascii))
            && conn.server_info().supports_feature(Extension::SmtpUtfEight)
        {
            params.push(MailParameter::SmtpUtfEight);
        }
        let mail = Mail::new(env.from().cloned(), params);
        let rcpts = env.to().iter().map(|to| Rcpt::new(to.clone(), vec![]));
        let first = if pipelining {
            // `command` writes the whole group and reads the first reply. No
            // message byte goes before DATA's 354, so a refusal anywhere in
            // the group (the connection is then closed) delivers nothing.
            let group: String = std::iter::once(mail.to_string())
                .chain(rcpts.clone().map(|r| r.to_string()))
                .chain(std::iter::once(Data.to_string()))
                .collect();
            conn.command(group)
        } else {
            conn.command(mail.to_string())
        };
        match tokio::time::timeout(limit, first).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.is_transient() || e.is_permanent() => {
                return Err(Failed::After(classify(&e)))
            }
            Ok(Err(e)) => return Err(Failed::Mail(e.to_string())),
            Err(_) => return Err(Failed::Mail("no answer to MAIL".into())),
        }
        for rcpt in rcpts {
            if pipelining {
                within(limit, "RCPT", conn.read_response()).await
            } else {
                within(limit, "RCPT", conn.command(rcpt)).await
            }
            .map_err(Failed::After)?;
        }
        if pipelining {
            within(limit, "DATA", conn.read_response()).await
        } else {
            within(limit, "DATA", conn.command(Data)).await
        }
        .map_err(Failed::After)?;
        within(limit, "the message", conn.message(bytes))
            .await
            .map_err(Failed::After)
    }

    /// Say QUIT and close a connection not to be reused; a peer that has
    /// gone silent does not hold us (a few seconds at most).
    async fn close(mut conn: AsyncSmtpConnection, limit: Duration) {
        let _ = tokio::time::timeout(limit.min(Duration::from_secs(5)), conn.abort()).await;
    }

    /// Send `bytes` as is to `hop` for `rcpts` in one transaction.
    pub async fn send(
        &self,
        hop: &NextHop,
        mail_from: &str,
        rcpts: &[String],
        bytes: &[u8],
    ) -> Outcome {
        let from = if mail_from.is_empty() {
            None
        } else {
            match mail_from.parse::<Address>() {
                Ok(a) => Some(a),
                Err(e) => return Outcome::Permanent(format!("bad sender {mail_from}: {e}")),
            }
        };
        let mut to = Vec::with_capacity(rcpts.len());
        for r in rcpts {
            match r.parse::<Address>() {
                Ok(a) => to.push(a),
                Err(e) => return Outcome::Permanent(format!("bad recipient {r}: {e}")),
            }
        }
        let env = match Envelope::new(from, to) {
            Ok(e) => e,
            Err(e) => return Outcome::Permanent(e.to_string()),
        };
        let Ok(_slot) = self.hop_slots(hop).acquire_owned().await else {
            return Outcome::Temporary("no connection slot for this hop".into());
        };
        let (mut peer, mut pooled) = match self.checkout(hop) {
            Some(p) => (p, true),
            None => match self.connect(hop).await {
                Ok(p) => (p, false),
                Err(o) => return o,
            },
        };
        loop {
            let sent =
                Self::transact(&mut peer.conn, peer.pipelining, &env, bytes, self.timeout).await;
            match sent {
                Ok(_) => {
                    self.checkin(hop, peer);
                    return Outcome::Sent;
                }
                Err(Failed::Mail(_)) if pooled => {
                    // Stale: the peer closed it while it waited in the pool.
                    Self::close(peer.conn, self.timeout).await;
                    pooled = false;
                    peer = match self.connect(hop).await {
                        Ok(p) => p,
                        Err(o) => return o,
                    };
                }
                Err(Failed::Mail(e)) => {
                    Self::close(peer.conn, self.timeout).await;
                    return Outcome::Temporary(e);
                }
                Err(Failed::After(o)) => {
                    Self::close(peer.conn, self.timeout).await;
                    return o;
                }
            }
        }
    }
}

/// One transaction on an open connection (a client that keeps its own
/// session, such as `pecd bench`), each step within `limit`; the reply to
/// the message. Lock step, as the bench's clients have always been: its
/// figures stay comparable with earlier builds'.
pub async fn send_on(
    conn: &mut AsyncSmtpConnection,
    env: &Envelope,
    bytes: &[u8],
    limit: Duration,
) -> Result<Response, SendError> {
    Relay::transact(conn, false, env, bytes, limit)
        .await
        .map_err(|f| match f {
            Failed::Mail(e) => SendError::NoReplyToMail(e),
            Failed::After(o) => SendError::Failed(o),
        })
}

/// A TCP connection to `host:port` (each address in turn, `timeout` each)
/// with Nagle's algorithm off. lettre writes the message and the final
/// `.` separately; with Nagle on, the `.` waited for the peer's delayed
/// ACK, 40 ms on Linux, on every transaction.
pub async fn tcp_connect(
    host: &str,
    port: u16,
    timeout: Duration,
) -> std::io::Result<tokio::net::TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                tcp.set_nodelay(true)?;
                return Ok(tcp);
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection timed out",
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
    }))
}

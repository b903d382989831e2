//! The accept loop the mailbox-access listeners share (IMAP, POP3).
//!
//! Each accepted connection takes the listener's settings current at that
//! moment from a [`Live`] cell and keeps them to its end, so a reload changes
//! what the next connection gets (TLS certificate, limits) and drops no
//! session. One host is checked against its own cap before the listener's,
//! so it cannot take every slot.
//!
//! Behind a load balancer (`[listen] proxy_protocol`) the host is the client
//! its PROXY header names, not the balancer: the balancer's connections are
//! then bounded by `max_connections` alone.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::live::Live;
use crate::metrics::{ConnectionGauge, OpenConnection};
use crate::throttle::{CapSlot, ConnectionCap, ConnectionLimit, ConnectionSlot};

/// What the loop reads of a listener's settings.
pub trait Admission: Send + Sync + 'static {
    /// Simultaneous connections allowed.
    fn max_connections(&self) -> usize;
    /// Simultaneous connections allowed from one client host.
    fn max_connections_per_ip(&self) -> usize;
    /// Whether the listener speaks TLS from the first byte.
    fn implicit_tls(&self) -> bool;
    /// Open connections, for the metrics.
    fn gauge(&self) -> &ConnectionGauge;
    /// Whether every connection starts with a PROXY protocol v2 header
    /// (`[listen] proxy_protocol`).
    fn proxy_protocol(&self) -> bool;
    /// How long a connection may take to send that header.
    fn proxy_header_timeout(&self) -> Duration;
}

/// [`Admission`] for a settings struct with the usual fields
/// (`max_connections`, `max_connections_per_ip`, `implicit_tls`, `connections`,
/// `proxy_protocol`, `command_timeout`).
macro_rules! admission_from_fields {
    ($ty:ty) => {
        impl $crate::accept::Admission for $ty {
            fn max_connections(&self) -> usize {
                self.max_connections
            }
            fn max_connections_per_ip(&self) -> usize {
                self.max_connections_per_ip
            }
            fn implicit_tls(&self) -> bool {
                self.implicit_tls
            }
            fn gauge(&self) -> &$crate::metrics::ConnectionGauge {
                &self.connections
            }
            fn proxy_protocol(&self) -> bool {
                self.proxy_protocol
            }
            fn proxy_header_timeout(&self) -> std::time::Duration {
                $crate::proxy::header_timeout(self.command_timeout)
            }
        }
    };
}
pub(crate) use admission_from_fields;

/// The caps one listener counts its connections under.
struct Caps {
    all: Arc<ConnectionCap>,
    per_ip: Arc<ConnectionLimit>,
    /// Connections still sending their PROXY header: they hold no slot yet
    /// (the client is not known), so they are bounded on their own.
    waiting: Arc<ConnectionCap>,
}

/// The slots an admitted connection holds to its end.
type Held = (ConnectionSlot, CapSlot);

impl Caps {
    fn new(c: &impl Admission) -> Caps {
        Caps {
            all: ConnectionCap::new(c.max_connections().max(1)),
            per_ip: ConnectionLimit::new(c.max_connections_per_ip()),
            waiting: ConnectionCap::new(c.max_connections().max(1)),
        }
    }

    /// The settings of a reload, from the next connection on.
    fn set(&self, c: &impl Admission) {
        self.all.set_max(c.max_connections().max(1));
        self.per_ip.set_max(c.max_connections_per_ip());
        self.waiting.set_max(c.max_connections().max(1));
    }

    /// Slots for a connection from `peer`, or what to tell it.
    fn admit(&self, proto: &'static str, peer: SocketAddr) -> Result<Held, &'static str> {
        let Some(slot) = self.per_ip.try_acquire(peer.ip()) else {
            tracing::warn!(%peer, "{proto} per-IP connection limit reached");
            return Err("too many connections from your address, try again later");
        };
        let Some(permit) = self.all.try_acquire() else {
            tracing::warn!(%peer, "{proto} connection limit reached");
            return Err("too many connections, try again later");
        };
        Ok((slot, permit))
    }
}

/// Run one admitted session to its end, holding its slots.
async fn run<F>(proto: &'static str, peer: SocketAddr, held: Held, open: OpenConnection, session: F)
where
    F: Future<Output = std::io::Result<()>>,
{
    let _held = (held, open);
    if let Err(e) = session.await {
        tracing::debug!(%peer, error = %e, "{proto} session ended with error");
    }
}

/// Accept on `listener` until `shutdown` turns true. `refuse` answers a
/// connection over a cap (in the protocol's words), `session` serves one
/// (its error, a client gone or a broken stream, is logged at debug level).
///
/// With [`Admission::proxy_protocol`] each connection first sends a PROXY
/// protocol v2 header, read in the connection's own task; the client it
/// names is the one counted, throttled and logged. A connection without a
/// valid header in time is closed without a byte sent.
pub async fn serve<C, R, RF, S, SF>(
    proto: &'static str,
    listener: TcpListener,
    live: Live<C>,
    mut shutdown: watch::Receiver<bool>,
    refuse: R,
    session: S,
) where
    C: Admission,
    R: Fn(TcpStream, bool, &'static str) -> RF + Send + Sync + 'static,
    RF: Future<Output = ()> + Send + 'static,
    S: Fn(TcpStream, IpAddr, Arc<C>, watch::Receiver<bool>) -> SF + Send + Sync + 'static,
    SF: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let caps = Arc::new(Caps::new(&*live.get()));
    let refusals = Arc::new(crate::proxy::RefusalLog::new(proto));
    let (refuse, session) = (Arc::new(refuse), Arc::new(session));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = crate::imap::session::wait_shutdown(&mut shutdown) => break,
        };
        let (mut tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "{proto} accept failed");
                // EMFILE and friends: give other tasks a moment to close.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let cfg = live.get();
        caps.set(&*cfg);
        if cfg.proxy_protocol() {
            let Some(waiting) = caps.waiting.try_acquire() else {
                refusals.refused(peer, &crate::proxy::Refused::Busy);
                continue;
            };
            let (caps, refusals, refuse, session, sd) = (
                caps.clone(),
                refusals.clone(),
                refuse.clone(),
                session.clone(),
                shutdown.clone(),
            );
            tasks.spawn(async move {
                let wait = cfg.proxy_header_timeout();
                let client = match crate::proxy::client_of(&mut tcp, peer, wait).await {
                    Ok(c) => c,
                    Err(e) => return refusals.refused(peer, &e),
                };
                drop(waiting);
                match caps.admit(proto, client) {
                    Err(why) => refuse(tcp, cfg.implicit_tls(), why).await,
                    Ok(held) => {
                        let open = cfg.gauge().open();
                        let s = session(tcp, client.ip(), cfg, sd);
                        run(proto, client, held, open, s).await
                    }
                }
            });
        } else {
            match caps.admit(proto, peer) {
                Err(why) => {
                    tokio::spawn(refuse(tcp, cfg.implicit_tls(), why));
                }
                Ok(held) => {
                    let open = cfg.gauge().open();
                    let s = session(tcp, peer.ip(), cfg, shutdown.clone());
                    tasks.spawn(run(proto, peer, held, open, s));
                }
            }
        }
        // Reap finished sessions so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    // Sessions see the same shutdown signal and say goodbye; give them a moment.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

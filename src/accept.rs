//! The accept loop the mailbox-access listeners share (IMAP, POP3).
//!
//! Each accepted connection takes the listener's settings current at that
//! moment from a [`Live`] cell and keeps them to its end, so a reload changes
//! what the next connection gets (TLS certificate, limits) and drops no
//! session. One host is checked against its own cap before the listener's,
//! so it cannot take every slot.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::live::Live;
use crate::metrics::ConnectionGauge;
use crate::throttle::{ConnectionCap, ConnectionLimit};

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
}

/// [`Admission`] for a settings struct with the usual fields
/// (`max_connections`, `max_connections_per_ip`, `implicit_tls`, `connections`).
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
        }
    };
}
pub(crate) use admission_from_fields;

/// Accept on `listener` until `shutdown` turns true. `refuse` answers a
/// connection over a cap (in the protocol's words), `session` serves one
/// (its error, a client gone or a broken stream, is logged at debug level).
pub async fn serve<C, R, RF, S, SF>(
    proto: &'static str,
    listener: TcpListener,
    live: Live<C>,
    mut shutdown: watch::Receiver<bool>,
    refuse: R,
    session: S,
) where
    C: Admission,
    R: Fn(TcpStream, bool, &'static str) -> RF,
    RF: Future<Output = ()> + Send + 'static,
    S: Fn(TcpStream, IpAddr, Arc<C>, watch::Receiver<bool>) -> SF,
    SF: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let first = live.get();
    let limit = ConnectionCap::new(first.max_connections().max(1));
    let per_ip = ConnectionLimit::new(first.max_connections_per_ip());
    drop(first);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = crate::imap::session::wait_shutdown(&mut shutdown) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "{proto} accept failed");
                // EMFILE and friends: give other tasks a moment to close.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let cfg = live.get();
        limit.set_max(cfg.max_connections().max(1));
        per_ip.set_max(cfg.max_connections_per_ip());
        let Some(slot) = per_ip.try_acquire(peer.ip()) else {
            tracing::warn!(%peer, "{proto} per-IP connection limit reached");
            tokio::spawn(refuse(
                tcp,
                cfg.implicit_tls(),
                "too many connections from your address, try again later",
            ));
            continue;
        };
        let Some(permit) = limit.try_acquire() else {
            tracing::warn!(%peer, "{proto} connection limit reached");
            tokio::spawn(refuse(
                tcp,
                cfg.implicit_tls(),
                "too many connections, try again later",
            ));
            continue;
        };
        let open = cfg.gauge().open();
        let run = session(tcp, peer.ip(), cfg, shutdown.clone());
        tasks.spawn(async move {
            let (_permit, _slot, _open) = (permit, slot, open);
            if let Err(e) = run.await {
                tracing::debug!(%peer, error = %e, "{proto} session ended with error");
            }
        });
        // Reap finished sessions so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    // Sessions see the same shutdown signal and say goodbye; give them a moment.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

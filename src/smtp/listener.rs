//! Accept loop: connection cap, implicit TLS, graceful drain (after mini-redis).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{timeout, Duration};
use tracing::{debug, error, info, warn, Instrument};

use super::reply::Reply;
use super::session::{wait_shutdown, Session};
use super::stream::Stream;
use super::{Backend, SmtpConfig};
use crate::live::Live;
use crate::throttle::{CapSlot, ConnectionCap, ConnectionLimit, ConnectionSlot};

/// Serve SMTP on an already bound listener until `shutdown` turns true, then
/// stop accepting, let every live session answer `421 4.3.2` at its next
/// command (idle ones at once) and return when all sessions are gone. The
/// caller bounds that drain with its own grace timeout.
///
/// `cfg` may be a [`Live`] cell: each connection takes the settings current
/// when it is accepted (TLS context, limits) and keeps them to its end, so a
/// reload changes what the next connection gets and drops no session.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    cfg: impl Into<Live<SmtpConfig>>,
    backend: Arc<B>,
    mut shutdown: watch::Receiver<bool>,
) {
    let live: Live<SmtpConfig> = cfg.into();
    let cfg = live.get();
    let local = listener.local_addr().ok();
    if cfg.implicit_tls && cfg.tls.is_none() {
        error!(
            ?local,
            "implicit TLS configured without a TLS context: connections will be closed"
        );
    }
    info!(?local, mode = ?cfg.mode, implicit_tls = cfg.implicit_tls, "SMTP listener up");
    let limit = ConnectionCap::new(cfg.max_connections);
    let per_ip = ConnectionLimit::new(cfg.max_connections_per_ip);
    // Connections still sending their PROXY header hold no slot yet.
    let waiting = ConnectionCap::new(cfg.max_connections);
    let refusals = Arc::new(crate::proxy::RefusalLog::new(match cfg.mode {
        super::Mode::Submission if cfg.implicit_tls => "submissions",
        super::Mode::Submission => "submission",
        super::Mode::Inbound => "inbound",
    }));
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = wait_shutdown(&mut shutdown) => break,
            Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                if let Err(e) = done {
                    error!(error = %e, "SMTP session task failed");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((mut tcp, peer)) => {
                    let cfg = live.get();
                    limit.set_max(cfg.max_connections);
                    per_ip.set_max(cfg.max_connections_per_ip);
                    waiting.set_max(cfg.max_connections);
                    // Pipelined replies are written in one go; don't let Nagle delay them.
                    let _ = tcp.set_nodelay(true);
                    if cfg.proxy_protocol {
                        // The client is known once its header is read, in
                        // the connection's own task.
                        let Some(wait) = waiting.try_acquire() else {
                            refusals.refused(peer, &crate::proxy::Refused::Busy);
                            continue;
                        };
                        let (limit, per_ip, refusals) = (limit.clone(), per_ip.clone(), refusals.clone());
                        let (backend, rx) = (backend.clone(), shutdown.clone());
                        sessions.spawn(async move {
                            let deadline = crate::proxy::header_timeout(cfg.command_timeout);
                            let client = match crate::proxy::client_of(&mut tcp, peer, deadline).await {
                                Ok(c) => c,
                                Err(e) => return refusals.refused(peer, &e),
                            };
                            drop(wait);
                            let span = tracing::info_span!("smtp", peer = %client);
                            match admit(&limit, &per_ip, client, &cfg) {
                                Ok(held) => handle(tcp, client, cfg, backend, rx, held).instrument(span).await,
                                Err(reply) => refuse(tcp, cfg, reply).instrument(span).await,
                            }
                        });
                        continue;
                    }
                    let span = tracing::info_span!("smtp", %peer);
                    match admit(&limit, &per_ip, peer, &cfg) {
                        Ok(held) => {
                            let (backend, rx) = (backend.clone(), shutdown.clone());
                            sessions.spawn(handle(tcp, peer, cfg, backend, rx, held).instrument(span));
                        }
                        Err(reply) => {
                            sessions.spawn(refuse(tcp, cfg, reply).instrument(span));
                        }
                    }
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning on the error.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    info!(
        ?local,
        live = sessions.len(),
        "SMTP listener closed, draining sessions"
    );
    while let Some(done) = sessions.join_next().await {
        if let Err(e) = done {
            error!(error = %e, "SMTP session task failed");
        }
    }
    info!(?local, "SMTP listener drained");
}

/// The slots a session holds to its end.
type Held = (ConnectionSlot, CapSlot);

/// Slots for a session from `peer`, or the reply that refuses it. One host
/// must not take every slot: its own cap is checked first. A peer
/// provider's relay legitimately opens many at once.
fn admit(
    limit: &Arc<ConnectionCap>,
    per_ip: &Arc<ConnectionLimit>,
    peer: SocketAddr,
    cfg: &SmtpConfig,
) -> Result<Held, Reply> {
    let host_cap = if cfg.peer_networks.iter().any(|n| n.contains(peer.ip())) {
        cfg.max_connections_per_peer
    } else {
        cfg.max_connections_per_ip
    };
    let slot = per_ip
        .try_acquire_up_to(peer.ip(), host_cap)
        .ok_or_else(Reply::too_many_from_ip)?;
    let permit = limit.try_acquire().ok_or_else(Reply::busy)?;
    Ok((slot, permit))
}

async fn handle<B: Backend>(
    tcp: TcpStream,
    peer: SocketAddr,
    cfg: Arc<SmtpConfig>,
    backend: Arc<B>,
    shutdown: watch::Receiver<bool>,
    _held: Held,
) {
    let _open = cfg.connections.open();
    let stream = if cfg.implicit_tls {
        let Some(acceptor) = cfg.tls.as_ref() else {
            return;
        };
        match timeout(cfg.command_timeout, crate::tls::accept(acceptor, tcp)).await {
            Ok(Ok(s)) => Stream::Tls(Box::new(s)),
            Ok(Err(e)) => {
                info!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                info!("TLS handshake timed out");
                return;
            }
        }
    } else {
        Stream::Plain(tcp)
    };
    Session::new(stream, peer, cfg, backend, shutdown)
        .run()
        .await;
}

/// Over a connection cap: say so and close, without holding a slot.
async fn refuse(mut tcp: TcpStream, cfg: Arc<SmtpConfig>, reply: Reply) {
    warn!(reply = %reply, "connection limit reached, refusing");
    // A TLS client could not read a plaintext reply; it just sees the close.
    if cfg.implicit_tls {
        return;
    }
    let _ = timeout(Duration::from_secs(10), async {
        tcp.write_all(&reply.to_wire()).await?;
        tcp.shutdown().await
    })
    .await;
    debug!("refused connection closed");
}

//! The reception point's SMTP side (MX for our domains).
//!
//! Nothing is judged here beyond "is this recipient ours": the message is
//! stored as received (exact bytes) with an `inbound` job in one transaction,
//! answered `250`, and the worker runs the checks of `pec-spec.md` §5.2. That
//! keeps a peer's session short and makes every verdict survive a crash.

use std::sync::Arc;

use crate::smtp::{Backend, Envelope, Reply, SessionInfo};
use crate::store;
use crate::store::log::{Event, EventKind};
use crate::store::queue::{self, Kind, NewJob};

use super::Ctx;

/// Messages up to this size are spooled by the store's writer thread.
const INLINE_BLOB_MAX: usize = crate::smtp::DEFAULT_SPOOL_THRESHOLD;

/// Backend of the inbound listener.
pub struct InboundBackend {
    ctx: Arc<Ctx>,
}

impl InboundBackend {
    /// Backend for `ctx`.
    pub fn new(ctx: Arc<Ctx>) -> InboundBackend {
        InboundBackend { ctx }
    }
}

impl Backend for InboundBackend {
    async fn authenticate(
        &self,
        _info: &SessionInfo,
        _user: &str,
        _password: &str,
    ) -> Result<String, Reply> {
        Err(Reply::auth_mechanism_unsupported())
    }

    async fn mail_from(&self, _info: &SessionInfo, _from: &str) -> Result<(), Reply> {
        Ok(())
    }

    async fn rcpt_to(&self, _info: &SessionInfo, _env: &Envelope, rcpt: &str) -> Result<(), Reply> {
        if self.ctx.is_local(rcpt) {
            Ok(())
        } else {
            Err(Reply::relay_denied())
        }
    }

    async fn data(&self, info: &SessionInfo, env: &Envelope, message: Vec<u8>) -> Reply {
        let now = self.ctx.unix_ms();
        let mail_from = env.mail_from.clone();
        let recipients: Vec<String> = env.rcpt_to.iter().map(|r| r.to_ascii_lowercase()).collect();
        let job = move |blob: &str| NewJob {
            key: format!("inbound:{blob}"),
            kind: Kind::Inbound,
            identificativo: None,
            mail_from,
            recipients,
            next_hop: None,
            blob: Some(crate::flow::batch::BlobRef::Spooled(blob.to_string())),
            data: None,
            due_at: now,
        };
        let mut ev = Event::new(EventKind::Ricezione, now);
        ev.sender = Some(env.mail_from.clone());
        ev.recipients = Some(env.rcpt_to.join(", "));
        ev.detail = Some(format!(
            "from {} helo {}",
            info.peer,
            info.helo.clone().unwrap_or_default()
        ));
        let st = self.ctx.store.clone();
        let r = if message.len() <= INLINE_BLOB_MAX {
            // Appended by the writer thread in the transaction that names it
            // (the writer syncs the spool before it commits): the peer's 250
            // waits for one hand-off between threads instead of two. A peer
            // has a bounded number of connections to us (20, or `[limits]
            // max_connections_per_peer`) and one message in flight on each,
            // so this wait bounds how fast it can send.
            self.ctx
                .store
                .write(move |c| {
                    let blob = st.put_blob(&message)?;
                    store::log::append(c, &ev)?;
                    queue::enqueue(c, &job(&blob), now)?;
                    Ok(blob)
                })
                .await
        } else {
            // Copying a large message on the writer would hold up every commit.
            let blob = match tokio::task::spawn_blocking(move || st.put_blob(&message)).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "spool write failed");
                    return Reply::local_error();
                }
                Err(e) => {
                    tracing::error!(error = %e, "spool task failed");
                    return Reply::local_error();
                }
            };
            self.ctx
                .store
                .write(move |c| {
                    store::log::append(c, &ev)?;
                    queue::enqueue(c, &job(&blob), now)?;
                    Ok(blob)
                })
                .await
        };
        match r {
            Ok(blob) => {
                self.ctx.wake.notify_one();
                Reply::queued(&blob)
            }
            Err(e) => {
                tracing::error!(error = %e, "inbound commit failed");
                Reply::local_error()
            }
        }
    }
}

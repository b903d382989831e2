//! The reception point's SMTP side (MX for our domains).
//!
//! Nothing is judged here beyond "is this recipient ours": the message is
//! stored as received (exact bytes) with an `inbound` job in one transaction,
//! answered `250`, and the scheduler's judge job (`jobs::judge`) runs the checks of `pec-spec.md` §5.2. That
//! keeps a peer's session short and makes every verdict survive a crash.

use std::sync::Arc;

use crate::flow::batch::{Batch, Event, EventKind, JobKind as Kind, NewBlob, NewJob};
use crate::smtp::{Backend, Envelope, Reply, SessionInfo};

use super::Ctx;

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
        let mut batch = Batch::at(now);
        // Small messages are appended by the store's writer thread in the
        // transaction that names them (the writer syncs the spool before it
        // commits): the peer's 250 waits for one hand-off between threads
        // instead of two. A peer has a bounded number of connections to us
        // (20, or `[limits] max_connections_per_peer`) and one message in
        // flight on each, so this wait bounds how fast it can send.
        let blob = batch.blob(NewBlob::Bytes(message));
        let mut ev = Event::new(EventKind::Ricezione, now);
        ev.sender = Some(env.mail_from.clone());
        ev.recipients = Some(env.rcpt_to.join(", "));
        ev.detail = Some(format!(
            "from {} helo {}",
            info.peer,
            info.helo.clone().unwrap_or_default()
        ));
        batch.log(ev);
        batch.jobs.push(NewJob {
            // Keyed by the spool name the store gives the bytes.
            key: String::new(),
            kind: Kind::Inbound,
            identificativo: None,
            mail_from: env.mail_from.clone(),
            recipients: env.rcpt_to.iter().map(|r| r.to_ascii_lowercase()).collect(),
            next_hop: None,
            blob: Some(blob),
            data: None,
            due_at: now,
        });
        batch.taker = Some(self.ctx.taker());
        match self.ctx.store.commit(batch).await {
            Ok(c) => {
                let reply = Reply::queued(c.blobs.first().map_or("", String::as_str));
                self.ctx.hand_over(c.taken);
                reply
            }
            Err(e) => {
                tracing::error!(error = %e, "inbound commit failed");
                Reply::local_error()
            }
        }
    }
}

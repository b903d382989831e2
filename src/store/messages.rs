//! The messages this provider accepted: one row per busta di trasporto, with
//! the daticert it certified (what later receipts and notices are built from).

use serde::Serialize;

use super::{Result, Store};

pub use crate::flow::batch::MessageRow as Accepted;

/// One accepted submission as the `messages` table keeps it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SentMessage {
    /// Identificativo of its busta.
    pub identificativo: String,
    /// The user's own Message-ID, with angle brackets, if it had one.
    pub msgid: Option<String>,
    /// The sender.
    pub sender: String,
    /// Original subject.
    pub subject: String,
    /// Recipients with type, as in the log.
    pub recipients: String,
    /// Receipt type requested.
    pub receipt_type: String,
    /// Acceptance time, Unix ms.
    pub accepted_at: i64,
}

/// What the timers and the log say of a sent message's recipients so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// When each certified recipient was taken in charge (Unix ms).
    pub presa: Vec<(String, i64)>,
    /// The ordinary recipients not delivered for good: (recipient, when in
    /// Unix ms, the error).
    pub esterno_failures: Vec<(String, i64, String)>,
}

impl Store {
    /// Messages `sender` submitted, newest first.
    pub async fn sent_by(
        &self,
        sender: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<SentMessage>> {
        let s = sender.to_string();
        self.read(move |db| db.sent_by(&s, offset, limit)).await
    }

    /// The message `sender` submitted with this Message-ID.
    pub async fn sent_with_msgid(&self, sender: &str, msgid: &str) -> Result<Option<SentMessage>> {
        let (s, m) = (sender.to_string(), msgid.to_string());
        self.read(move |db| db.sent_with_msgid(&s, &m)).await
    }

    /// Blocking form of [`Store::sent_with_msgid`].
    pub fn sent_with_msgid_blocking(
        &self,
        sender: &str,
        msgid: &str,
    ) -> Result<Option<SentMessage>> {
        self.read_blocking(|db| db.sent_with_msgid(sender, msgid))
    }

    /// The daticert.xml of a message we accepted, if we did.
    pub fn daticert_blocking(&self, identificativo: &str) -> Result<Option<String>> {
        self.read_blocking(|db| db.message_daticert(identificativo))
    }

    /// When we accepted a message (Unix ms), if we did.
    pub fn accepted_at_blocking(&self, identificativo: &str) -> Result<Option<i64>> {
        self.read_blocking(|db| db.message_accepted_at(identificativo))
    }

    /// The progress of message `identificativo` (one read).
    pub async fn progress(&self, identificativo: &str) -> Result<Progress> {
        let id = identificativo.to_string();
        self.read(move |db| {
            Ok(Progress {
                presa: db.presa_times(&id)?,
                esterno_failures: db.esterno_failures(&id)?,
            })
        })
        .await
    }
}

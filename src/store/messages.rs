//! The messages this provider accepted: one row per busta di trasporto, with
//! the daticert it certified (what later receipts and notices are built from).

use rusqlite::{params, OptionalExtension};

use serde::Serialize;

use super::{Db, Result, Store};

pub use crate::flow::batch::MessageRow as Accepted;

/// Record an accepted message.
pub fn insert(db: &Db<'_>, m: &Accepted) -> Result<()> {
    db.sql()
        .prepare_cached(
            "INSERT INTO messages(identificativo, msgid, sender, subject, recipients, receipt_type, daticert, accepted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            m.identificativo,
            m.msgid,
            m.sender,
            m.subject,
            m.recipients,
            m.receipt_type,
            m.daticert,
            m.accepted_at
        ])?;
    Ok(())
}

/// The daticert.xml of a message we accepted, if we did.
pub fn daticert_of(db: &Db<'_>, identificativo: &str) -> Result<Option<String>> {
    Ok(db
        .sql()
        .query_row(
            "SELECT daticert FROM messages WHERE identificativo = ?1",
            [identificativo],
            |r| r.get(0),
        )
        .optional()?)
}

/// The message we accepted as `identificativo`, if we did.
pub fn get(db: &Db<'_>, identificativo: &str) -> Result<Option<Accepted>> {
    Ok(db
        .sql()
        .prepare_cached(
            "SELECT identificativo, msgid, sender, subject, recipients, receipt_type, daticert, accepted_at
             FROM messages WHERE identificativo = ?1",
        )?
        .query_row([identificativo], |r| {
            Ok(Accepted {
                identificativo: r.get(0)?,
                msgid: r.get(1)?,
                sender: r.get(2)?,
                subject: r.get(3)?,
                recipients: r.get(4)?,
                receipt_type: r.get(5)?,
                daticert: r.get(6)?,
                accepted_at: r.get(7)?,
            })
        })
        .optional()?)
}

/// When we accepted a message (Unix ms), if we did.
pub fn accepted_at(db: &Db<'_>, identificativo: &str) -> Result<Option<i64>> {
    Ok(db
        .sql()
        .query_row(
            "SELECT accepted_at FROM messages WHERE identificativo = ?1",
            [identificativo],
            |r| r.get(0),
        )
        .optional()?)
}

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

fn sent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SentMessage> {
    Ok(SentMessage {
        identificativo: r.get(0)?,
        msgid: r.get(1)?,
        sender: r.get(2)?,
        subject: r.get(3)?,
        recipients: r.get(4)?,
        receipt_type: r.get(5)?,
        accepted_at: r.get(6)?,
    })
}

/// Messages `sender` submitted, newest first.
pub fn sent_by(db: &Db<'_>, sender: &str, offset: usize, limit: usize) -> Result<Vec<SentMessage>> {
    let conn = db.sql();
    let mut st = conn.prepare_cached(
        "SELECT identificativo, msgid, sender, subject, recipients, receipt_type, accepted_at
           FROM messages WHERE sender = ?1 COLLATE NOCASE
          ORDER BY accepted_at DESC, identificativo DESC LIMIT ?2 OFFSET ?3",
    )?;
    let rows = st.query_map(params![sender, limit as i64, offset as i64], sent_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The message `sender` submitted with this Message-ID (brackets optional).
pub fn sent_with_msgid(db: &Db<'_>, sender: &str, msgid: &str) -> Result<Option<SentMessage>> {
    let conn = db.sql();
    use rusqlite::OptionalExtension;
    let bare = msgid.trim().trim_matches(|c| c == '<' || c == '>');
    Ok(conn
        .prepare_cached(
            "SELECT identificativo, msgid, sender, subject, recipients, receipt_type, accepted_at
           FROM messages WHERE msgid IN (?2, ?3) AND sender = ?1 COLLATE NOCASE
          ORDER BY accepted_at DESC LIMIT 1",
        )?
        .query_row(params![sender, format!("<{bare}>"), bare], sent_row)
        .optional()?)
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
        self.read(move |db| sent_by(db, &s, offset, limit)).await
    }

    /// The message `sender` submitted with this Message-ID.
    pub async fn sent_with_msgid(&self, sender: &str, msgid: &str) -> Result<Option<SentMessage>> {
        let (s, m) = (sender.to_string(), msgid.to_string());
        self.read(move |db| sent_with_msgid(db, &s, &m)).await
    }

    /// Blocking form of [`Store::sent_with_msgid`].
    pub fn sent_with_msgid_blocking(
        &self,
        sender: &str,
        msgid: &str,
    ) -> Result<Option<SentMessage>> {
        self.read_blocking(|db| sent_with_msgid(db, sender, msgid))
    }

    /// The daticert.xml of a message we accepted, if we did.
    pub fn daticert_blocking(&self, identificativo: &str) -> Result<Option<String>> {
        self.read_blocking(|db| daticert_of(db, identificativo))
    }

    /// When we accepted a message (Unix ms), if we did.
    pub fn accepted_at_blocking(&self, identificativo: &str) -> Result<Option<i64>> {
        self.read_blocking(|db| accepted_at(db, identificativo))
    }

    /// The progress of message `identificativo` (one read).
    pub async fn progress(&self, identificativo: &str) -> Result<Progress> {
        let id = identificativo.to_string();
        self.read(move |db| {
            Ok(Progress {
                presa: super::queue::presa_times(db, &id)?,
                esterno_failures: super::log::esterno_failures(db, &id)?,
            })
        })
        .await
    }
}

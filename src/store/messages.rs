//! The messages this provider accepted: one row per busta di trasporto, with
//! the daticert it certified (what later receipts and notices are built from).

use rusqlite::{params, OptionalExtension};

use super::{Db, Result};

/// A message accepted at the access point.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its identificativo.
    pub identificativo: String,
    /// The Message-ID of the user's original message.
    pub msgid: Option<String>,
    /// The certified sender.
    pub sender: String,
    /// The original subject.
    pub subject: String,
    /// Recipients with their type, as the log writes them.
    pub recipients: String,
    /// completa / breve / sintetica.
    pub receipt_type: String,
    /// The busta's daticert.xml.
    pub daticert: String,
    /// When it was accepted (unix ms).
    pub accepted_at: i64,
}

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

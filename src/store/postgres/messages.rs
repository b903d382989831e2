//! The SQL of the accepted messages on PostgreSQL: see `sqlite/messages.rs`.

use ::postgres::Row;

use super::PgDb;
use crate::store::messages::{Accepted, SentMessage};
use crate::store::Result;

fn sent_row(r: &Row) -> SentMessage {
    SentMessage {
        identificativo: r.get(0),
        msgid: r.get(1),
        sender: r.get(2),
        subject: r.get(3),
        recipients: r.get(4),
        receipt_type: r.get(5),
        accepted_at: r.get(6),
    }
}

impl PgDb<'_> {
    /// Record an accepted message.
    pub(in crate::store) fn message_insert(&self, m: &Accepted) -> Result<()> {
        self.exec(
            "INSERT INTO messages(identificativo, msgid, sender, subject, recipients, receipt_type, daticert, accepted_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &m.identificativo,
                &m.msgid,
                &m.sender,
                &m.subject,
                &m.recipients,
                &m.receipt_type,
                &m.daticert,
                &m.accepted_at,
            ],
        )?;
        Ok(())
    }

    /// The daticert.xml of a message we accepted, if we did.
    pub(in crate::store) fn message_daticert(
        &self,
        identificativo: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .opt(
                "SELECT daticert FROM messages WHERE identificativo = $1",
                &[&identificativo],
            )?
            .map(|r| r.get(0)))
    }

    /// The message we accepted as `identificativo`, if we did.
    pub(in crate::store) fn message_get(&self, identificativo: &str) -> Result<Option<Accepted>> {
        Ok(self
            .opt(
                "SELECT identificativo, msgid, sender, subject, recipients, receipt_type, daticert, accepted_at
                 FROM messages WHERE identificativo = $1",
                &[&identificativo],
            )?
            .map(|r| Accepted {
                identificativo: r.get(0),
                msgid: r.get(1),
                sender: r.get(2),
                subject: r.get(3),
                recipients: r.get(4),
                receipt_type: r.get(5),
                daticert: r.get(6),
                accepted_at: r.get(7),
            }))
    }

    /// When we accepted a message (Unix ms), if we did.
    pub(in crate::store) fn message_accepted_at(
        &self,
        identificativo: &str,
    ) -> Result<Option<i64>> {
        Ok(self
            .opt(
                "SELECT accepted_at FROM messages WHERE identificativo = $1",
                &[&identificativo],
            )?
            .map(|r| r.get(0)))
    }

    /// Messages `sender` submitted, newest first (the sender compared
    /// without case, as SQLite's `COLLATE NOCASE`).
    pub(in crate::store) fn sent_by(
        &self,
        sender: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<SentMessage>> {
        Ok(self
            .rows(
                "SELECT identificativo, msgid, sender, subject, recipients, receipt_type, accepted_at
                 FROM messages WHERE lower(sender) = lower($1)
                 ORDER BY accepted_at DESC, identificativo DESC LIMIT $2 OFFSET $3",
                &[&sender, &(limit as i64), &(offset as i64)],
            )?
            .iter()
            .map(sent_row)
            .collect())
    }

    /// The message `sender` submitted with this Message-ID (brackets optional).
    pub(in crate::store) fn sent_with_msgid(
        &self,
        sender: &str,
        msgid: &str,
    ) -> Result<Option<SentMessage>> {
        let bare = msgid.trim().trim_matches(|c| c == '<' || c == '>');
        Ok(self
            .opt(
                "SELECT identificativo, msgid, sender, subject, recipients, receipt_type, accepted_at
                 FROM messages WHERE msgid IN ($2, $3) AND lower(sender) = lower($1)
                 ORDER BY accepted_at DESC LIMIT 1",
                &[&sender, &format!("<{bare}>"), &bare],
            )?
            .as_ref()
            .map(sent_row))
    }
}

//! The SQL of the accepted messages (`messages`): see `store::messages`.

use rusqlite::{params, OptionalExtension};

use super::Db;
use crate::store::messages::{Accepted, SentMessage};
use crate::store::Result;

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

impl Db<'_> {
    /// Record an accepted message.
    pub(in crate::store) fn message_insert(&self, m: &Accepted) -> Result<()> {
        self.sql()
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
    pub(in crate::store) fn message_daticert(
        &self,
        identificativo: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .sql()
            .query_row(
                "SELECT daticert FROM messages WHERE identificativo = ?1",
                [identificativo],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The message we accepted as `identificativo`, if we did.
    pub(in crate::store) fn message_get(&self, identificativo: &str) -> Result<Option<Accepted>> {
        Ok(self
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
    pub(in crate::store) fn message_accepted_at(
        &self,
        identificativo: &str,
    ) -> Result<Option<i64>> {
        Ok(self
            .sql()
            .query_row(
                "SELECT accepted_at FROM messages WHERE identificativo = ?1",
                [identificativo],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Messages `sender` submitted, newest first.
    pub(in crate::store) fn sent_by(
        &self,
        sender: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<SentMessage>> {
        let conn = self.sql();
        let mut st = conn.prepare_cached(
            "SELECT identificativo, msgid, sender, subject, recipients, receipt_type, accepted_at
           FROM messages WHERE sender = ?1 COLLATE NOCASE
          ORDER BY accepted_at DESC, identificativo DESC LIMIT ?2 OFFSET ?3",
        )?;
        let rows = st.query_map(params![sender, limit as i64, offset as i64], sent_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The message `sender` submitted with this Message-ID (brackets optional).
    pub(in crate::store) fn sent_with_msgid(
        &self,
        sender: &str,
        msgid: &str,
    ) -> Result<Option<SentMessage>> {
        let conn = self.sql();
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
}

//! The SQL of web sessions on PostgreSQL: see `sqlite/sessions.rs`.

use super::PgDb;
use crate::store::sessions::{token_hash, Session, MAX_PER_USER};
use crate::store::Result;

impl PgDb<'_> {
    /// Store a new session, first dropping the expired ones and the least
    /// recently used of the user's beyond [`MAX_PER_USER`].
    pub(in crate::store) fn session_create(
        &self,
        token: &str,
        address: &str,
        csrf: &str,
        now_ms: i64,
        idle_ms: i64,
        max_ms: i64,
    ) -> Result<()> {
        self.exec(
            "DELETE FROM web_sessions WHERE last_seen <= $1 OR created_at <= $2",
            &[&(now_ms - idle_ms), &(now_ms - max_ms)],
        )?;
        let keep = MAX_PER_USER - 1;
        self.exec(
            "DELETE FROM web_sessions WHERE token_hash IN (SELECT token_hash FROM web_sessions
             WHERE address = $1 ORDER BY last_seen DESC OFFSET $2)",
            &[&address, &keep],
        )?;
        self.exec(
            "INSERT INTO web_sessions(token_hash, address, csrf, created_at, last_seen)
             VALUES ($1, $2, $3, $4, $4)",
            &[&&token_hash(token)[..], &address, &csrf, &now_ms],
        )?;
        Ok(())
    }

    /// The session of `token`, whatever its age.
    pub(in crate::store) fn session_find(&self, token: &str) -> Result<Option<Session>> {
        Ok(self
            .opt(
                "SELECT address, csrf, created_at, last_seen FROM web_sessions WHERE token_hash = $1",
                &[&&token_hash(token)[..]],
            )?
            .map(|r| Session {
                address: r.get(0),
                csrf: r.get(1),
                created_at: r.get(2),
                last_seen: r.get(3),
            }))
    }

    /// Mark a session used at `now_ms`.
    pub(in crate::store) fn session_touch(&self, token: &str, now_ms: i64) -> Result<()> {
        self.exec(
            "UPDATE web_sessions SET last_seen = greatest(last_seen, $2) WHERE token_hash = $1",
            &[&&token_hash(token)[..], &now_ms],
        )?;
        Ok(())
    }

    /// End one session.
    pub(in crate::store) fn session_end(&self, token: &str) -> Result<()> {
        self.exec(
            "DELETE FROM web_sessions WHERE token_hash = $1",
            &[&&token_hash(token)[..]],
        )?;
        Ok(())
    }

    /// End every session of `address`; how many there were.
    pub(in crate::store) fn sessions_end_all(&self, address: &str) -> Result<usize> {
        Ok(self.exec(
            "DELETE FROM web_sessions WHERE address = $1",
            &[&crate::pec::types::normalize_address(address)],
        )? as usize)
    }
}

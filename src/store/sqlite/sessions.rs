//! The SQL of web sessions (`web_sessions`, keyed by the SHA-256 of the
//! token): see `store::sessions`.

use rusqlite::{params, OptionalExtension};

use super::Db;
use crate::store::sessions::{token_hash, Session, MAX_PER_USER};
use crate::store::Result;

impl Db<'_> {
    /// Store a new session, first dropping every session past `idle_ms` of
    /// disuse or `max_ms` of age, and the least recently used of the user's
    /// beyond [`MAX_PER_USER`].
    pub(in crate::store) fn session_create(
        &self,
        token: &str,
        address: &str,
        csrf: &str,
        now_ms: i64,
        idle_ms: i64,
        max_ms: i64,
    ) -> Result<()> {
        let c = self.sql();
        c.execute(
            "DELETE FROM web_sessions WHERE last_seen <= ?1 OR created_at <= ?2",
            params![now_ms - idle_ms, now_ms - max_ms],
        )?;
        c.execute(
            "DELETE FROM web_sessions WHERE token_hash IN (SELECT token_hash FROM web_sessions
         WHERE address = ?1 ORDER BY last_seen DESC LIMIT -1 OFFSET ?2)",
            params![address, MAX_PER_USER - 1],
        )?;
        c.execute(
            "INSERT INTO web_sessions(token_hash, address, csrf, created_at, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?4)",
            params![&token_hash(token)[..], address, csrf, now_ms],
        )?;
        Ok(())
    }

    /// The session of `token`, whatever its age (the caller judges expiry).
    pub(in crate::store) fn session_find(&self, token: &str) -> Result<Option<Session>> {
        Ok(self
            .sql()
            .prepare_cached(
                "SELECT address, csrf, created_at, last_seen FROM web_sessions WHERE token_hash = ?1",
            )?
            .query_row([&token_hash(token)[..]], |r| {
                Ok(Session {
                    address: r.get(0)?,
                    csrf: r.get(1)?,
                    created_at: r.get(2)?,
                    last_seen: r.get(3)?,
                })
            })
            .optional()?)
    }

    /// Mark a session used at `now_ms`.
    pub(in crate::store) fn session_touch(&self, token: &str, now_ms: i64) -> Result<()> {
        self.sql().execute(
            "UPDATE web_sessions SET last_seen = max(last_seen, ?2) WHERE token_hash = ?1",
            params![&token_hash(token)[..], now_ms],
        )?;
        Ok(())
    }

    /// End one session.
    pub(in crate::store) fn session_end(&self, token: &str) -> Result<()> {
        self.sql().execute(
            "DELETE FROM web_sessions WHERE token_hash = ?1",
            [&token_hash(token)[..]],
        )?;
        Ok(())
    }

    /// End every session of `address`; how many there were.
    pub(in crate::store) fn sessions_end_all(&self, address: &str) -> Result<usize> {
        Ok(self.sql().execute(
            "DELETE FROM web_sessions WHERE address = ?1",
            [crate::pec::types::normalize_address(address)],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::sessions::MAX_PER_USER;
    use crate::store::sqlite::MemDb;

    #[test]
    fn sessions_are_found_by_token_and_end_per_user() {
        let m = MemDb::new();
        let db = m.db();
        db.session_create("t1", "a@x", "c1", 1_000, 60_000, 600_000)
            .unwrap();
        db.session_create("t2", "a@x", "c2", 1_000, 60_000, 600_000)
            .unwrap();
        db.session_create("t3", "b@x", "c3", 1_000, 60_000, 600_000)
            .unwrap();
        let s = db.session_find("t1").unwrap().unwrap();
        assert_eq!((s.address.as_str(), s.csrf.as_str()), ("a@x", "c1"));
        assert_eq!(db.session_find("nope").unwrap(), None);
        // Only a hash of the token is stored.
        let stored: Vec<u8> = db
            .sql()
            .query_row(
                "SELECT token_hash FROM web_sessions WHERE csrf = 'c1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_ne!(stored, b"t1");
        db.session_touch("t1", 5_000).unwrap();
        assert_eq!(db.session_find("t1").unwrap().unwrap().last_seen, 5_000);
        assert_eq!(db.sessions_end_all("A@X").unwrap(), 2);
        assert_eq!(db.session_find("t2").unwrap(), None);
        assert!(db.session_find("t3").unwrap().is_some());
        db.session_end("t3").unwrap();
        assert_eq!(db.session_find("t3").unwrap(), None);
    }

    #[test]
    fn expired_and_surplus_sessions_are_dropped_when_one_is_made() {
        let m = MemDb::new();
        let db = m.db();
        db.session_create("idle", "a@x", "c", 0, 60_000, 600_000)
            .unwrap();
        db.session_create("old", "b@x", "c", 0, 60_000, 600_000)
            .unwrap();
        db.session_touch("old", 590_000).unwrap();
        db.session_create("new", "c@x", "c", 600_000, 60_000, 600_000)
            .unwrap();
        assert_eq!(db.session_find("idle").unwrap(), None, "idle too long");
        assert_eq!(db.session_find("old").unwrap(), None, "past the lifetime");
        for i in 0..MAX_PER_USER + 5 {
            db.session_create(&format!("s{i}"), "d@x", "c", 700_000 + i, 60_000, 600_000)
                .unwrap();
        }
        let n: i64 = db
            .sql()
            .query_row(
                "SELECT count(*) FROM web_sessions WHERE address = 'd@x'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, MAX_PER_USER);
        assert!(db.session_find("s0").unwrap().is_none());
        assert!(db
            .session_find(&format!("s{}", MAX_PER_USER + 4))
            .unwrap()
            .is_some());
    }
}

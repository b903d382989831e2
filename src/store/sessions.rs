//! Web sessions (`web_sessions`): one row per open session, keyed by the
//! SHA-256 of its token, so reading the database opens no session. Rows of a
//! user go with every change of that user's credentials ([`end_all`], called
//! by `users` in the same transaction as the change).

use rusqlite::{params, OptionalExtension};

use super::{Db, Result, Store};

/// Sessions one user may hold; past it the least recently used goes.
pub const MAX_PER_USER: i64 = 50;

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user's canonical address.
    pub address: String,
    /// The CSRF token of the session.
    pub csrf: String,
    /// When it was opened (unix ms).
    pub created_at: i64,
    /// When it was last seen in use (unix ms, updated coarsely).
    pub last_seen: i64,
}

/// The key a token is stored under.
pub fn token_hash(token: &str) -> [u8; 32] {
    openssl::sha::sha256(token.as_bytes())
}

/// Store a new session, first dropping every session past `idle_ms` of
/// disuse or `max_ms` of age, and the least recently used of the user's
/// beyond [`MAX_PER_USER`].
pub fn create(
    db: &Db<'_>,
    token: &str,
    address: &str,
    csrf: &str,
    now_ms: i64,
    idle_ms: i64,
    max_ms: i64,
) -> Result<()> {
    let c = db.sql();
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
pub fn find(db: &Db<'_>, token: &str) -> Result<Option<Session>> {
    Ok(db
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
pub fn touch(db: &Db<'_>, token: &str, now_ms: i64) -> Result<()> {
    db.sql().execute(
        "UPDATE web_sessions SET last_seen = max(last_seen, ?2) WHERE token_hash = ?1",
        params![&token_hash(token)[..], now_ms],
    )?;
    Ok(())
}

/// End one session.
pub fn end(db: &Db<'_>, token: &str) -> Result<()> {
    db.sql().execute(
        "DELETE FROM web_sessions WHERE token_hash = ?1",
        [&token_hash(token)[..]],
    )?;
    Ok(())
}

/// End every session of `address`; how many there were.
pub fn end_all(db: &Db<'_>, address: &str) -> Result<usize> {
    Ok(db.sql().execute(
        "DELETE FROM web_sessions WHERE address = ?1",
        [crate::pec::types::normalize_address(address)],
    )?)
}

impl Store {
    /// Open a session (see [`create`]); resolves after the commit.
    pub async fn create_session(
        &self,
        token: &str,
        address: &str,
        csrf: &str,
        now_ms: i64,
        idle_ms: i64,
        max_ms: i64,
    ) -> Result<()> {
        let (t, a, c) = (token.to_string(), address.to_string(), csrf.to_string());
        self.write(move |db| create(db, &t, &a, &c, now_ms, idle_ms, max_ms))
            .await
    }

    /// The session of `token`, whatever its age.
    pub async fn session(&self, token: &str) -> Result<Option<Session>> {
        let t = token.to_string();
        self.read(move |db| find(db, &t)).await
    }

    /// Mark the session of `token` used at `now_ms`.
    pub async fn touch_session(&self, token: &str, now_ms: i64) -> Result<()> {
        let t = token.to_string();
        self.write(move |db| touch(db, &t, now_ms)).await
    }

    /// End the session of `token`.
    pub async fn end_session(&self, token: &str) -> Result<()> {
        let t = token.to_string();
        self.write(move |db| end(db, &t)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_token_and_end_per_user() {
        let m = crate::store::MemDb::new();
        let db = m.db();
        create(&db, "t1", "a@x", "c1", 1_000, 60_000, 600_000).unwrap();
        create(&db, "t2", "a@x", "c2", 1_000, 60_000, 600_000).unwrap();
        create(&db, "t3", "b@x", "c3", 1_000, 60_000, 600_000).unwrap();
        let s = find(&db, "t1").unwrap().unwrap();
        assert_eq!((s.address.as_str(), s.csrf.as_str()), ("a@x", "c1"));
        assert_eq!(find(&db, "nope").unwrap(), None);
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
        touch(&db, "t1", 5_000).unwrap();
        assert_eq!(find(&db, "t1").unwrap().unwrap().last_seen, 5_000);
        assert_eq!(end_all(&db, "A@X").unwrap(), 2);
        assert_eq!(find(&db, "t2").unwrap(), None);
        assert!(find(&db, "t3").unwrap().is_some());
        end(&db, "t3").unwrap();
        assert_eq!(find(&db, "t3").unwrap(), None);
    }

    #[test]
    fn expired_and_surplus_sessions_are_dropped_when_one_is_made() {
        let m = crate::store::MemDb::new();
        let db = m.db();
        create(&db, "idle", "a@x", "c", 0, 60_000, 600_000).unwrap();
        create(&db, "old", "b@x", "c", 0, 60_000, 600_000).unwrap();
        touch(&db, "old", 590_000).unwrap();
        create(&db, "new", "c@x", "c", 600_000, 60_000, 600_000).unwrap();
        assert_eq!(find(&db, "idle").unwrap(), None, "idle too long");
        assert_eq!(find(&db, "old").unwrap(), None, "past the lifetime");
        for i in 0..MAX_PER_USER + 5 {
            create(
                &db,
                &format!("s{i}"),
                "d@x",
                "c",
                700_000 + i,
                60_000,
                600_000,
            )
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
        assert!(find(&db, "s0").unwrap().is_none());
        assert!(find(&db, &format!("s{}", MAX_PER_USER + 4))
            .unwrap()
            .is_some());
    }
}

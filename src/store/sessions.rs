//! Web sessions (`web_sessions`): one row per open session, keyed by the
//! SHA-256 of its token, so reading the database opens no session. Rows of a
//! user go with every change of that user's credentials, in the same
//! transaction as the change.

use super::{Result, Store};

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

impl Store {
    /// Store a new session, first dropping every session past `idle_ms` of
    /// disuse or `max_ms` of age, and the least recently used of the
    /// user's beyond [`MAX_PER_USER`]; resolves after the commit.
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
        self.write(move |db| db.session_create(&t, &a, &c, now_ms, idle_ms, max_ms))
            .await
    }

    /// The session of `token`, whatever its age.
    pub async fn session(&self, token: &str) -> Result<Option<Session>> {
        let t = token.to_string();
        self.read(move |db| db.session_find(&t)).await
    }

    /// Mark the session of `token` used at `now_ms`.
    pub async fn touch_session(&self, token: &str, now_ms: i64) -> Result<()> {
        let t = token.to_string();
        self.write(move |db| db.session_touch(&t, now_ms)).await
    }

    /// End the session of `token`.
    pub async fn end_session(&self, token: &str) -> Result<()> {
        let t = token.to_string();
        self.write(move |db| db.session_end(&t)).await
    }
}

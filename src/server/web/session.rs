//! Web sessions: random tokens, each with its CSRF token, kept in the store
//! (`store::sessions`, under a hash of the token) so that every node sees
//! the same sessions and a credential change ends them in the transaction
//! that makes it. A session is invalid the moment it is removed (logout,
//! `pecd user passwd|del|totp`), idle longer than `[web] session_idle`, or
//! older than `[web] session_max`.

use std::time::Duration;

use crate::store::{sessions, Store, StoreError};

/// The name of the session cookie (a contract).
pub const COOKIE: &str = "pecd_session";

/// The sessions of one provider.
pub struct Sessions {
    store: Store,
    clock: std::sync::Arc<dyn crate::pec::clock::Clock>,
    idle: Duration,
    max: Duration,
}

/// A fresh unguessable token: 32 random bytes, hex.
pub fn token() -> String {
    let mut b = [0u8; 32];
    // The OpenSSL CSPRNG only fails when it cannot seed; then no session is safe.
    openssl::rand::rand_bytes(&mut b).expect("OpenSSL random generator");
    crate::pec::smime::hex_plain(&b)
}

/// Equality that takes the same time wherever the strings differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Whether a session last seen at `last_seen` and made at `created` is
/// still open at `now` (all unix ms).
pub fn alive(s: &sessions::Session, now: i64, idle: Duration, max: Duration) -> bool {
    now - s.last_seen < ms(idle) && now - s.created_at < ms(max)
}

impl Sessions {
    /// Sessions in `store` that end after `idle` without use or at `max` of age.
    pub fn new(
        store: Store,
        clock: std::sync::Arc<dyn crate::pec::clock::Clock>,
        idle: Duration,
        max: Duration,
    ) -> Sessions {
        Sessions {
            store,
            clock,
            idle,
            max,
        }
    }

    /// Open a session for `user`: (session token, CSRF token).
    pub async fn create(&self, user: &str) -> Result<(String, String), StoreError> {
        let (t, csrf) = (token(), token());
        let (idle, max) = (ms(self.idle), ms(self.max));
        let now = self.clock.unix_ms();
        self.store
            .create_session(&t, user, &csrf, now, idle, max)
            .await?;
        Ok((t, csrf))
    }

    /// The user and CSRF token of a live session. Its last use is written
    /// back only now and then (a write per request would cost a commit
    /// each), which is as precise as an idle limit needs.
    pub async fn get(&self, token: &str) -> Result<Option<(String, String)>, StoreError> {
        let Some(s) = self.store.session(token).await? else {
            return Ok(None);
        };
        let now = self.clock.unix_ms();
        let t = token.to_string();
        if !alive(&s, now, self.idle, self.max) {
            let st = self.store.clone();
            tokio::spawn(async move { st.end_session(&t).await });
            return Ok(None);
        }
        let every = ms(self.idle / 4).min(60_000);
        if now - s.last_seen >= every {
            let st = self.store.clone();
            tokio::spawn(async move { st.touch_session(&t, now).await });
        }
        Ok(Some((s.address, s.csrf)))
    }

    /// End a session.
    pub async fn remove(&self, token: &str) -> Result<(), StoreError> {
        self.store.end_session(token).await
    }
}

/// The value of cookie `name` in a `Cookie` header list.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The `Set-Cookie` value that opens a session.
pub fn set_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/")
}

/// The `Set-Cookie` value that clears it.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_when_idle_or_too_old() {
        let s = |created_at, last_seen| sessions::Session {
            address: "a@x".into(),
            csrf: "c".into(),
            created_at,
            last_seen,
        };
        let (idle, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        assert!(alive(&s(0, 0), 59_999, idle, max));
        assert!(!alive(&s(0, 0), 60_000, idle, max));
        // Used a minute ago at most, but opened an hour ago: gone.
        assert!(alive(&s(0, 3_599_000), 3_599_999, idle, max));
        assert!(!alive(&s(0, 3_599_000), 3_600_000, idle, max));
        assert_ne!(token(), token());
        assert_eq!(token().len(), 64);
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = axum::http::HeaderMap::new();
        h.append("cookie", "a=1; pecd_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("a", "ab"));
    }
}

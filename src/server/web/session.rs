//! Web sessions: random tokens kept in memory, each with its CSRF token and
//! the time it was last used. A session is invalid the moment it is removed
//! (logout) or idle longer than `[web] session_idle`; a restart logs everyone
//! out, which is the safe direction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most sessions kept at once; past it the least recently used go first.
const MAX_SESSIONS: usize = 100_000;

/// The name of the session cookie (a contract).
pub const COOKIE: &str = "pecd_session";

struct Session {
    user: String,
    csrf: String,
    last: Instant,
}

/// The live sessions of one provider.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
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

impl Sessions {
    /// Sessions that expire after `idle` without use.
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open a session for `user`: (session token, CSRF token).
    pub fn create(&self, user: &str) -> (String, String) {
        let now = Instant::now();
        let mut m = self.lock();
        m.retain(|_, s| now.duration_since(s.last) < self.idle);
        if m.len() >= MAX_SESSIONS {
            if let Some(oldest) = m.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| k.clone()) {
                m.remove(&oldest);
            }
        }
        let (t, csrf) = (token(), token());
        m.insert(
            t.clone(),
            Session {
                user: user.to_string(),
                csrf: csrf.clone(),
                last: now,
            },
        );
        (t, csrf)
    }

    /// The user and CSRF token of a live session, marking it used now.
    pub fn get(&self, token: &str) -> Option<(String, String)> {
        let now = Instant::now();
        let mut m = self.lock();
        let s = m.get_mut(token)?;
        if now.duration_since(s.last) >= self.idle {
            m.remove(token);
            return None;
        }
        s.last = now;
        Some((s.user.clone(), s.csrf.clone()))
    }

    /// End a session.
    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// End every session of a user (password or second factor changed).
    pub fn remove_user(&self, user: &str) {
        self.lock().retain(|_, s| s.user != user);
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
    fn sessions_expire_when_idle_and_end_on_remove() {
        let s = Sessions::new(Duration::from_millis(50));
        let (t, csrf) = s.create("a@x");
        assert_eq!(s.get(&t), Some(("a@x".into(), csrf)));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(s.get(&t), None);
        let (t, _) = s.create("a@x");
        s.remove(&t);
        assert_eq!(s.get(&t), None);
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

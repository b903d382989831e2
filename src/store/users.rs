//! Mailbox owners: addresses and argon2id password hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, Connection, OptionalExtension};

/// Normalise an address for lookups: trimmed, lower-case.
pub fn normalize(address: &str) -> String {
    address
        .trim()
        .trim_matches(|c| c == '<' || c == '>')
        .to_ascii_lowercase()
}

/// Hash a password with argon2id (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut raw = [0u8; 16];
    openssl::rand::rand_bytes(&mut raw).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&raw).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Each argon2id check holds 19 MiB (the default memory cost) for its
/// duration: a burst of logins (20 sessions opening at once) multiplied that
/// into a 400 MB resident peak. The CPU bounds the useful parallelism anyway,
/// so at most one check per core runs at a time; the rest wait their turn.
struct Slots {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

fn slots() -> &'static Slots {
    static SLOTS: std::sync::OnceLock<Slots> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| Slots {
        free: std::sync::Mutex::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        ),
        freed: std::sync::Condvar::new(),
    })
}

struct Slot;

impl Slot {
    fn take() -> Slot {
        let s = slots();
        let mut free = s.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = s.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let s = slots();
        *s.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        s.freed.notify_one();
    }
}

/// Check a password against a stored PHC string.
pub fn verify_password(hash: &str, password: &str) -> bool {
    let _slot = Slot::take();
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Insert a user; false if it already exists.
pub fn add(conn: &Connection, address: &str, hash: &str, now_ms: i64) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO users(address, password_hash, created_at) VALUES (?1, ?2, ?3)",
        params![normalize(address), hash, now_ms],
    )?;
    Ok(n == 1)
}

/// Replace a user's password hash; false if there is no such user.
pub fn set_password(conn: &Connection, address: &str, hash: &str) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE users SET password_hash = ?2 WHERE address = ?1",
        params![normalize(address), hash],
    )?;
    Ok(n == 1)
}

/// Remove a user; false if there was none. The Maildir is kept (mail is evidence).
pub fn delete(conn: &Connection, address: &str) -> rusqlite::Result<bool> {
    let n = conn.execute("DELETE FROM users WHERE address = ?1", [normalize(address)])?;
    Ok(n == 1)
}

/// Every user address, sorted.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare("SELECT address FROM users ORDER BY address")?;
    let rows = st.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// The stored hash of a user.
pub fn password_hash(conn: &Connection, address: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT password_hash FROM users WHERE address = ?1")?
        .query_row([normalize(address)], |r| r.get(0))
        .optional()
}

/// Whether a user exists.
pub fn exists(conn: &Connection, address: &str) -> rusqlite::Result<bool> {
    Ok(password_hash(conn, address)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_verify_passwd_delete() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c).unwrap();
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(add(&c, "Alice@PEC.alpha.test", &h, 0).unwrap());
        assert!(!add(&c, "alice@pec.alpha.test", &h, 0).unwrap());
        let stored = password_hash(&c, "alice@pec.alpha.test").unwrap().unwrap();
        assert!(verify_password(&stored, "s3cret"));
        assert!(!verify_password(&stored, "wrong"));
        assert!(set_password(&c, "alice@pec.alpha.test", &hash_password("new").unwrap()).unwrap());
        let stored = password_hash(&c, "alice@pec.alpha.test").unwrap().unwrap();
        assert!(verify_password(&stored, "new"));
        assert_eq!(list(&c).unwrap(), vec!["alice@pec.alpha.test".to_string()]);
        assert!(delete(&c, "alice@pec.alpha.test").unwrap());
        assert!(!exists(&c, "alice@pec.alpha.test").unwrap());
    }
}

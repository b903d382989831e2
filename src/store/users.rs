//! Mailbox owners: addresses and argon2id password hashes.

use super::{Db, Result, Store};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, OptionalExtension};

pub use crate::pec::types::normalize_address as normalize;

/// Local parts no user may take: the provider's own receipt mailbox and the
/// name bounces come from.
pub const RESERVED_LOCAL_PARTS: &[&str] = &["posta-certificata", "mailer-daemon"];

/// Check an address for a new mailbox and give its normal form. One rule for
/// every way a user is made: an RFC 5321 dot-atom local part of at most 64
/// octets (no quoted strings, and no `/` or `\`, which are atext but would
/// name other directories), a domain of LDH labels, no control characters,
/// not a reserved name.
pub fn validate_new_address(address: &str) -> std::result::Result<String, String> {
    let a = normalize(address);
    let (local, domain) = a
        .rsplit_once('@')
        .ok_or_else(|| format!("{a:?}: not an address (no @)"))?;
    if local.is_empty() || local.len() > 64 {
        return Err(format!(
            "{a:?}: the local part must be 1 to 64 characters (RFC 5321), not {}",
            local.len()
        ));
    }
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-=?^_`{|}~".contains(c);
    if let Some(c) = local.chars().find(|&c| c != '.' && !atext(c)) {
        return Err(format!(
            "{a:?}: character {c:?} is not allowed in a mailbox name (letters, digits and !#$%&'*+-=?^_`{{|}}~ only)"
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(format!(
            "{a:?}: dots may not start or end the local part, nor follow each other"
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if domain.len() > 253 || !domain.split('.').all(label_ok) {
        return Err(format!("{a:?}: {domain:?} is not a valid domain name"));
    }
    if RESERVED_LOCAL_PARTS.contains(&local) {
        return Err(format!("{a:?}: {local}@ is reserved for the provider"));
    }
    Ok(a)
}

/// Hash a password with argon2id (PHC string).
pub fn hash_password(password: &str) -> std::result::Result<String, String> {
    let mut raw = [0u8; 16];
    openssl::rand::rand_bytes(&mut raw).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&raw).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `hash`, where `None` means no such user. That
/// case does the same argon2 work against a hash of a random secret nobody
/// knows, so the time a failed login takes does not tell whether the
/// address exists.
pub fn check_password(hash: Option<&str>, password: &str) -> bool {
    static NOBODY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match hash {
        Some(h) => verify_password(h, password),
        None => {
            let nobody = NOBODY.get_or_init(|| {
                let mut secret = [0u8; 32];
                let _ = openssl::rand::rand_bytes(&mut secret);
                let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
                hash_password(&hex).unwrap_or_default()
            });
            let _ = verify_password(nobody, password);
            false
        }
    }
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Insert a user; false if it already exists.
pub fn add(db: &Db<'_>, address: &str, hash: &str, now_ms: i64) -> Result<bool> {
    let conn = db.sql();
    let n = conn.execute(
        "INSERT OR IGNORE INTO users(address, password_hash, created_at) VALUES (?1, ?2, ?3)",
        params![normalize(address), hash, now_ms],
    )?;
    Ok(n == 1)
}

/// Replace a user's password hash and end every web session of the user;
/// false if there is no such user.
pub fn set_password(db: &Db<'_>, address: &str, hash: &str) -> Result<bool> {
    let conn = db.sql();
    let n = conn.execute(
        "UPDATE users SET password_hash = ?2 WHERE address = ?1",
        params![normalize(address), hash],
    )?;
    super::sessions::end_all(db, address)?;
    Ok(n == 1)
}

/// Remove a user with its second factor and web sessions; false if there
/// was none. The Maildir is kept (mail is evidence).
pub fn delete(db: &Db<'_>, address: &str) -> Result<bool> {
    let conn = db.sql();
    let n = conn.execute("DELETE FROM users WHERE address = ?1", [normalize(address)])?;
    conn.execute(
        "DELETE FROM user_totp WHERE address = ?1",
        [normalize(address)],
    )?;
    super::sessions::end_all(db, address)?;
    Ok(n == 1)
}

/// Every user address, sorted.
pub fn list(db: &Db<'_>) -> Result<Vec<String>> {
    let conn = db.sql();
    let mut st = conn.prepare("SELECT address FROM users ORDER BY address")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A user's own quota setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// `[mailbox] default_quota` applies.
    Default,
    /// No limit, whatever the default.
    Unlimited,
    /// At most this many bytes.
    Bytes(u64),
}

impl Quota {
    /// The limit in bytes given the provider default; `None` for no limit.
    pub fn limit(self, default: Option<u64>) -> Option<u64> {
        match self {
            Quota::Default => default,
            Quota::Unlimited => None,
            Quota::Bytes(n) => Some(n),
        }
    }

    fn to_sql(self) -> Option<i64> {
        match self {
            Quota::Default => None,
            Quota::Unlimited => Some(-1),
            Quota::Bytes(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
        }
    }

    fn from_sql(v: Option<i64>) -> Quota {
        match v {
            None => Quota::Default,
            Some(n) if n < 0 => Quota::Unlimited,
            Some(n) => Quota::Bytes(n as u64),
        }
    }
}

/// Set a user's quota; false if there is no such user.
pub fn set_quota(db: &Db<'_>, address: &str, quota: Quota) -> Result<bool> {
    let conn = db.sql();
    let n = conn.execute(
        "UPDATE users SET quota = ?2 WHERE address = ?1",
        rusqlite::params![normalize(address), quota.to_sql()],
    )?;
    Ok(n == 1)
}

/// A user's quota setting, `None` if there is no such user.
pub fn quota(db: &Db<'_>, address: &str) -> Result<Option<Quota>> {
    let conn = db.sql();
    Ok(conn
        .prepare_cached("SELECT quota FROM users WHERE address = ?1")?
        .query_row([normalize(address)], |r| r.get::<_, Option<i64>>(0))
        .optional()
        .map(|o| o.map(Quota::from_sql))?)
}

/// Every user with their quota setting, sorted by address.
pub fn list_quotas(db: &Db<'_>) -> Result<Vec<(String, Quota)>> {
    let conn = db.sql();
    let mut st = conn.prepare("SELECT address, quota FROM users ORDER BY address")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, Quota::from_sql(r.get(1)?))))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The stored hash of a user.
pub fn password_hash(db: &Db<'_>, address: &str) -> Result<Option<String>> {
    let conn = db.sql();
    Ok(conn
        .prepare_cached("SELECT password_hash FROM users WHERE address = ?1")?
        .query_row([normalize(address)], |r| r.get(0))
        .optional()?)
}

/// Whether a user exists.
pub fn exists(db: &Db<'_>, address: &str) -> Result<bool> {
    Ok(password_hash(db, address)?.is_some())
}

/// Turn on the web login's second factor with `secret` (as stored: sealed
/// by `auth::totp_key`), ending every web session of the user; false if
/// there is no such user.
pub fn set_totp(db: &Db<'_>, address: &str, secret: &str, now_ms: i64) -> Result<bool> {
    let conn = db.sql();
    if !exists(db, address)? {
        return Ok(false);
    }
    conn.execute(
        "INSERT OR REPLACE INTO user_totp(address, secret, enabled_at) VALUES (?1, ?2, ?3)",
        params![normalize(address), secret, now_ms],
    )?;
    super::sessions::end_all(db, address)?;
    Ok(true)
}

/// Turn the second factor off, ending every web session of the user; false
/// if it was not on.
pub fn clear_totp(db: &Db<'_>, address: &str) -> Result<bool> {
    let conn = db.sql();
    let n = conn.execute(
        "DELETE FROM user_totp WHERE address = ?1",
        [normalize(address)],
    )?;
    super::sessions::end_all(db, address)?;
    Ok(n == 1)
}

/// The second-factor secret (as stored) of a user who turned it on.
pub fn totp_secret(db: &Db<'_>, address: &str) -> Result<Option<String>> {
    let conn = db.sql();
    Ok(conn
        .prepare_cached("SELECT secret FROM user_totp WHERE address = ?1")?
        .query_row([normalize(address)], |r| r.get(0))
        .optional()?)
}

/// Every second-factor secret as stored, by address (re-sealing at start).
pub fn totp_secrets(db: &Db<'_>) -> Result<Vec<(String, String)>> {
    let mut st = db
        .sql()
        .prepare("SELECT address, secret FROM user_totp ORDER BY address")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Replace a stored secret by another form of the same secret, if it is
/// still `old` (a concurrent `totp enable` wins); whether it was replaced.
pub fn reseal_totp(db: &Db<'_>, address: &str, old: &str, new: &str) -> Result<bool> {
    let n = db.sql().execute(
        "UPDATE user_totp SET secret = ?3 WHERE address = ?1 AND secret = ?2",
        params![normalize(address), old, new],
    )?;
    Ok(n == 1)
}

/// Consecutive wrong second-factor codes that lock the account's second
/// factor for [`TOTP_LOCK_MS`].
pub const TOTP_MAX_FAILURES: i64 = 10;
/// How long a locked second factor refuses every code (15 minutes).
pub const TOTP_LOCK_MS: i64 = 15 * 60 * 1000;

/// What the account's second-factor state made of one code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpOutcome {
    /// Right, and of a time step later than any used before: accepted.
    Accepted,
    /// Right, but its time step (or a later one) was used already.
    Replayed,
    /// Wrong; `locked` when this failure locked the second factor.
    Wrong {
        /// This failure was the one that locked it.
        locked: bool,
    },
    /// Locked after too many wrong codes, until this time (unix ms); the
    /// code was not looked at and counts for nothing.
    Locked(i64),
    /// The user has no second factor (any more).
    NotEnabled,
}

/// Judge and record one second-factor attempt of `address` at `now_ms`:
/// `step` is the time step the code matched, `None` for a wrong code. One
/// transaction, so parallel attempts cannot both use one step nor slip
/// past the lock.
pub fn totp_attempt(
    db: &Db<'_>,
    address: &str,
    step: Option<i64>,
    now_ms: i64,
) -> Result<TotpOutcome> {
    let a = normalize(address);
    let c = db.sql();
    let row: Option<(Option<i64>, i64, Option<i64>)> = c
        .prepare_cached(
            "SELECT last_step, failures, locked_until FROM user_totp WHERE address = ?1",
        )?
        .query_row([&a], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((last, failures, locked_until)) = row else {
        return Ok(TotpOutcome::NotEnabled);
    };
    if let Some(t) = locked_until.filter(|t| *t > now_ms) {
        return Ok(TotpOutcome::Locked(t));
    }
    match step {
        Some(s) if last.is_none_or(|l| s > l) => {
            c.execute(
                "UPDATE user_totp SET last_step = ?2, failures = 0, locked_until = NULL WHERE address = ?1",
                params![a, s],
            )?;
            Ok(TotpOutcome::Accepted)
        }
        _ => {
            let n = failures + 1;
            let locked = n >= TOTP_MAX_FAILURES;
            if locked {
                c.execute(
                    "UPDATE user_totp SET failures = 0, locked_until = ?2 WHERE address = ?1",
                    params![a, now_ms + TOTP_LOCK_MS],
                )?;
            } else {
                c.execute(
                    "UPDATE user_totp SET failures = ?2 WHERE address = ?1",
                    params![a, n],
                )?;
            }
            Ok(match step {
                Some(_) => TotpOutcome::Replayed,
                None => TotpOutcome::Wrong { locked },
            })
        }
    }
}

impl Store {
    /// Whether `password` is the password of user `address` (false for no
    /// such user, after the same work: see [`check_password`]). argon2 is
    /// deliberately slow: it runs on the blocking pool.
    pub async fn password_matches(&self, address: &str, password: &str) -> Result<bool> {
        let (a, pw) = (address.to_string(), password.to_string());
        self.read(move |db| Ok(check_password(password_hash(db, &a)?.as_deref(), &pw)))
            .await
    }

    /// The second-factor secret (as stored) of `address`, if turned on.
    pub async fn totp_secret(&self, address: &str) -> Result<Option<String>> {
        let a = address.to_string();
        self.read(move |db| totp_secret(db, &a)).await
    }

    /// Judge and record one second-factor attempt (see [`totp_attempt`]).
    pub async fn totp_attempt(
        &self,
        address: &str,
        step: Option<i64>,
        now_ms: i64,
    ) -> Result<TotpOutcome> {
        let a = address.to_string();
        self.write(move |db| totp_attempt(db, &a, step, now_ms))
            .await
    }

    /// Add a user with password hash `hash`; false if it exists already.
    pub fn add_user_blocking(&self, address: &str, hash: &str, now_ms: i64) -> Result<bool> {
        let (a, h) = (address.to_string(), hash.to_string());
        self.write_blocking(move |db| add(db, &a, &h, now_ms))
    }

    /// Set a user's quota; false if there is no such user.
    pub fn set_quota_blocking(&self, address: &str, quota: Quota) -> Result<bool> {
        let a = address.to_string();
        self.write_blocking(move |db| set_quota(db, &a, quota))
    }

    /// Replace a user's password hash, ending the user's web sessions;
    /// false if there is no such user.
    pub fn set_password_blocking(&self, address: &str, hash: &str) -> Result<bool> {
        let (a, h) = (address.to_string(), hash.to_string());
        self.write_blocking(move |db| set_password(db, &a, &h))
    }

    /// Remove a user with its second factor and web sessions (the Maildir
    /// is kept); false if there was none.
    pub fn delete_user_blocking(&self, address: &str) -> Result<bool> {
        let a = address.to_string();
        self.write_blocking(move |db| delete(db, &a))
    }

    /// Turn on the second factor with `secret` (sealed), ending the user's
    /// web sessions; false if there is no such user.
    pub fn enable_totp_blocking(&self, address: &str, secret: &str, now_ms: i64) -> Result<bool> {
        let (a, s) = (address.to_string(), secret.to_string());
        self.write_blocking(move |db| set_totp(db, &a, &s, now_ms))
    }

    /// Turn the second factor off, ending the user's web sessions; false if
    /// it was not on.
    pub fn disable_totp_blocking(&self, address: &str) -> Result<bool> {
        let a = address.to_string();
        self.write_blocking(move |db| clear_totp(db, &a))
    }

    /// Every user with their quota setting, sorted by address.
    pub fn users_with_quotas_blocking(&self) -> Result<Vec<(String, Quota)>> {
        self.read_blocking(list_quotas)
    }

    /// A user's quota setting, `None` if there is no such user.
    pub async fn quota(&self, address: &str) -> Result<Option<Quota>> {
        let a = address.to_string();
        self.read(move |db| quota(db, &a)).await
    }

    /// Blocking form of [`Store::quota`].
    pub fn quota_blocking(&self, address: &str) -> Result<Option<Quota>> {
        self.read_blocking(|db| quota(db, address))
    }

    /// Every second-factor secret as stored, by address.
    pub fn totp_secrets_blocking(&self) -> Result<Vec<(String, String)>> {
        self.read_blocking(totp_secrets)
    }

    /// Replace stored secrets by other forms of the same secrets, each
    /// `(address, old, new)` only if still `old`, in one transaction; how
    /// many were replaced.
    pub fn reseal_totp_blocking(&self, changes: Vec<(String, String, String)>) -> Result<usize> {
        self.write_blocking(move |db| {
            let mut n = 0;
            for (a, old, new) in &changes {
                n += usize::from(reseal_totp(db, a, old, new)?);
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_address_costs_the_same_password_work() {
        let h = hash_password("segreto").unwrap();
        assert!(check_password(Some(&h), "segreto"));
        assert!(!check_password(Some(&h), "altro"));
        assert!(!check_password(None, "segreto"));
        assert!(!check_password(None, ""));
        // Best of three of each, so a busy machine does not decide it.
        let best = |f: &dyn Fn() -> bool| {
            (0..3)
                .map(|_| {
                    let t = std::time::Instant::now();
                    let _ = f();
                    t.elapsed()
                })
                .min()
                .unwrap()
        };
        let known = best(&|| check_password(Some(&h), "altro"));
        let unknown = best(&|| check_password(None, "altro"));
        // Without the dummy work the unknown case is ~1000 times faster.
        assert!(
            unknown * 3 > known,
            "unknown {unknown:?} vs known {known:?}"
        );
    }

    #[test]
    fn new_addresses_follow_one_rule() {
        assert_eq!(
            validate_new_address(" Mario.Rossi+pec@PEC.Example.it ").unwrap(),
            "mario.rossi+pec@pec.example.it"
        );
        for bad in [
            &format!("{}@pec.test", "a".repeat(65)),
            "ma\u{7}rio@pec.test",
            "mario\n@pec.test",
            "\"quoted\"@pec.test",
            "a/b@pec.test",
            "..@pec.test",
            ".mario@pec.test",
            "ma..rio@pec.test",
            "mario@pec..test",
            "mario@-pec.test",
            "posta-certificata@pec.test",
            "MAILER-DAEMON@pec.test",
            "nobody",
            "@pec.test",
        ] {
            assert!(validate_new_address(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_new_address(&format!("{}@pec.test", "a".repeat(64))).is_ok());
    }

    #[test]
    fn add_verify_passwd_delete() {
        let m = crate::store::MemDb::new();
        let c = m.db();
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

    #[test]
    fn credential_changes_end_the_users_sessions() {
        let m = crate::store::MemDb::new();
        let c = m.db();
        let live = |t: &str| crate::store::sessions::find(&c, t).unwrap().is_some();
        let open = |t: &str, a: &str| {
            crate::store::sessions::create(&c, t, a, "csrf", 0, i64::MAX / 4, i64::MAX / 4).unwrap()
        };
        add(&c, "a@x", "h", 0).unwrap();
        add(&c, "b@x", "h", 0).unwrap();
        open("a1", "a@x");
        open("b1", "b@x");
        assert!(set_password(&c, "a@x", "h2").unwrap());
        assert!(!live("a1") && live("b1"));
        open("a2", "a@x");
        assert!(set_totp(&c, "a@x", "s", 0).unwrap());
        assert!(!live("a2"));
        open("a3", "a@x");
        assert!(clear_totp(&c, "a@x").unwrap());
        assert!(!live("a3"));
        open("a4", "a@x");
        set_totp(&c, "a@x", "s", 0).unwrap();
        open("a5", "a@x");
        assert!(delete(&c, "a@x").unwrap());
        assert!(!live("a5") && live("b1"));
        // The second factor went with the user: a new user of that name has none.
        add(&c, "a@x", "h", 0).unwrap();
        assert_eq!(totp_secret(&c, "a@x").unwrap(), None);
    }

    #[test]
    fn a_code_works_once_and_ten_wrong_ones_lock_the_second_factor() {
        let m = crate::store::MemDb::new();
        let c = m.db();
        add(&c, "a@x", "h", 0).unwrap();
        assert_eq!(
            totp_attempt(&c, "a@x", Some(5), 0).unwrap(),
            TotpOutcome::NotEnabled
        );
        set_totp(&c, "a@x", "s", 0).unwrap();
        assert_eq!(
            totp_attempt(&c, "a@x", Some(5), 0).unwrap(),
            TotpOutcome::Accepted
        );
        // The same step again, or an earlier one: refused.
        assert_eq!(
            totp_attempt(&c, "a@x", Some(5), 0).unwrap(),
            TotpOutcome::Replayed
        );
        assert_eq!(
            totp_attempt(&c, "a@x", Some(4), 0).unwrap(),
            TotpOutcome::Replayed
        );
        assert_eq!(
            totp_attempt(&c, "a@x", Some(6), 0).unwrap(),
            TotpOutcome::Accepted
        );
        // A success resets the count: ten more wrong ones are needed.
        for i in 1..TOTP_MAX_FAILURES {
            assert_eq!(
                totp_attempt(&c, "a@x", None, 1000).unwrap(),
                TotpOutcome::Wrong { locked: false },
                "failure {i}"
            );
        }
        assert_eq!(
            totp_attempt(&c, "a@x", None, 1000).unwrap(),
            TotpOutcome::Wrong { locked: true }
        );
        // Locked: even the right code is refused, until the delay passes.
        let until = 1000 + TOTP_LOCK_MS;
        assert_eq!(
            totp_attempt(&c, "a@x", Some(7), until - 1).unwrap(),
            TotpOutcome::Locked(until)
        );
        assert_eq!(
            totp_attempt(&c, "a@x", Some(7), until).unwrap(),
            TotpOutcome::Accepted
        );
    }
}

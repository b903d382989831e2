//! Mailbox owners: addresses and argon2id password hashes.

use super::{Result, Store};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

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

impl Store {
    /// Whether `password` is the password of user `address` (false for no
    /// such user, after the same work: see [`check_password`]). argon2 is
    /// deliberately slow: it runs on the blocking pool.
    pub async fn password_matches(&self, address: &str, password: &str) -> Result<bool> {
        let (a, pw) = (address.to_string(), password.to_string());
        self.read(move |db| Ok(check_password(db.user_password_hash(&a)?.as_deref(), &pw)))
            .await
    }

    /// The second-factor secret (as stored) of `address`, if turned on.
    pub async fn totp_secret(&self, address: &str) -> Result<Option<String>> {
        let a = address.to_string();
        self.read(move |db| db.totp_secret(&a)).await
    }

    /// Judge and record one second-factor attempt of `address` at `now_ms`:
    /// `step` is the time step the code matched, `None` for a wrong code.
    /// One transaction, so parallel attempts cannot both use one step nor
    /// slip past the lock.
    pub async fn totp_attempt(
        &self,
        address: &str,
        step: Option<i64>,
        now_ms: i64,
    ) -> Result<TotpOutcome> {
        let a = address.to_string();
        self.write(move |db| db.totp_attempt(&a, step, now_ms))
            .await
    }

    /// Add a user with password hash `hash`; false if it exists already.
    pub fn add_user_blocking(&self, address: &str, hash: &str, now_ms: i64) -> Result<bool> {
        let (a, h) = (address.to_string(), hash.to_string());
        self.write_blocking(move |db| db.user_add(&a, &h, now_ms))
    }

    /// Set a user's quota; false if there is no such user.
    pub fn set_quota_blocking(&self, address: &str, quota: Quota) -> Result<bool> {
        let a = address.to_string();
        self.write_blocking(move |db| db.user_set_quota(&a, quota))
    }

    /// Replace a user's password hash, ending the user's web sessions;
    /// false if there is no such user.
    pub fn set_password_blocking(&self, address: &str, hash: &str) -> Result<bool> {
        let (a, h) = (address.to_string(), hash.to_string());
        self.write_blocking(move |db| db.user_set_password(&a, &h))
    }

    /// Remove a user with its second factor and web sessions (the Maildir
    /// is kept); false if there was none.
    pub fn delete_user_blocking(&self, address: &str) -> Result<bool> {
        let a = address.to_string();
        self.write_blocking(move |db| db.user_delete(&a))
    }

    /// Turn on the second factor with `secret` (sealed), ending the user's
    /// web sessions; false if there is no such user.
    pub fn enable_totp_blocking(&self, address: &str, secret: &str, now_ms: i64) -> Result<bool> {
        let (a, s) = (address.to_string(), secret.to_string());
        self.write_blocking(move |db| db.totp_set(&a, &s, now_ms))
    }

    /// Turn the second factor off, ending the user's web sessions; false if
    /// it was not on.
    pub fn disable_totp_blocking(&self, address: &str) -> Result<bool> {
        let a = address.to_string();
        self.write_blocking(move |db| db.totp_clear(&a))
    }

    /// Every user with their quota setting, sorted by address.
    pub fn users_with_quotas_blocking(&self) -> Result<Vec<(String, Quota)>> {
        self.read_blocking(|db| db.users_with_quotas())
    }

    /// A user's quota setting, `None` if there is no such user.
    pub async fn quota(&self, address: &str) -> Result<Option<Quota>> {
        let a = address.to_string();
        self.read(move |db| db.user_quota(&a)).await
    }

    /// Blocking form of [`Store::quota`].
    pub fn quota_blocking(&self, address: &str) -> Result<Option<Quota>> {
        self.read_blocking(|db| db.user_quota(address))
    }

    /// Every second-factor secret as stored, by address.
    pub fn totp_secrets_blocking(&self) -> Result<Vec<(String, String)>> {
        self.read_blocking(|db| db.totp_secrets())
    }

    /// Replace stored secrets by other forms of the same secrets, each
    /// `(address, old, new)` only if still `old`, in one transaction; how
    /// many were replaced.
    pub fn reseal_totp_blocking(&self, changes: Vec<(String, String, String)>) -> Result<usize> {
        self.write_blocking(move |db| {
            let mut n = 0;
            for (a, old, new) in &changes {
                n += usize::from(db.totp_reseal(a, old, new)?);
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
}

//! The SQL of the users and their second factor (`users`, `user_totp`):
//! see `store::users`. Every change of a user's credentials ends the
//! user's web sessions in its transaction.

use rusqlite::{params, OptionalExtension};

use super::Db;
use crate::store::users::{normalize, Quota, TotpOutcome, TOTP_LOCK_MS, TOTP_MAX_FAILURES};
use crate::store::Result;

/// The `quota` column of a setting: NULL the default, -1 no limit, else bytes.
fn quota_to_sql(q: Quota) -> Option<i64> {
    match q {
        Quota::Default => None,
        Quota::Unlimited => Some(-1),
        Quota::Bytes(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
    }
}

fn quota_from_sql(v: Option<i64>) -> Quota {
    match v {
        None => Quota::Default,
        Some(n) if n < 0 => Quota::Unlimited,
        Some(n) => Quota::Bytes(n as u64),
    }
}

/// A second factor's state: the last time step used, the consecutive
/// failures, locked until (unix ms).
pub(super) type TotpState = (Option<i64>, i64, Option<i64>);

impl Db<'_> {
    /// Insert a user; false if it already exists.
    pub(in crate::store) fn user_add(
        &self,
        address: &str,
        hash: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let conn = self.sql();
        let n = conn.execute(
            "INSERT OR IGNORE INTO users(address, password_hash, created_at) VALUES (?1, ?2, ?3)",
            params![normalize(address), hash, now_ms],
        )?;
        Ok(n == 1)
    }

    /// Replace a user's password hash and end every web session of the
    /// user; false if there is no such user.
    pub(in crate::store) fn user_set_password(&self, address: &str, hash: &str) -> Result<bool> {
        let conn = self.sql();
        let n = conn.execute(
            "UPDATE users SET password_hash = ?2 WHERE address = ?1",
            params![normalize(address), hash],
        )?;
        self.sessions_end_all(address)?;
        Ok(n == 1)
    }

    /// Remove a user with its second factor and web sessions; false if
    /// there was none. The Maildir is kept (mail is evidence).
    pub(in crate::store) fn user_delete(&self, address: &str) -> Result<bool> {
        let conn = self.sql();
        let n = conn.execute("DELETE FROM users WHERE address = ?1", [normalize(address)])?;
        conn.execute(
            "DELETE FROM user_totp WHERE address = ?1",
            [normalize(address)],
        )?;
        self.totp_extras_clear(address)?;
        self.app_passwords_clear(address)?;
        self.notice_clear(address)?;
        self.sessions_end_all(address)?;
        self.tokens_revoke_all(address)?;
        Ok(n == 1)
    }

    /// Set a user's quota; false if there is no such user.
    pub(in crate::store) fn user_set_quota(&self, address: &str, quota: Quota) -> Result<bool> {
        let conn = self.sql();
        let n = conn.execute(
            "UPDATE users SET quota = ?2 WHERE address = ?1",
            params![normalize(address), quota_to_sql(quota)],
        )?;
        Ok(n == 1)
    }

    /// A user's quota setting, `None` if there is no such user.
    pub(in crate::store) fn user_quota(&self, address: &str) -> Result<Option<Quota>> {
        let conn = self.sql();
        Ok(conn
            .prepare_cached("SELECT quota FROM users WHERE address = ?1")?
            .query_row([normalize(address)], |r| r.get::<_, Option<i64>>(0))
            .optional()
            .map(|o| o.map(quota_from_sql))?)
    }

    /// Every user with their quota setting, sorted by address.
    pub(in crate::store) fn users_with_quotas(&self) -> Result<Vec<(String, Quota)>> {
        let conn = self.sql();
        let mut st = conn.prepare("SELECT address, quota FROM users ORDER BY address")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, quota_from_sql(r.get(1)?))))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The stored hash of a user.
    pub(in crate::store) fn user_password_hash(&self, address: &str) -> Result<Option<String>> {
        let conn = self.sql();
        Ok(conn
            .prepare_cached("SELECT password_hash FROM users WHERE address = ?1")?
            .query_row([normalize(address)], |r| r.get(0))
            .optional()?)
    }

    /// Whether a user exists.
    pub(in crate::store) fn user_exists(&self, address: &str) -> Result<bool> {
        Ok(self.user_password_hash(address)?.is_some())
    }

    /// Turn on the web login's second factor with `secret` (as stored:
    /// sealed by `auth::totp_key`), ending every web session of the user;
    /// false if there is no such user.
    pub(in crate::store) fn totp_set(
        &self,
        address: &str,
        secret: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let conn = self.sql();
        if !self.user_exists(address)? {
            return Ok(false);
        }
        conn.execute(
            "INSERT OR REPLACE INTO user_totp(address, secret, enabled_at) VALUES (?1, ?2, ?3)",
            params![normalize(address), secret, now_ms],
        )?;
        // Recovery codes belong to the secret they were made with.
        self.totp_extras_clear(address)?;
        self.sessions_end_all(address)?;
        Ok(true)
    }

    /// Turn the second factor off, ending every web session of the user;
    /// false if it was not on.
    pub(in crate::store) fn totp_clear(&self, address: &str) -> Result<bool> {
        let conn = self.sql();
        let n = conn.execute(
            "DELETE FROM user_totp WHERE address = ?1",
            [normalize(address)],
        )?;
        self.totp_extras_clear(address)?;
        self.sessions_end_all(address)?;
        Ok(n == 1)
    }

    /// The second-factor secret (as stored) of a user who turned it on.
    pub(in crate::store) fn totp_secret(&self, address: &str) -> Result<Option<String>> {
        let conn = self.sql();
        Ok(conn
            .prepare_cached("SELECT secret FROM user_totp WHERE address = ?1")?
            .query_row([normalize(address)], |r| r.get(0))
            .optional()?)
    }

    /// Every second-factor secret as stored, by address (re-sealing at start).
    pub(in crate::store) fn totp_secrets(&self) -> Result<Vec<(String, String)>> {
        let mut st = self
            .sql()
            .prepare("SELECT address, secret FROM user_totp ORDER BY address")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Replace a stored secret by another form of the same secret, if it
    /// is still `old` (a concurrent `totp enable` wins); whether it was
    /// replaced.
    pub(in crate::store) fn totp_reseal(
        &self,
        address: &str,
        old: &str,
        new: &str,
    ) -> Result<bool> {
        let n = self.sql().execute(
            "UPDATE user_totp SET secret = ?3 WHERE address = ?1 AND secret = ?2",
            params![normalize(address), old, new],
        )?;
        Ok(n == 1)
    }

    /// Judge and record one second-factor attempt of `address` at
    /// `now_ms`: `step` is the time step the code matched, `None` for a
    /// wrong code. One transaction, so parallel attempts cannot both use
    /// one step nor slip past the lock.
    pub(in crate::store) fn totp_attempt(
        &self,
        address: &str,
        step: Option<i64>,
        now_ms: i64,
    ) -> Result<TotpOutcome> {
        let a = normalize(address);
        let c = self.sql();
        let Some((last, failures, locked_until)) = self.totp_state(&a)? else {
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
                let locked = self.totp_failed(&a, failures, now_ms)?;
                Ok(match step {
                    Some(_) => TotpOutcome::Replayed,
                    None => TotpOutcome::Wrong { locked },
                })
            }
        }
    }

    /// The second step's state of `address` (normalised): `None` without a
    /// second factor.
    pub(super) fn totp_state(&self, address: &str) -> Result<Option<TotpState>> {
        Ok(self
            .sql()
            .prepare_cached(
                "SELECT last_step, failures, locked_until FROM user_totp WHERE address = ?1",
            )?
            .query_row([address], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?)
    }

    /// Count one more wrong second-factor answer of `address` (normalised),
    /// which had `failures` in a row before it; whether it locked the
    /// second factor (the count starts again then).
    pub(super) fn totp_failed(&self, address: &str, failures: i64, now_ms: i64) -> Result<bool> {
        let c = self.sql();
        let n = failures + 1;
        let locked = n >= TOTP_MAX_FAILURES;
        if locked {
            c.execute(
                "UPDATE user_totp SET failures = 0, locked_until = ?2 WHERE address = ?1",
                params![address, now_ms + TOTP_LOCK_MS],
            )?;
        } else {
            c.execute(
                "UPDATE user_totp SET failures = ?2 WHERE address = ?1",
                params![address, n],
            )?;
        }
        Ok(locked)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::MemDb;
    use crate::store::users::{
        hash_password, verify_password, TotpOutcome, TOTP_LOCK_MS, TOTP_MAX_FAILURES,
    };

    #[test]
    fn add_verify_passwd_delete() {
        let m = MemDb::new();
        let c = m.db();
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(c.user_add("Alice@PEC.alpha.test", &h, 0).unwrap());
        assert!(!c.user_add("alice@pec.alpha.test", &h, 0).unwrap());
        let stored = c
            .user_password_hash("alice@pec.alpha.test")
            .unwrap()
            .unwrap();
        assert!(verify_password(&stored, "s3cret"));
        assert!(!verify_password(&stored, "wrong"));
        assert!(c
            .user_set_password("alice@pec.alpha.test", &hash_password("new").unwrap())
            .unwrap());
        let stored = c
            .user_password_hash("alice@pec.alpha.test")
            .unwrap()
            .unwrap();
        assert!(verify_password(&stored, "new"));
        let listed: Vec<String> = c
            .users_with_quotas()
            .unwrap()
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        assert_eq!(listed, vec!["alice@pec.alpha.test".to_string()]);
        assert!(c.user_delete("alice@pec.alpha.test").unwrap());
        assert!(!c.user_exists("alice@pec.alpha.test").unwrap());
    }

    #[test]
    fn credential_changes_end_the_users_sessions() {
        let m = MemDb::new();
        let c = m.db();
        let live = |t: &str| c.session_find(t).unwrap().is_some();
        let open = |t: &str, a: &str| {
            c.session_create(t, a, "csrf", 0, i64::MAX / 4, i64::MAX / 4)
                .unwrap()
        };
        c.user_add("a@x", "h", 0).unwrap();
        c.user_add("b@x", "h", 0).unwrap();
        open("a1", "a@x");
        open("b1", "b@x");
        assert!(c.user_set_password("a@x", "h2").unwrap());
        assert!(!live("a1") && live("b1"));
        open("a2", "a@x");
        assert!(c.totp_set("a@x", "s", 0).unwrap());
        assert!(!live("a2"));
        open("a3", "a@x");
        assert!(c.totp_clear("a@x").unwrap());
        assert!(!live("a3"));
        open("a4", "a@x");
        c.totp_set("a@x", "s", 0).unwrap();
        open("a5", "a@x");
        assert!(c.user_delete("a@x").unwrap());
        assert!(!live("a5") && live("b1"));
        // The second factor went with the user: a new user of that name has none.
        c.user_add("a@x", "h", 0).unwrap();
        assert_eq!(c.totp_secret("a@x").unwrap(), None);
    }

    #[test]
    fn a_code_works_once_and_ten_wrong_ones_lock_the_second_factor() {
        let m = MemDb::new();
        let c = m.db();
        c.user_add("a@x", "h", 0).unwrap();
        assert_eq!(
            c.totp_attempt("a@x", Some(5), 0).unwrap(),
            TotpOutcome::NotEnabled
        );
        c.totp_set("a@x", "s", 0).unwrap();
        assert_eq!(
            c.totp_attempt("a@x", Some(5), 0).unwrap(),
            TotpOutcome::Accepted
        );
        // The same step again, or an earlier one: refused.
        assert_eq!(
            c.totp_attempt("a@x", Some(5), 0).unwrap(),
            TotpOutcome::Replayed
        );
        assert_eq!(
            c.totp_attempt("a@x", Some(4), 0).unwrap(),
            TotpOutcome::Replayed
        );
        assert_eq!(
            c.totp_attempt("a@x", Some(6), 0).unwrap(),
            TotpOutcome::Accepted
        );
        // A success resets the count: ten more wrong ones are needed.
        for i in 1..TOTP_MAX_FAILURES {
            assert_eq!(
                c.totp_attempt("a@x", None, 1000).unwrap(),
                TotpOutcome::Wrong { locked: false },
                "failure {i}"
            );
        }
        assert_eq!(
            c.totp_attempt("a@x", None, 1000).unwrap(),
            TotpOutcome::Wrong { locked: true }
        );
        // Locked: even the right code is refused, until the delay passes.
        let until = 1000 + TOTP_LOCK_MS;
        assert_eq!(
            c.totp_attempt("a@x", Some(7), until - 1).unwrap(),
            TotpOutcome::Locked(until)
        );
        assert_eq!(
            c.totp_attempt("a@x", Some(7), until).unwrap(),
            TotpOutcome::Accepted
        );
    }
}

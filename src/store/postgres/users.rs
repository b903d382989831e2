//! The SQL of the users and their second factor on PostgreSQL: see
//! `sqlite/users.rs`, whose statements these translate.

use super::PgDb;
use crate::store::users::{normalize, Quota, TotpOutcome};
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

impl PgDb<'_> {
    /// Insert a user; false if it already exists.
    pub(in crate::store) fn user_add(
        &self,
        address: &str,
        hash: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let n = self.exec(
            "INSERT INTO users(address, password_hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (address) DO NOTHING",
            &[&normalize(address), &hash, &now_ms],
        )?;
        Ok(n == 1)
    }

    /// Replace a user's password hash and end every web session of the user.
    pub(in crate::store) fn user_set_password(&self, address: &str, hash: &str) -> Result<bool> {
        let n = self.exec(
            "UPDATE users SET password_hash = $2 WHERE address = $1",
            &[&normalize(address), &hash],
        )?;
        self.sessions_end_all(address)?;
        Ok(n == 1)
    }

    /// Remove a user with its second factor, app passwords and web sessions.
    pub(in crate::store) fn user_delete(&self, address: &str) -> Result<bool> {
        let a = normalize(address);
        let n = self.exec("DELETE FROM users WHERE address = $1", &[&a])?;
        self.exec("DELETE FROM user_totp WHERE address = $1", &[&a])?;
        self.totp_extras_clear(&a)?;
        self.app_passwords_clear(&a)?;
        self.notice_clear(&a)?;
        self.sessions_end_all(address)?;
        self.tokens_revoke_all(address)?;
        Ok(n == 1)
    }

    /// Set a user's quota; false if there is no such user.
    pub(in crate::store) fn user_set_quota(&self, address: &str, quota: Quota) -> Result<bool> {
        let n = self.exec(
            "UPDATE users SET quota = $2 WHERE address = $1",
            &[&normalize(address), &quota_to_sql(quota)],
        )?;
        Ok(n == 1)
    }

    /// A user's quota setting, `None` if there is no such user.
    pub(in crate::store) fn user_quota(&self, address: &str) -> Result<Option<Quota>> {
        Ok(self
            .opt(
                "SELECT quota FROM users WHERE address = $1",
                &[&normalize(address)],
            )?
            .map(|r| quota_from_sql(r.get(0))))
    }

    /// Every user with their quota setting, sorted by address.
    pub(in crate::store) fn users_with_quotas(&self) -> Result<Vec<(String, Quota)>> {
        Ok(self
            .rows("SELECT address, quota FROM users ORDER BY address", &[])?
            .iter()
            .map(|r| (r.get(0), quota_from_sql(r.get(1))))
            .collect())
    }

    /// The stored hash of a user.
    pub(in crate::store) fn user_password_hash(&self, address: &str) -> Result<Option<String>> {
        Ok(self
            .opt(
                "SELECT password_hash FROM users WHERE address = $1",
                &[&normalize(address)],
            )?
            .map(|r| r.get(0)))
    }

    /// Whether a user exists.
    pub(in crate::store) fn user_exists(&self, address: &str) -> Result<bool> {
        Ok(self.user_password_hash(address)?.is_some())
    }

    /// Turn on the second factor, ending every web session of the user.
    pub(in crate::store) fn totp_set(
        &self,
        address: &str,
        secret: &str,
        now_ms: i64,
    ) -> Result<bool> {
        if !self.user_exists(address)? {
            return Ok(false);
        }
        // A new secret starts afresh, as SQLite's INSERT OR REPLACE does.
        self.exec(
            "INSERT INTO user_totp(address, secret, enabled_at) VALUES ($1, $2, $3)
             ON CONFLICT (address) DO UPDATE SET secret = excluded.secret,
                 enabled_at = excluded.enabled_at, last_step = NULL, failures = 0,
                 locked_until = NULL",
            &[&normalize(address), &secret, &now_ms],
        )?;
        // Recovery codes belong to the secret they were made with.
        self.totp_extras_clear(address)?;
        self.sessions_end_all(address)?;
        Ok(true)
    }

    /// Turn the second factor off, ending every web session of the user.
    pub(in crate::store) fn totp_clear(&self, address: &str) -> Result<bool> {
        let n = self.exec(
            "DELETE FROM user_totp WHERE address = $1",
            &[&normalize(address)],
        )?;
        self.totp_extras_clear(address)?;
        self.sessions_end_all(address)?;
        Ok(n == 1)
    }

    /// The second-factor secret (as stored) of a user who turned it on.
    pub(in crate::store) fn totp_secret(&self, address: &str) -> Result<Option<String>> {
        Ok(self
            .opt(
                "SELECT secret FROM user_totp WHERE address = $1",
                &[&normalize(address)],
            )?
            .map(|r| r.get(0)))
    }

    /// Every second-factor secret as stored, by address.
    pub(in crate::store) fn totp_secrets(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .rows(
                "SELECT address, secret FROM user_totp ORDER BY address",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// Replace a stored secret by another form of it, if it is still `old`.
    pub(in crate::store) fn totp_reseal(
        &self,
        address: &str,
        old: &str,
        new: &str,
    ) -> Result<bool> {
        let n = self.exec(
            "UPDATE user_totp SET secret = $3 WHERE address = $1 AND secret = $2",
            &[&normalize(address), &old, &new],
        )?;
        Ok(n == 1)
    }

    /// Judge and record one second-factor attempt. The row is locked
    /// (`FOR UPDATE`) so parallel attempts, on any node, cannot both use
    /// one step nor slip past the lock.
    pub(in crate::store) fn totp_attempt(
        &self,
        address: &str,
        step: Option<i64>,
        now_ms: i64,
    ) -> Result<TotpOutcome> {
        let a = normalize(address);
        let Some(row) = self.opt(
            "SELECT last_step, failures, locked_until FROM user_totp WHERE address = $1 FOR UPDATE",
            &[&a],
        )?
        else {
            return Ok(TotpOutcome::NotEnabled);
        };
        let (last, failures, locked_until): (Option<i64>, i64, Option<i64>) =
            (row.get(0), row.get(1), row.get(2));
        if let Some(t) = locked_until.filter(|t| *t > now_ms) {
            return Ok(TotpOutcome::Locked(t));
        }
        match step {
            Some(s) if last.is_none_or(|l| s > l) => {
                self.exec(
                    "UPDATE user_totp SET last_step = $2, failures = 0, locked_until = NULL WHERE address = $1",
                    &[&a, &s],
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
}

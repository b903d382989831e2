//! The SQL of account self-service on PostgreSQL: see
//! `sqlite/account.rs`, whose statements these translate. A change that
//! depends on what it read first (the count of app passwords, the second
//! factor's failures) locks the row it read (`FOR UPDATE`), so two nodes
//! answering the same user at once cannot both pass a limit.

use ::postgres::Row;

use super::PgDb;
use crate::flow::batch::JobId;
use crate::flow::notice::State;
use crate::store::account::{AppPassword, AppPasswordAdded, MAX_APP_PASSWORDS};
use crate::store::sessions::token_hash;
use crate::store::users::{normalize, TotpOutcome, TOTP_LOCK_MS, TOTP_MAX_FAILURES};
use crate::store::Result;

fn app_password(r: &Row) -> AppPassword {
    AppPassword {
        id: r.get(0),
        label: r.get(1),
        created_at: r.get(2),
        last_used: r.get(3),
    }
}

impl PgDb<'_> {
    /// Whether `address` (normalised) exists, its row locked until the
    /// transaction ends (a read outside a transaction locks nothing).
    fn user_lock(&self, address: &str) -> Result<bool> {
        Ok(self
            .opt(
                "SELECT 1 FROM users WHERE address = $1 FOR UPDATE",
                &[&address],
            )?
            .is_some())
    }

    /// End every web session of `address` but the one of `keep` (a token).
    pub(in crate::store) fn sessions_end_others(&self, address: &str, keep: &str) -> Result<()> {
        self.exec(
            "DELETE FROM web_sessions WHERE address = $1 AND token_hash <> $2",
            &[&normalize(address), &&token_hash(keep)[..]],
        )?;
        Ok(())
    }

    /// Replace a user's password hash, ending the user's other web sessions.
    pub(in crate::store) fn user_change_password(
        &self,
        address: &str,
        hash: &str,
        keep: &str,
    ) -> Result<bool> {
        let n = self.exec(
            "UPDATE users SET password_hash = $2 WHERE address = $1",
            &[&normalize(address), &hash],
        )?;
        self.sessions_end_others(address, keep)?;
        Ok(n == 1)
    }

    /// Store a new app password of `address` (its digest only).
    pub(in crate::store) fn app_password_add(
        &self,
        address: &str,
        id: &str,
        label: &str,
        digest: &[u8; 32],
        now_ms: i64,
    ) -> Result<AppPasswordAdded> {
        let a = normalize(address);
        if !self.user_lock(&a)? {
            return Ok(AppPasswordAdded::NoUser);
        }
        let n: i64 = self
            .one(
                "SELECT count(*) FROM app_passwords WHERE address = $1",
                &[&a],
            )?
            .get(0);
        if n >= MAX_APP_PASSWORDS {
            return Ok(AppPasswordAdded::TooMany);
        }
        self.exec(
            "INSERT INTO app_passwords(id, address, label, hash, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &a, &label, &&digest[..], &now_ms],
        )?;
        Ok(AppPasswordAdded::Added)
    }

    /// The app passwords of `address`, oldest first.
    pub(in crate::store) fn app_passwords(&self, address: &str) -> Result<Vec<AppPassword>> {
        Ok(self
            .rows(
                "SELECT id, label, created_at, last_used FROM app_passwords WHERE address = $1
                 ORDER BY created_at, id",
                &[&normalize(address)],
            )?
            .iter()
            .map(app_password)
            .collect())
    }

    /// Remove app password `id` of `address`; false if it has none of that id.
    pub(in crate::store) fn app_password_revoke(&self, address: &str, id: &str) -> Result<bool> {
        let n = self.exec(
            "DELETE FROM app_passwords WHERE address = $1 AND id = $2",
            &[&normalize(address), &id],
        )?;
        Ok(n == 1)
    }

    /// The app password of `address` with this digest.
    pub(in crate::store) fn app_password_find(
        &self,
        address: &str,
        digest: &[u8; 32],
    ) -> Result<Option<AppPassword>> {
        Ok(self
            .opt(
                "SELECT id, label, created_at, last_used FROM app_passwords
                 WHERE hash = $1 AND address = $2",
                &[&&digest[..], &normalize(address)],
            )?
            .as_ref()
            .map(app_password))
    }

    /// Record a use of app password `id` at `now_ms`.
    pub(in crate::store) fn app_password_used(&self, id: &str, now_ms: i64) -> Result<()> {
        self.exec(
            "UPDATE app_passwords SET last_used = greatest(coalesce(last_used, 0), $2) WHERE id = $1",
            &[&id, &now_ms],
        )?;
        Ok(())
    }

    /// Remove every app password of `address`.
    pub(in crate::store) fn app_passwords_clear(&self, address: &str) -> Result<()> {
        self.exec(
            "DELETE FROM app_passwords WHERE address = $1",
            &[&normalize(address)],
        )?;
        Ok(())
    }

    /// Forget the recovery codes and any enrolment in progress of `address`.
    pub(in crate::store) fn totp_extras_clear(&self, address: &str) -> Result<()> {
        let a = normalize(address);
        self.exec("DELETE FROM totp_recovery WHERE address = $1", &[&a])?;
        self.exec("DELETE FROM totp_pending WHERE address = $1", &[&a])?;
        Ok(())
    }

    /// Start (or restart) an enrolment of `address` with `secret` (sealed).
    pub(in crate::store) fn totp_pending_set(
        &self,
        address: &str,
        secret: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let a = normalize(address);
        if !self.user_lock(&a)? {
            return Ok(false);
        }
        self.exec(
            "INSERT INTO totp_pending(address, secret, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (address) DO UPDATE SET secret = excluded.secret,
                 created_at = excluded.created_at",
            &[&a, &secret, &now_ms],
        )?;
        Ok(true)
    }

    /// The enrolment in progress of `address`: (sealed secret, started at).
    pub(in crate::store) fn totp_pending(&self, address: &str) -> Result<Option<(String, i64)>> {
        Ok(self
            .opt(
                "SELECT secret, created_at FROM totp_pending WHERE address = $1",
                &[&normalize(address)],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    /// Finish the enrolment of `address` whose pending secret is still
    /// `secret`. The DELETE of the pending row decides: of two confirmations
    /// at once, the second finds it gone.
    pub(in crate::store) fn totp_confirm(
        &self,
        address: &str,
        secret: &str,
        step: i64,
        recovery: &[[u8; 32]],
        now_ms: i64,
        keep: &str,
    ) -> Result<bool> {
        let a = normalize(address);
        let n = self.exec(
            "DELETE FROM totp_pending WHERE address = $1 AND secret = $2",
            &[&a, &secret],
        )?;
        if n != 1 || !self.user_lock(&a)? {
            return Ok(false);
        }
        // A new secret starts afresh, as SQLite's INSERT OR REPLACE does.
        self.exec(
            "INSERT INTO user_totp(address, secret, enabled_at, last_step) VALUES ($1, $2, $3, $4)
             ON CONFLICT (address) DO UPDATE SET secret = excluded.secret,
                 enabled_at = excluded.enabled_at, last_step = excluded.last_step,
                 failures = 0, locked_until = NULL",
            &[&a, &secret, &now_ms, &step],
        )?;
        self.exec("DELETE FROM totp_recovery WHERE address = $1", &[&a])?;
        for d in recovery {
            self.exec(
                "INSERT INTO totp_recovery(address, hash) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&a, &&d[..]],
            )?;
        }
        self.sessions_end_others(&a, keep)?;
        Ok(true)
    }

    /// Turn the second factor of `address` off, ending the user's other
    /// web sessions; false if it was not on.
    pub(in crate::store) fn totp_disable_keeping(&self, address: &str, keep: &str) -> Result<bool> {
        let a = normalize(address);
        let n = self.exec("DELETE FROM user_totp WHERE address = $1", &[&a])?;
        self.totp_extras_clear(&a)?;
        self.sessions_end_others(&a, keep)?;
        Ok(n == 1)
    }

    /// Judge and record one recovery code (its digest) of `address`. The
    /// second factor's row is locked, as in `totp_attempt`, so parallel
    /// wrong codes cannot slip past the lock.
    pub(in crate::store) fn totp_recovery_attempt(
        &self,
        address: &str,
        digest: &[u8; 32],
        now_ms: i64,
    ) -> Result<TotpOutcome> {
        let a = normalize(address);
        let Some(row) = self.opt(
            "SELECT failures, locked_until FROM user_totp WHERE address = $1 FOR UPDATE",
            &[&a],
        )?
        else {
            return Ok(TotpOutcome::NotEnabled);
        };
        let (failures, locked_until): (i64, Option<i64>) = (row.get(0), row.get(1));
        if let Some(t) = locked_until.filter(|t| *t > now_ms) {
            return Ok(TotpOutcome::Locked(t));
        }
        let n = self.exec(
            "DELETE FROM totp_recovery WHERE address = $1 AND hash = $2",
            &[&a, &&digest[..]],
        )?;
        if n == 1 {
            self.exec(
                "UPDATE user_totp SET failures = 0, locked_until = NULL WHERE address = $1",
                &[&a],
            )?;
            return Ok(TotpOutcome::Accepted);
        }
        let locked = self.totp_failed(&a, failures, now_ms)?;
        Ok(TotpOutcome::Wrong { locked })
    }

    /// Count one more wrong second-factor answer of `address` (normalised),
    /// which had `failures` in a row before it; whether it locked the
    /// second factor (the count starts again then).
    pub(super) fn totp_failed(&self, address: &str, failures: i64, now_ms: i64) -> Result<bool> {
        let n = failures + 1;
        let locked = n >= TOTP_MAX_FAILURES;
        if locked {
            self.exec(
                "UPDATE user_totp SET failures = 0, locked_until = $2 WHERE address = $1",
                &[&address, &(now_ms + TOTP_LOCK_MS)],
            )?;
        } else {
            self.exec(
                "UPDATE user_totp SET failures = $2 WHERE address = $1",
                &[&address, &n],
            )?;
        }
        Ok(locked)
    }

    /// How many unused recovery codes `address` has.
    pub(in crate::store) fn totp_recovery_left(&self, address: &str) -> Result<i64> {
        Ok(self
            .one(
                "SELECT count(*) FROM totp_recovery WHERE address = $1",
                &[&normalize(address)],
            )?
            .get(0))
    }
    /// Set (or, empty, remove) the ordinary address told of each new PEC
    /// of `address`, keeping the notices' state; false if no such user.
    pub(in crate::store) fn notice_set(&self, address: &str, email: &str) -> Result<bool> {
        let a = normalize(address);
        if !self.user_lock(&a)? {
            return Ok(false);
        }
        if email.is_empty() {
            self.notice_clear(&a)?;
        } else {
            self.exec(
                "INSERT INTO notice_settings(address, email) VALUES ($1, $2)
                 ON CONFLICT (address) DO UPDATE SET email = excluded.email",
                &[&a, &email],
            )?;
        }
        Ok(true)
    }

    /// Forget the notice address of `address`.
    pub(in crate::store) fn notice_clear(&self, address: &str) -> Result<()> {
        self.exec(
            "DELETE FROM notice_settings WHERE address = $1",
            &[&normalize(address)],
        )?;
        Ok(())
    }

    /// The notice address of `address` and the notices' state.
    pub(in crate::store) fn notice_get(&self, address: &str) -> Result<Option<(String, State)>> {
        Ok(self
            .opt(
                "SELECT email, next_at, held, summary_job FROM notice_settings WHERE address = $1",
                &[&normalize(address)],
            )?
            .map(|r| {
                (
                    r.get(0),
                    State {
                        next_at: r.get(1),
                        held: r.get(2),
                        summary_job: r.get::<_, Option<i64>>(3).map(JobId),
                    },
                )
            }))
    }

    /// Move the notices' state of `address` from `seen` to `then` (the
    /// UPDATE's row lock makes a second swap from the same `seen` wait and
    /// then find the row changed).
    pub(in crate::store) fn notice_swap(
        &self,
        address: &str,
        seen: &State,
        then: &State,
    ) -> Result<bool> {
        let n = self.exec(
            "UPDATE notice_settings SET next_at = $5, held = $6, summary_job = $7
             WHERE address = $1 AND next_at = $2 AND held = $3
               AND summary_job IS NOT DISTINCT FROM $4",
            &[
                &normalize(address),
                &seen.next_at,
                &seen.held,
                &seen.summary_job.map(|j| j.0),
                &then.next_at,
                &then.held,
                &then.summary_job.map(|j| j.0),
            ],
        )?;
        Ok(n == 1)
    }
}

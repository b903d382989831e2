//! The SQL of account self-service (`app_passwords`, `totp_recovery`,
//! `totp_pending`): see `store::account`. A change the user makes from a
//! web session ends the user's other sessions in its transaction and keeps
//! that one.

use rusqlite::{params, OptionalExtension};

use super::Db;
use crate::flow::batch::JobId;
use crate::flow::notice::State;
use crate::store::account::{AppPassword, AppPasswordAdded, MAX_APP_PASSWORDS};
use crate::store::sessions::token_hash;
use crate::store::users::{normalize, TotpOutcome};
use crate::store::Result;

impl Db<'_> {
    /// End every web session of `address` but the one of `keep` (a token).
    pub(in crate::store) fn sessions_end_others(&self, address: &str, keep: &str) -> Result<()> {
        self.sql().execute(
            "DELETE FROM web_sessions WHERE address = ?1 AND token_hash <> ?2",
            params![normalize(address), &token_hash(keep)[..]],
        )?;
        Ok(())
    }

    /// Replace a user's password hash, ending the user's other web
    /// sessions; false if there is no such user.
    pub(in crate::store) fn user_change_password(
        &self,
        address: &str,
        hash: &str,
        keep: &str,
    ) -> Result<bool> {
        let n = self.sql().execute(
            "UPDATE users SET password_hash = ?2 WHERE address = ?1",
            params![normalize(address), hash],
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
        if !self.user_exists(&a)? {
            return Ok(AppPasswordAdded::NoUser);
        }
        let c = self.sql();
        let n: i64 = c.query_row(
            "SELECT count(*) FROM app_passwords WHERE address = ?1",
            [&a],
            |r| r.get(0),
        )?;
        if n >= MAX_APP_PASSWORDS {
            return Ok(AppPasswordAdded::TooMany);
        }
        c.execute(
            "INSERT INTO app_passwords(id, address, label, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, a, label, &digest[..], now_ms],
        )?;
        Ok(AppPasswordAdded::Added)
    }

    /// The app passwords of `address`, oldest first.
    pub(in crate::store) fn app_passwords(&self, address: &str) -> Result<Vec<AppPassword>> {
        let c = self.sql();
        let mut st = c.prepare_cached(
            "SELECT id, label, created_at, last_used FROM app_passwords WHERE address = ?1 ORDER BY created_at, id",
        )?;
        let rows = st.query_map([normalize(address)], |r| {
            Ok(AppPassword {
                id: r.get(0)?,
                label: r.get(1)?,
                created_at: r.get(2)?,
                last_used: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Remove app password `id` of `address`; false if `address` has none
    /// of that id (another user's id included).
    pub(in crate::store) fn app_password_revoke(&self, address: &str, id: &str) -> Result<bool> {
        let n = self.sql().execute(
            "DELETE FROM app_passwords WHERE address = ?1 AND id = ?2",
            params![normalize(address), id],
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
            .sql()
            .prepare_cached(
                "SELECT id, label, created_at, last_used FROM app_passwords WHERE hash = ?1 AND address = ?2",
            )?
            .query_row(params![&digest[..], normalize(address)], |r| {
                Ok(AppPassword {
                    id: r.get(0)?,
                    label: r.get(1)?,
                    created_at: r.get(2)?,
                    last_used: r.get(3)?,
                })
            })
            .optional()?)
    }

    /// Record a use of app password `id` at `now_ms`.
    pub(in crate::store) fn app_password_used(&self, id: &str, now_ms: i64) -> Result<()> {
        self.sql().execute(
            "UPDATE app_passwords SET last_used = max(coalesce(last_used, 0), ?2) WHERE id = ?1",
            params![id, now_ms],
        )?;
        Ok(())
    }

    /// Remove every app password of `address`.
    pub(in crate::store) fn app_passwords_clear(&self, address: &str) -> Result<()> {
        self.sql().execute(
            "DELETE FROM app_passwords WHERE address = ?1",
            [normalize(address)],
        )?;
        Ok(())
    }

    /// Forget the recovery codes and any enrolment in progress of `address`.
    pub(in crate::store) fn totp_extras_clear(&self, address: &str) -> Result<()> {
        let c = self.sql();
        let a = normalize(address);
        c.execute("DELETE FROM totp_recovery WHERE address = ?1", [&a])?;
        c.execute("DELETE FROM totp_pending WHERE address = ?1", [&a])?;
        Ok(())
    }

    /// Start (or restart) an enrolment of `address` with `secret` (sealed);
    /// false if there is no such user.
    pub(in crate::store) fn totp_pending_set(
        &self,
        address: &str,
        secret: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let a = normalize(address);
        if !self.user_exists(&a)? {
            return Ok(false);
        }
        self.sql().execute(
            "INSERT OR REPLACE INTO totp_pending(address, secret, created_at) VALUES (?1, ?2, ?3)",
            params![a, secret, now_ms],
        )?;
        Ok(true)
    }

    /// The enrolment in progress of `address`: (sealed secret, started at).
    pub(in crate::store) fn totp_pending(&self, address: &str) -> Result<Option<(String, i64)>> {
        Ok(self
            .sql()
            .prepare_cached("SELECT secret, created_at FROM totp_pending WHERE address = ?1")?
            .query_row([normalize(address)], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Finish the enrolment of `address` whose pending secret is still
    /// `secret`: the second factor on (its code of time step `step` used),
    /// `recovery` its codes (digests), the user's other web sessions ended;
    /// false if that enrolment is gone (restarted, or finished already).
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
        let c = self.sql();
        let n = c.execute(
            "DELETE FROM totp_pending WHERE address = ?1 AND secret = ?2",
            params![a, secret],
        )?;
        if n != 1 || !self.user_exists(&a)? {
            return Ok(false);
        }
        c.execute(
            "INSERT OR REPLACE INTO user_totp(address, secret, enabled_at, last_step) VALUES (?1, ?2, ?3, ?4)",
            params![a, secret, now_ms, step],
        )?;
        c.execute("DELETE FROM totp_recovery WHERE address = ?1", [&a])?;
        let mut ins =
            c.prepare_cached("INSERT OR IGNORE INTO totp_recovery(address, hash) VALUES (?1, ?2)")?;
        for d in recovery {
            ins.execute(params![a, &d[..]])?;
        }
        self.sessions_end_others(&a, keep)?;
        Ok(true)
    }

    /// Turn the second factor of `address` off (recovery codes and any
    /// enrolment with it), ending the user's other web sessions; false if it
    /// was not on.
    pub(in crate::store) fn totp_disable_keeping(&self, address: &str, keep: &str) -> Result<bool> {
        let a = normalize(address);
        let n = self
            .sql()
            .execute("DELETE FROM user_totp WHERE address = ?1", [&a])?;
        self.totp_extras_clear(&a)?;
        self.sessions_end_others(&a, keep)?;
        Ok(n == 1)
    }

    /// Judge and record one recovery code (its digest) of `address` at
    /// `now_ms`: a code of the user's is accepted once and deleted; a wrong
    /// one counts with the wrong TOTP codes towards the lock.
    pub(in crate::store) fn totp_recovery_attempt(
        &self,
        address: &str,
        digest: &[u8; 32],
        now_ms: i64,
    ) -> Result<TotpOutcome> {
        let a = normalize(address);
        let Some((_, failures, locked_until)) = self.totp_state(&a)? else {
            return Ok(TotpOutcome::NotEnabled);
        };
        if let Some(t) = locked_until.filter(|t| *t > now_ms) {
            return Ok(TotpOutcome::Locked(t));
        }
        let c = self.sql();
        let n = c.execute(
            "DELETE FROM totp_recovery WHERE address = ?1 AND hash = ?2",
            params![a, &digest[..]],
        )?;
        if n == 1 {
            c.execute(
                "UPDATE user_totp SET failures = 0, locked_until = NULL WHERE address = ?1",
                [&a],
            )?;
            return Ok(TotpOutcome::Accepted);
        }
        let locked = self.totp_failed(&a, failures, now_ms)?;
        Ok(TotpOutcome::Wrong { locked })
    }

    /// How many unused recovery codes `address` has.
    pub(in crate::store) fn totp_recovery_left(&self, address: &str) -> Result<i64> {
        Ok(self.sql().query_row(
            "SELECT count(*) FROM totp_recovery WHERE address = ?1",
            [normalize(address)],
            |r| r.get(0),
        )?)
    }
    /// Set (or, empty, remove) the ordinary address told of each new PEC
    /// of `address`, keeping the notices' state; false if no such user.
    pub(in crate::store) fn notice_set(&self, address: &str, email: &str) -> Result<bool> {
        let a = normalize(address);
        if !self.user_exists(&a)? {
            return Ok(false);
        }
        if email.is_empty() {
            self.notice_clear(&a)?;
        } else {
            self.sql().execute(
                "INSERT INTO notice_settings(address, email) VALUES (?1, ?2)
                 ON CONFLICT (address) DO UPDATE SET email = excluded.email",
                params![a, email],
            )?;
        }
        Ok(true)
    }

    /// Forget the notice address of `address`.
    pub(in crate::store) fn notice_clear(&self, address: &str) -> Result<()> {
        self.sql().execute(
            "DELETE FROM notice_settings WHERE address = ?1",
            [normalize(address)],
        )?;
        Ok(())
    }

    /// The notice address of `address` and the notices' state.
    pub(in crate::store) fn notice_get(&self, address: &str) -> Result<Option<(String, State)>> {
        Ok(self
            .sql()
            .prepare_cached(
                "SELECT email, next_at, held, summary_job FROM notice_settings WHERE address = ?1",
            )?
            .query_row([normalize(address)], |r| {
                Ok((
                    r.get(0)?,
                    State {
                        next_at: r.get(1)?,
                        held: r.get(2)?,
                        summary_job: r.get::<_, Option<i64>>(3)?.map(JobId),
                    },
                ))
            })
            .optional()?)
    }

    /// Move the notices' state of `address` from `seen` to `then`.
    pub(in crate::store) fn notice_swap(
        &self,
        address: &str,
        seen: &State,
        then: &State,
    ) -> Result<bool> {
        let n = self.sql().execute(
            "UPDATE notice_settings SET next_at = ?5, held = ?6, summary_job = ?7
             WHERE address = ?1 AND next_at = ?2 AND held = ?3 AND summary_job IS ?4",
            params![
                normalize(address),
                seen.next_at,
                seen.held,
                seen.summary_job.map(|j| j.0),
                then.next_at,
                then.held,
                then.summary_job.map(|j| j.0)
            ],
        )?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::account::AppPasswordAdded;
    use crate::store::sqlite::MemDb;
    use crate::store::users::{TotpOutcome, TOTP_MAX_FAILURES};

    #[test]
    fn app_passwords_are_per_user_and_revoked_by_their_owner_only() {
        let m = MemDb::new();
        let c = m.db();
        c.user_add("a@x", "h", 0).unwrap();
        c.user_add("b@x", "h", 0).unwrap();
        assert_eq!(
            c.app_password_add("nobody@x", "i0", "l", &[0; 32], 1)
                .unwrap(),
            AppPasswordAdded::NoUser
        );
        assert_eq!(
            c.app_password_add("a@x", "i1", "phone", &[1; 32], 1)
                .unwrap(),
            AppPasswordAdded::Added
        );
        c.app_password_add("b@x", "i2", "pc", &[2; 32], 2).unwrap();
        assert!(c.app_password_find("a@x", &[1; 32]).unwrap().is_some());
        // b's secret does not open a's account.
        assert!(c.app_password_find("a@x", &[2; 32]).unwrap().is_none());
        assert!(!c.app_password_revoke("a@x", "i2").unwrap());
        assert!(c.app_password_find("b@x", &[2; 32]).unwrap().is_some());
        c.app_password_used("i1", 50).unwrap();
        c.app_password_used("i1", 40).unwrap();
        let l = c.app_passwords("A@X").unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].label.as_str(), l[0].last_used), ("phone", Some(50)));
        assert!(c.app_password_revoke("a@x", "i1").unwrap());
        assert!(c.app_password_find("a@x", &[1; 32]).unwrap().is_none());
        c.user_delete("b@x").unwrap();
        assert!(c.app_passwords("b@x").unwrap().is_empty());
    }

    #[test]
    fn an_enrolment_confirms_once_and_recovery_codes_work_once() {
        let m = MemDb::new();
        let c = m.db();
        c.user_add("a@x", "h", 0).unwrap();
        for t in ["here", "there"] {
            c.session_create(t, "a@x", "c", 0, i64::MAX / 4, i64::MAX / 4)
                .unwrap();
        }
        assert!(c.totp_pending_set("a@x", "s1", 0).unwrap());
        assert!(c.totp_pending_set("a@x", "s2", 0).unwrap());
        // The first secret was replaced: confirming it does nothing.
        assert!(!c.totp_confirm("a@x", "s1", 5, &[], 0, "here").unwrap());
        assert_eq!(c.totp_secret("a@x").unwrap(), None);
        let codes = [[7u8; 32], [8u8; 32]];
        assert!(c.totp_confirm("a@x", "s2", 5, &codes, 0, "here").unwrap());
        assert!(!c.totp_confirm("a@x", "s2", 5, &codes, 0, "here").unwrap());
        assert_eq!(c.totp_secret("a@x").unwrap().as_deref(), Some("s2"));
        assert!(c.session_find("here").unwrap().is_some());
        assert!(c.session_find("there").unwrap().is_none());
        // The confirming code's step is used.
        assert_eq!(
            c.totp_attempt("a@x", Some(5), 0).unwrap(),
            TotpOutcome::Replayed
        );
        assert_eq!(c.totp_recovery_left("a@x").unwrap(), 2);
        assert_eq!(
            c.totp_recovery_attempt("a@x", &[7; 32], 0).unwrap(),
            TotpOutcome::Accepted
        );
        assert_eq!(
            c.totp_recovery_attempt("a@x", &[7; 32], 0).unwrap(),
            TotpOutcome::Wrong { locked: false }
        );
        // Wrong recovery codes lock like wrong TOTP codes.
        for _ in 2..TOTP_MAX_FAILURES {
            c.totp_recovery_attempt("a@x", &[9; 32], 0).unwrap();
        }
        assert_eq!(
            c.totp_recovery_attempt("a@x", &[9; 32], 0).unwrap(),
            TotpOutcome::Wrong { locked: true }
        );
        assert!(matches!(
            c.totp_recovery_attempt("a@x", &[8; 32], 1).unwrap(),
            TotpOutcome::Locked(_)
        ));
        assert_eq!(c.totp_recovery_left("a@x").unwrap(), 1);
        assert!(c.totp_disable_keeping("a@x", "here").unwrap());
        assert_eq!(c.totp_recovery_left("a@x").unwrap(), 0);
        assert!(c.session_find("here").unwrap().is_some());
        assert!(!c.totp_disable_keeping("a@x", "here").unwrap());
    }
}

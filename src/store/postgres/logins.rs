//! The SQL of the login failure counts on PostgreSQL: see
//! `sqlite/logins.rs`. Nodes update one count concurrently, so a count is
//! taken under a transaction-scoped advisory lock of its own key: a row
//! lock could not cover the first failure of a key, which has no row yet.

use super::PgDb;
use crate::store::Result;
use crate::throttle::counts::{CountKey, FailureCount};

/// The first half of the two-part advisory lock keys of the counts ("pecd";
/// the two-part keys do not overlap the one-part keys of the log and the
/// migrations).
const COUNT_LOCK_CLASS: i32 = 0x7065_6364;

/// A count kept in a BIGINT: never negative, capped as the arithmetic caps it.
fn count(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

impl PgDb<'_> {
    /// The failure count kept under `key`, if any, its key locked until
    /// the transaction ends.
    pub(in crate::store) fn login_count_take(
        &self,
        key: &CountKey,
    ) -> Result<Option<FailureCount>> {
        let (scope, id) = (key.scope(), key.id());
        self.exec(
            "SELECT pg_advisory_xact_lock($1, hashtext($2 || ' ' || $3))",
            &[&COUNT_LOCK_CLASS, &scope, &id],
        )?;
        Ok(self
            .opt(
                "SELECT failures, pending, last_ms, next_allowed_ms FROM login_failures
                 WHERE scope = $1 AND key = $2",
                &[&scope, &id],
            )?
            .map(|r| FailureCount {
                failures: count(r.get(0)),
                pending: count(r.get(1)),
                last_ms: r.get(2),
                next_allowed_ms: r.get(3),
            }))
    }

    /// Keep `count` under `key` (`None`: forget it).
    pub(in crate::store) fn login_count_put(
        &self,
        key: &CountKey,
        count: Option<&FailureCount>,
    ) -> Result<()> {
        let (scope, id) = (key.scope(), key.id());
        match count {
            None => {
                self.exec(
                    "DELETE FROM login_failures WHERE scope = $1 AND key = $2",
                    &[&scope, &id],
                )?;
            }
            Some(n) => {
                self.exec(
                    "INSERT INTO login_failures(scope, key, failures, pending, last_ms, next_allowed_ms)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (scope, key) DO UPDATE SET failures = $3, pending = $4,
                         last_ms = $5, next_allowed_ms = $6",
                    &[
                        &scope,
                        &id,
                        &i64::from(n.failures),
                        &i64::from(n.pending),
                        &n.last_ms,
                        &n.next_allowed_ms,
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Forget every count whose last attempt was before `before`; how many.
    pub(in crate::store) fn login_counts_forget(&self, before: i64) -> Result<usize> {
        let n = self.exec("DELETE FROM login_failures WHERE last_ms < $1", &[&before])?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

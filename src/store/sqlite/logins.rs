//! The SQL of the login failure counts (`login_failures`): see
//! `store::logins`. The writer thread runs one transaction at a time, so a
//! count read is a count nobody else changes before the commit.

use rusqlite::{params, OptionalExtension};

use super::Db;
use crate::store::Result;
use crate::throttle::counts::{CountKey, FailureCount};

impl Db<'_> {
    /// The failure count kept under `key`, if any.
    pub(in crate::store) fn login_count_take(
        &self,
        key: &CountKey,
    ) -> Result<Option<FailureCount>> {
        Ok(self
            .sql()
            .prepare_cached(
                "SELECT failures, pending, last_ms, next_allowed_ms FROM login_failures
                 WHERE scope = ?1 AND key = ?2",
            )?
            .query_row(params![key.scope(), key.id()], |r| {
                Ok(FailureCount {
                    failures: r.get(0)?,
                    pending: r.get(1)?,
                    last_ms: r.get(2)?,
                    next_allowed_ms: r.get(3)?,
                })
            })
            .optional()?)
    }

    /// Keep `count` under `key` (`None`: forget it).
    pub(in crate::store) fn login_count_put(
        &self,
        key: &CountKey,
        count: Option<&FailureCount>,
    ) -> Result<()> {
        let c = self.sql();
        match count {
            None => {
                c.prepare_cached("DELETE FROM login_failures WHERE scope = ?1 AND key = ?2")?
                    .execute(params![key.scope(), key.id()])?;
            }
            Some(n) => {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO login_failures(scope, key, failures, pending, last_ms, next_allowed_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    key.scope(),
                    key.id(),
                    n.failures,
                    n.pending,
                    n.last_ms,
                    n.next_allowed_ms
                ])?;
            }
        }
        Ok(())
    }

    /// Forget every count whose last attempt was before `before`; how many.
    pub(in crate::store) fn login_counts_forget(&self, before: i64) -> Result<usize> {
        Ok(self
            .sql()
            .prepare_cached("DELETE FROM login_failures WHERE last_ms < ?1")?
            .execute([before])?)
    }
}

//! The SQL of claims (see `store::claims`): which node runs a pending job
//! or fires an armed deadline, until when, under which fencing token.
//!
//! SQLite has one writer (the writer thread), so a claim is a SELECT of the
//! candidates and an UPDATE of each, in the same transaction: nobody can
//! claim in between. PostgreSQL, with many writers, does each table in one
//! statement and skips rows another node is claiming at that instant:
//!
//! ```sql
//! UPDATE jobs SET claimed_by = $1, claimed_until = $2, fence = fence + 1
//!  WHERE id IN (SELECT id FROM jobs WHERE state = 'pending' AND due_at <= $3
//!               AND (claimed_until IS NULL OR claimed_until <= $3)
//!               ORDER BY kind <> 'mailbox', due_at, id LIMIT $4
//!               FOR UPDATE SKIP LOCKED)
//!  RETURNING ...
//! ```

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension};

use super::queue::{row_to_job, COLS};
use super::Db;
use crate::store::claims::JobClaims;
use crate::store::queue::{Claimed, Deadline, DueTimer, Fence, Job, JobId};
use crate::store::Result;

impl Db<'_> {
    /// Claim up to `limit` due jobs that nobody holds (or whose claim
    /// lapsed), other than those in `skip`, for `node` until `until`:
    /// mailbox deliveries first, then by due time, as `job_due_ids` orders
    /// them. A lapsed claim of another node is counted as a crash of the
    /// job (that node died running it, or lost the database for a whole
    /// lease), and the job is held at the `MAX_CRASHES`-th.
    pub(in crate::store) fn claim_jobs(
        &self,
        node: &str,
        now: i64,
        until: i64,
        limit: usize,
        skip: &HashSet<JobId>,
    ) -> Result<JobClaims> {
        let conn = self.sql();
        let want = limit + skip.len();
        let mut candidates: Vec<(i64, Option<String>)> = Vec::new();
        // Two statements, as in `job_due_ids`: each reads one partial index.
        for sql in [
            "SELECT id, claimed_by FROM jobs WHERE state = 'pending' AND kind = 'mailbox' AND due_at <= ?1
             AND (claimed_until IS NULL OR claimed_until <= ?1) ORDER BY due_at, id LIMIT ?2",
            "SELECT id, claimed_by FROM jobs WHERE state = 'pending' AND kind <> 'mailbox' AND due_at <= ?1
             AND (claimed_until IS NULL OR claimed_until <= ?1) ORDER BY due_at, id LIMIT ?2",
        ] {
            if candidates.len() >= want {
                break;
            }
            let rows = conn
                .prepare_cached(sql)?
                .query_map(params![now, (want - candidates.len()) as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            candidates.extend(rows);
        }
        let mut out = JobClaims::default();
        for (id, holder) in candidates {
            let id = JobId(id);
            if out.claimed.len() == limit {
                break;
            }
            if skip.contains(&id) {
                continue;
            }
            // Our own lapsed claim is not a death: this process is alive
            // (a previous one's claims were recovered at start).
            if let Some(h) = holder.filter(|h| h != node) {
                if let Some(job) = self.job_record_crash(id, now)? {
                    out.held.push(job);
                    continue;
                }
                out.taken_over.push((id, h));
            }
            let job = conn
                .prepare_cached(&format!(
                    "UPDATE jobs SET claimed_by = ?2, claimed_until = ?3, fence = fence + 1
                     WHERE id = ?1 AND state = 'pending' RETURNING {COLS}"
                ))?
                .query_row(params![id, node, until], row_to_job)
                .optional()?;
            out.claimed.extend(job);
        }
        Ok(out)
    }

    /// Claim up to `limit` due deadlines of each kind that nobody holds (or
    /// whose claim lapsed) for `node` until `until`. A recipient whose
    /// final deadline has passed too gets only that one (the final notice
    /// says everything the warning would have).
    pub(in crate::store) fn claim_timers(
        &self,
        node: &str,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<(DueTimer, i64)>> {
        let conn = self.sql();
        let mut due: Vec<DueTimer> = Vec::new();
        for (col, extra, deadline) in [
            (
                "preavviso_due",
                " AND (expire_due IS NULL OR expire_due > ?1)",
                Deadline::Preavviso,
            ),
            ("expire_due", "", Deadline::Expire),
        ] {
            let mut st = conn.prepare_cached(&format!(
                "SELECT identificativo, recipient FROM timers WHERE {col} IS NOT NULL AND {col} <= ?1{extra}
                 AND (claimed_until IS NULL OR claimed_until <= ?1) ORDER BY {col} LIMIT ?2"
            ))?;
            let rows = st.query_map(params![now, limit as i64], |r| {
                Ok(DueTimer {
                    identificativo: r.get(0)?,
                    recipient: r.get(1)?,
                    deadline,
                })
            })?;
            for r in rows {
                due.push(r?);
            }
        }
        let mut out = Vec::with_capacity(due.len());
        for t in due {
            let fence: Option<i64> = conn
                .prepare_cached(
                    "UPDATE timers SET claimed_by = ?3, claimed_until = ?4, fence = fence + 1
                     WHERE identificativo = ?1 AND recipient = ?2
                     AND (claimed_until IS NULL OR claimed_until <= ?5) RETURNING fence",
                )?
                .query_row(
                    params![t.identificativo, t.recipient, node, until, now],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(f) = fence {
                out.push((t, f));
            }
        }
        Ok(out)
    }

    /// Push the claims `node` still holds among `held` to `until`; gives
    /// the ones another claim replaced (not those whose work just ended).
    pub(in crate::store) fn renew_claims(
        &self,
        node: &str,
        until: i64,
        held: &[Fence],
    ) -> Result<Vec<Fence>> {
        let mut lost = Vec::new();
        for f in held {
            let n = match &f.what {
                Claimed::Job(id) => self
                    .sql()
                    .prepare_cached(
                        "UPDATE jobs SET claimed_until = ?4 WHERE id = ?1 AND claimed_by = ?2 AND fence = ?3",
                    )?
                    .execute(params![id, node, f.token, until])?,
                Claimed::Timer {
                    identificativo,
                    recipient,
                } => self
                    .sql()
                    .prepare_cached(
                        "UPDATE timers SET claimed_until = ?5 WHERE identificativo = ?1 AND recipient = ?2
                         AND claimed_by = ?3 AND fence = ?4",
                    )?
                    .execute(params![identificativo, recipient, node, f.token, until])?,
            };
            if n == 0 && (f.node != node || self.claimed_since(f)?) {
                lost.push(f.clone());
            }
        }
        Ok(lost)
    }

    /// Whether the work of `f` was claimed again since (rather than ended).
    fn claimed_since(&self, f: &Fence) -> Result<bool> {
        let conn = self.sql();
        let found = match &f.what {
            Claimed::Job(id) => conn
                .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1 AND fence <> ?2")?
                .query_row(params![id, f.token], |_| Ok(()))
                .optional()?,
            Claimed::Timer {
                identificativo,
                recipient,
            } => conn
                .prepare_cached(
                    "SELECT 1 FROM timers WHERE identificativo = ?1 AND recipient = ?2 AND fence <> ?3",
                )?
                .query_row(params![identificativo, recipient, f.token], |_| Ok(()))
                .optional()?,
        };
        Ok(found.is_some())
    }

    /// Whether `f`'s claim still holds: its node holds the work under that
    /// token (however late: nobody claimed it since).
    pub(in crate::store) fn claim_holds(&self, f: &Fence) -> Result<bool> {
        let conn = self.sql();
        let found = match &f.what {
            Claimed::Job(id) => conn
                .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1 AND claimed_by = ?2 AND fence = ?3")?
                .query_row(params![id, f.node, f.token], |_| Ok(()))
                .optional()?,
            Claimed::Timer {
                identificativo,
                recipient,
            } => conn
                .prepare_cached(
                    "SELECT 1 FROM timers WHERE identificativo = ?1 AND recipient = ?2 AND claimed_by = ?3 AND fence = ?4",
                )?
                .query_row(params![identificativo, recipient, f.node, f.token], |_| {
                    Ok(())
                })
                .optional()?,
        };
        Ok(found.is_some())
    }

    /// Give up the claim of `f` if it still holds (the work is free for
    /// anyone again at once).
    pub(in crate::store) fn release_claim(&self, f: &Fence) -> Result<bool> {
        let conn = self.sql();
        let n = match &f.what {
            Claimed::Job(id) => conn
                .prepare_cached(
                    "UPDATE jobs SET claimed_by = NULL, claimed_until = NULL
                     WHERE id = ?1 AND claimed_by = ?2 AND fence = ?3",
                )?
                .execute(params![id, f.node, f.token])?,
            Claimed::Timer {
                identificativo,
                recipient,
            } => conn
                .prepare_cached(
                    "UPDATE timers SET claimed_by = NULL, claimed_until = NULL
                     WHERE identificativo = ?1 AND recipient = ?2 AND claimed_by = ?3 AND fence = ?4",
                )?
                .execute(params![identificativo, recipient, f.node, f.token])?,
        };
        Ok(n > 0)
    }

    /// Give up every claim `node` holds; how many.
    pub(in crate::store) fn release_node(&self, node: &str) -> Result<usize> {
        let conn = self.sql();
        Ok(conn.execute(
            "UPDATE jobs SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?1",
            [node],
        )? + conn.execute(
            "UPDATE timers SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?1",
            [node],
        )?)
    }

    /// The claims an earlier run of `node` left (it died): each pending
    /// job counted as a crash, and held at the `MAX_CRASHES`-th; every
    /// claim of the node released. Gives the jobs run again and the held.
    pub(in crate::store) fn recover_node(
        &self,
        node: &str,
        now: i64,
    ) -> Result<(Vec<JobId>, Vec<Job>)> {
        let ids: Vec<i64> = self
            .sql()
            .prepare_cached("SELECT id FROM jobs WHERE claimed_by = ?1 AND state = 'pending'")?
            .query_map([node], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let (mut again, mut held) = (Vec::new(), Vec::new());
        for id in ids.into_iter().map(JobId) {
            match self.job_record_crash(id, now)? {
                Some(job) => held.push(job),
                None => again.push(id),
            }
        }
        self.release_node(node)?;
        Ok((again, held))
    }

    /// The claim of `what` ends with the batch that ended its work (its
    /// fence was checked in the same transaction).
    pub(in crate::store) fn claim_end(&self, what: &Claimed) -> Result<()> {
        let conn = self.sql();
        match what {
            Claimed::Job(id) => conn
                .prepare_cached(
                    "UPDATE jobs SET claimed_by = NULL, claimed_until = NULL WHERE id = ?1",
                )?
                .execute([id])?,
            Claimed::Timer {
                identificativo,
                recipient,
            } => conn
                .prepare_cached(
                    "UPDATE timers SET claimed_by = NULL, claimed_until = NULL
                     WHERE identificativo = ?1 AND recipient = ?2",
                )?
                .execute(params![identificativo, recipient])?,
        };
        Ok(())
    }
}

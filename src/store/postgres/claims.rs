//! The SQL of claims on PostgreSQL (see `store::claims` and
//! `sqlite/claims.rs`). Several nodes write at once here, so each kind of
//! work is claimed by one statement that locks its candidates with
//! `FOR UPDATE SKIP LOCKED`: rows another node is claiming at that instant
//! are passed over rather than waited for, and a row another node claimed
//! and committed since this statement's snapshot is checked again on its
//! new version (READ COMMITTED), where its claim now holds. Two nodes are
//! therefore never handed the same item.
//!
//! A batch's fence is checked with `SELECT … FOR UPDATE` of the claimed row
//! in the commit's transaction: nobody can claim the work again before the
//! outcome is written, and a claim committed by another node just before
//! is seen.

use std::collections::HashSet;

use super::queue::{row_to_job, COLS};
use super::PgDb;
use crate::store::claims::JobClaims;
use crate::store::queue::{Claimed, Deadline, DueTimer, Fence, Job, JobId, Kind};
use crate::store::Result;

impl PgDb<'_> {
    /// Claim up to `limit` due jobs that nobody holds (or whose claim
    /// lapsed), other than those in `skip`, for `node` until `until`:
    /// mailbox deliveries first, then by due time. A lapsed claim of
    /// another node counts as a crash of the job, held at the
    /// `MAX_CRASHES`-th (as in `sqlite/claims.rs`).
    pub(in crate::store) fn claim_jobs(
        &self,
        node: &str,
        now: i64,
        until: i64,
        limit: usize,
        skip: &HashSet<JobId>,
    ) -> Result<JobClaims> {
        let skip: Vec<i64> = skip.iter().map(|j| j.0).collect();
        // `jobs_claim_order` gives the order; `was` is the holder before.
        let rows = self.rows(
            &format!(
                "WITH c AS (
                     SELECT id AS cid, claimed_by AS was FROM jobs
                      WHERE state = 'pending' AND due_at <= $3
                        AND (claimed_until IS NULL OR claimed_until <= $3)
                        AND id <> ALL($5)
                      ORDER BY kind <> 'mailbox', due_at, id LIMIT $4
                      FOR UPDATE SKIP LOCKED)
                 UPDATE jobs SET claimed_by = $1, claimed_until = $2, fence = jobs.fence + 1
                   FROM c WHERE jobs.id = c.cid
                 RETURNING {COLS}, c.was"
            ),
            &[&node, &until, &now, &(limit as i64), &skip],
        )?;
        let mut found = Vec::with_capacity(rows.len());
        for r in &rows {
            let was: Option<String> = r.get(COLUMNS);
            found.push((row_to_job(r)?, was));
        }
        // RETURNING keeps no order: the claim's own.
        found.sort_by_key(|(j, _)| (j.kind != Kind::Mailbox, j.due_at, j.id));
        let mut out = JobClaims::default();
        for (job, was) in found {
            // Our own lapsed claim is not a death: this process is alive.
            match was.filter(|h| h != node) {
                None => out.claimed.push(job),
                Some(h) => match self.job_record_crash(job.id, now)? {
                    Some(held) => out.held.push(held),
                    None => {
                        out.taken_over.push((job.id, h));
                        // Read again: the crash count touched the row.
                        out.claimed.extend(self.job_get(job.id)?);
                    }
                },
            }
        }
        Ok(out)
    }

    /// Claim up to `limit` due deadlines of each kind that nobody holds (or
    /// whose claim lapsed) for `node` until `until`; a recipient whose
    /// final deadline has passed too gets only that one.
    pub(in crate::store) fn claim_timers(
        &self,
        node: &str,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<(DueTimer, i64)>> {
        let mut out = Vec::new();
        for (col, extra, deadline) in [
            (
                "preavviso_due",
                " AND (expire_due IS NULL OR expire_due > $3)",
                Deadline::Preavviso,
            ),
            ("expire_due", "", Deadline::Expire),
        ] {
            let rows = self.rows(
                &format!(
                    "WITH c AS (
                         SELECT identificativo AS ci, recipient AS cr FROM timers
                          WHERE {col} IS NOT NULL AND {col} <= $3{extra}
                            AND (claimed_until IS NULL OR claimed_until <= $3)
                          ORDER BY {col} LIMIT $4
                          FOR UPDATE SKIP LOCKED)
                     UPDATE timers SET claimed_by = $1, claimed_until = $2, fence = timers.fence + 1
                       FROM c WHERE timers.identificativo = c.ci AND timers.recipient = c.cr
                     RETURNING timers.identificativo, timers.recipient, timers.fence, timers.{col}"
                ),
                &[&node, &until, &now, &(limit as i64)],
            )?;
            let mut got: Vec<(i64, DueTimer, i64)> = rows
                .iter()
                .map(|r| {
                    let t = DueTimer {
                        identificativo: r.get(0),
                        recipient: r.get(1),
                        deadline,
                    };
                    (r.get(3), t, r.get(2))
                })
                .collect();
            got.sort_by_key(|(due, _, _)| *due);
            out.extend(got.into_iter().map(|(_, t, fence)| (t, fence)));
        }
        Ok(out)
    }

    /// Push the claims `node` still holds among `held` to `until`; gives
    /// the ones another claim replaced (not those whose work just ended).
    /// A row locked at that instant (its outcome being committed, or an
    /// operator's change) is not waited for: it is renewed next time, a
    /// third of a lease later, and a renewal never joins a lock cycle.
    pub(in crate::store) fn renew_claims(
        &self,
        node: &str,
        until: i64,
        held: &[Fence],
    ) -> Result<Vec<Fence>> {
        let mut lost = Vec::new();
        for f in held {
            let n = match &f.what {
                Claimed::Job(id) => self.exec(
                    "UPDATE jobs SET claimed_until = $4 WHERE id = (
                         SELECT id FROM jobs WHERE id = $1 AND claimed_by = $2 AND fence = $3
                         FOR UPDATE SKIP LOCKED)",
                    &[&id.0, &node, &f.token, &until],
                )?,
                Claimed::Timer {
                    identificativo,
                    recipient,
                } => self.exec(
                    "UPDATE timers SET claimed_until = $5 WHERE (identificativo, recipient) = (
                         SELECT identificativo, recipient FROM timers
                          WHERE identificativo = $1 AND recipient = $2 AND claimed_by = $3 AND fence = $4
                         FOR UPDATE SKIP LOCKED)",
                    &[identificativo, recipient, &node, &f.token, &until],
                )?,
            };
            if n == 0 && (f.node != node || self.claimed_since(f)?) {
                lost.push(f.clone());
            }
        }
        Ok(lost)
    }

    /// Whether the work of `f` was claimed again since (rather than ended).
    fn claimed_since(&self, f: &Fence) -> Result<bool> {
        let found = match &f.what {
            Claimed::Job(id) => self.opt(
                "SELECT 1 FROM jobs WHERE id = $1 AND fence <> $2",
                &[&id.0, &f.token],
            )?,
            Claimed::Timer {
                identificativo,
                recipient,
            } => self.opt(
                "SELECT 1 FROM timers WHERE identificativo = $1 AND recipient = $2 AND fence <> $3",
                &[identificativo, recipient, &f.token],
            )?,
        };
        Ok(found.is_some())
    }

    /// Whether `f`'s claim still holds, locking the claimed row until the
    /// transaction ends (see the module doc).
    pub(in crate::store) fn claim_holds(&self, f: &Fence) -> Result<bool> {
        let row = match &f.what {
            Claimed::Job(id) => self.opt(
                "SELECT claimed_by, fence FROM jobs WHERE id = $1 FOR UPDATE",
                &[&id.0],
            )?,
            Claimed::Timer {
                identificativo,
                recipient,
            } => self.opt(
                "SELECT claimed_by, fence FROM timers WHERE identificativo = $1 AND recipient = $2 FOR UPDATE",
                &[identificativo, recipient],
            )?,
        };
        Ok(row.is_some_and(|r| {
            r.get::<_, Option<String>>(0).as_deref() == Some(f.node.as_str())
                && r.get::<_, i64>(1) == f.token
        }))
    }

    /// Give up the claim of `f` if it still holds.
    pub(in crate::store) fn release_claim(&self, f: &Fence) -> Result<bool> {
        let n = match &f.what {
            Claimed::Job(id) => self.exec(
                "UPDATE jobs SET claimed_by = NULL, claimed_until = NULL
                 WHERE id = $1 AND claimed_by = $2 AND fence = $3",
                &[&id.0, &f.node, &f.token],
            )?,
            Claimed::Timer {
                identificativo,
                recipient,
            } => self.exec(
                "UPDATE timers SET claimed_by = NULL, claimed_until = NULL
                 WHERE identificativo = $1 AND recipient = $2 AND claimed_by = $3 AND fence = $4",
                &[identificativo, recipient, &f.node, &f.token],
            )?,
        };
        Ok(n > 0)
    }

    /// Give up every claim `node` holds; how many.
    pub(in crate::store) fn release_node(&self, node: &str) -> Result<usize> {
        let jobs = self.exec(
            "UPDATE jobs SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = $1",
            &[&node],
        )?;
        let timers = self.exec(
            "UPDATE timers SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = $1",
            &[&node],
        )?;
        Ok((jobs + timers) as usize)
    }

    /// The claims an earlier run of `node` left (it died): each pending
    /// job counted as a crash, held at the `MAX_CRASHES`-th; every claim of
    /// the node released. The rows are locked first, so a job another
    /// node is taking over at that instant is counted once, by whichever
    /// comes first.
    pub(in crate::store) fn recover_node(
        &self,
        node: &str,
        now: i64,
    ) -> Result<(Vec<JobId>, Vec<Job>)> {
        let ids: Vec<i64> = self
            .rows(
                "SELECT id FROM jobs WHERE claimed_by = $1 AND state = 'pending' ORDER BY id FOR UPDATE",
                &[&node],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
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
    /// fence was checked, and its row locked, in the same transaction).
    pub(in crate::store) fn claim_end(&self, what: &Claimed) -> Result<()> {
        match what {
            Claimed::Job(id) => self.exec(
                "UPDATE jobs SET claimed_by = NULL, claimed_until = NULL WHERE id = $1",
                &[&id.0],
            )?,
            Claimed::Timer {
                identificativo,
                recipient,
            } => self.exec(
                "UPDATE timers SET claimed_by = NULL, claimed_until = NULL
                 WHERE identificativo = $1 AND recipient = $2",
                &[identificativo, recipient],
            )?,
        };
        Ok(())
    }
}

/// How many columns `COLS` names: `was` comes after them.
const COLUMNS: usize = 18;

#[cfg(test)]
mod tests {
    #[test]
    fn was_follows_the_job_columns() {
        assert_eq!(super::COLS.split(',').count(), super::COLUMNS);
    }
}

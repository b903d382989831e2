//! Claims: how work is handed out so that it is done once, by one node at
//! a time (issue 22), and how a dead node's work comes back.
//!
//! The scheduler of each node calls [`Store::claim`]: it takes due jobs and
//! due deadlines that nobody holds (or whose holder's lease has lapsed) and
//! marks them held by this node until `now + lease`, each with a larger
//! fencing token ([`Fence`]). The executor's batch carries that token, and
//! [`Store::commit`] writes a batch only while its claim still holds, in the
//! same transaction as the batch (else [`super::StoreError::LostClaim`],
//! nothing written); the committed batch ends the claim. Running work is
//! renewed ([`Store::renew`]) well before its lease lapses; a clean stop
//! releases every claim of the node ([`Store::release_node`]).
//!
//! A node that dies (`kill -9`, an abort on hostile input, the OOM killer,
//! a lost machine) leaves its claims: another node takes each over once its
//! lease lapses, and counts it as a crash of the job; at the
//! [`super::queue::MAX_CRASHES`]-th the job is held rather than run into a
//! crash loop. The node itself, restarted under the same name, knows its
//! previous run's claims are dead and takes them back at once
//! ([`Store::recover`]), counting them the same way: with one node (the
//! embedded default) nothing waits for a lease.
//!
//! The checks of claims run on both backends, in `conformance.rs`.

use std::collections::HashSet;

use super::queue::{Claimed, DueTimer, Fence, Job, JobId};
use super::{Result, Store};

/// Who claims: this node's name (`[cluster] node`) and how long its claims
/// hold unless renewed (`[cluster] lease`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    /// The node's name, unique in the cluster.
    pub node: String,
    /// Lease length (ms).
    pub lease_ms: i64,
}

impl Claimant {
    /// `node`'s claims, `lease_ms` long.
    pub fn new(node: &str, lease_ms: i64) -> Claimant {
        Claimant {
            node: node.to_string(),
            lease_ms: lease_ms.max(1),
        }
    }
}

/// What to claim.
#[derive(Debug, Clone, Default)]
pub struct Want {
    /// Jobs, at most.
    pub jobs: usize,
    /// Deadlines of each kind (12 h, 24 h), at most.
    pub timers: usize,
    /// Jobs this node runs already (never handed out twice to it, even if
    /// their claim lapsed under a stalled renewal).
    pub skip: HashSet<JobId>,
}

/// A deadline claimed for firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedTimer {
    /// The deadline.
    pub timer: DueTimer,
    /// Its claim, for the batch that fires it.
    pub fence: Fence,
}

/// What one [`Store::claim`] handed out.
#[derive(Debug, Default)]
pub struct Claims {
    /// Jobs to run (each with its claim: [`Job::claim`]).
    pub jobs: Vec<Job>,
    /// Deadlines to fire.
    pub timers: Vec<ClaimedTimer>,
    /// Jobs among `jobs` taken over from a node whose lease lapsed, with
    /// its name (counted as a crash).
    pub taken_over: Vec<(JobId, String)>,
    /// Jobs taken over from a dead node and held, not run: they had
    /// crashed [`super::queue::MAX_CRASHES`] times.
    pub held: Vec<Job>,
}

/// What one claim of jobs found.
#[derive(Debug, Default)]
pub(in crate::store) struct JobClaims {
    /// Claimed by the caller (with their new fence).
    pub claimed: Vec<Job>,
    /// Taken over from another node whose claim had lapsed (also in
    /// `claimed`), with that node's name.
    pub taken_over: Vec<(JobId, String)>,
    /// Taken over, and held instead of run: that was one death too many.
    pub held: Vec<Job>,
}

/// What a node's restart found of its previous run's claims.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Jobs that were running when it died: counted, and due again.
    pub again: Vec<JobId>,
    /// Jobs held instead: that was their last allowed death.
    pub held: Vec<Job>,
}

impl Store {
    /// Claim what is due at `now` for `by` (see the module doc).
    pub async fn claim(&self, by: &Claimant, now: i64, want: Want) -> Result<Claims> {
        let by = by.clone();
        self.write(move |db| {
            let until = now.saturating_add(by.lease_ms);
            let timers = if want.timers > 0 {
                db.claim_timers(&by.node, now, until, want.timers)?
            } else {
                Vec::new()
            };
            let jobs = if want.jobs > 0 {
                db.claim_jobs(&by.node, now, until, want.jobs, &want.skip)?
            } else {
                Default::default()
            };
            Ok(Claims {
                jobs: jobs.claimed,
                timers: timers
                    .into_iter()
                    .map(|(timer, token)| ClaimedTimer {
                        fence: Fence {
                            what: Claimed::Timer {
                                identificativo: timer.identificativo.clone(),
                                recipient: timer.recipient.clone(),
                            },
                            node: by.node.clone(),
                            token,
                        },
                        timer,
                    })
                    .collect(),
                taken_over: jobs.taken_over,
                held: jobs.held,
            })
        })
        .await
    }

    /// Extend the claims `by` holds among `held` to `now + lease`; gives
    /// back those it no longer holds (another node took them over: their
    /// outcome will be refused).
    pub async fn renew(&self, by: &Claimant, now: i64, held: Vec<Fence>) -> Result<Vec<Fence>> {
        let by = by.clone();
        self.write(move |db| db.renew_claims(&by.node, now.saturating_add(by.lease_ms), &held))
            .await
    }

    /// Give up one claim (its work ended without a batch ending it, or
    /// failed to commit one): anyone may take it at once. False if it no
    /// longer held.
    pub async fn release(&self, fence: Fence) -> Result<bool> {
        self.write(move |db| db.release_claim(&fence)).await
    }

    /// Give up every claim of `node` (a clean stop: what it leaves running
    /// did not crash it); how many.
    pub async fn release_node(&self, node: &str) -> Result<usize> {
        let node = node.to_string();
        self.write(move |db| db.release_node(&node)).await
    }

    /// At the start of `node`: the claims its previous run left are dead
    /// (one process per node); count each job as a crash and free them.
    pub async fn recover(&self, node: &str, now: i64) -> Result<Recovered> {
        // Where an older pecd kept the running jobs' ids; claims replace it.
        let _ = std::fs::remove_file(self.paths().data_dir.join("inflight"));
        let node = node.to_string();
        self.write(move |db| {
            let (again, held) = db.recover_node(&node, now)?;
            Ok(Recovered { again, held })
        })
        .await
    }
}

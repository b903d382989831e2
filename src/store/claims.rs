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

#[cfg(test)]
mod tests {
    //! Two nodes on one database, with a clock the test moves.
    use super::*;
    use crate::flow::batch::{Batch, Event, EventKind, JobEnd, TimerOp};
    use crate::pec::clock::{Clock, ManualClock};
    use crate::store::queue::{JobState, Listing, MAX_CRASHES};
    use crate::store::StoreError;

    const LEASE: i64 = 30_000;

    use crate::store::queue::test_job as job;

    fn jobs(n: usize) -> Want {
        Want {
            jobs: n,
            ..Want::default()
        }
    }

    async fn setup(keys: &[&str]) -> (tempfile::TempDir, Store, ManualClock) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = ManualClock::at(1_765_000_000_000);
        let mut b = Batch::at(clock.unix_ms());
        for k in keys {
            b.job(job(k, clock.unix_ms()));
        }
        store.commit(b).await.unwrap();
        (dir, store, clock)
    }

    /// The batch that ends `job` as done, under its claim, with a log row
    /// to show whether anything of it was written.
    fn done(job: &Job, now: i64) -> Batch {
        let mut b = Batch::at(now);
        b.end = Some((job.id, JobEnd::Done));
        b.fence = job.claim();
        let mut ev = Event::new(EventKind::Inoltro, now);
        ev.detail = Some(format!("outcome of {} by {:?}", job.id, job.claimed_by));
        b.log(ev);
        b
    }

    fn log_rows(store: &Store) -> usize {
        store
            .log_events_blocking(&crate::store::log::Query::default())
            .unwrap()
            .len()
    }

    fn store_ids(store: &Store) -> Vec<JobId> {
        let i = crate::store::Inspector::open(&store.paths().data_dir).unwrap();
        i.jobs(Listing::All)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect()
    }

    fn state(store: &Store, id: JobId) -> Job {
        store.job_blocking(id).unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_batchs_new_due_jobs_are_written_claimed_by_its_taker() {
        let (_d, store, clock) = setup(&[]).await;
        let now = clock.unix_ms();
        let mut b = Batch::at(now);
        b.job(job("due", now));
        b.job(job("later", now + 60_000));
        b.taker = Some(crate::flow::batch::Taker {
            node: "node-1".into(),
            lease_ms: LEASE,
        });
        let c = store.commit(b).await.unwrap();
        assert_eq!(c.new_jobs, [true, true]);
        assert_eq!(c.taken.len(), 1, "only the job due now is taken");
        let taken = &c.taken[0];
        assert_eq!(taken.key, "due");
        let stored = state(&store, taken.id);
        assert_eq!(stored.claimed_by.as_deref(), Some("node-1"));
        assert_eq!(stored.claimed_until, Some(now + LEASE));
        assert_eq!((stored.fence, taken.fence), (1, 1));
        assert_eq!(taken.claim(), stored.claim());
        // Another node gets it only once the lease has lapsed.
        let two = Claimant::new("node-2", LEASE);
        assert!(store
            .claim(&two, now, jobs(10))
            .await
            .unwrap()
            .jobs
            .is_empty());
        // The taker's commit under the claim it was handed ends the job.
        assert!(store.commit(done(taken, now)).await.unwrap().applied);
        assert_eq!(state(&store, taken.id).state, JobState::Done);
        // Committed again (same key): nothing new is taken.
        let mut again = Batch::at(now);
        again.job(job("due", now));
        again.taker = Some(crate::flow::batch::Taker {
            node: "node-1".into(),
            lease_ms: LEASE,
        });
        let c = store.commit(again).await.unwrap();
        assert_eq!(c.new_jobs, [false]);
        assert!(c.taken.is_empty());
    }

    #[tokio::test]
    async fn each_due_job_is_handed_out_once() {
        let (_d, store, clock) = setup(&["a", "b", "c"]).await;
        let one = Claimant::new("node-1", LEASE);
        let two = Claimant::new("node-2", LEASE);
        let now = clock.unix_ms();
        let first = store.claim(&one, now, jobs(2)).await.unwrap();
        assert_eq!(first.jobs.len(), 2);
        let second = store.claim(&two, now, jobs(10)).await.unwrap();
        assert_eq!(second.jobs.len(), 1, "only the one nobody holds");
        assert!(store
            .claim(&one, now, jobs(10))
            .await
            .unwrap()
            .jobs
            .is_empty());
        let mut ids: Vec<JobId> = first
            .jobs
            .iter()
            .chain(&second.jobs)
            .map(|j| j.id)
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "three jobs, three different ones");
        for j in &first.jobs {
            assert_eq!(j.claimed_by.as_deref(), Some("node-1"));
            assert_eq!(j.claimed_until, Some(now + LEASE));
            assert_eq!(j.fence, 1);
        }
        // A job that ends is not handed out again, even after the lease.
        let j = &first.jobs[0];
        assert!(store.commit(done(j, now)).await.unwrap().applied);
        assert_eq!(state(&store, j.id).state, JobState::Done);
        assert_eq!(
            state(&store, j.id).claimed_by,
            None,
            "the commit ended the claim"
        );
        clock.advance(LEASE);
        let later = store.claim(&two, clock.unix_ms(), jobs(10)).await.unwrap();
        assert!(later.jobs.iter().all(|x| x.id != j.id));
        store.close();
    }

    #[tokio::test]
    async fn a_lapsed_claim_goes_to_another_node_and_the_stale_holder_commits_nothing() {
        let (_d, store, clock) = setup(&["a"]).await;
        let one = Claimant::new("node-1", LEASE);
        let two = Claimant::new("node-2", LEASE);
        let stale = store
            .claim(&one, clock.unix_ms(), jobs(1))
            .await
            .unwrap()
            .jobs
            .remove(0);
        clock.advance(LEASE - 1);
        assert!(
            store
                .claim(&two, clock.unix_ms(), jobs(1))
                .await
                .unwrap()
                .jobs
                .is_empty(),
            "nothing while node-1's lease holds"
        );
        clock.advance(1);
        let got = store.claim(&two, clock.unix_ms(), jobs(1)).await.unwrap();
        assert_eq!(got.jobs.len(), 1);
        let fresh = &got.jobs[0];
        assert_eq!(fresh.id, stale.id);
        assert!(
            fresh.fence > stale.fence,
            "{} > {}",
            fresh.fence,
            stale.fence
        );
        assert_eq!(got.taken_over, vec![(stale.id, "node-1".to_string())]);
        // node-1 wakes up and commits: refused whole.
        let before = log_rows(&store);
        let e = store
            .commit(done(&stale, clock.unix_ms()))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::LostClaim), "{e}");
        assert_eq!(log_rows(&store), before, "no row of the refused batch");
        let j = state(&store, stale.id);
        assert_eq!(j.state, JobState::Pending);
        assert_eq!(j.claimed_by.as_deref(), Some("node-2"));
        // node-2's own outcome goes through.
        assert!(
            store
                .commit(done(fresh, clock.unix_ms()))
                .await
                .unwrap()
                .applied
        );
        assert_eq!(log_rows(&store), before + 1);
        assert_eq!(state(&store, stale.id).state, JobState::Done);
        store.close();
    }

    #[tokio::test]
    async fn renewal_extends_and_release_frees() {
        let (_d, store, clock) = setup(&["a", "b"]).await;
        let one = Claimant::new("node-1", LEASE);
        let two = Claimant::new("node-2", LEASE);
        let got = store
            .claim(&one, clock.unix_ms(), jobs(2))
            .await
            .unwrap()
            .jobs;
        let (a, b) = (&got[0], &got[1]);
        clock.advance(LEASE / 2);
        let lost = store
            .renew(&one, clock.unix_ms(), vec![a.claim().unwrap()])
            .await
            .unwrap();
        assert!(lost.is_empty());
        assert_eq!(
            state(&store, a.id).claimed_until,
            Some(clock.unix_ms() + LEASE)
        );
        clock.advance(LEASE / 2);
        let taken = store
            .claim(&two, clock.unix_ms(), jobs(2))
            .await
            .unwrap()
            .jobs;
        assert_eq!(
            taken.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![b.id],
            "the renewed one stays with node-1, the other lapsed"
        );
        // Renewing a claim that was taken over says so.
        let lost = store
            .renew(&one, clock.unix_ms(), vec![b.claim().unwrap()])
            .await
            .unwrap();
        assert_eq!(lost, vec![b.claim().unwrap()]);
        // Released: node-2 gets it at once, long before the lease ends.
        assert!(store.release(a.claim().unwrap()).await.unwrap());
        assert!(!store.release(a.claim().unwrap()).await.unwrap(), "once");
        let now = store
            .claim(&two, clock.unix_ms(), jobs(2))
            .await
            .unwrap()
            .jobs;
        assert_eq!(now.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a.id]);
        assert_eq!(now[0].fence, a.fence + 1);
        // A clean stop releases all of a node's claims.
        assert_eq!(store.release_node("node-2").await.unwrap(), 2);
        assert_eq!(
            store
                .claim(&one, clock.unix_ms(), jobs(5))
                .await
                .unwrap()
                .jobs
                .len(),
            2
        );
        store.close();
    }

    #[tokio::test]
    async fn a_job_that_keeps_killing_its_nodes_is_held() {
        let (_d, store, clock) = setup(&["poison"]).await;
        let nodes: Vec<Claimant> = (1..=MAX_CRASHES + 1)
            .map(|i| Claimant::new(&format!("node-{i}"), LEASE))
            .collect();
        for (i, n) in nodes.iter().enumerate() {
            let got = store.claim(n, clock.unix_ms(), jobs(1)).await.unwrap();
            if (i as i64) < MAX_CRASHES {
                assert_eq!(got.jobs.len(), 1, "node {i} runs it");
                assert!(got.held.is_empty());
            } else {
                assert!(got.jobs.is_empty(), "the {MAX_CRASHES}th death holds it");
                assert_eq!(got.held.len(), 1);
                assert_eq!(got.held[0].state, JobState::Held);
                assert_eq!(got.held[0].claimed_by, None);
            }
            // The node dies with the job: nobody renews.
            clock.advance(LEASE);
        }
        let held = state(&store, store_ids(&store)[0]);
        assert_eq!(held.state, JobState::Held);
        assert!(held.last_error.as_deref().unwrap().contains("died 3 times"));
        store.close();
    }

    #[tokio::test]
    async fn a_restarted_node_takes_its_own_claims_back_at_once_and_counts_them() {
        let (_d, store, clock) = setup(&["a", "b"]).await;
        let one = Claimant::new("node-1", LEASE);
        for death in 1..=MAX_CRASHES {
            let got = store.claim(&one, clock.unix_ms(), jobs(2)).await.unwrap();
            assert_eq!(got.jobs.len(), 2, "no wait for the lease (death {death})");
            assert!(got.taken_over.is_empty(), "its own claims are no takeover");
            // kill -9, restart within the lease: its own claims are known dead.
            let r = store.recover("node-1", clock.unix_ms()).await.unwrap();
            if death < MAX_CRASHES {
                assert_eq!((r.again.len(), r.held.len()), (2, 0));
            } else {
                assert_eq!((r.again.len(), r.held.len()), (0, 2));
            }
        }
        assert!(store
            .claim(&one, clock.unix_ms(), jobs(2))
            .await
            .unwrap()
            .jobs
            .is_empty());
        for id in store_ids(&store) {
            assert_eq!(state(&store, id).state, JobState::Held);
        }
        // A clean stop counts nothing.
        let r = store.recover("node-1", clock.unix_ms()).await.unwrap();
        assert!(r.again.is_empty() && r.held.is_empty());
        store.close();
    }

    #[tokio::test]
    async fn deadlines_are_claimed_once_and_fired_only_under_their_claim() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = ManualClock::at(1_765_000_000_000);
        let t0 = clock.unix_ms();
        let mut b = Batch::at(t0);
        b.timers.push(TimerOp::Start {
            identificativo: "id@x".into(),
            recipient: "b@y".into(),
            sent_at: t0,
            preavviso_due: t0 + 100,
            expire_due: t0 + 100 * LEASE,
        });
        store.commit(b).await.unwrap();
        let one = Claimant::new("node-1", LEASE);
        let two = Claimant::new("node-2", LEASE);
        let timers = |n| Want {
            timers: n,
            ..Want::default()
        };
        assert!(store
            .claim(&one, t0, timers(10))
            .await
            .unwrap()
            .timers
            .is_empty());
        clock.advance(100);
        let got = store
            .claim(&one, clock.unix_ms(), timers(10))
            .await
            .unwrap();
        assert_eq!(got.timers.len(), 1);
        assert!(store
            .claim(&two, clock.unix_ms(), timers(10))
            .await
            .unwrap()
            .timers
            .is_empty());
        let stale = got.timers[0].clone();
        clock.advance(LEASE);
        let fresh = store
            .claim(&two, clock.unix_ms(), timers(10))
            .await
            .unwrap()
            .timers;
        assert_eq!(fresh.len(), 1);
        // The 12 h warning fired by node-1 after it lost the claim: refused.
        let fire = |c: &ClaimedTimer| {
            let mut b = Batch::at(clock.unix_ms());
            b.guard = Some(crate::flow::batch::Guard::TimerArmed(c.timer.clone()));
            b.fence = Some(c.fence.clone());
            b.log(Event::new(
                EventKind::PreavvisoErroreConsegna,
                clock.unix_ms(),
            ));
            b
        };
        let before = log_rows(&store);
        assert!(matches!(
            store.commit(fire(&stale)).await.unwrap_err(),
            StoreError::LostClaim
        ));
        assert_eq!(log_rows(&store), before);
        assert!(store.commit(fire(&fresh[0])).await.unwrap().applied);
        assert_eq!(log_rows(&store), before + 1);
        store.close();
    }
}

//! One provider-wide budget for the message bytes sessions hold in RAM.
//!
//! Every connection can be made to hold memory (a DATA phase that never
//! ends, a message waiting to be parsed and signed), so the sum over all of
//! them must have a ceiling that does not depend on how many clients come:
//! `[limits] memory_budget`. Holders take a [`Reservation`] before they
//! allocate and give it back when they drop it; a holder that cannot have
//! more spills to disk or answers "try again later", it never just grows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Memory a submission needs at the end of DATA, as a multiple of the
/// message size: the message, the busta that embeds it, the canonical copy
/// that is signed, OpenSSL's copy while signing and the signed result
/// (measured: a 10 MB submission raises the peak by 50 MB).
pub const SUBMISSION_FACTOR: usize = 6;

/// The same for the reception point, which only writes the message to the
/// spool (the message and the write's copy).
pub const INBOUND_FACTOR: usize = 2;

/// Bytes that may be held at once, shared by every session.
#[derive(Debug)]
pub struct MemoryBudget {
    // Atomic: a reload may change the ceiling while bytes are reserved.
    limit: AtomicUsize,
    used: AtomicUsize,
    /// Holders waiting in [`Reservation::grow_within`].
    waiting: AtomicUsize,
    freed: Notify,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// A budget nobody can exhaust (for tools and tests that do not care).
    pub fn unlimited() -> Arc<MemoryBudget> {
        MemoryBudget::new(usize::MAX)
    }

    /// The configured ceiling.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// A new ceiling (configuration reload). Bytes already reserved above it
    /// stay reserved; nothing more is granted until usage falls below it.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
        // A larger budget may satisfy someone waiting for memory.
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// Bytes reserved right now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty reservation, to grow later.
    pub fn empty(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }

    /// `n` bytes, or `None` when they would take the total past the limit.
    pub fn try_reserve(self: &Arc<Self>, n: usize) -> Option<Reservation> {
        let mut r = self.empty();
        r.try_grow(n).then_some(r)
    }

    fn take(&self, n: usize) -> bool {
        let limit = self.limit();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
    }
}

/// Bytes taken from a [`MemoryBudget`]; they return to it on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Take `n` more bytes; false (and nothing taken) if the budget is short.
    pub fn try_grow(&mut self, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let ok = self.budget.take(n);
        if ok {
            self.bytes += n;
        }
        ok
    }

    /// Hold at least `total` bytes; false (and nothing taken) if the budget is short.
    pub fn try_grow_to(&mut self, total: usize) -> bool {
        self.try_grow(total.saturating_sub(self.bytes))
    }

    /// Like [`Self::try_grow_to`], but wait up to `wait` for other holders
    /// to give memory back: a burst of messages should queue, not fail.
    pub async fn grow_within(&mut self, total: usize, wait: Duration) -> bool {
        if self.try_grow_to(total) {
            return true;
        }
        if total > self.budget.limit() {
            return false;
        }
        let budget = self.budget.clone();
        budget.waiting.fetch_add(1, Ordering::AcqRel);
        let deadline = tokio::time::Instant::now() + wait;
        let ok = loop {
            let freed = budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            // Memory given back before `enable` would have been missed.
            if self.try_grow_to(total) {
                break true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                break self.try_grow_to(total);
            }
        };
        budget.waiting.fetch_sub(1, Ordering::AcqRel);
        ok
    }

    /// Give back everything above `total`.
    pub fn shrink_to(&mut self, total: usize) {
        if total < self.bytes {
            self.budget.give_back(self.bytes - total);
            self.bytes = total;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink_to(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_one_ceiling_and_return_on_drop() {
        let b = MemoryBudget::new(100);
        let mut a = b.try_reserve(60).unwrap();
        assert!(b.try_reserve(41).is_none());
        let c = b.try_reserve(40).unwrap();
        assert_eq!(b.in_use(), 100);
        assert!(!a.try_grow(1));
        assert_eq!(a.bytes(), 60);
        drop(c);
        assert!(a.try_grow_to(70));
        assert_eq!(b.in_use(), 70);
        a.shrink_to(10);
        assert_eq!(b.in_use(), 10);
        drop(a);
        assert_eq!(b.in_use(), 0);
        assert!(MemoryBudget::unlimited().try_reserve(usize::MAX).is_some());
    }

    #[tokio::test]
    async fn a_waiting_holder_gets_memory_given_back() {
        let b = MemoryBudget::new(100);
        let held = b.try_reserve(80).unwrap();
        let mut w = b.empty();
        assert!(!w.grow_within(50, Duration::from_millis(20)).await);
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
        });
        assert!(w.grow_within(50, Duration::from_secs(10)).await);
        release.await.unwrap();
        assert!(!w.grow_within(101, Duration::from_secs(10)).await);
        assert_eq!(b.in_use(), 50);
    }
}

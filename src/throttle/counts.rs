//! The login throttle's arithmetic (see [`crate::throttle`]), pure: what
//! an attempt and its outcome do to the failure counts of its account and
//! of its network. The same functions run over the in-memory tables of a
//! single node and, inside one store transaction, over the counts a
//! cluster's nodes share in the database (`store::logins`), so one node and
//! many throttle alike.
//!
//! Times are milliseconds on one clock: since the throttle started (in
//! memory), Unix time (in the store, shared by nodes whose clocks agree).

use std::net::IpAddr;
use std::time::Duration;

/// Tunables of a [`crate::throttle::LoginThrottle`].
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Delay after the first failure; doubles with every further failure.
    pub base_delay: Duration,
    /// Upper bound of the delay, and of the time an attempt may queue.
    pub max_delay: Duration,
    /// Failures older than this are forgotten.
    pub forget_after: Duration,
    /// Maximum number of tracked addresses and (separately) networks, in
    /// memory.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            forget_after: Duration::from_secs(3600),
            max_entries: 10_000,
        }
    }
}

/// What a failure count is kept under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CountKey {
    /// An account, as the users table spells it (normalised).
    Account(String),
    /// A source network ([`crate::throttle::network_of`]).
    Network(IpAddr),
}

impl CountKey {
    /// Which kind of key, as the store names it.
    pub fn scope(&self) -> &'static str {
        match self {
            CountKey::Account(_) => "account",
            CountKey::Network(_) => "network",
        }
    }

    /// The key itself, as the store names it.
    pub fn id(&self) -> String {
        match self {
            CountKey::Account(a) => a.clone(),
            CountKey::Network(n) => n.to_string(),
        }
    }
}

/// The failures counted against one account or network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    /// Failed attempts not forgotten yet.
    pub failures: u32,
    /// Attempts reserved and not recorded yet: each counts as a failure
    /// for the delay until it is known to be a success.
    pub pending: u32,
    /// The last attempt or failure (ms).
    pub last_ms: i64,
    /// When the next attempt may be made (ms).
    pub next_allowed_ms: i64,
}

impl FailureCount {
    fn new(now: i64) -> FailureCount {
        FailureCount {
            failures: 0,
            pending: 0,
            last_ms: now,
            next_allowed_ms: now,
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `c` unless its failures are too old to matter.
fn live(c: Option<FailureCount>, now: i64, cfg: &ThrottleConfig) -> Option<FailureCount> {
    c.filter(|c| now.saturating_sub(c.last_ms) < ms(cfg.forget_after))
}

/// Reserve the next slot for an attempt at `now` against these counts:
/// how long to wait for it, or `None` when the queue is already longer
/// than `max_delay` (refuse without checking the password). The counts
/// are changed in place (`None`: nothing to keep).
pub fn reserve(
    cfg: &ThrottleConfig,
    account: &mut Option<FailureCount>,
    network: &mut Option<FailureCount>,
    now: i64,
) -> Option<Duration> {
    *account = live(*account, now, cfg);
    *network = live(*network, now, cfg);
    let slot = [*account, *network]
        .iter()
        .flatten()
        .map(|c| c.next_allowed_ms)
        .fold(now, i64::max);
    let wait = slot.saturating_sub(now);
    if wait > ms(cfg.max_delay) {
        return None;
    }
    // The attempt is charged now, as if it had failed already: the next
    // one queues a delay behind it even before its password is checked.
    for c in [account, network] {
        let c = c.get_or_insert(FailureCount::new(now));
        c.pending = c.pending.saturating_add(1);
        c.last_ms = now;
        c.next_allowed_ms = slot.saturating_add(delay_ms(cfg, c.failures.max(1)));
    }
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

/// Record at `now` the outcome of an attempt [`reserve`] let through.
pub fn record(
    cfg: &ThrottleConfig,
    account: &mut Option<FailureCount>,
    network: &mut Option<FailureCount>,
    ok: bool,
    now: i64,
) {
    if ok {
        *account = None;
        if let Some(n) = network {
            n.pending = n.pending.saturating_sub(1);
            if n.failures == 0 {
                // Nothing but attempts in flight: later ones need not
                // queue behind a success.
                n.next_allowed_ms = now;
                if n.pending == 0 {
                    *network = None;
                }
            }
        }
        return;
    }
    // Stale history must not add to the new count.
    *account = live(*account, now, cfg);
    *network = live(*network, now, cfg);
    for c in [account, network] {
        let c = c.get_or_insert(FailureCount::new(now));
        c.pending = c.pending.saturating_sub(1);
        c.failures = c.failures.saturating_add(1);
        c.last_ms = now;
        c.next_allowed_ms = c
            .next_allowed_ms
            .max(now.saturating_add(delay_ms(cfg, c.failures)));
    }
}

/// The wait after `failures` failures: `base * 2^(failures-1)`, capped.
pub fn delay(cfg: &ThrottleConfig, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let shift = (failures - 1).min(20);
    cfg.base_delay
        .saturating_mul(1u32 << shift)
        .min(cfg.max_delay)
}

fn delay_ms(cfg: &ThrottleConfig, failures: u32) -> i64 {
    ms(delay(cfg, failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ThrottleConfig {
        ThrottleConfig {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            forget_after: Duration::from_secs(60),
            max_entries: 3,
        }
    }

    #[test]
    fn a_reservation_charges_both_counts_and_its_outcome_settles_them() {
        let c = cfg();
        let (mut a, mut n) = (None, None);
        assert_eq!(reserve(&c, &mut a, &mut n, 1_000), Some(Duration::ZERO));
        let charged = FailureCount {
            failures: 0,
            pending: 1,
            last_ms: 1_000,
            next_allowed_ms: 1_100,
        };
        assert_eq!((a, n), (Some(charged), Some(charged)));
        record(&c, &mut a, &mut n, false, 1_010);
        let failed = FailureCount {
            failures: 1,
            pending: 0,
            last_ms: 1_010,
            next_allowed_ms: 1_110,
        };
        assert_eq!((a, n), (Some(failed), Some(failed)));
        assert_eq!(reserve(&c, &mut a, &mut n, 1_010), Some(100 * MS));
        record(&c, &mut a, &mut n, true, 1_110);
        // The account is cleared; the network keeps its failure.
        assert_eq!(a, None);
        assert_eq!(n.map(|n| (n.failures, n.pending)), Some((1, 0)));
        // A minute later the network's failure is forgotten.
        assert_eq!(reserve(&c, &mut a, &mut n, 61_110), Some(Duration::ZERO));
        assert_eq!(n.map(|n| n.failures), Some(0));
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn keys_name_their_scope() {
        let a = CountKey::Account("a@x".into());
        let n = CountKey::Network("192.0.2.0".parse().unwrap());
        assert_eq!((a.scope(), a.id()), ("account", "a@x".to_string()));
        assert_eq!((n.scope(), n.id()), ("network", "192.0.2.0".to_string()));
    }
}

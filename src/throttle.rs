//! Login throttling shared by IMAP LOGIN/AUTHENTICATE and SMTP AUTH.
//!
//! Password guessing is slowed down, not refused: after `n` consecutive
//! failures for an address (or from an IP) the next attempt waits
//! `base * 2^(n-1)`, capped at `max_delay`. A success resets the address and
//! the IP. Memory is bounded: when a table is full, the entry with the oldest
//! failure is forgotten (an attacker cycling through many keys only ever gets
//! the small delays, which is the price of a fixed memory budget).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tunables of a [`LoginThrottle`].
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Delay after the first failure; doubles with every further failure.
    pub base_delay: Duration,
    /// Upper bound of the delay.
    pub max_delay: Duration,
    /// Failures older than this are forgotten.
    pub forget_after: Duration,
    /// Maximum number of tracked addresses and (separately) IPs.
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

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Debug)]
struct Table<K> {
    map: HashMap<K, Failures>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new() -> Self {
        Self {
            map: HashMap::new(),
        }
    }

    fn count(&mut self, key: &K, now: Instant, forget: Duration) -> u32 {
        match self.map.get(key) {
            Some(f) if now.duration_since(f.last) < forget => f.count,
            Some(_) => {
                self.map.remove(key);
                0
            }
            None => 0,
        }
    }

    fn fail(&mut self, key: K, now: Instant, max: usize) {
        if !self.map.contains_key(&key) && self.map.len() >= max {
            // Evicting the stalest entry keeps memory bounded under a flood of new keys.
            if let Some(old) = self
                .map
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
            {
                self.map.remove(&old);
            }
        }
        let e = self.map.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        e.count = e.count.saturating_add(1);
        e.last = now;
    }

    fn reset(&mut self, key: &K) {
        self.map.remove(key);
    }
}

#[derive(Debug)]
struct Inner {
    by_addr: Table<String>,
    by_ip: Table<IpAddr>,
}

/// Per-address and per-IP exponential delay after failed logins.
#[derive(Debug)]
pub struct LoginThrottle {
    cfg: ThrottleConfig,
    inner: Mutex<Inner>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(ThrottleConfig::default())
    }
}

impl LoginThrottle {
    /// A throttle with the given tunables.
    pub fn new(cfg: ThrottleConfig) -> Self {
        Self {
            cfg,
            inner: Mutex::new(Inner {
                by_addr: Table::new(),
                by_ip: Table::new(),
            }),
        }
    }

    fn key(addr: &str) -> String {
        addr.trim().to_ascii_lowercase()
    }

    /// How long the next attempt for `addr` from `ip` must wait.
    pub fn delay_for(&self, addr: &str, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let forget = self.cfg.forget_after;
        let n = {
            let mut g = match self.inner.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            let a = g.by_addr.count(&Self::key(addr), now, forget);
            let i = g.by_ip.count(&ip, now, forget);
            a.max(i)
        };
        if n == 0 {
            return Duration::ZERO;
        }
        let shift = (n - 1).min(20);
        self.cfg
            .base_delay
            .saturating_mul(1u32 << shift)
            .min(self.cfg.max_delay)
    }

    /// Sleep as long as the failure history of `addr` and `ip` asks for.
    pub async fn before_attempt(&self, addr: &str, ip: IpAddr) {
        let d = self.delay_for(addr, ip);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// Record the outcome of an attempt.
    pub fn record(&self, addr: &str, ip: IpAddr, ok: bool) {
        let now = Instant::now();
        let max = self.cfg.max_entries;
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if ok {
            g.by_addr.reset(&Self::key(addr));
            g.by_ip.reset(&ip);
        } else {
            g.by_addr.fail(Self::key(addr), now, max);
            g.by_ip.fail(ip, now, max);
        }
    }

    /// Number of tracked (address, IP) entries; for tests and metrics.
    pub fn tracked(&self) -> (usize, usize) {
        let g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        (g.by_addr.map.len(), g.by_ip.map.len())
    }
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
    fn delay_doubles_and_is_capped_then_resets_on_success() {
        let t = LoginThrottle::new(cfg());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(t.delay_for("a@x", ip), Duration::ZERO);
        t.record("a@x", ip, false);
        assert_eq!(t.delay_for("A@X", ip), Duration::from_millis(100));
        t.record("a@x", ip, false);
        assert_eq!(t.delay_for("a@x", ip), Duration::from_millis(200));
        for _ in 0..10 {
            t.record("a@x", ip, false);
        }
        assert_eq!(t.delay_for("a@x", ip), Duration::from_millis(1000));
        t.record("a@x", ip, true);
        assert_eq!(t.delay_for("a@x", ip), Duration::ZERO);
    }

    #[test]
    fn ip_failures_slow_other_addresses_from_that_ip() {
        let t = LoginThrottle::new(cfg());
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let other: IpAddr = "127.0.0.3".parse().unwrap();
        t.record("a@x", ip, false);
        t.record("b@x", ip, false);
        assert_eq!(t.delay_for("c@x", ip), Duration::from_millis(200));
        assert_eq!(t.delay_for("c@x", other), Duration::ZERO);
        // The address keeps its own history whatever the IP.
        assert_eq!(t.delay_for("a@x", other), Duration::from_millis(100));
    }

    #[test]
    fn memory_is_bounded() {
        let t = LoginThrottle::new(cfg());
        for i in 0..50u8 {
            let ip = IpAddr::from([127, 0, 1, i]);
            t.record(&format!("u{i}@x"), ip, false);
        }
        let (a, i) = t.tracked();
        assert!(a <= 3 && i <= 3, "{a} {i}");
    }
}

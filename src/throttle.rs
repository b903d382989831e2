//! Abuse limits shared by every listener: the login throttle (SMTP AUTH,
//! IMAP LOGIN/AUTHENTICATE) and the per-IP connection cap.
//!
//! Password guessing is slowed down, not refused. Failures are counted per
//! target address and per source network ([`network_of`]: IPv4 /24, IPv6
//! /64), across all connections and protocols; after `n` failures the next
//! attempt for that key waits `base * 2^(n-1)`, capped at `max_delay`.
//!
//! Attempts against one key queue behind each other: each attempt reserves
//! the next slot (`next_allowed = max(now, next_allowed) + delay`), so 100
//! parallel guesses wait 100 delays, not one. The slot is reserved before the
//! password is checked and the attempt counts as a failure until it is
//! recorded a success ([`Attempt`]): parallel first guesses against a clean
//! address or network queue one delay apart behind the first one, instead of
//! all passing before the first failure is known. An attempt that would have
//! to queue longer than `max_delay` is refused without checking the password
//! (the caller answers "try later"), so sessions are never parked for hours.
//!
//! A success clears only its own address's counter: the network's counter
//! stays, otherwise an attacker holding one account could spray guesses at
//! every other one, logging in to his own between guesses. (A network with no
//! failure at all is let go at once after a success: users behind one NAT
//! logging in one after the other never wait.)
//!
//! Memory is bounded: when a table is full, the entry with the oldest failure
//! is forgotten (an attacker cycling through many keys only ever gets the
//! small delays, which is the price of a fixed memory budget).
//!
//! Where the counts are: in this process's memory for one node (SQLite),
//! in the store for nodes sharing a PostgreSQL database
//! ([`LoginThrottle::shared`], [`SharedCounts`]), so that a guess on one
//! node counts on every other. Both run the same arithmetic
//! ([`counts`]); the store's counts are forgotten by housekeeping an
//! hour after their last attempt instead of by a size bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::pec::clock::Clock;

pub mod counts;

use counts::FailureCount;

pub use counts::ThrottleConfig;

/// The network a login failure is charged to: the /24 of an IPv4 address
/// (IPv4-mapped IPv6 included), the /64 of an IPv6 address. One host usually
/// holds a whole /64, and a /24 rarely spans more than one organisation.
pub fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4_net(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4_net(v4)),
            None => IpAddr::V6(v6_net(v6)),
        },
    }
}

fn v4_net(v4: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)
}

fn v6_net(v6: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))
}

/// The key connections are counted under: the address itself for IPv4, its
/// /64 for IPv6 (a host picks any address of its /64 at will).
pub fn host_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6_net(v6)),
        },
    }
}

/// An IP network written `192.0.2.0/24`, `2001:db8::/48`, or a bare address
/// (the whole address). IPv4-mapped IPv6 clients match IPv4 networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parse `addr[/prefix]`; the bits past the prefix must be zero, so a
    /// typo such as `192.0.2.1/24` is not silently read as a wider network.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network"))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => bits,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= bits => n,
                _ => return Err(format!("{s:?}: the prefix must be 0 to {bits}")),
            },
        };
        let net = IpNet { addr, prefix };
        if net.masked(addr) != addr {
            return Err(format!(
                "{s:?}: address bits set past /{prefix} (did you mean {}/{prefix}?)",
                net.masked(addr)
            ));
        }
        Ok(net)
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let m = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
            }
            IpAddr::V6(v6) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
            }
        }
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == self.addr
    }
}

/// One table of counts in memory, bounded.
#[derive(Debug)]
struct Table<K> {
    map: HashMap<K, FailureCount>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new() -> Self {
        Self {
            map: HashMap::new(),
        }
    }

    /// Put back the count of `key` as [`counts`] left it (`None`: gone).
    fn put(&mut self, key: K, count: Option<FailureCount>, max: usize) {
        let Some(count) = count else {
            self.map.remove(&key);
            return;
        };
        if !self.map.contains_key(&key) && self.map.len() >= max.max(1) {
            // Evicting the stalest entry keeps memory bounded under a flood of new keys.
            if let Some(old) = self
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_ms)
                .map(|(k, _)| k.clone())
            {
                self.map.remove(&old);
            }
        }
        self.map.insert(key, count);
    }
}

#[derive(Debug)]
struct Inner {
    // Under the same lock as the tables: a reload swaps the tunables
    // between two attempts, never in the middle of one.
    cfg: ThrottleConfig,
    by_addr: Table<String>,
    by_net: Table<IpAddr>,
}

/// Why failure counts kept outside this process could not be read or
/// written (the store's error).
pub type CountsError = Box<dyn std::error::Error + Send + Sync>;

/// What a [`SharedCounts`] call resolves to.
pub type CountsFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, CountsError>> + Send>>;

/// Failure counts every node of a cluster shares (the store, with
/// PostgreSQL): [`counts::reserve`] and [`counts::record`] run where the
/// counts are, each in one transaction, so that no two nodes change one
/// count from the same value. Times are Unix ms.
pub trait SharedCounts: Send + Sync {
    /// [`counts::reserve`] for `account` (normalised) and `network`.
    fn reserve(
        &self,
        account: String,
        network: IpAddr,
        cfg: ThrottleConfig,
        now: i64,
    ) -> CountsFuture<Option<Duration>>;

    /// [`counts::record`] for `account` and `network`; resolves once the
    /// outcome is kept.
    fn record(
        &self,
        account: String,
        network: IpAddr,
        ok: bool,
        cfg: ThrottleConfig,
        now: i64,
    ) -> CountsFuture<()>;

    /// Forget the counts whose last attempt was before `before` (blocking:
    /// housekeeping); how many.
    fn forget(&self, before: i64) -> Result<usize, CountsError>;
}

/// Where the counts of a cluster live, and the clock its nodes agree on.
struct Shared {
    counts: Arc<dyn SharedCounts>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

/// Per-address and per-network queued delay after failed logins.
#[derive(Debug)]
pub struct LoginThrottle {
    inner: Mutex<Inner>,
    /// Time zero of the in-memory counts.
    started: Instant,
    /// The counts are in the store, shared by every node of a cluster.
    shared: Option<Shared>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(ThrottleConfig::default())
    }
}

impl LoginThrottle {
    /// A throttle with the given tunables, counting in this process's memory.
    pub fn new(cfg: ThrottleConfig) -> Self {
        Self {
            inner: Mutex::new(Inner {
                cfg,
                by_addr: Table::new(),
                by_net: Table::new(),
            }),
            started: Instant::now(),
            shared: None,
        }
    }

    /// A throttle counting in `counts` (the store's database), which every
    /// node of a cluster shares: a failure on one node delays the next
    /// attempt on any other. Times are `clock`'s Unix milliseconds.
    pub fn shared(
        cfg: ThrottleConfig,
        counts: Arc<dyn SharedCounts>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            shared: Some(Shared { counts, clock }),
            ..Self::new(cfg)
        }
    }

    /// Whether the counts are in the store (shared by nodes).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The same normalisation as the users table, so `<Victim@X>` and
    /// `victim@x` (one account) are one key, whatever the protocol passes.
    fn key(addr: &str) -> String {
        crate::store::users::normalize(addr)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn config(&self) -> ThrottleConfig {
        self.lock().cfg.clone()
    }

    /// `now` on the in-memory counts' clock.
    fn ms(&self, now: Instant) -> i64 {
        i64::try_from(now.saturating_duration_since(self.started).as_millis()).unwrap_or(i64::MAX)
    }

    /// New tunables (configuration reload); the failures counted so far stay.
    pub fn set_config(&self, cfg: ThrottleConfig) {
        self.lock().cfg = cfg;
    }

    /// Reserve the next slot for an attempt on `addr` from `ip` at `now`
    /// in the in-memory counts: how long to wait for it, or `None` when the
    /// queue is already longer than `max_delay` (refuse without checking
    /// the password).
    pub fn reserve_at(&self, addr: &str, ip: IpAddr, now: Instant) -> Option<Duration> {
        let key = Self::key(addr);
        let net = network_of(ip);
        let now = self.ms(now);
        let mut g = self.lock();
        let inner = &mut *g;
        let mut a = inner.by_addr.map.remove(&key);
        let mut n = inner.by_net.map.remove(&net);
        let wait = counts::reserve(&inner.cfg, &mut a, &mut n, now);
        let max = inner.cfg.max_entries;
        inner.by_addr.put(key, a, max);
        inner.by_net.put(net, n, max);
        wait
    }

    /// Wait for this attempt's slot; the [`Attempt`] must be told how it
    /// ended, and counts as a failure if dropped untold. `None`: too many
    /// attempts are queued already (or the shared counts cannot be read);
    /// refuse this one without checking the password.
    #[must_use]
    pub async fn before_attempt(&self, addr: &str, ip: IpAddr) -> Option<Attempt<'_>> {
        let d = match &self.shared {
            None => self.reserve_at(addr, ip, Instant::now())?,
            Some(s) => {
                let r = s
                    .counts
                    .reserve(
                        Self::key(addr),
                        network_of(ip),
                        self.config(),
                        s.clock.unix_ms(),
                    )
                    .await;
                match r {
                    Ok(d) => d?,
                    Err(e) => {
                        // Fail closed: a login the throttle cannot count
                        // would be a free guess.
                        tracing::warn!(error = %e, peer = %ip,
                            "login refused: the shared failure counts cannot be read");
                        return None;
                    }
                }
            }
        };
        let attempt = Attempt {
            throttle: self,
            addr: addr.to_string(),
            ip,
            done: false,
        };
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        Some(attempt)
    }

    /// Record in the in-memory counts the outcome of an attempt reserved
    /// with [`reserve_at`](Self::reserve_at) and made at `now`.
    pub fn record_at(&self, addr: &str, ip: IpAddr, ok: bool, now: Instant) {
        let key = Self::key(addr);
        let net = network_of(ip);
        let now = self.ms(now);
        let mut g = self.lock();
        let inner = &mut *g;
        let mut a = inner.by_addr.map.remove(&key);
        let mut n = inner.by_net.map.remove(&net);
        counts::record(&inner.cfg, &mut a, &mut n, ok, now);
        let max = inner.cfg.max_entries;
        inner.by_addr.put(key, a, max);
        inner.by_net.put(net, n, max);
    }

    /// Record an outcome where the counts are.
    async fn record(&self, addr: &str, ip: IpAddr, ok: bool) {
        match &self.shared {
            None => self.record_at(addr, ip, ok, Instant::now()),
            Some(s) => {
                let r = s
                    .counts
                    .record(
                        Self::key(addr),
                        network_of(ip),
                        ok,
                        self.config(),
                        s.clock.unix_ms(),
                    )
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, peer = %ip, ok,
                        "a login's outcome could not be counted in the store");
                }
            }
        }
    }

    /// Forget the shared counts whose last failure is older than
    /// `forget_after` (housekeeping; the in-memory tables are bounded by
    /// size instead). How many went.
    pub fn sweep(&self) -> usize {
        let Some(s) = &self.shared else {
            return 0;
        };
        let before = s
            .clock
            .unix_ms()
            .saturating_sub(i64::try_from(self.config().forget_after.as_millis()).unwrap_or(0));
        match s.counts.forget(before) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "old login failure counts not forgotten; will try again");
                0
            }
        }
    }

    /// Number of tracked (address, network) entries in memory; for tests
    /// and metrics.
    pub fn tracked(&self) -> (usize, usize) {
        let g = self.lock();
        (g.by_addr.map.len(), g.by_net.map.len())
    }
}

/// One login attempt holding its throttle slot: a failure until
/// [`succeeded`](Self::succeeded) says otherwise, also when the session
/// ends before the check does.
#[derive(Debug)]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    addr: String,
    ip: IpAddr,
    done: bool,
}

impl Attempt<'_> {
    /// Record the outcome: `true` clears the address's failures. Resolves
    /// once it is counted (in the store: committed, so any node's next
    /// attempt sees it).
    pub async fn finish(mut self, ok: bool) {
        self.done = true;
        self.throttle.record(&self.addr, self.ip, ok).await;
    }

    /// The login succeeded (every factor of it).
    pub async fn succeeded(self) {
        self.finish(true).await;
    }

    /// The login failed.
    pub async fn failed(self) {
        self.finish(false).await;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match &self.throttle.shared {
            None => self
                .throttle
                .record_at(&self.addr, self.ip, false, Instant::now()),
            Some(s) => {
                // A drop cannot wait for the store: the failure is counted
                // by a task of its own.
                let counted = s.counts.record(
                    LoginThrottle::key(&self.addr),
                    network_of(self.ip),
                    false,
                    self.throttle.config(),
                    s.clock.unix_ms(),
                );
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        if let Err(e) = counted.await {
                            tracing::warn!(error = %e,
                                "an abandoned login could not be counted in the store");
                        }
                    });
                }
            }
        }
    }
}

/// Live connections per client host ([`host_of`]) on one listener.
#[derive(Debug)]
pub struct ConnectionLimit {
    // Atomic: a reload may change the cap while connections are counted.
    max: AtomicUsize,
    live: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    limit: Arc<ConnectionLimit>,
    key: IpAddr,
}

impl ConnectionLimit {
    /// At most `max` live connections per host.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: AtomicUsize::new(max),
            live: Mutex::new(HashMap::new()),
        })
    }

    /// A new cap for the connections admitted from now on (configuration
    /// reload); a host already over it keeps its connections.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        match self.live.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A slot for a connection from `ip`, or `None` if that host has `max` already.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        self.try_acquire_up_to(ip, self.max.load(Ordering::Relaxed))
    }

    /// [`try_acquire`](Self::try_acquire) against `max` instead of the
    /// listener's cap: a host with a cap of its own (a peer provider).
    pub fn try_acquire_up_to(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ConnectionSlot> {
        let key = host_of(ip);
        let mut g = self.lock();
        let n = g.entry(key).or_insert(0);
        if *n >= max {
            if *n == 0 {
                g.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            limit: self.clone(),
            key,
        })
    }

    /// Live connections from `ip`'s host.
    pub fn live(&self, ip: IpAddr) -> usize {
        self.lock().get(&host_of(ip)).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut g = self.limit.lock();
        if let Some(n) = g.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Entries exist only for hosts with live connections: memory follows the cap.
                g.remove(&self.key);
            }
        }
    }
}

/// Live connections on one listener against a cap a reload may change
/// (`[limits] max_connections`); what a semaphore would be if its size
/// could shrink below the permits already out.
#[derive(Debug)]
pub struct ConnectionCap {
    max: AtomicUsize,
    live: AtomicUsize,
}

/// One connection counted by a [`ConnectionCap`]; dropping it frees the place.
#[derive(Debug)]
pub struct CapSlot {
    cap: Arc<ConnectionCap>,
}

impl ConnectionCap {
    /// At most `max` live connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: AtomicUsize::new(max),
            live: AtomicUsize::new(0),
        })
    }

    /// A new cap for the connections admitted from now on; none is closed.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// A place for one more connection, or `None` at the cap.
    pub fn try_acquire(self: &Arc<Self>) -> Option<CapSlot> {
        let max = self.max.load(Ordering::Relaxed);
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| CapSlot { cap: self.clone() })
    }

    /// Live connections.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

impl Drop for CapSlot {
    fn drop(&mut self) {
        self.cap.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> ThrottleConfig {
        ThrottleConfig {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            forget_after: Duration::from_secs(60),
            max_entries: 3,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_networks_parse_and_match() {
        let n = IpNet::parse("192.0.2.0/24").unwrap();
        assert!(n.contains(ip("192.0.2.77")));
        assert!(!n.contains(ip("192.0.3.1")));
        // A v4-mapped client is the same host as its IPv4 address.
        assert!(n.contains(ip("::ffff:192.0.2.5")));
        assert!(!n.contains(ip("2001:db8::1")));
        let one = IpNet::parse("127.0.0.2").unwrap();
        assert!(one.contains(ip("127.0.0.2")) && !one.contains(ip("127.0.0.1")));
        let v6 = IpNet::parse(" 2001:db8::/48 ").unwrap();
        assert!(v6.contains(ip("2001:db8:0:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in [
            "192.0.2.1/24",
            "192.0.2.0/33",
            "2001:db8::/129",
            "host",
            "10.0.0.0/x",
            "",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_host_with_a_cap_of_its_own_is_counted_against_it() {
        let l = ConnectionLimit::new(2);
        let peer = ip("10.0.0.9");
        let held: Vec<_> = (0..5)
            .map(|_| l.try_acquire_up_to(peer, 5).unwrap())
            .collect();
        assert!(l.try_acquire_up_to(peer, 5).is_none());
        // The listener's own cap still holds for that host's plain acquisitions.
        assert!(l.try_acquire(peer).is_none());
        assert_eq!(l.live(peer), 5);
        drop(held);
        assert_eq!(l.live(peer), 0);
    }

    #[test]
    fn sequential_failures_double_the_wait_up_to_the_cap() {
        let t = LoginThrottle::new(cfg());
        let ip = ip("127.0.0.1");
        let mut now = Instant::now();
        assert_eq!(t.reserve_at("a@x", ip, now), Some(Duration::ZERO));
        let mut waits = vec![];
        for _ in 0..6 {
            t.record_at("a@x", ip, false, now);
            let w = t.reserve_at("A@X ", ip, now).unwrap();
            waits.push(w.as_millis());
            now += w;
        }
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        let other = IpAddr::from([10, 9, 9, 9]);
        assert!(t.reserve_at(" <a@X>", other, now).unwrap() > Duration::ZERO);
    }

    #[test]
    fn parallel_attempts_queue_behind_one_another() {
        let t = LoginThrottle::new(cfg());
        let ip = ip("10.0.0.1");
        let now = Instant::now();
        t.record_at("a@x", ip, false, now);
        // Five attempts arriving at once get five successive slots, not one.
        let waits: Vec<_> = (0..5)
            .map(|_| t.reserve_at("a@x", ip, now).unwrap().as_millis())
            .collect();
        assert_eq!(waits, [100, 200, 300, 400, 500]);
        // Past max_delay of queue, attempts are refused unchecked.
        for _ in 0..5 {
            t.reserve_at("a@x", ip, now);
        }
        assert_eq!(t.reserve_at("a@x", ip, now), None);
        assert!(t
            .reserve_at("a@x", ip, now + Duration::from_secs(2))
            .is_some());
    }

    #[test]
    fn a_success_clears_only_its_own_address() {
        let t = LoginThrottle::new(ThrottleConfig {
            max_entries: 100,
            ..cfg()
        });
        let ip = ip("192.0.2.7");
        let now = Instant::now();
        for u in ["u1@x", "u2@x", "u3@x"] {
            t.record_at(u, ip, false, now);
        }
        assert_eq!(t.reserve_at("mine@x", ip, now), Some(400 * MS));
        t.record_at("mine@x", ip, true, now);
        // The network keeps its three failures: a fresh address still waits.
        assert_eq!(t.reserve_at("fresh@x", ip, now), Some(800 * MS));
        t.record_at("fresh@x", ip, true, now);
        // And so does every address that failed, queued behind the network.
        let later = now + 400 * MS;
        assert_eq!(t.reserve_at("u1@x", ip, later), Some(800 * MS));
        t.record_at("u1@x", ip, true, later);
        assert_eq!(t.tracked(), (2, 1));
    }

    #[test]
    fn parallel_first_attempts_queue_one_delay_apart() {
        let t = LoginThrottle::new(cfg());
        let ip = ip("10.0.0.1");
        let now = Instant::now();
        // A clean address: each attempt counts as a failure until it is
        // known not to be one, so five at once do not all pass at once.
        let waits: Vec<_> = (0..5)
            .map(|_| t.reserve_at("a@x", ip, now).unwrap().as_millis())
            .collect();
        assert_eq!(waits, [0, 100, 200, 300, 400]);
        // Different addresses from one network queue behind each other too.
        let t = LoginThrottle::new(ThrottleConfig {
            max_entries: 100,
            ..cfg()
        });
        let waits: Vec<_> = (0..3)
            .map(|i| {
                t.reserve_at(&format!("u{i}@x"), ip, now)
                    .unwrap()
                    .as_millis()
            })
            .collect();
        assert_eq!(waits, [0, 100, 200]);
        // From another network, another queue.
        assert_eq!(
            t.reserve_at("u0@x", IpAddr::from([10, 0, 1, 1]), now),
            Some(100 * MS)
        );
    }

    #[test]
    fn a_success_lets_the_next_attempt_go_at_once_and_leaves_no_entry() {
        let t = LoginThrottle::new(cfg());
        let ip = ip("10.0.0.1");
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.reserve_at("a@x", ip, now), Some(Duration::ZERO));
            t.record_at("a@x", ip, true, now);
        }
        assert_eq!(t.tracked(), (0, 0));
        // A reservation never told its outcome is a failure.
        {
            let _a = Attempt {
                throttle: &t,
                addr: "a@x".into(),
                ip,
                done: false,
            };
            t.reserve_at("a@x", ip, now);
        }
        assert!(t.reserve_at("a@x", ip, Instant::now()).unwrap() > Duration::ZERO);
    }

    #[test]
    fn failures_are_charged_to_the_network() {
        let t = LoginThrottle::new(cfg());
        let now = Instant::now();
        t.record_at("a@x", ip("198.51.100.1"), false, now);
        t.record_at("b@x", ip("198.51.100.200"), false, now);
        assert_eq!(
            t.reserve_at("c@x", ip("198.51.100.99"), now),
            Some(200 * MS)
        );
        assert_eq!(
            t.reserve_at("d@x", ip("198.51.101.1"), now),
            Some(Duration::ZERO)
        );
        t.record_at("a@x", ip("2001:db8:1:2::1"), false, now);
        assert!(
            t.reserve_at("z@x", ip("2001:db8:1:2:ffff::9"), now)
                .unwrap()
                > Duration::ZERO
        );
        assert_eq!(
            t.reserve_at("y@x", ip("2001:db8:1:3::1"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            network_of(ip("::ffff:203.0.113.9")),
            ip("203.0.113.0"),
            "IPv4-mapped addresses count as IPv4"
        );
    }

    #[test]
    fn old_failures_are_forgotten() {
        let t = LoginThrottle::new(cfg());
        let ip = ip("127.0.0.1");
        let now = Instant::now();
        for _ in 0..5 {
            t.record_at("a@x", ip, false, now);
        }
        let later = now + Duration::from_secs(61);
        assert_eq!(t.reserve_at("a@x", ip, later), Some(Duration::ZERO));
        t.record_at("a@x", ip, false, later);
        assert_eq!(t.reserve_at("a@x", ip, later), Some(100 * MS));
    }

    #[test]
    fn memory_is_bounded() {
        let t = LoginThrottle::new(cfg());
        let now = Instant::now();
        for i in 0..50u8 {
            let ip = IpAddr::from([10, i, 1, 1]);
            t.record_at(&format!("u{i}@x"), ip, false, now + u32::from(i) * MS);
            t.reserve_at(&format!("u{i}@x"), ip, now);
        }
        let (a, n) = t.tracked();
        assert!(a <= 3 && n <= 3, "{a} {n}");
    }

    #[test]
    fn connection_slots_are_counted_per_host_and_freed_on_drop() {
        let l = ConnectionLimit::new(2);
        let a = ip("127.0.0.1");
        let s1 = l.try_acquire(a).unwrap();
        let _s2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none());
        assert!(l.try_acquire(ip("127.0.0.2")).is_some());
        drop(s1);
        assert_eq!(l.live(a), 1);
        assert!(l.try_acquire(a).is_some());
        // One IPv6 host owns its /64.
        let _v = l.try_acquire(ip("2001:db8::1")).unwrap();
        let _w = l.try_acquire(ip("2001:db8::2")).unwrap();
        assert!(l.try_acquire(ip("2001:db8::3")).is_none());
        let z = ConnectionLimit::new(0);
        assert!(z.try_acquire(a).is_none());
        assert_eq!(z.live(a), 0);
    }

    #[test]
    fn caps_changed_while_connections_live_apply_to_the_next_ones() {
        let c = ConnectionCap::new(2);
        let a = c.try_acquire().unwrap();
        let _b = c.try_acquire().unwrap();
        assert!(c.try_acquire().is_none());
        c.set_max(1);
        drop(a);
        assert!(c.try_acquire().is_none(), "one live, cap 1");
        c.set_max(3);
        let _d = c.try_acquire().unwrap();
        assert_eq!(c.live(), 2);
        let l = ConnectionLimit::new(1);
        let h = ip("127.0.0.1");
        let _s = l.try_acquire(h).unwrap();
        assert!(l.try_acquire(h).is_none());
        l.set_max(2);
        assert!(l.try_acquire(h).is_some());
    }

    #[test]
    fn new_throttle_tunables_keep_the_failures_counted() {
        let t = LoginThrottle::new(cfg());
        let ip = ip("127.0.0.1");
        let now = Instant::now();
        t.record_at("a@x", ip, false, now);
        t.set_config(ThrottleConfig {
            base_delay: Duration::from_millis(300),
            ..cfg()
        });
        assert_eq!(t.reserve_at("a@x", ip, now), Some(100 * MS));
        assert_eq!(t.reserve_at("a@x", ip, now), Some(400 * MS));
    }
}

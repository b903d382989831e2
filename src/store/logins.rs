//! Login failure counts in the database: with `[store] backend =
//! "postgresql"` every node of a cluster counts a guess against the same
//! account and network, so two nodes do not give an attacker twice the
//! guesses. The arithmetic is the throttle's own
//! ([`crate::throttle::counts`]), run inside one transaction per attempt
//! and per outcome over the two counts it touches, each locked against the
//! other nodes until the commit (`Tx::login_count_take`).

use std::net::IpAddr;
use std::time::Duration;

use crate::throttle::counts::{self, CountKey, FailureCount, ThrottleConfig};
use crate::throttle::{CountsError, CountsFuture};

use super::backend::Tx;
use super::{Result, Store};

/// The two counts of an attempt, taken (locked) account first, network
/// second, by every transaction: none holds a network's lock while it
/// waits for an account's, so no two deadlock.
fn take(db: &dyn Tx, keys: &[CountKey; 2]) -> Result<[Option<FailureCount>; 2]> {
    Ok([
        db.login_count_take(&keys[0])?,
        db.login_count_take(&keys[1])?,
    ])
}

/// Write back the counts that changed.
fn put(
    db: &dyn Tx,
    keys: &[CountKey; 2],
    before: [Option<FailureCount>; 2],
    after: [Option<FailureCount>; 2],
) -> Result<()> {
    for ((k, b), a) in keys.iter().zip(before).zip(after) {
        if a != b {
            db.login_count_put(k, a.as_ref())?;
        }
    }
    Ok(())
}

fn keys(account: &str, network: IpAddr) -> [CountKey; 2] {
    [
        CountKey::Account(account.to_string()),
        CountKey::Network(network),
    ]
}

impl Store {
    /// [`counts::reserve`] over the shared counts of `account` (normalised)
    /// and `network` at `now` (Unix ms): the wait before the attempt, or
    /// `None` to refuse it unchecked.
    pub async fn login_reserve(
        &self,
        account: &str,
        network: IpAddr,
        cfg: &ThrottleConfig,
        now: i64,
    ) -> Result<Option<Duration>> {
        let (keys, cfg) = (keys(account, network), cfg.clone());
        self.write(move |db| {
            let before = take(db, &keys)?;
            let [mut a, mut n] = before;
            let wait = counts::reserve(&cfg, &mut a, &mut n, now);
            put(db, &keys, before, [a, n])?;
            Ok(wait)
        })
        .await
    }

    /// [`counts::record`] over the shared counts: the outcome of an attempt
    /// [`Store::login_reserve`] let through, committed before it resolves.
    pub async fn login_record(
        &self,
        account: &str,
        network: IpAddr,
        ok: bool,
        cfg: &ThrottleConfig,
        now: i64,
    ) -> Result<()> {
        let (keys, cfg) = (keys(account, network), cfg.clone());
        self.write(move |db| {
            let before = take(db, &keys)?;
            let [mut a, mut n] = before;
            counts::record(&cfg, &mut a, &mut n, ok, now);
            put(db, &keys, before, [a, n])
        })
        .await
    }

    /// Forget the counts whose last attempt was before `before` (Unix ms):
    /// the throttle ignores them already. How many.
    pub fn login_counts_forget_blocking(&self, before: i64) -> Result<usize> {
        self.write_blocking(move |db| db.login_counts_forget(before))
    }

    /// Whether other nodes may share this store's rows (PostgreSQL): then
    /// what every node must see, such as the login failure counts, is kept
    /// in the database.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.db, super::Backend::Postgres(_))
    }
}

/// The throttle's shared counts are this store's (`LoginThrottle::shared`).
impl crate::throttle::SharedCounts for Store {
    fn reserve(
        &self,
        account: String,
        network: IpAddr,
        cfg: ThrottleConfig,
        now: i64,
    ) -> CountsFuture<Option<Duration>> {
        let store = self.clone();
        Box::pin(async move { Ok(store.login_reserve(&account, network, &cfg, now).await?) })
    }

    fn record(
        &self,
        account: String,
        network: IpAddr,
        ok: bool,
        cfg: ThrottleConfig,
        now: i64,
    ) -> CountsFuture<()> {
        let store = self.clone();
        Box::pin(async move { Ok(store.login_record(&account, network, ok, &cfg, now).await?) })
    }

    fn forget(&self, before: i64) -> std::result::Result<usize, CountsError> {
        Ok(self.login_counts_forget_blocking(before)?)
    }
}

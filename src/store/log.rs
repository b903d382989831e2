//! The PEC message log (DPR 68/2005 art. 11): the legal record of every event.
//!
//! Rows are written explicitly, in the same transaction as the state change
//! they record, and never changed: the only statement the store runs on the
//! table besides reads is `INSERT` (triggers in the schema refuse `UPDATE`
//! and any `DELETE` younger than 30 months); the SQL is in `sqlite/log.rs`.
//!
//! Each row carries a chain hash, `SHA-256(previous row's chain ||
//! SHA-256(canonical row))` ([`canonical`], `docs/log-integrity.md`), so an
//! edited, removed or moved row breaks the chain from there on; the daily
//! seals (`store::seal`) pin the chain's value at the end of each day.

use super::{Inspector, Result, Store};

pub use crate::flow::batch::{Event, EventKind};

pub use crate::pec::clock::iso_utc;

/// Days the PEC log is kept (DPR 68/2005 art. 11: 30 months), rounded up.
pub const LOG_RETENTION_DAYS: i64 = 915;

/// The chain value before the first row: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// The last row of the chain: its id and chain hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainTip {
    /// Row id (0 for an empty log).
    pub id: i64,
    /// Its chain hash.
    pub hash: [u8; 32],
}

/// The canonical bytes of a row (`docs/log-integrity.md`): the id and the
/// time as 8-byte big-endian integers, then each text column in table order
/// as `0x00` (NULL) or `0x01`, a 4-byte big-endian length and the UTF-8
/// bytes. Lengths make it unambiguous: no two rows share an encoding.
pub fn canonical(e: &Event) -> Vec<u8> {
    let name = e.event.name();
    let texts: [Option<&str>; 10] = [
        Some(&name),
        e.identificativo.as_deref(),
        e.msgid.as_deref(),
        e.sender.as_deref(),
        e.recipients.as_deref(),
        e.subject.as_deref(),
        e.receipt_type.as_deref(),
        e.generated_msgid.as_deref(),
        e.error.as_deref(),
        e.detail.as_deref(),
    ];
    let mut out = Vec::with_capacity(
        16 + texts
            .iter()
            .map(|t| 5 + t.map_or(0, str::len))
            .sum::<usize>(),
    );
    out.extend_from_slice(&e.id.to_be_bytes());
    out.extend_from_slice(&e.ts.to_be_bytes());
    for t in &texts {
        match t {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&(t.len() as u32).to_be_bytes());
                out.extend_from_slice(t.as_bytes());
            }
        }
    }
    out
}

/// SHA-256 of the canonical bytes of a row.
pub fn row_digest(e: &Event) -> [u8; 32] {
    openssl::sha::sha256(&canonical(e))
}

/// The chain hash that follows `prev` for a row whose digest is `digest`.
pub fn chain_next(prev: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    let mut h = openssl::sha::Sha256::new();
    h.update(prev);
    h.update(digest);
    h.finish()
}

/// Filters of `pecd log`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only this identificativo.
    pub identificativo: Option<String>,
    /// Only this original Message-ID (with or without angle brackets).
    pub msgid: Option<String>,
    /// Only events whose sender or recipients mention this address.
    pub address: Option<String>,
    /// Only these event types (any of them; empty: every type).
    pub events: Vec<EventKind>,
    /// Only events at or after this time (Unix milliseconds).
    pub from_ms: Option<i64>,
    /// Only events before this time (Unix milliseconds).
    pub until_ms: Option<i64>,
}

impl Store {
    /// Events matching `q`, oldest first.
    pub fn log_events_blocking(&self, q: &Query) -> Result<Vec<Event>> {
        self.read_blocking(|db| db.log_query(q))
    }

    /// How many `deposito` events have a detail starting with `what`.
    pub fn count_deposits_blocking(&self, what: &str) -> Result<i64> {
        self.read_blocking(|db| db.count_deposits(what))
    }

    /// Per identificativo, the times of the `deposito` events whose detail
    /// starts with `what`.
    pub fn deposit_times_blocking(&self, what: &str) -> Result<Vec<(String, i64)>> {
        self.read_blocking(|db| db.deposit_times(what))
    }
}

impl Inspector {
    /// Events matching `q`, oldest first.
    pub fn log(&self, q: &Query) -> Result<Vec<Event>> {
        self.run(|db| db.log_query(q))
    }

    /// Call `f` with each row whose id is in `from..=to`, in id order, and
    /// its stored chain hash (None when missing or not 32 bytes); `f`
    /// returns false to stop. One row in memory at a time, so a long log
    /// verifies in constant memory.
    pub fn for_each_chained(
        &self,
        from: i64,
        to: i64,
        mut f: impl FnMut(&Event, Option<[u8; 32]>) -> bool,
    ) -> Result<()> {
        self.run(|db| db.log_for_each_chained(from, to, &mut f))
    }

    /// The nearest row before `id` and its chain hash, if any.
    pub fn chain_before(&self, id: i64) -> Result<Option<(i64, Option<Vec<u8>>)>> {
        self.run(|db| db.log_chain_before(id))
    }

    /// The smallest and largest row id, if the log has rows.
    pub fn log_id_bounds(&self) -> Result<Option<(i64, i64)>> {
        self.run(|db| db.log_id_bounds())
    }

    /// The last row id whose time is before `ms`, if any (`pecd log
    /// verify --to`: a scan, fine for the CLI, never in the daemon).
    pub fn last_log_id_before(&self, ms: i64) -> Result<Option<i64>> {
        self.run(|db| db.log_last_id_before(ms))
    }

    /// The first row id whose time is at or after `ms`, if any.
    pub fn first_log_id_from(&self, ms: i64) -> Result<Option<i64>> {
        self.run(|db| db.log_first_id_from(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pec::types::Tipo;

    #[test]
    fn every_kind_reads_back_as_itself() {
        let mut kinds: Vec<EventKind> = EventKind::FIXED.to_vec();
        kinds.extend(Tipo::ALL.into_iter().map(EventKind::Ricevuta));
        kinds.push(EventKind::Other("written-by-a-newer-pecd".into()));
        let mut names = std::collections::HashSet::new();
        for k in kinds {
            assert!(names.insert(k.name()), "two kinds named {k}");
            assert_eq!(EventKind::parse(&k.name()), k);
        }
        assert_eq!(
            EventKind::Ricevuta(Tipo::PresaInCarico).name(),
            "ricevuta-presa-in-carico"
        );
    }

    #[test]
    fn canonical_rows_are_unambiguous() {
        let mut a = Event::new(EventKind::Deposito, 5);
        a.id = 1;
        a.sender = Some("ab".into());
        let mut b = a.clone();
        b.sender = Some("a".into());
        b.recipients = Some("b".into());
        let mut c = a.clone();
        c.sender = None;
        c.recipients = Some("ab".into());
        let mut d = a.clone();
        d.sender = Some(String::new());
        let all = [&a, &b, &c, &d].map(canonical);
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "{i} {j}");
            }
        }
        let mut moved = a.clone();
        moved.id = 2;
        assert_ne!(row_digest(&a), row_digest(&moved), "the id is covered");
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(1_542_123_567_123), "2018-11-13T15:39:27.123Z");
    }
}

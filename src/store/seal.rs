//! The daily seals of the PEC log (`docs/log-integrity.md`): for each day
//! in Italian time, the range of rows it covers, the chain hash after its
//! last row, the signed seal text and, once the TSA answered, its RFC 3161
//! time stamp (the TSA's whole TimeStampResp, what `openssl ts -verify -in`
//! reads). A seal is written once per date and changes only to receive its
//! time stamp (triggers in the schema refuse anything else).

use rusqlite::{params, OptionalExtension};

use super::{Db, Result};

/// One stored seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// `YYYY-MM-DD`, the day in Europe/Rome.
    pub date: String,
    /// First row covered.
    pub first_id: i64,
    /// Last row covered.
    pub last_id: i64,
    /// Rows covered (`last_id - first_id + 1` when none is missing).
    pub rows: i64,
    /// Chain hash before the first row.
    pub prev_hash: Vec<u8>,
    /// Chain hash of the last row.
    pub last_hash: Vec<u8>,
    /// The seal text (what is signed and time-stamped).
    pub seal: Vec<u8>,
    /// Detached CMS signature of `seal`, DER.
    pub signature: Vec<u8>,
    /// The TSA's RFC 3161 TimeStampResp over `seal`, DER (its token
    /// checked before it was stored); None until the TSA answered.
    pub tsr: Option<Vec<u8>>,
    /// When the seal was made (unix ms).
    pub created_at: i64,
    /// When its time stamp was stored (unix ms).
    pub stamped_at: Option<i64>,
}

/// The rows a new seal would cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// First row.
    pub first_id: i64,
    /// Last row.
    pub last_id: i64,
    /// Rows present in between.
    pub rows: i64,
    /// Chain hash before the first row.
    pub prev_hash: Vec<u8>,
    /// Chain hash of the last row (empty when the row has none).
    pub last_hash: Vec<u8>,
}

const COLUMNS: &str = "date, first_id, last_id, rows, prev_hash, last_hash, seal, signature, \
                       tsr, created_at, stamped_at";

fn seal_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Seal> {
    Ok(Seal {
        date: r.get(0)?,
        first_id: r.get(1)?,
        last_id: r.get(2)?,
        rows: r.get(3)?,
        prev_hash: r.get(4)?,
        last_hash: r.get(5)?,
        seal: r.get(6)?,
        signature: r.get(7)?,
        tsr: r.get(8)?,
        created_at: r.get(9)?,
        stamped_at: r.get(10)?,
    })
}

/// Every seal, in row order.
pub fn all(db: &Db<'_>) -> Result<Vec<Seal>> {
    let mut st = db
        .sql()
        .prepare(&format!("SELECT {COLUMNS} FROM log_seals ORDER BY last_id"))?;
    let v = st
        .query_map([], seal_of)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(v)
}

/// The seal covering the newest rows, if any.
pub fn last(db: &Db<'_>) -> Result<Option<Seal>> {
    Ok(db
        .sql()
        .query_row(
            &format!("SELECT {COLUMNS} FROM log_seals ORDER BY last_id DESC LIMIT 1"),
            [],
            seal_of,
        )
        .optional()?)
}

/// The seal of `date`, if made.
pub fn get(db: &Db<'_>, date: &str) -> Result<Option<Seal>> {
    Ok(db
        .sql()
        .query_row(
            &format!("SELECT {COLUMNS} FROM log_seals WHERE date = ?1"),
            [date],
            seal_of,
        )
        .optional()?)
}

/// Seals still waiting for their time stamp, oldest first.
pub fn unstamped(db: &Db<'_>) -> Result<Vec<Seal>> {
    let mut st = db.sql().prepare(&format!(
        "SELECT {COLUMNS} FROM log_seals WHERE tsr IS NULL ORDER BY last_id"
    ))?;
    let v = st
        .query_map([], seal_of)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(v)
}

/// Store a new seal; false (and nothing changed) when `date` has one
/// already: a restart that seals again never makes a second.
pub fn insert(db: &Db<'_>, s: &Seal) -> Result<bool> {
    let n = db.sql().execute(
        "INSERT INTO log_seals(date, first_id, last_id, rows, prev_hash, last_hash, seal,
                               signature, tsr, created_at, stamped_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT(date) DO NOTHING",
        params![
            s.date,
            s.first_id,
            s.last_id,
            s.rows,
            s.prev_hash,
            s.last_hash,
            s.seal,
            s.signature,
            s.tsr,
            s.created_at,
            s.stamped_at
        ],
    )?;
    Ok(n == 1)
}

/// Attach the TSA's reply to the seal of `date` (once: a seal that
/// has one keeps it).
pub fn set_tsr(db: &Db<'_>, date: &str, tsr: &[u8], at: i64) -> Result<bool> {
    let n = db.sql().execute(
        "UPDATE log_seals SET tsr = ?2, stamped_at = ?3 WHERE date = ?1 AND tsr IS NULL",
        params![date, tsr, at],
    )?;
    Ok(n == 1)
}

/// The smallest time among rows after `after_id` (the first unsealed
/// day), if there are any. Scans by row id from the last seal on only.
pub fn first_unsealed_ts(db: &Db<'_>, after_id: i64) -> Result<Option<i64>> {
    Ok(db
        .sql()
        .query_row("SELECT min(ts) FROM log WHERE id > ?1", [after_id], |r| {
            r.get(0)
        })?)
}

/// The rows after `after_id` up to the last one timed before `before_ms`,
/// chained from `prev_hash`; None when there are none.
pub fn range(
    db: &Db<'_>,
    after_id: i64,
    before_ms: i64,
    prev_hash: &[u8],
) -> Result<Option<Range>> {
    let conn = db.sql();
    let last: Option<i64> = conn.query_row(
        "SELECT max(id) FROM log WHERE id > ?1 AND ts < ?2",
        params![after_id, before_ms],
        |r| r.get(0),
    )?;
    let Some(last_id) = last else {
        return Ok(None);
    };
    let (first_id, rows): (i64, i64) = conn.query_row(
        "SELECT min(id), count(*) FROM log WHERE id > ?1 AND id <= ?2",
        params![after_id, last_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let last_hash: Option<Vec<u8>> =
        conn.query_row("SELECT chain FROM log WHERE id = ?1", [last_id], |r| {
            r.get(0)
        })?;
    Ok(Some(Range {
        first_id,
        last_id,
        rows,
        prev_hash: prev_hash.to_vec(),
        last_hash: last_hash.unwrap_or_default(),
    }))
}

/// Whether any row after `after_id` is timed in `[from_ms, to_ms)`.
pub fn has_rows(db: &Db<'_>, after_id: i64, from_ms: i64, to_ms: i64) -> Result<bool> {
    Ok(db.sql().query_row(
        "SELECT EXISTS(SELECT 1 FROM log WHERE id > ?1 AND ts >= ?2 AND ts < ?3)",
        params![after_id, from_ms, to_ms],
        |r| r.get(0),
    )?)
}

/// How many rows have an id in `from..=to`.
pub fn count_rows(db: &Db<'_>, from: i64, to: i64) -> Result<i64> {
    Ok(db.sql().query_row(
        "SELECT count(*) FROM log WHERE id >= ?1 AND id <= ?2",
        params![from, to],
        |r| r.get(0),
    )?)
}

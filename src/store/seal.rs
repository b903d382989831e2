//! The daily seals of the PEC log (`docs/log-integrity.md`): for each day
//! in Italian time, the range of rows it covers, the chain hash after its
//! last row, the signed seal text and, once the TSA answered, its RFC 3161
//! time stamp (the TSA's whole TimeStampResp, what `openssl ts -verify -in`
//! reads). A seal is written once per date and changes only to receive its
//! time stamp (triggers in the schema refuse anything else).

use rusqlite::{params, OptionalExtension};

use super::{Db, Inspector, Result, Store, StoreError};
use crate::pec::logseal::{Day, SealText};
use crate::pec::smime::Signer;

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

/// The newest date sealed, if any.
pub fn newest_date(db: &Db<'_>) -> Result<Option<String>> {
    Ok(db
        .sql()
        .query_row("SELECT max(date) FROM log_seals", [], |r| r.get(0))?)
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

/// A finished day with log rows that no seal covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsealed {
    /// The day (Europe/Rome) whose seal would cover the rows.
    pub day: Day,
    /// How many rows.
    pub rows: i64,
}

/// The finished days (ended at `finished_by_ms` or before) with rows in
/// no seal: after the last seal (not sealed yet) or between two seals (a
/// seal deleted). `seals` in row order, as [`all`] gives them. A row
/// committed after the seal of the day it is timed in belongs to the next
/// seal, as the sealer does it, so it is counted in the day after.
pub fn unsealed_days(db: &Db<'_>, seals: &[Seal], finished_by_ms: i64) -> Result<Vec<Unsealed>> {
    let mut out = Vec::new();
    let mut after = 0;
    let mut floor: Option<Day> = None;
    let bounds = seals
        .iter()
        .map(|s| (s.first_id, Some(s)))
        .chain(std::iter::once((i64::MAX, None)));
    for (before, seal) in bounds {
        if before > after + 1 {
            gap_days(db, after, before, floor, finished_by_ms, &mut out)?;
        }
        if let Some(s) = seal {
            after = after.max(s.last_id);
            floor = Day::parse(&s.date).map(Day::next).max(floor);
        }
    }
    Ok(out)
}

/// The days of the rows with ids strictly between `after` and `before`.
fn gap_days(
    db: &Db<'_>,
    after: i64,
    before: i64,
    floor: Option<Day>,
    finished_by_ms: i64,
    out: &mut Vec<Unsealed>,
) -> Result<()> {
    let conn = db.sql();
    let mut from_ts = i64::MIN;
    // Bounded by the days that have rows: 30 months at most.
    loop {
        let min: Option<i64> = conn.query_row(
            "SELECT min(ts) FROM log WHERE id > ?1 AND id < ?2 AND ts >= ?3",
            params![after, before, from_ts],
            |r| r.get(0),
        )?;
        let Some(ts) = min else { break };
        let day = match floor {
            Some(f) => Day::of_ms(ts).max(f),
            None => Day::of_ms(ts),
        };
        if day.end_ms() > finished_by_ms {
            break;
        }
        let rows: i64 = conn.query_row(
            "SELECT count(*) FROM log WHERE id > ?1 AND id < ?2 AND ts >= ?3 AND ts < ?4",
            params![after, before, from_ts, day.end_ms()],
            |r| r.get(0),
        )?;
        out.push(Unsealed { day, rows });
        from_ts = day.end_ms();
    }
    Ok(())
}

/// Record `error` as why each of `dates` is not sealed (or stamped) yet.
pub fn set_error(db: &Db<'_>, dates: &[String], error: &str, at: i64) -> Result<()> {
    let mut st = db.sql().prepare(
        "INSERT INTO log_seal_errors(date, error, at) VALUES (?1, ?2, ?3)
         ON CONFLICT(date) DO UPDATE SET error = excluded.error, at = excluded.at",
    )?;
    for d in dates {
        st.execute(params![d, error, at])?;
    }
    Ok(())
}

/// Forget the recorded errors of every day not in `pending`.
pub fn clear_errors_except(db: &Db<'_>, pending: &[String]) -> Result<()> {
    let keep: std::collections::HashSet<&str> = pending.iter().map(String::as_str).collect();
    let dates: Vec<String> = {
        let mut st = db.sql().prepare("SELECT date FROM log_seal_errors")?;
        let v = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        v
    };
    for d in dates.iter().filter(|d| !keep.contains(d.as_str())) {
        db.sql()
            .execute("DELETE FROM log_seal_errors WHERE date = ?1", [d])?;
    }
    Ok(())
}

/// The recorded errors by date: (error, when, unix ms). Empty on a
/// database the daemon has not migrated yet (`pecd log verify` does not
/// migrate).
pub fn errors(db: &Db<'_>) -> Result<std::collections::HashMap<String, (String, i64)>> {
    let conn = db.sql();
    let exists: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log_seal_errors')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(Default::default());
    }
    let mut st = conn.prepare("SELECT date, error, at FROM log_seal_errors")?;
    let v = st
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(v)
}

/// What the seals leave undone, as the sealer records it after a round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Finished days with rows in no seal, and (with a TSA) sealed days
    /// waiting for their time stamp; sorted, without repeats.
    pub unsealed: Vec<String>,
    /// Seals without a time stamp.
    pub unstamped: usize,
    /// The newest sealed day.
    pub sealed_through: Option<String>,
}

impl Store {
    /// Every seal, in row order.
    pub async fn seals(&self) -> Result<Vec<Seal>> {
        self.read(all).await
    }

    /// The newest date sealed, if any.
    pub async fn newest_seal_date(&self) -> Result<Option<String>> {
        self.read(newest_date).await
    }

    /// Attach the TSA's reply to the seal of `date` (once).
    pub async fn stamp_seal(&self, date: &str, tsr: Vec<u8>, at: i64) -> Result<bool> {
        let date = date.to_string();
        self.write(move |db| set_tsr(db, &date, &tsr, at)).await
    }

    /// Seal the next finished day (ended `grace_ms` before `now` or
    /// earlier) that has rows after the last seal, if any: the seal text of
    /// `provider`, signed by `signer`, made and stored in one transaction
    /// of the writer, so a restart finds the seal or nothing. A row
    /// committed late, timed in a day already sealed, belongs to the next
    /// seal.
    pub async fn seal_next_day(
        &self,
        provider: String,
        now: i64,
        grace_ms: i64,
        signer: std::sync::Arc<Signer>,
    ) -> Result<Option<Seal>> {
        self.write(move |db| {
            let last = last(db)?;
            let after = last.as_ref().map_or(0, |s| s.last_id);
            let Some(min_ts) = first_unsealed_ts(db, after)? else {
                return Ok(None);
            };
            let mut day = Day::of_ms(min_ts);
            if let Some(d) = last.as_ref().and_then(|s| Day::parse(&s.date)) {
                if day <= d {
                    day = d.next();
                }
            }
            if now < day.end_ms() + grace_ms {
                return Ok(None);
            }
            let prev = last
                .as_ref()
                .map_or(super::log::GENESIS.to_vec(), |s| s.last_hash.clone());
            let Some(range) = range(db, after, day.end_ms(), &prev)? else {
                return Ok(None);
            };
            let text = SealText {
                provider,
                date: day,
                first_row: range.first_id,
                last_row: range.last_id,
                rows: range.rows,
                previous_hash: range.prev_hash.clone(),
                last_hash: range.last_hash.clone(),
            }
            .render();
            let signature = signer
                .sign_detached(text.as_bytes())
                .map_err(|e| StoreError::Commit(e.to_string()))?;
            let seal = Seal {
                date: day.to_string(),
                first_id: range.first_id,
                last_id: range.last_id,
                rows: range.rows,
                prev_hash: range.prev_hash,
                last_hash: range.last_hash,
                seal: text.into_bytes(),
                signature,
                tsr: None,
                created_at: now,
                stamped_at: None,
            };
            Ok(insert(db, &seal)?.then_some(seal))
        })
        .await
    }

    /// What the seals leave undone (see [`Backlog`]; the finished days are
    /// those ended by `finished_by`, the first 1000 of them), and record
    /// `error` as why for each such day, forgetting the errors of the
    /// others, in one transaction. `tsa`: whether a TSA is configured, so
    /// that an unstamped seal is still owed something.
    pub async fn record_seal_backlog(
        &self,
        now: i64,
        finished_by: i64,
        tsa: bool,
        error: Option<String>,
    ) -> Result<Backlog> {
        self.write(move |db| {
            let seals = all(db)?;
            let mut unsealed: Vec<String> = Vec::new();
            let unstamped: Vec<&Seal> = seals.iter().filter(|s| s.tsr.is_none()).collect();
            if tsa {
                unsealed.extend(unstamped.iter().map(|s| s.date.clone()));
            }
            // Bounded: a log far behind shows its first 1000 days.
            let days = unsealed_days(db, &seals, finished_by)?;
            unsealed.extend(days.into_iter().take(1000).map(|u| u.day.to_string()));
            unsealed.sort();
            unsealed.dedup();
            if let Some(e) = &error {
                set_error(db, &unsealed, e, now)?;
            }
            clear_errors_except(db, &unsealed)?;
            let sealed_through = seals.iter().map(|s| s.date.clone()).max();
            Ok(Backlog {
                unsealed,
                unstamped: unstamped.len(),
                sealed_through,
            })
        })
        .await
    }
}

impl Inspector {
    /// Every seal, in row order.
    pub fn seals(&self) -> Result<Vec<Seal>> {
        self.run(all)
    }

    /// The sealer's recorded errors by date: (error, when, unix ms).
    pub fn seal_errors(&self) -> Result<std::collections::HashMap<String, (String, i64)>> {
        self.run(errors)
    }

    /// The finished days (ended by `finished_by_ms`) with log rows in no
    /// seal of `seals` (see [`unsealed_days`]).
    pub fn unsealed_days(&self, seals: &[Seal], finished_by_ms: i64) -> Result<Vec<Unsealed>> {
        self.run(|db| unsealed_days(db, seals, finished_by_ms))
    }

    /// How many log rows have an id in `from..=to`.
    pub fn count_log_rows(&self, from: i64, to: i64) -> Result<i64> {
        self.run(|db| count_rows(db, from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::log::{self, Event, EventKind};

    fn seal_of_rows(date: Day, first_id: i64, last_id: i64) -> Seal {
        Seal {
            date: date.to_string(),
            first_id,
            last_id,
            rows: last_id - first_id + 1,
            prev_hash: vec![0; 32],
            last_hash: vec![0; 32],
            seal: vec![],
            signature: vec![],
            tsr: None,
            created_at: 0,
            stamped_at: None,
        }
    }

    #[test]
    fn unsealed_days_are_the_finished_days_with_rows_in_no_seal() {
        let m = crate::store::MemDb::new();
        let db = m.db();
        let d0 = Day::of_ms(crate::store::now_ms()).next().next();
        let (d1, d2, d3) = (d0.next(), d0.next().next(), d0.next().next().next());
        let at = |d: Day, h: i64| d.start_ms() + h * 3_600_000;
        // Rows 1-2 on d0, 3-4 on d1, 5 on d2, then 6 timed on d1 but
        // committed late, 7 on d3.
        for ts in [
            at(d0, 1),
            at(d0, 2),
            at(d1, 1),
            at(d1, 2),
            at(d2, 1),
            at(d1, 23),
            at(d3, 1),
        ] {
            log::append(&db, &Event::new(EventKind::Deposito, ts)).unwrap();
        }
        let days = |seals: &[Seal], by: i64| {
            unsealed_days(&db, seals, by)
                .unwrap()
                .into_iter()
                .map(|u| (u.day, u.rows))
                .collect::<Vec<_>>()
        };
        // Nothing sealed: every finished day; d3 is not over.
        assert_eq!(
            days(&[], d3.end_ms() - 1),
            [(d0, 2), (d1, 3), (d2, 1)],
            "row 6 is counted in its own day when no seal is after it"
        );
        assert_eq!(days(&[], d0.end_ms() - 1), []);
        // d0, d1 and d2 sealed (d2's seal took the late row 6): all covered.
        let all = [
            seal_of_rows(d0, 1, 2),
            seal_of_rows(d1, 3, 4),
            seal_of_rows(d2, 5, 6),
        ];
        assert_eq!(days(&all, d3.end_ms()), [(d3, 1)]);
        // The middle seal deleted: its day is named.
        assert_eq!(
            days(&[all[0].clone(), all[2].clone()], d3.end_ms() - 1),
            [(d1, 2)]
        );
        // The last seal deleted: the late row goes with the day after the
        // last seal, as the sealer would seal it.
        assert_eq!(days(&all[..2], d3.end_ms() - 1), [(d2, 2)]);
    }

    #[test]
    fn seal_errors_are_kept_for_pending_days_only() {
        let m = crate::store::MemDb::new();
        let db = m.db();
        let days = ["2026-01-01".to_string(), "2026-01-02".to_string()];
        set_error(&db, &days, "tsa down", 5).unwrap();
        set_error(&db, &days[1..], "tsa still down", 6).unwrap();
        let e = errors(&db).unwrap();
        assert_eq!(e["2026-01-01"], ("tsa down".to_string(), 5));
        assert_eq!(e["2026-01-02"], ("tsa still down".to_string(), 6));
        clear_errors_except(&db, &days[1..]).unwrap();
        let e = errors(&db).unwrap();
        assert_eq!(e.len(), 1);
        assert!(e.contains_key("2026-01-02"));
    }
}

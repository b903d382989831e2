//! The SQL of the daily seals (`log_seals`, `log_seal_errors`) and of the
//! log rows they cover: see `store::seal`.

use rusqlite::{params, OptionalExtension};

use super::Db;
use crate::pec::logseal::Day;
use crate::store::seal::{Range, Seal, Unsealed};
use crate::store::Result;

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

impl Db<'_> {
    /// Every seal, in row order.
    pub(in crate::store) fn seal_all(&self) -> Result<Vec<Seal>> {
        let mut st = self
            .sql()
            .prepare(&format!("SELECT {COLUMNS} FROM log_seals ORDER BY last_id"))?;
        let v = st
            .query_map([], seal_of)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(v)
    }

    /// The seal covering the newest rows, if any.
    pub(in crate::store) fn seal_last(&self) -> Result<Option<Seal>> {
        Ok(self
            .sql()
            .query_row(
                &format!("SELECT {COLUMNS} FROM log_seals ORDER BY last_id DESC LIMIT 1"),
                [],
                seal_of,
            )
            .optional()?)
    }

    /// The newest date sealed, if any.
    pub(in crate::store) fn seal_newest_date(&self) -> Result<Option<String>> {
        Ok(self
            .sql()
            .query_row("SELECT max(date) FROM log_seals", [], |r| r.get(0))?)
    }

    /// Store a new seal; false (and nothing changed) when `date` has one
    /// already: a restart that seals again never makes a second.
    pub(in crate::store) fn seal_insert(&self, s: &Seal) -> Result<bool> {
        let n = self.sql().execute(
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
    pub(in crate::store) fn seal_set_tsr(&self, date: &str, tsr: &[u8], at: i64) -> Result<bool> {
        let n = self.sql().execute(
            "UPDATE log_seals SET tsr = ?2, stamped_at = ?3 WHERE date = ?1 AND tsr IS NULL",
            params![date, tsr, at],
        )?;
        Ok(n == 1)
    }

    /// The smallest time among rows after `after_id` (the first unsealed
    /// day), if there are any. Scans by row id from the last seal on only.
    pub(in crate::store) fn log_first_unsealed_ts(&self, after_id: i64) -> Result<Option<i64>> {
        Ok(self
            .sql()
            .query_row("SELECT min(ts) FROM log WHERE id > ?1", [after_id], |r| {
                r.get(0)
            })?)
    }

    /// The rows after `after_id` up to the last one timed before `before_ms`,
    /// chained from `prev_hash`; None when there are none.
    pub(in crate::store) fn seal_range(
        &self,
        after_id: i64,
        before_ms: i64,
        prev_hash: &[u8],
    ) -> Result<Option<Range>> {
        let conn = self.sql();
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

    /// How many rows have an id in `from..=to`.
    pub(in crate::store) fn log_count_rows(&self, from: i64, to: i64) -> Result<i64> {
        Ok(self.sql().query_row(
            "SELECT count(*) FROM log WHERE id >= ?1 AND id <= ?2",
            params![from, to],
            |r| r.get(0),
        )?)
    }

    /// The finished days (ended at `finished_by_ms` or before) with rows in
    /// no seal: after the last seal (not sealed yet) or between two seals (a
    /// seal deleted). `seals` in row order, as [`Db::seal_all`] gives them. A row
    /// committed after the seal of the day it is timed in belongs to the next
    /// seal, as the sealer does it, so it is counted in the day after.
    pub(in crate::store) fn unsealed_days(
        &self,
        seals: &[Seal],
        finished_by_ms: i64,
    ) -> Result<Vec<Unsealed>> {
        let mut out = Vec::new();
        let mut after = 0;
        let mut floor: Option<Day> = None;
        let bounds = seals
            .iter()
            .map(|s| (s.first_id, Some(s)))
            .chain(std::iter::once((i64::MAX, None)));
        for (before, seal) in bounds {
            if before > after + 1 {
                self.gap_days(after, before, floor, finished_by_ms, &mut out)?;
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
        &self,
        after: i64,
        before: i64,
        floor: Option<Day>,
        finished_by_ms: i64,
        out: &mut Vec<Unsealed>,
    ) -> Result<()> {
        let conn = self.sql();
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
    pub(in crate::store) fn seal_set_error(
        &self,
        dates: &[String],
        error: &str,
        at: i64,
    ) -> Result<()> {
        let mut st = self.sql().prepare(
            "INSERT INTO log_seal_errors(date, error, at) VALUES (?1, ?2, ?3)
             ON CONFLICT(date) DO UPDATE SET error = excluded.error, at = excluded.at",
        )?;
        for d in dates {
            st.execute(params![d, error, at])?;
        }
        Ok(())
    }

    /// Forget the recorded errors of every day not in `pending`.
    pub(in crate::store) fn seal_clear_errors_except(&self, pending: &[String]) -> Result<()> {
        let keep: std::collections::HashSet<&str> = pending.iter().map(String::as_str).collect();
        let dates: Vec<String> = {
            let mut st = self.sql().prepare("SELECT date FROM log_seal_errors")?;
            let v = st
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            v
        };
        for d in dates.iter().filter(|d| !keep.contains(d.as_str())) {
            self.sql()
                .execute("DELETE FROM log_seal_errors WHERE date = ?1", [d])?;
        }
        Ok(())
    }

    /// The recorded errors by date: (error, when, unix ms). Empty on a
    /// database the daemon has not migrated yet (`pecd log verify` does not
    /// migrate).
    pub(in crate::store) fn seal_errors(
        &self,
    ) -> Result<std::collections::HashMap<String, (String, i64)>> {
        let conn = self.sql();
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
}

#[cfg(test)]
mod tests {
    use crate::pec::logseal::Day;
    use crate::store::log::{Event, EventKind};
    use crate::store::seal::Seal;
    use crate::store::sqlite::MemDb;

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
        let m = MemDb::new();
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
            db.log_append(&Event::new(EventKind::Deposito, ts)).unwrap();
        }
        let days = |seals: &[Seal], by: i64| {
            db.unsealed_days(seals, by)
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
        let m = MemDb::new();
        let db = m.db();
        let days = ["2026-01-01".to_string(), "2026-01-02".to_string()];
        db.seal_set_error(&days, "tsa down", 5).unwrap();
        db.seal_set_error(&days[1..], "tsa still down", 6).unwrap();
        let e = db.seal_errors().unwrap();
        assert_eq!(e["2026-01-01"], ("tsa down".to_string(), 5));
        assert_eq!(e["2026-01-02"], ("tsa still down".to_string(), 6));
        db.seal_clear_errors_except(&days[1..]).unwrap();
        let e = db.seal_errors().unwrap();
        assert_eq!(e.len(), 1);
        assert!(e.contains_key("2026-01-02"));
    }
}

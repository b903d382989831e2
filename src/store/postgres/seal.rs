//! The SQL of the log's daily seals on PostgreSQL: see `sqlite/seal.rs`.

use ::postgres::Row;

use super::PgDb;
use crate::pec::logseal::Day;
use crate::store::seal::{Range, Seal, Unsealed};
use crate::store::Result;

const COLUMNS: &str = "date, first_id, last_id, rows, prev_hash, last_hash, seal, signature, \
                       tsr, created_at, stamped_at";

fn seal_of(r: &Row) -> Seal {
    Seal {
        date: r.get(0),
        first_id: r.get(1),
        last_id: r.get(2),
        rows: r.get(3),
        prev_hash: r.get(4),
        last_hash: r.get(5),
        seal: r.get(6),
        signature: r.get(7),
        tsr: r.get(8),
        created_at: r.get(9),
        stamped_at: r.get(10),
    }
}

impl PgDb<'_> {
    /// Every seal, in row order.
    pub(in crate::store) fn seal_all(&self) -> Result<Vec<Seal>> {
        Ok(self
            .rows(
                &format!("SELECT {COLUMNS} FROM log_seals ORDER BY last_id"),
                &[],
            )?
            .iter()
            .map(seal_of)
            .collect())
    }

    /// The seal covering the newest rows, if any.
    pub(in crate::store) fn seal_last(&self) -> Result<Option<Seal>> {
        Ok(self
            .opt(
                &format!("SELECT {COLUMNS} FROM log_seals ORDER BY last_id DESC LIMIT 1"),
                &[],
            )?
            .as_ref()
            .map(seal_of))
    }

    /// The newest date sealed, if any.
    pub(in crate::store) fn seal_newest_date(&self) -> Result<Option<String>> {
        Ok(self.one("SELECT max(date) FROM log_seals", &[])?.get(0))
    }

    /// Store a new seal; false (and nothing changed) when `date` has one.
    pub(in crate::store) fn seal_insert(&self, s: &Seal) -> Result<bool> {
        let n = self.exec(
            "INSERT INTO log_seals(date, first_id, last_id, rows, prev_hash, last_hash, seal,
                                   signature, tsr, created_at, stamped_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (date) DO NOTHING",
            &[
                &s.date,
                &s.first_id,
                &s.last_id,
                &s.rows,
                &s.prev_hash,
                &s.last_hash,
                &s.seal,
                &s.signature,
                &s.tsr,
                &s.created_at,
                &s.stamped_at,
            ],
        )?;
        Ok(n == 1)
    }

    /// Attach the TSA's reply to the seal of `date` (once).
    pub(in crate::store) fn seal_set_tsr(&self, date: &str, tsr: &[u8], at: i64) -> Result<bool> {
        let n = self.exec(
            "UPDATE log_seals SET tsr = $2, stamped_at = $3 WHERE date = $1 AND tsr IS NULL",
            &[&date, &tsr, &at],
        )?;
        Ok(n == 1)
    }

    /// The smallest time among rows after `after_id`, if there are any.
    pub(in crate::store) fn log_first_unsealed_ts(&self, after_id: i64) -> Result<Option<i64>> {
        Ok(self
            .one("SELECT min(ts) FROM log WHERE id > $1", &[&after_id])?
            .get(0))
    }

    /// The rows after `after_id` up to the last one timed before
    /// `before_ms`, chained from `prev_hash`; None when there are none.
    pub(in crate::store) fn seal_range(
        &self,
        after_id: i64,
        before_ms: i64,
        prev_hash: &[u8],
    ) -> Result<Option<Range>> {
        let last: Option<i64> = self
            .one(
                "SELECT max(id) FROM log WHERE id > $1 AND ts < $2",
                &[&after_id, &before_ms],
            )?
            .get(0);
        let Some(last_id) = last else {
            return Ok(None);
        };
        let r = self.one(
            "SELECT min(id), count(*) FROM log WHERE id > $1 AND id <= $2",
            &[&after_id, &last_id],
        )?;
        let (first_id, rows): (i64, i64) = (r.get(0), r.get(1));
        let last_hash: Option<Vec<u8>> = self
            .one("SELECT chain FROM log WHERE id = $1", &[&last_id])?
            .get(0);
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
        Ok(self
            .one(
                "SELECT count(*) FROM log WHERE id >= $1 AND id <= $2",
                &[&from, &to],
            )?
            .get(0))
    }

    /// The finished days with rows in no seal (see `sqlite/seal.rs`).
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
        let mut from_ts = i64::MIN;
        loop {
            let min: Option<i64> = self
                .one(
                    "SELECT min(ts) FROM log WHERE id > $1 AND id < $2 AND ts >= $3",
                    &[&after, &before, &from_ts],
                )?
                .get(0);
            let Some(ts) = min else { break };
            let day = match floor {
                Some(f) => Day::of_ms(ts).max(f),
                None => Day::of_ms(ts),
            };
            if day.end_ms() > finished_by_ms {
                break;
            }
            let rows: i64 = self
                .one(
                    "SELECT count(*) FROM log WHERE id > $1 AND id < $2 AND ts >= $3 AND ts < $4",
                    &[&after, &before, &from_ts, &day.end_ms()],
                )?
                .get(0);
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
        for d in dates {
            self.exec(
                "INSERT INTO log_seal_errors(date, error, at) VALUES ($1, $2, $3)
                 ON CONFLICT (date) DO UPDATE SET error = excluded.error, at = excluded.at",
                &[d, &error, &at],
            )?;
        }
        Ok(())
    }

    /// Forget the recorded errors of every day not in `pending`.
    pub(in crate::store) fn seal_clear_errors_except(&self, pending: &[String]) -> Result<()> {
        self.exec(
            "DELETE FROM log_seal_errors WHERE NOT (date = ANY($1))",
            &[&pending],
        )?;
        Ok(())
    }

    /// The recorded errors by date: (error, when, unix ms).
    pub(in crate::store) fn seal_errors(
        &self,
    ) -> Result<std::collections::HashMap<String, (String, i64)>> {
        Ok(self
            .rows("SELECT date, error, at FROM log_seal_errors", &[])?
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect())
    }
}

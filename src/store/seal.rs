//! The daily seals of the PEC log (`docs/log-integrity.md`): for each day
//! in Italian time, the range of rows it covers, the chain hash after its
//! last row, the signed seal text and, once the TSA answered, its RFC 3161
//! time stamp (the TSA's whole TimeStampResp, what `openssl ts -verify -in`
//! reads). A seal is written once per date and changes only to receive its
//! time stamp (triggers in the schema refuse anything else).

use super::{Inspector, Result, Store, StoreError};
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

/// A finished day with log rows that no seal covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsealed {
    /// The day (Europe/Rome) whose seal would cover the rows.
    pub day: Day,
    /// How many rows.
    pub rows: i64,
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
        self.read(|db| db.seal_all()).await
    }

    /// The newest date sealed, if any.
    pub async fn newest_seal_date(&self) -> Result<Option<String>> {
        self.read(|db| db.seal_newest_date()).await
    }

    /// Attach the TSA's reply to the seal of `date` (once).
    pub async fn stamp_seal(&self, date: &str, tsr: Vec<u8>, at: i64) -> Result<bool> {
        let date = date.to_string();
        self.write(move |db| db.seal_set_tsr(&date, &tsr, at)).await
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
            let last = db.seal_last()?;
            let after = last.as_ref().map_or(0, |s| s.last_id);
            let Some(min_ts) = db.log_first_unsealed_ts(after)? else {
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
            let Some(range) = db.seal_range(after, day.end_ms(), &prev)? else {
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
            Ok(db.seal_insert(&seal)?.then_some(seal))
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
            let seals = db.seal_all()?;
            let mut unsealed: Vec<String> = Vec::new();
            let unstamped: Vec<&Seal> = seals.iter().filter(|s| s.tsr.is_none()).collect();
            if tsa {
                unsealed.extend(unstamped.iter().map(|s| s.date.clone()));
            }
            // Bounded: a log far behind shows its first 1000 days.
            let days = db.unsealed_days(&seals, finished_by)?;
            unsealed.extend(days.into_iter().take(1000).map(|u| u.day.to_string()));
            unsealed.sort();
            unsealed.dedup();
            if let Some(e) = &error {
                db.seal_set_error(&unsealed, e, now)?;
            }
            db.seal_clear_errors_except(&unsealed)?;
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
        self.run(|db| db.seal_all())
    }

    /// The sealer's recorded errors by date: (error, when, unix ms).
    pub fn seal_errors(&self) -> Result<std::collections::HashMap<String, (String, i64)>> {
        self.run(|db| db.seal_errors())
    }

    /// The finished days (ended by `finished_by_ms`) with log rows in no
    /// seal of `seals`: after the last seal (not sealed yet) or between two
    /// seals (a seal deleted). A row committed after the seal of the day it
    /// is timed in belongs to the next seal, as the sealer does it, so it is
    /// counted in the day after.
    pub fn unsealed_days(&self, seals: &[Seal], finished_by_ms: i64) -> Result<Vec<Unsealed>> {
        self.run(|db| db.unsealed_days(seals, finished_by_ms))
    }

    /// How many log rows have an id in `from..=to`.
    pub fn count_log_rows(&self, from: i64, to: i64) -> Result<i64> {
        self.run(|db| db.log_count_rows(from, to))
    }
}

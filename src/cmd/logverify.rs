//! `pecd log verify`: the hash chain row by row, then each seal of the
//! period: its numbers against the rows, its signature, its time stamp
//! token and its files (`docs/log-integrity.md`). Read-only, beside a
//! running daemon.

use std::path::Path;
use std::process::ExitCode;

use openssl::x509::X509;

use super::AdminResult;
use crate::cli::LogVerifyArgs;
use crate::config::Config;
use crate::pec::logseal::{self, Day, SealText};
use crate::store::{self, log, seal};

/// What the check found.
#[derive(Debug, Default)]
struct Report {
    /// Mismatches: each names a row or a day.
    problems: Vec<String>,
    /// Finished days with rows in no seal, each with why if the sealer
    /// recorded it.
    unsealed: Vec<String>,
    /// Sealed days without a time stamp: a seal anyone holding the signing
    /// key could have made again over rewritten rows.
    unstamped: Vec<String>,
    /// Things that are not tampering but are worth saying.
    notes: Vec<String>,
    rows: i64,
    seals: usize,
    stamped: usize,
}

/// A finished day is sealed a minute after its midnight (the sealer's grace).
const GRACE_MS: i64 = 60_000;

/// A certificate file of the configuration that does not read or parse.
#[derive(Debug)]
pub enum CertFileError {
    /// It cannot be read.
    Read(std::path::PathBuf, std::io::Error),
    /// It holds no PEM certificates.
    Pem(std::path::PathBuf, openssl::error::ErrorStack),
}

impl std::fmt::Display for CertFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertFileError::Read(p, e) => write!(f, "{}: {e}", p.display()),
            CertFileError::Pem(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for CertFileError {}

pub(super) fn pem_certs(
    cfg: &Config,
    paths: &[std::path::PathBuf],
) -> Result<Vec<X509>, CertFileError> {
    let mut out = Vec::new();
    for p in paths {
        let p = cfg.resolve(p);
        let pem = std::fs::read(&p).map_err(|e| CertFileError::Read(p.clone(), e))?;
        out.extend(X509::stack_from_pem(&pem).map_err(|e| CertFileError::Pem(p.clone(), e))?);
    }
    Ok(out)
}

/// A `--from`/`--to` day that is not `YYYY-MM-DD`: the flag and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDay(pub &'static str, pub String);

impl std::fmt::Display for BadDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}: expected YYYY-MM-DD", self.0, self.1)
    }
}

impl std::error::Error for BadDay {}

/// The day a `--from`/`--to` flag names, if given.
pub(super) fn day_flag(s: &Option<String>, flag: &'static str) -> Result<Option<Day>, BadDay> {
    s.as_deref()
        .map(|d| Day::parse(d).ok_or_else(|| BadDay(flag, d.to_string())))
        .transpose()
}

/// Run `pecd log verify`.
pub fn verify(cfg: &Config, a: &LogVerifyArgs) -> AdminResult {
    let from = day_flag(&a.from, "--from")?;
    let to = day_flag(&a.to, "--to")?;
    // The provider's own signing chain is trusted for its seals, beside
    // the roots that issue providers' certificates.
    let mut roots = pem_certs(cfg, &cfg.trust.ca)?;
    roots.extend(pem_certs(cfg, &cfg.signing.chain)?);
    let tsa_roots = match &cfg.log.tsa_ca {
        Some(p) => Some(pem_certs(cfg, std::slice::from_ref(p))?),
        None => None,
    };
    let data_dir = cfg.data_dir();
    let seals_dir = crate::server::sealer::seals_dir(&data_dir);
    let inspector = super::inspect_store(cfg)?;
    let mut report = check(
        &inspector,
        from,
        to,
        &roots,
        tsa_roots.as_deref(),
        &seals_dir,
    )?;
    if a.allow_unstamped {
        let allowed = std::mem::take(&mut report.unstamped);
        report.notes.extend(
            allowed
                .into_iter()
                .map(|d| format!("{d} (allowed by --allow-unstamped)")),
        );
    }
    for p in &report.problems {
        println!("MISMATCH {p}");
    }
    for d in &report.unsealed {
        println!("UNSEALED {d}");
    }
    for d in &report.unstamped {
        println!("UNSTAMPED {d}");
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    let failures = report.problems.len() + report.unsealed.len() + report.unstamped.len();
    if failures == 0 {
        println!(
            "PEC log verified: {} row(s) chained, {} seal(s) checked ({} time-stamped)",
            report.rows, report.seals, report.stamped
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "PEC log does NOT verify: {} mismatch(es), {} finished day(s) not sealed, {} seal(s) not time-stamped{}",
            report.problems.len(),
            report.unsealed.len(),
            report.unstamped.len(),
            if report.unstamped.is_empty() {
                ""
            } else {
                " (--allow-unstamped accepts those, for a development provider without a TSA)"
            }
        );
        Ok(ExitCode::FAILURE)
    }
}

/// `(last error at <time>: <error>)`, when the sealer recorded one.
fn reason(errors: &std::collections::HashMap<String, (String, i64)>, day: &str) -> String {
    errors
        .get(day)
        .map(|(e, at)| format!(" (the sealer's last error, {}: {e})", log::iso_utc(*at)))
        .unwrap_or_default()
}

fn check(
    db: &store::Inspector,
    from: Option<Day>,
    to: Option<Day>,
    roots: &[X509],
    tsa_roots: Option<&[X509]>,
    seals_dir: &Path,
) -> store::Result<Report> {
    let mut r = Report::default();
    let all = db.seals()?;
    let in_period = |date: &str| {
        Day::parse(date).is_none_or(|d| from.is_none_or(|f| d >= f) && to.is_none_or(|t| d <= t))
    };
    let Some((min_id, max_id)) = db.log_id_bounds()? else {
        r.notes.push("the PEC log is empty".into());
        return Ok(r);
    };
    let period_seals: Vec<&seal::Seal> = all.iter().filter(|s| in_period(&s.date)).collect();
    let mut start = match from {
        Some(f) => db.first_log_id_from(f.start_ms())?.unwrap_or(max_id + 1),
        None => min_id,
    };
    let mut end = match to {
        Some(t) => db.last_log_id_before(t.end_ms())?.unwrap_or(min_id - 1),
        None => max_id,
    };
    // A sealed day is walked whole, whatever the rows' times say.
    for s in &period_seals {
        start = start.min(s.first_id);
        end = end.max(s.last_id);
    }
    chain(db, start, end, &all, &mut r)?;
    let errors = db.seal_errors()?;
    for s in &period_seals {
        check_seal(db, s, &all, roots, tsa_roots, seals_dir, &mut r)?;
        if s.tsr.is_none() {
            r.unstamped.push(format!(
                "day {}: sealed and signed, not time-stamped: whoever holds the signing key could have rewritten and resealed it{}",
                s.date,
                reason(&errors, &s.date)
            ));
        }
    }
    // A sealed day never disappears silently: every finished day with rows
    // has its seal.
    for u in db.unsealed_days(&all, crate::cmd::now_unix_ms() - GRACE_MS)? {
        let day = u.day.to_string();
        if !in_period(&day) {
            continue;
        }
        let why = match reason(&errors, &day) {
            r if r.is_empty() => {
                " (its seal was deleted, or the daemon has not run since the day ended)".to_string()
            }
            r => r,
        };
        r.unsealed.push(format!(
            "day {day}: {} row(s) of this finished day are in no seal{why}",
            u.rows
        ));
    }
    // A seal file whose seal is gone from the database.
    let sealed: std::collections::HashSet<&str> = all.iter().map(|s| s.date.as_str()).collect();
    for day in seal_files(seals_dir) {
        let d = day.to_string();
        if in_period(&d) && !sealed.contains(d.as_str()) {
            r.problems.push(format!(
                "day {d}: {} exists but the database has no seal for that day (deleted)",
                seals_dir.join(format!("{d}.seal")).display()
            ));
        }
    }
    if let Some(last) = all.last() {
        if max_id > last.last_id && to.is_none() {
            r.notes.push(format!(
                "rows {}..{} are after the last seal ({}): chained, not sealed yet",
                last.last_id + 1,
                max_id,
                last.date
            ));
        }
    } else {
        r.notes.push("no day has been sealed yet".into());
    }
    Ok(r)
}

/// The days of the `YYYY-MM-DD.seal` files in `dir`, sorted.
fn seal_files(dir: &Path) -> Vec<Day> {
    let mut v: Vec<Day> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            Day::parse(name.to_str()?.strip_suffix(".seal")?)
        })
        .collect();
    v.sort();
    v
}

/// Walk the chain over `start..=end`; the first mismatch is a problem and
/// ends the walk (what follows cannot be judged against a broken link).
fn chain(
    db: &store::Inspector,
    start: i64,
    end: i64,
    seals: &[seal::Seal],
    r: &mut Report,
) -> store::Result<()> {
    if start > end {
        return Ok(());
    }
    let (mut prev_id, mut prev) = match db.chain_before(start)? {
        Some((id, Some(h))) if h.len() == 32 => {
            let mut a = [0u8; 32];
            a.copy_from_slice(&h);
            (id, a)
        }
        Some((id, _)) => {
            r.problems.push(format!(
                "row {id}: it has no chain hash (written outside pecd?)"
            ));
            return Ok(());
        }
        // Before the first row: the seal that ended there, else the genesis.
        None => seals
            .iter()
            .rev()
            .find(|s| s.last_id == start - 1)
            .and_then(|s| <[u8; 32]>::try_from(s.last_hash.as_slice()).ok())
            .map_or((0, log::GENESIS), |h| (start - 1, h)),
    };
    let purge_cutoff = crate::cmd::now_unix_ms() - (log::LOG_RETENTION_DAYS + 1) * 86_400_000;
    let mut problem = None;
    let mut note = None;
    let mut first = true;
    db.for_each_chained(start, end, |e, stored| {
        r.rows += 1;
        let mut expected = log::chain_next(&prev, &log::row_digest(e));
        // The oldest row left, neither the genesis' nor a seal's successor:
        // its predecessors were purged after 30 months (fine, when an
        // expired seal covers it: the chain is checked from it on) or
        // deleted (not fine).
        if first && prev_id == 0 && e.id != 1 && stored.is_some_and(|h| h != expected) {
            let expired_seal = seals.iter().find(|s| {
                s.first_id <= e.id
                    && e.id <= s.last_id
                    && Day::parse(&s.date).is_some_and(|d| d.start_ms() < purge_cutoff)
            });
            if let Some(s) = expired_seal {
                note = Some(format!(
                    "row {}: the rows before it, in the seal of {}, were purged after 30 months; the chain is checked from it on",
                    e.id, s.date
                ));
                expected = stored.unwrap_or(expected);
            } else {
                problem = Some(format!(
                    "row {}: the chain does not start from the genesis or a seal: the rows before it are missing (deleted)",
                    e.id
                ));
                return false;
            }
        }
        first = false;
        match stored {
            None => {
                problem = Some(format!(
                    "row {}: it has no chain hash (written outside pecd?)",
                    e.id
                ));
                return false;
            }
            Some(h) if h != expected => {
                problem = Some(if prev_id != 0 && e.id != prev_id + 1 {
                    format!(
                        "row {}: the chain breaks here: row(s) {}..{} are missing (deleted)",
                        e.id,
                        prev_id + 1,
                        e.id - 1
                    )
                } else {
                    format!(
                        "row {}: its content or position does not match its chain hash (edited, moved or replaced) — {} {}",
                        e.id,
                        log::iso_utc(e.ts),
                        e.event
                    )
                });
                return false;
            }
            Some(h) => {
                prev = h;
                prev_id = e.id;
            }
        }
        true
    })?;
    r.problems.extend(problem);
    r.notes.extend(note);
    Ok(())
}

fn check_seal(
    db: &store::Inspector,
    s: &seal::Seal,
    all: &[seal::Seal],
    roots: &[X509],
    tsa_roots: Option<&[X509]>,
    seals_dir: &Path,
    r: &mut Report,
) -> store::Result<()> {
    r.seals += 1;
    let day = &s.date;
    let Some(text) = SealText::parse(&s.seal) else {
        r.problems
            .push(format!("day {day}: the seal text cannot be read"));
        return Ok(());
    };
    if text.date.to_string() != *day {
        r.problems.push(format!(
            "day {day}: the seal text is for {} instead",
            text.date
        ));
    }
    // The seal before it, by rows: the chain must go on from its last row.
    let before = all.iter().rev().find(|p| p.last_id < s.first_id);
    let expect_prev = before.map_or(log::GENESIS.to_vec(), |p| p.last_hash.clone());
    if text.previous_hash != expect_prev {
        r.problems.push(format!(
            "day {day}: the seal does not continue the previous seal's chain hash"
        ));
    }
    if let Some(p) = before {
        if text.first_row != p.last_id + 1 {
            let between = db.count_log_rows(p.last_id + 1, text.first_row - 1)?;
            if between > 0 {
                r.problems.push(format!(
                    "day {day}: {between} row(s) between the seal of {} and this one are in no seal",
                    p.date
                ));
            }
        }
    }
    let present = db.count_log_rows(text.first_row, text.last_row)?;
    // Rows older than 30 months are purged (Store::sweep); their seal stays.
    let purged = text.date.start_ms()
        < crate::cmd::now_unix_ms() - (log::LOG_RETENTION_DAYS + 1) * 86_400_000;
    if purged && present < text.rows {
        r.notes.push(format!(
            "day {day}: {} of its {} row(s) purged after 30 months; its seal is still checked",
            text.rows - present,
            text.rows
        ));
    } else if present != text.rows {
        r.problems.push(format!(
            "day {day}: the seal covers {} row(s) ({}..{}), the log has {present} there (rows deleted or added)",
            text.rows, text.first_row, text.last_row
        ));
    }
    let mut last_hash = None;
    db.for_each_chained(text.last_row, text.last_row, |_, h| {
        last_hash = Some(h);
        false
    })?;
    match last_hash {
        None if purged => {}
        None => r.problems.push(format!(
            "day {day}: row {} (the last one sealed) is missing",
            text.last_row
        )),
        Some(h) if h.map(|h| h.to_vec()) != Some(text.last_hash.clone()) => {
            r.problems.push(format!(
                "day {day}: row {}'s chain hash is not the one sealed: the log was rewritten after the seal",
                text.last_row
            ))
        }
        Some(_) => {}
    }
    let hash = openssl::sha::sha256(&s.seal);
    let mut at = None;
    match (&s.tsr, tsa_roots) {
        (Some(t), Some(tsa)) => {
            let checked = crate::pec::tsa::token_of_response(t)
                .and_then(|tok| crate::pec::tsa::verify_token(&tok, tsa, &hash, None, None));
            match checked {
                Ok(info) => {
                    r.stamped += 1;
                    at = Some(info.gen_time);
                }
                Err(e) => r.problems.push(format!("day {day}: time stamp token: {e}")),
            }
        }
        (Some(_), None) => r.problems.push(format!(
            "day {day}: has a time stamp token, but log.tsa_ca is not set to check it"
        )),
        // Reported by the caller, with the sealer's reason.
        (None, _) => {}
    }
    if let Err(e) = logseal::verify_signature(&s.seal, &s.signature, roots, at) {
        r.problems.push(format!("day {day}: seal signature: {e}"));
    }
    let mut files = vec![("seal", Some(&s.seal)), ("p7s", Some(&s.signature))];
    files.push(("tsr", s.tsr.as_ref()));
    for (ext, want) in files {
        let p = seals_dir.join(format!("{day}.{ext}"));
        match (std::fs::read(&p).ok(), want) {
            (Some(got), Some(want)) if got != *want => r.problems.push(format!(
                "day {day}: {} differs from the seal in the database",
                p.display()
            )),
            (None, Some(_)) => r.notes.push(format!(
                "day {day}: {} is missing (the daemon rewrites it)",
                p.display()
            )),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::log::{Event, EventKind};

    #[test]
    fn rows_purged_after_30_months_are_a_note_rows_deleted_a_mismatch() {
        let db = store::Inspector::in_memory();
        let now = crate::cmd::now_unix_ms();
        let old = now - 1000 * 86_400_000;
        for ts in [old, old + 1, old + 2, now, now + 1] {
            db.test_append(&Event::new(EventKind::Deposito, ts));
        }
        let none = Path::new("/nonexistent");
        let r = check(&db, None, None, &[], None, none).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.rows, 5);
        assert_eq!(db.test_purge_log(now), 3);
        // No seal says the missing rows were old: they may have been deleted.
        let r = check(&db, None, None, &[], None, none).unwrap();
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(
            r.problems[0].starts_with("row 4: the chain does not start"),
            "{:?}",
            r.problems
        );
        // A seal of a day past the retention covering them says so.
        let day = Day::of_ms(old);
        let s = seal::Seal {
            date: day.to_string(),
            first_id: 1,
            last_id: 5,
            rows: 5,
            prev_hash: log::GENESIS.to_vec(),
            last_hash: vec![0; 32],
            seal: b"not a real seal".to_vec(),
            signature: vec![],
            tsr: None,
            created_at: old,
            stamped_at: None,
        };
        assert!(db.test_insert_seal(&s));
        let r = check(&db, None, None, &[], None, none).unwrap();
        assert!(
            r.problems.iter().all(|p| !p.starts_with("row ")),
            "{:?}",
            r.problems
        );
        assert!(
            r.notes
                .iter()
                .any(|n| n.starts_with("row 4: the rows before it, in the seal of")),
            "{:?}",
            r.notes
        );
        assert_eq!(r.rows, 2);
    }
}

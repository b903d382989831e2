//! The daily seal of the PEC log, in the daemon (`docs/log-integrity.md`).
//!
//! Once a day in Italian time is over (and a minute more, for rows timed
//! before midnight that were still committing), the rows after the last
//! seal up to that midnight are sealed: the seal text is made and signed in
//! the writer thread, in one transaction with its row, so a restart finds
//! either the seal or nothing, never half of one, and never makes a second
//! (one row per date). The files under `<data_dir>/log/seals/` are copies
//! written after the commit and rewritten whenever one is missing. The time
//! stamp is asked for after that; a TSA that fails is asked again with a
//! doubling wait, and meanwhile the day counts as unsealed in `/health`
//! and `pecd_log_unsealed_days`, its last error kept for `pecd log verify`.
//! A seal only ever covers rows after the newest one: a day whose seal was
//! deleted is never sealed again, and stays unsealed in `/health`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::x509::X509;

use super::Ctx;
use crate::pec::logseal::Day;
use crate::store::{self, seal::Seal};

/// Rows timed before midnight may still be committing just after it.
const GRACE_MS: i64 = 60_000;

/// What `/health` and the metrics show about the seals.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Finished days not sealed yet, or sealed and waiting for their time
    /// stamp while a TSA is configured.
    pub unsealed: Vec<String>,
    /// Seals without a time stamp (all of them when no TSA is configured).
    pub unstamped: usize,
    /// Whether `[log] tsa_url` names a TSA (not `"none"`).
    pub tsa: bool,
    /// The last failure, if the last round failed.
    pub error: Option<String>,
    /// The newest sealed day.
    pub sealed_through: Option<String>,
}

/// Shared seal status.
pub type Shared = Arc<Mutex<Status>>;

/// `<data_dir>/log/seals`.
pub fn seals_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log").join("seals")
}

/// Seal until shutdown.
pub async fn run(ctx: Arc<Ctx>) {
    let mut shutdown = ctx.shutdown.clone();
    let mut failures: u32 = 0;
    loop {
        let result = round(&ctx).await;
        let cfg = ctx.cfg();
        let wait = match &result {
            Ok(()) => {
                failures = 0;
                until_next_seal(ctx.unix_ms())
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let first = cfg.duration(&cfg.log.seal_retry_initial, Duration::from_secs(60));
                let max = cfg.duration(&cfg.log.seal_retry_max, Duration::from_secs(3600));
                let wait = first
                    .checked_mul(1u32 << (failures - 1).min(20))
                    .unwrap_or(max)
                    .min(max);
                tracing::warn!(error = %e, retry_in = ?wait, "PEC log seal not complete; trying again");
                wait
            }
        };
        if let Err(e) = refresh_status(&ctx, result.err()).await {
            tracing::error!(error = %e, "reading the log seals' state failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Until the next midnight (plus the grace), at most ten minutes: the wall
/// clock may be set while we sleep.
fn until_next_seal(now_ms: i64) -> Duration {
    let due = Day::of_ms(now_ms).end_ms() + GRACE_MS;
    Duration::from_millis((due - now_ms).clamp(1000, 600_000) as u64)
}

/// Seal every finished day, write missing files, stamp unstamped seals.
async fn round(ctx: &Arc<Ctx>) -> Result<(), String> {
    let dir = seals_dir(&ctx.store.paths().data_dir);
    refuse_after_a_lost_seal(ctx, &dir).await?;
    loop {
        let made = seal_next(ctx).await?;
        let Some(seal) = made else { break };
        tracing::info!(
            date = %seal.date,
            first_row = seal.first_id,
            last_row = seal.last_id,
            rows = seal.rows,
            "PEC log day sealed"
        );
    }
    let all = ctx.store.seals().await.map_err(|e| e.to_string())?;
    {
        let dir = dir.clone();
        let all = all.clone();
        tokio::task::spawn_blocking(move || write_files(&dir, &all))
            .await
            .map_err(|e| e.to_string())??;
    }
    let cfg = ctx.cfg();
    let Some(url) = cfg.log.tsa().map(str::to_string) else {
        return Ok(());
    };
    let roots = tsa_roots(&cfg)?;
    let policy = cfg
        .log
        .tsa_policy
        .as_deref()
        .map(crate::pec::tsa::oid_from_dotted)
        .transpose()?;
    let timeout = cfg.duration(&cfg.log.tsa_timeout, Duration::from_secs(30));
    for s in all.into_iter().filter(|s| s.tsr.is_none()) {
        let (url, roots, policy) = (url.clone(), roots.clone(), policy.clone());
        let text = s.seal.clone();
        let token = tokio::task::spawn_blocking(move || {
            stamp(&url, &text, &roots, policy.as_deref(), timeout)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("time stamp of {}: {e}", s.date))?;
        let now = ctx.unix_ms();
        ctx.store
            .stamp_seal(&s.date, token.clone(), now)
            .await
            .map_err(|e| e.to_string())?;
        let path = dir.join(format!("{}.tsr", s.date));
        tokio::task::spawn_blocking(move || write_file(&path, &token))
            .await
            .map_err(|e| e.to_string())??;
        tracing::info!(date = %s.date, "PEC log seal time-stamped");
    }
    Ok(())
}

/// Never seal a day older than the last one sealed: when the newest seal
/// file names a day the database has no seal for (its row deleted), the
/// next seal would cover that day's rows under another date, rewritten or
/// not. Sealing stops until the operator restores the database or moves
/// the file away (`docs/log-integrity.md`).
async fn refuse_after_a_lost_seal(ctx: &Arc<Ctx>, dir: &Path) -> Result<(), String> {
    let newest_file = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || newest_seal_file(&dir))
            .await
            .map_err(|e| e.to_string())?
    };
    let Some(file_day) = newest_file else {
        return Ok(());
    };
    let newest_row = ctx
        .store
        .newest_seal_date()
        .await
        .map_err(|e| e.to_string())?
        .and_then(|d| Day::parse(&d));
    if newest_row.is_some_and(|d| d >= file_day) {
        return Ok(());
    }
    Err(format!(
        "the seal of {file_day} is in {} but not in the database (deleted?): no day is sealed \
         until it is back, or a later seal would cover that day's rows; restore the database \
         from a backup, or move {file_day}.* out of that folder if the loss is understood \
         (`pecd log verify` names the day)",
        dir.display()
    ))
}

/// The newest date among the `YYYY-MM-DD.seal` files of `dir`.
fn newest_seal_file(dir: &Path) -> Option<Day> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            Day::parse(name.to_str()?.strip_suffix(".seal")?)
        })
        .max()
}

/// The `[log] tsa_ca` certificates.
pub fn tsa_roots(cfg: &crate::config::Config) -> Result<Vec<X509>, String> {
    let Some(p) = &cfg.log.tsa_ca else {
        return Err("log.tsa_ca is not set".into());
    };
    let p = cfg.resolve(p);
    let pem = std::fs::read(&p).map_err(|e| format!("log.tsa_ca {}: {e}", p.display()))?;
    X509::stack_from_pem(&pem).map_err(|e| format!("log.tsa_ca {}: {e}", p.display()))
}

/// Ask the TSA for a time stamp over `data`; its reply (TimeStampResp, as
/// `openssl ts -verify -in` reads it) is kept only once its token verifies.
fn stamp(
    url: &str,
    data: &[u8],
    roots: &[X509],
    policy: Option<&[u8]>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    use crate::pec::tsa;
    let hash = openssl::sha::sha256(data);
    let nonce = tsa::nonce()?;
    let req = tsa::request(&hash, policy, &nonce);
    let reply = crate::http::Client::new(timeout)
        .post(url, "application/timestamp-query", &req, tsa::MAX_REPLY)
        .map_err(|e| format!("{url}: {e}"))?;
    let token = tsa::token_of_response(&reply)?;
    tsa::verify_token(&token, roots, &hash, Some(&nonce), policy)?;
    Ok(reply)
}

/// Seal the next finished day that has unsealed rows, if any.
async fn seal_next(ctx: &Arc<Ctx>) -> Result<Option<Seal>, String> {
    ctx.store
        .seal_next_day(
            ctx.domain().to_string(),
            ctx.unix_ms(),
            GRACE_MS,
            ctx.signer.get(),
        )
        .await
        .map_err(|e| format!("sealing the PEC log: {e}"))
}

/// Write each seal's files that are missing or differ from the database.
fn write_files(dir: &Path, seals: &[Seal]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for s in seals {
        let mut files = vec![("seal", &s.seal), ("p7s", &s.signature)];
        if let Some(t) = &s.tsr {
            files.push(("tsr", t));
        }
        for (ext, bytes) in files {
            let p = dir.join(format!("{}.{ext}", s.date));
            if std::fs::read(&p).ok().as_ref() != Some(bytes) {
                write_file(&p, bytes)?;
            }
        }
    }
    Ok(())
}

/// Write durably: a temporary file, fsync, rename, fsync of the folder.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(d) = path.parent() {
        store::spool::sync_dir(d).map_err(err)?;
    }
    Ok(())
}

/// Recompute what `/health` shows: finished days with rows in no seal,
/// and seals still waiting for a time stamp; each such day keeps the last
/// error (for `pecd log verify`).
async fn refresh_status(ctx: &Arc<Ctx>, error: Option<String>) -> Result<(), String> {
    let now = ctx.unix_ms();
    let tsa = ctx.cfg().log.tsa().is_some();
    let store::seal::Backlog {
        unsealed,
        unstamped,
        sealed_through: through,
    } = ctx
        .store
        .record_seal_backlog(now, now - GRACE_MS, tsa, error.clone())
        .await
        .map_err(|e| e.to_string())?;
    if !unsealed.is_empty() {
        tracing::warn!(days = ?unsealed, error = ?error, "finished PEC log days are not sealed");
    }
    ctx.metrics.log_unsealed_days(unsealed.len() as i64);
    if let Ok(mut st) = ctx.seals.lock() {
        *st = Status {
            unsealed,
            unstamped,
            tsa,
            error,
            sealed_through: through,
        };
    }
    Ok(())
}

/// The `/health` entry and its warning, if any.
pub fn health(status: &Status) -> (serde_json::Value, Option<String>) {
    let warning = if !status.unsealed.is_empty() {
        Some(format!(
            "PEC log: {} finished day(s) not sealed{}: {}{}",
            status.unsealed.len(),
            if status.tsa { " and time-stamped" } else { "" },
            status.unsealed.join(", "),
            status
                .error
                .as_ref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        ))
    } else if !status.tsa && status.unstamped > 0 {
        Some(format!(
            "PEC log: {} seal(s) signed but not time-stamped: [log] tsa_url is \"none\"",
            status.unstamped
        ))
    } else {
        None
    };
    let body = serde_json::json!({
        "time_stamped": status.tsa,
        "sealed_through": status.sealed_through,
        "unsealed_days": status.unsealed,
        "unstamped_seals": status.unstamped,
        "error": status.error,
        "warning": warning,
    });
    (body, warning)
}

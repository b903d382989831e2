//! The database's part of `pecd backup`: a copy of the live database as
//! one instant, through SQLite's online backup API, and what that copy
//! says the rest of the backup must hold (see `store::backup`).

use std::path::Path;

use rusqlite::backup::StepResult;
use rusqlite::Connection;

use super::open_connection;

/// What went wrong with the copy.
#[derive(Debug)]
pub(in crate::store) enum SnapshotError {
    /// Other connections kept the database busy for 10 s.
    Busy,
    /// The copy fails `PRAGMA quick_check`: its answer.
    Check(String),
    /// SQLite failed.
    Sql(Box<dyn std::error::Error + Send + Sync>),
}

impl From<rusqlite::Error> for SnapshotError {
    fn from(e: rusqlite::Error) -> Self {
        SnapshotError::Sql(Box::new(e))
    }
}

/// What the copy holds, as the rest of the backup needs it.
pub(in crate::store) struct Copied {
    /// `PRAGMA user_version` of the copy.
    pub(in crate::store) schema_version: i64,
    /// Spool names of the pending and held jobs.
    pub(in crate::store) blobs: Vec<String>,
}

/// Copy the live database `db` into the new file `dst` as one instant, a
/// self-contained file (no `-wal` beside it) that passes its integrity
/// check; `each_job` is called with the key and creation time of every job
/// the copy has, one row in memory at a time.
pub(in crate::store) fn snapshot(
    db: &Path,
    dst: &Path,
    mut each_job: impl FnMut(&str, i64),
) -> Result<Copied, SnapshotError> {
    let src = open_connection(db)?;
    let mut out = Connection::open(dst)?;
    {
        let b = rusqlite::backup::Backup::new(&src, &mut out)?;
        // All pages in one step: a stepwise copy restarts whenever another
        // connection commits, which on a busy provider is always.
        let mut busy = 0;
        loop {
            match b.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                _ => {
                    busy += 1;
                    if busy > 200 {
                        return Err(SnapshotError::Busy);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
    }
    // A self-contained file: no -wal or -shm beside it in the backup.
    out.pragma_update(None, "journal_mode", "DELETE")?;
    // The copy belongs to no running node: the work claimed at that
    // instant is free in it, so a restored provider runs it again at once
    // and counts no crash for it.
    let claims: i64 = out.query_row(
        "SELECT count(*) FROM pragma_table_info('jobs') WHERE name = 'claimed_by'",
        [],
        |r| r.get(0),
    )?;
    if claims > 0 {
        out.execute_batch(
            "UPDATE jobs SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by IS NOT NULL;
             UPDATE timers SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by IS NOT NULL;",
        )?;
    }
    let check: String = out.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(SnapshotError::Check(check));
    }
    let schema_version: i64 = out.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let blobs = {
        let mut st = out.prepare(
            "SELECT blob FROM jobs WHERE blob IS NOT NULL AND state IN ('pending', 'held')",
        )?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    {
        let mut st = out.prepare("SELECT key, created_at FROM jobs")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let key: String = r.get(0)?;
            let created: i64 = r.get(1)?;
            each_job(&key, created);
        }
    }
    out.close()
        .map_err(|(_, e)| SnapshotError::Sql(Box::new(e)))?;
    Ok(Copied {
        schema_version,
        blobs,
    })
}

//! Infected messages kept for 30 months (DPR 68/2005 art. 12), outside the
//! users' mailboxes: a byte-exact file under `<data_dir>/quarantine/` and a
//! row naming it with the identificativo, the virus and the time.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};

use super::{Db, Inspector, Result};

/// The quarantine folder under the data folder.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("quarantine")
}

/// One quarantined message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quarantined {
    /// Row id (`pecd quarantine show ID`); 0 before insertion.
    pub id: i64,
    /// The identificativo of the message, when it had one.
    pub identificativo: Option<String>,
    /// The virus clamd named.
    pub virus: String,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipients, comma separated.
    pub recipients: String,
    /// Where it was caught: `submission` or `reception`.
    pub point: String,
    /// The file name under the quarantine folder.
    pub file: String,
    /// Its size in bytes.
    pub size: i64,
    /// When it was caught (unix ms).
    pub at: i64,
}

/// Write `bytes` durably into the quarantine folder; gives the file name.
/// Named by time and content hash, so a retried scan rewrites the same file.
pub fn keep(data_dir: &Path, at_ms: i64, bytes: &[u8]) -> std::io::Result<String> {
    let d = dir(data_dir);
    std::fs::create_dir_all(&d)?;
    let h = openssl::sha::sha256(bytes);
    let hex: String = h[..12].iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("{at_ms}-{hex}.eml");
    let tmp = d.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, d.join(&name))?;
    std::fs::File::open(&d)?.sync_all()?;
    Ok(name)
}

/// Record a quarantined message; gives its id.
pub fn insert(db: &Db<'_>, q: &Quarantined) -> Result<i64> {
    db.sql()
        .prepare_cached(
            "INSERT INTO quarantine(identificativo, virus, sender, recipients, point, file, size, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            q.identificativo,
            q.virus,
            q.sender,
            q.recipients,
            q.point,
            q.file,
            q.size,
            q.at
        ])?;
    Ok(db.sql().last_insert_rowid())
}

const COLUMNS: &str = "id, identificativo, virus, sender, recipients, point, file, size, at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Quarantined> {
    Ok(Quarantined {
        id: r.get(0)?,
        identificativo: r.get(1)?,
        virus: r.get(2)?,
        sender: r.get(3)?,
        recipients: r.get(4)?,
        point: r.get(5)?,
        file: r.get(6)?,
        size: r.get(7)?,
        at: r.get(8)?,
    })
}

/// Every quarantined message, oldest first.
pub fn list(db: &Db<'_>) -> Result<Vec<Quarantined>> {
    let mut st = db
        .sql()
        .prepare(&format!("SELECT {COLUMNS} FROM quarantine ORDER BY id"))?;
    let rows = st
        .query_map([], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// One quarantined message by row id or identificativo.
pub fn get(db: &Db<'_>, key: &str) -> Result<Option<Quarantined>> {
    let id: i64 = key.parse().unwrap_or(-1);
    Ok(db
        .sql()
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM quarantine WHERE id = ?1 OR identificativo = ?2 ORDER BY id LIMIT 1"
            ),
            params![id, key],
            row,
        )
        .optional()?)
}

/// Remove the rows past the legal retention (30 months, as for the log);
/// gives their file names, for the caller to delete after the commit.
pub fn purge_expired(db: &Db<'_>, now_ms: i64) -> Result<Vec<String>> {
    let before_ms = now_ms - (super::schema::LOG_RETENTION_DAYS + 1) * 86_400_000;
    let mut st = db
        .sql()
        .prepare("DELETE FROM quarantine WHERE at < ?1 RETURNING file")?;
    let files = st
        .query_map([before_ms], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(files)
}

impl Inspector {
    /// Every quarantined message, oldest first.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>> {
        self.run(list)
    }

    /// One quarantined message by row id or identificativo.
    pub fn quarantined_one(&self, key: &str) -> Result<Option<Quarantined>> {
        self.run(|db| get(db, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_list_get_sweep() {
        let m = crate::store::MemDb::new();
        let db = m.db();
        let q = Quarantined {
            id: 0,
            identificativo: Some("opec1@x.it".into()),
            virus: "Eicar".into(),
            sender: "a@x.it".into(),
            recipients: "b@y.it".into(),
            point: "submission".into(),
            file: "1-ab.eml".into(),
            size: 10,
            at: 1000,
        };
        let id = insert(&db, &q).unwrap();
        let day = 86_400_000;
        let now = (crate::store::schema::LOG_RETENTION_DAYS + 10) * day;
        insert(
            &db,
            &Quarantined {
                at: now - day,
                file: "2.eml".into(),
                ..q.clone()
            },
        )
        .unwrap();
        assert_eq!(list(&db).unwrap().len(), 2);
        assert_eq!(get(&db, &id.to_string()).unwrap().unwrap().file, "1-ab.eml");
        assert_eq!(get(&db, "opec1@x.it").unwrap().unwrap().id, id);
        assert_eq!(
            purge_expired(&db, now).unwrap(),
            vec!["1-ab.eml".to_string()]
        );
        assert_eq!(list(&db).unwrap().len(), 1);
    }
}

//! The SQL of the quarantine's rows: see `store::quarantine`.

use rusqlite::{params, OptionalExtension};

use super::Db;
use crate::store::log::LOG_RETENTION_DAYS;
use crate::store::quarantine::Quarantined;
use crate::store::Result;

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

impl Db<'_> {
    /// Record a quarantined message; gives its id.
    pub(in crate::store) fn quarantine_insert(&self, q: &Quarantined) -> Result<i64> {
        self.sql()
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
        Ok(self.sql().last_insert_rowid())
    }

    /// Every quarantined message, oldest first.
    pub(in crate::store) fn quarantine_list(&self) -> Result<Vec<Quarantined>> {
        let mut st = self
            .sql()
            .prepare(&format!("SELECT {COLUMNS} FROM quarantine ORDER BY id"))?;
        let rows = st
            .query_map([], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// One quarantined message by row id or identificativo.
    pub(in crate::store) fn quarantine_get(&self, key: &str) -> Result<Option<Quarantined>> {
        let id: i64 = key.parse().unwrap_or(-1);
        Ok(self
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

    /// Remove the rows past the legal retention (30 months, as for the
    /// log); gives their file names, for the caller to delete after the
    /// commit.
    pub(in crate::store) fn quarantine_purge_expired(&self, now_ms: i64) -> Result<Vec<String>> {
        let before_ms = now_ms - (LOG_RETENTION_DAYS + 1) * 86_400_000;
        let mut st = self
            .sql()
            .prepare("DELETE FROM quarantine WHERE at < ?1 RETURNING file")?;
        let files = st
            .query_map([before_ms], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::log::LOG_RETENTION_DAYS;
    use crate::store::quarantine::Quarantined;
    use crate::store::sqlite::MemDb;

    #[test]
    fn insert_list_get_sweep() {
        let m = MemDb::new();
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
        let id = db.quarantine_insert(&q).unwrap();
        let day = 86_400_000;
        let now = (LOG_RETENTION_DAYS + 10) * day;
        db.quarantine_insert(&Quarantined {
            at: now - day,
            file: "2.eml".into(),
            ..q.clone()
        })
        .unwrap();
        assert_eq!(db.quarantine_list().unwrap().len(), 2);
        assert_eq!(
            db.quarantine_get(&id.to_string()).unwrap().unwrap().file,
            "1-ab.eml"
        );
        assert_eq!(db.quarantine_get("opec1@x.it").unwrap().unwrap().id, id);
        assert_eq!(
            db.quarantine_purge_expired(now).unwrap(),
            vec!["1-ab.eml".to_string()]
        );
        assert_eq!(db.quarantine_list().unwrap().len(), 1);
    }
}

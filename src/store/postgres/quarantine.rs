//! The SQL of the quarantine's rows on PostgreSQL: see `sqlite/quarantine.rs`.

use ::postgres::Row;

use super::PgDb;
use crate::store::log::LOG_RETENTION_DAYS;
use crate::store::quarantine::Quarantined;
use crate::store::Result;

fn row(r: &Row) -> Quarantined {
    Quarantined {
        id: r.get(0),
        identificativo: r.get(1),
        virus: r.get(2),
        sender: r.get(3),
        recipients: r.get(4),
        point: r.get(5),
        file: r.get(6),
        size: r.get(7),
        at: r.get(8),
    }
}

impl PgDb<'_> {
    /// Record a quarantined message; gives its id.
    pub(in crate::store) fn quarantine_insert(&self, q: &Quarantined) -> Result<i64> {
        Ok(self
            .one(
                "INSERT INTO quarantine(identificativo, virus, sender, recipients, point, file, size, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[
                    &q.identificativo,
                    &q.virus,
                    &q.sender,
                    &q.recipients,
                    &q.point,
                    &q.file,
                    &q.size,
                    &q.at,
                ],
            )?
            .get(0))
    }

    /// Every quarantined message, oldest first.
    pub(in crate::store) fn quarantine_list(&self) -> Result<Vec<Quarantined>> {
        Ok(self
            .rows(
                "SELECT id, identificativo, virus, sender, recipients, point, file, size, at
                 FROM quarantine ORDER BY id",
                &[],
            )?
            .iter()
            .map(row)
            .collect())
    }

    /// One quarantined message by row id or identificativo.
    pub(in crate::store) fn quarantine_get(&self, key: &str) -> Result<Option<Quarantined>> {
        let id: i64 = key.parse().unwrap_or(-1);
        Ok(self
            .opt(
                "SELECT id, identificativo, virus, sender, recipients, point, file, size, at
                 FROM quarantine WHERE id = $1 OR identificativo = $2 ORDER BY id LIMIT 1",
                &[&id, &key],
            )?
            .as_ref()
            .map(row))
    }

    /// Remove the rows past the legal retention; gives their file names.
    pub(in crate::store) fn quarantine_purge_expired(&self, now_ms: i64) -> Result<Vec<String>> {
        let before_ms = now_ms - (LOG_RETENTION_DAYS + 1) * 86_400_000;
        Ok(self
            .rows(
                "DELETE FROM quarantine WHERE at < $1 RETURNING file",
                &[&before_ms],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }
}

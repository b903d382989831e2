//! The SQL of the nodes' heartbeats (see `store::cluster`).

use rusqlite::params;

use super::Db;
use crate::store::cluster::{ClaimsHeld, NodeSeen};
use crate::store::Result;

/// Claims per node, live and lapsed, of one table (`jobs` or `timers`).
fn per_node(db: &Db<'_>, table: &str, now: i64) -> Result<Vec<(String, i64, i64)>> {
    let sql = format!(
        "SELECT claimed_by, SUM(CASE WHEN claimed_until > ?1 THEN 1 ELSE 0 END),
                SUM(CASE WHEN claimed_until > ?1 THEN 0 ELSE 1 END)
           FROM {table} WHERE claimed_by IS NOT NULL GROUP BY claimed_by"
    );
    let mut st = db.sql().prepare_cached(&sql)?;
    let rows = st.query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

impl Db<'_> {
    pub(in crate::store) fn node_beat(
        &self,
        node: &str,
        started_at: i64,
        now: i64,
        version: &str,
    ) -> Result<()> {
        self.sql()
            .prepare_cached(
                "INSERT INTO nodes (node, started_at, heartbeat_at, stopped_at, version)
                 VALUES (?1, ?2, ?3, NULL, ?4)
                 ON CONFLICT (node) DO UPDATE SET started_at = excluded.started_at,
                   heartbeat_at = excluded.heartbeat_at, stopped_at = NULL,
                   version = excluded.version",
            )?
            .execute(params![node, started_at, now, version])?;
        Ok(())
    }

    pub(in crate::store) fn node_stop(&self, node: &str, now: i64) -> Result<()> {
        self.sql()
            .prepare_cached("UPDATE nodes SET stopped_at = ?2, heartbeat_at = ?2 WHERE node = ?1")?
            .execute(params![node, now])?;
        Ok(())
    }

    pub(in crate::store) fn nodes_seen(&self) -> Result<Vec<NodeSeen>> {
        let mut st = self.sql().prepare_cached(
            "SELECT node, started_at, heartbeat_at, stopped_at, version FROM nodes ORDER BY node",
        )?;
        let rows = st.query_map([], |r| {
            Ok(NodeSeen {
                node: r.get(0)?,
                started_at: r.get(1)?,
                heartbeat_at: r.get(2)?,
                stopped_at: r.get(3)?,
                version: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(in crate::store) fn claims_per_node(&self, now: i64) -> Result<Vec<ClaimsHeld>> {
        let mut out: std::collections::BTreeMap<String, ClaimsHeld> = Default::default();
        for (node, live, lapsed) in per_node(self, "jobs", now)? {
            let e = out.entry(node.clone()).or_default();
            e.node = node;
            (e.jobs, e.jobs_lapsed) = (live, lapsed);
        }
        for (node, live, lapsed) in per_node(self, "timers", now)? {
            let e = out.entry(node.clone()).or_default();
            e.node = node;
            (e.timers, e.timers_lapsed) = (live, lapsed);
        }
        Ok(out.into_values().collect())
    }
}

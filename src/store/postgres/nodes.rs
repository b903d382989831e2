//! The SQL of the nodes' heartbeats on PostgreSQL (see `store::cluster`).

use super::PgDb;
use crate::store::cluster::{ClaimsHeld, NodeSeen};
use crate::store::Result;

impl PgDb<'_> {
    pub(in crate::store) fn node_beat(
        &self,
        node: &str,
        started_at: i64,
        now: i64,
        version: &str,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO nodes (node, started_at, heartbeat_at, stopped_at, version)
             VALUES ($1, $2, $3, NULL, $4)
             ON CONFLICT (node) DO UPDATE SET started_at = excluded.started_at,
               heartbeat_at = excluded.heartbeat_at, stopped_at = NULL,
               version = excluded.version",
            &[&node, &started_at, &now, &version],
        )?;
        Ok(())
    }

    pub(in crate::store) fn node_stop(&self, node: &str, now: i64) -> Result<()> {
        self.exec(
            "UPDATE nodes SET stopped_at = $2, heartbeat_at = $2 WHERE node = $1",
            &[&node, &now],
        )?;
        Ok(())
    }

    pub(in crate::store) fn nodes_seen(&self) -> Result<Vec<NodeSeen>> {
        Ok(self
            .rows(
                "SELECT node, started_at, heartbeat_at, stopped_at, version FROM nodes ORDER BY node",
                &[],
            )?
            .iter()
            .map(|r| NodeSeen {
                node: r.get(0),
                started_at: r.get(1),
                heartbeat_at: r.get(2),
                stopped_at: r.get(3),
                version: r.get(4),
            })
            .collect())
    }

    pub(in crate::store) fn claims_per_node(&self, now: i64) -> Result<Vec<ClaimsHeld>> {
        let rows = self.rows(
            "SELECT coalesce(j.node, t.node),
                    coalesce(j.live, 0), coalesce(j.lapsed, 0),
                    coalesce(t.live, 0), coalesce(t.lapsed, 0)
               FROM (SELECT claimed_by AS node,
                            count(*) FILTER (WHERE claimed_until > $1) AS live,
                            count(*) FILTER (WHERE claimed_until IS NULL OR claimed_until <= $1) AS lapsed
                       FROM jobs WHERE claimed_by IS NOT NULL GROUP BY claimed_by) j
               FULL JOIN
                    (SELECT claimed_by AS node,
                            count(*) FILTER (WHERE claimed_until > $1) AS live,
                            count(*) FILTER (WHERE claimed_until IS NULL OR claimed_until <= $1) AS lapsed
                       FROM timers WHERE claimed_by IS NOT NULL GROUP BY claimed_by) t
                 ON j.node = t.node
              ORDER BY 1",
            &[&now],
        )?;
        Ok(rows
            .iter()
            .map(|r| ClaimsHeld {
                node: r.get(0),
                jobs: r.get(1),
                jobs_lapsed: r.get(2),
                timers: r.get(3),
                timers_lapsed: r.get(4),
            })
            .collect())
    }
}

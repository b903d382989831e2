//! The nodes of a cluster as the store sees them (`pecd cluster status`):
//! each running node records a heartbeat with the renewal of its claims,
//! and a clean stop records itself, so an operator can tell a node that is
//! up from one that stopped and one that went silent (dead, or cut off
//! from the database: its claims lapse and other nodes take its work).

use super::{Inspector, Result, Store};

/// One node as its heartbeats left it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeSeen {
    /// `[cluster] node`.
    pub node: String,
    /// When its current (or last) run started (Unix ms).
    pub started_at: i64,
    /// Its last heartbeat (Unix ms).
    pub heartbeat_at: i64,
    /// When it stopped cleanly, if its last run did.
    pub stopped_at: Option<i64>,
    /// The pecd version it runs.
    pub version: String,
}

/// The claims one node holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClaimsHeld {
    /// `[cluster] node`.
    pub node: String,
    /// Jobs it holds under a live lease.
    pub jobs: i64,
    /// Jobs whose lease lapsed (any node may take them over).
    pub jobs_lapsed: i64,
    /// Deadlines it holds under a live lease.
    pub timers: i64,
    /// Deadlines whose lease lapsed.
    pub timers_lapsed: i64,
}

/// What the store knows of the cluster's nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Every node that ever beat, by name.
    pub nodes: Vec<NodeSeen>,
    /// The claims per node, by name (a node may hold claims and never
    /// have beaten: one of an older pecd).
    pub claims: Vec<ClaimsHeld>,
}

impl Store {
    /// Record that `node`, started at `started_at`, is alive at `now`.
    pub async fn beat(&self, node: &str, started_at: i64, now: i64) -> Result<()> {
        let node = node.to_string();
        self.write(move |db| db.node_beat(&node, started_at, now, env!("CARGO_PKG_VERSION")))
            .await
    }

    /// Record a clean stop of `node` at `now`.
    pub async fn node_stopped(&self, node: &str, now: i64) -> Result<()> {
        let node = node.to_string();
        self.write(move |db| db.node_stop(&node, now)).await
    }
}

impl Inspector {
    /// The nodes and their claims at `now`.
    pub fn cluster_status(&self, now: i64) -> Result<ClusterStatus> {
        self.run(|db| {
            Ok(ClusterStatus {
                nodes: db.nodes_seen()?,
                claims: db.claims_per_node(now)?,
            })
        })
    }
}

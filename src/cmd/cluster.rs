//! `pecd cluster status`: the nodes sharing this provider's store, as
//! their heartbeats and claims show them.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::tools::{age, human, iso, write_table};
use super::{inspect_store, load_config, AdminResult};
use crate::cli::ClusterCommand;
use crate::store::cluster::{ClaimsHeld, NodeSeen};

/// What a node's heartbeats say of it at `now`, with heartbeats due every
/// third of `lease_ms`.
fn state(n: &NodeSeen, now: i64, lease_ms: i64) -> &'static str {
    if n.stopped_at.is_some() {
        "stopped"
    } else if now - n.heartbeat_at <= lease_ms {
        "up"
    } else {
        // Dead, or cut off from the store: its claims lapse and other
        // nodes take its work over.
        "silent"
    }
}

/// `pecd cluster …`.
pub fn main(config: &Path, cmd: ClusterCommand) -> AdminResult {
    let cfg = load_config(config)?;
    let ClusterCommand::Status { json } = cmd;
    let lease_ms = cfg.cluster.lease().as_millis() as i64;
    let now = crate::cmd::now_unix_ms();
    let status = inspect_store(&cfg)?.cluster_status(now)?;
    // A node that holds claims but never beat (an older pecd) is shown too.
    let mut rows: Vec<(Option<&NodeSeen>, ClaimsHeld)> = status
        .nodes
        .iter()
        .map(|n| {
            let c = status.claims.iter().find(|c| c.node == n.node);
            (Some(n), c.cloned().unwrap_or_default())
        })
        .collect();
    for c in &status.claims {
        if !status.nodes.iter().any(|n| n.node == c.node) {
            rows.push((None, c.clone()));
        }
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    if rows.is_empty() {
        eprintln!("no node has run on this store yet");
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        for (n, c) in &rows {
            let v = serde_json::json!({
                "node": n.map_or(&c.node, |n| &n.node),
                "state": n.map_or("unknown", |n| state(n, now, lease_ms)),
                "started": n.map(|n| iso(n.started_at)),
                "heartbeat": n.map(|n| iso(n.heartbeat_at)),
                "heartbeat_age_seconds": n.map(|n| (now - n.heartbeat_at) / 1000),
                "stopped": n.and_then(|n| n.stopped_at).map(iso),
                "version": n.map(|n| &n.version),
                "claims": {
                    "jobs": c.jobs, "jobs_lapsed": c.jobs_lapsed,
                    "timers": c.timers, "timers_lapsed": c.timers_lapsed,
                },
            });
            writeln!(out, "{v}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut table: Vec<[String; 7]> = vec![[
        "NODE",
        "STATE",
        "LAST HEARTBEAT",
        "STARTED",
        "JOBS",
        "TIMERS",
        "VERSION",
    ]
    .map(String::from)];
    let claims = |live: i64, lapsed: i64| {
        if lapsed > 0 {
            format!("{live} (+{lapsed} lapsed)")
        } else {
            live.to_string()
        }
    };
    for (n, c) in &rows {
        table.push([
            n.map_or(&c.node, |n| &n.node).clone(),
            n.map_or("unknown", |n| state(n, now, lease_ms)).to_string(),
            n.map_or("-".into(), |n| format!("{} ago", age(n.heartbeat_at))),
            n.map_or("-".into(), |n| human(n.started_at)),
            claims(c.jobs, c.jobs_lapsed),
            claims(c.timers, c.timers_lapsed),
            n.map_or("-".into(), |n| n.version.clone()),
        ]);
    }
    write_table(
        &mut out,
        &table,
        [false, false, false, false, true, true, false],
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(heartbeat_at: i64, stopped_at: Option<i64>) -> NodeSeen {
        NodeSeen {
            node: "n1".into(),
            started_at: 0,
            heartbeat_at,
            stopped_at,
            version: "0".into(),
        }
    }

    #[test]
    fn a_node_is_up_until_a_whole_lease_passes_without_a_heartbeat() {
        assert_eq!(state(&node(1_000, None), 31_000, 30_000), "up");
        assert_eq!(state(&node(1_000, None), 31_001, 30_000), "silent");
        assert_eq!(state(&node(1_000, Some(1_000)), 2_000, 30_000), "stopped");
    }
}

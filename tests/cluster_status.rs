//! `pecd cluster status`: the nodes sharing a store, from their heartbeats
//! and claims, on the embedded default and on a PostgreSQL shared by two
//! nodes.

use std::time::{Duration, Instant};

use crate::common;

use common::pg::PgCluster;
use common::*;

/// The status lines of `p`'s store, by node name.
fn status(p: &TestProvider) -> Vec<serde_json::Value> {
    p.cli_json(&["cluster", "status", "--json"])
}

fn state_of(p: &TestProvider, node: &str) -> Option<String> {
    status(p)
        .into_iter()
        .find(|v| v["node"] == node)
        .map(|v| v["state"].as_str().unwrap().to_string())
}

/// Wait (up to `secs`) until `node` shows `want`.
fn wait_state(p: &TestProvider, node: &str, want: &str, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = state_of(p, node);
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(Instant::now() < end, "{node} is {got:?}, not {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_node_is_up_then_silent_after_kill_9_then_stopped_after_a_clean_stop() {
    let ca = TestCa::new();
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    spec.extra_config = "[cluster]\nnode = \"alpha-1\"\nlease = \"3s\"\n".into();
    let mut a = TestProvider::prepare(&ca, &spec);
    let out = a.cli(&["cluster", "status"], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node has run on this store yet"));

    a.start();
    let v = status(&a);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["node"], "alpha-1");
    assert_eq!(v[0]["state"], "up");
    assert_eq!(v[0]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v[0]["claims"]["jobs"], 0);
    // The heartbeat goes on (every third of the lease): still up after
    // more than a lease.
    std::thread::sleep(Duration::from_millis(3_500));
    assert_eq!(state_of(&a, "alpha-1").as_deref(), Some("up"));
    let table = String::from_utf8(a.cli(&["cluster", "status"], "").stdout).unwrap();
    assert!(table.starts_with("NODE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("alpha-1") && l.contains(" up ")),
        "{table}"
    );

    a.kill9();
    wait_state(&a, "alpha-1", "silent", 10);
    a.start();
    assert_eq!(state_of(&a, "alpha-1").as_deref(), Some("up"));
    a.stop();
    assert_eq!(state_of(&a, "alpha-1").as_deref(), Some("stopped"));
}

#[test]
fn two_nodes_on_one_postgresql_see_each_other() {
    let pg = PgCluster::start();
    let ca = TestCa::new();
    let node = |name: &str, users: &[&str]| {
        let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", users);
        spec.extra_config = format!(
            "[store]\nbackend = \"postgresql\"\nurl = \"{}\"\npool = 4\n\n[cluster]\nnode = \"{name}\"\nlease = \"3s\"\n",
            pg.url()
        );
        TestProvider::prepare(&ca, &spec)
    };
    let mut n1 = node("alpha-1", &["alice"]);
    let mut n2 = node("alpha-2", &[]);
    n1.start();
    n2.start();
    for from in [&n1, &n2] {
        let v = status(from);
        let names: Vec<_> = v.iter().map(|x| x["node"].as_str().unwrap()).collect();
        assert_eq!(names, ["alpha-1", "alpha-2"], "{v:?}");
        assert!(v.iter().all(|x| x["state"] == "up"), "{v:?}");
    }
    n2.stop();
    assert_eq!(state_of(&n1, "alpha-2").as_deref(), Some("stopped"));
    n1.kill9();
    wait_state(&n2, "alpha-1", "silent", 10);
}

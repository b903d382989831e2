//! `pecd queue list|show|retry|cancel` against a running daemon, with
//! messages stuck on a dead peer.
use crate::common;

use common::*;

const ALICE: &str = "alice@pec.alpha.test";
const BOB: &str = "bob@pec.beta.test";

fn relay_job(a: &TestProvider, id: &str) -> serde_json::Value {
    queue_jobs(a)
        .into_iter()
        .find(|j| j["identificativo"] == id && j["kind"] == "relay")
        .unwrap_or_else(|| panic!("no pending relay job for {id}"))
}

fn attempts(a: &TestProvider, id: &str) -> i64 {
    relay_job(a, id)["attempts"].as_i64().unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test]
async fn queue_cli_lists_shows_retries_and_cancels_while_the_daemon_runs() {
    let ca = TestCa::new();
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    // Long retries: only `queue retry` makes a new attempt within the test.
    spec.extra_config = "[timers]\npreavviso_after = \"1h\"\nexpire_after = \"2h\"\n\n[queue]\nretry_initial = \"10m\"\nretry_max = \"1h\"\n".into();
    let mut a = TestProvider::prepare(&ca, &spec);
    let b = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &["bob"]),
    );
    a.write_index(&format!("{}{}", a.index_entry(), b.index_entry()));
    route_dead(&a, "pec.beta.test");
    a.start();
    let mut ids = Vec::new();
    for s in ["Primo", "Secondo"] {
        let m = message(ALICE, &[BOB], &[], s, "", "x");
        ids.push(ident_of(
            &a.submit_raw(ALICE, &[BOB], &m, false).await.unwrap(),
        ));
    }
    a.wait_for("first attempts to fail", 15, || {
        ids.iter().all(|id| attempts(&a, id) >= 1).then_some(())
    });

    // list --json: every column of the contract.
    let j = relay_job(&a, &ids[0]);
    let job_id = j["id"].as_i64().unwrap();
    assert_eq!(j["recipients"], serde_json::json!([BOB]));
    assert_eq!(j["next_hop"], "pec.beta.test");
    assert_eq!(j["attempts"], 1);
    assert!(j["last_error"].as_str().unwrap().contains("refused"), "{j}");
    // ISO 8601 with the Italian offset, as every --json time.
    let next = j["next_attempt"].as_str().unwrap();
    assert!(
        next.len() == 25 && (next.ends_with("+01:00") || next.ends_with("+02:00")),
        "{j}"
    );
    assert!(j["age_seconds"].as_i64().unwrap() >= 0);
    // list (text): the same facts in a table.
    let text = ok(&a.cli(&["queue", "list"], ""));
    let line = text
        .lines()
        .find(|l| l.contains(&ids[0]) && l.contains("relay"))
        .unwrap_or_else(|| panic!("no line for {}: {text}", ids[0]));
    for want in [job_id.to_string().as_str(), BOB, "pec.beta.test", "refused"] {
        assert!(line.contains(want), "{want} missing in {line:?}");
    }
    assert!(text.lines().next().unwrap().contains("LAST ERROR"));
    assert!(line.contains('+'), "next attempt in the future: {line}");

    // show
    let shown = ok(&a.cli(&["queue", "show", &job_id.to_string()], ""));
    assert!(
        shown.contains(&ids[0]) && shown.contains("message bytes:"),
        "{shown}"
    );
    assert!(!a.cli(&["queue", "show", "999999"], "").status.success());

    // retry ID: only that job runs again, promptly.
    ok(&a.cli(&["queue", "retry", &job_id.to_string()], ""));
    a.wait_for("the retried job to make an attempt", 10, || {
        (attempts(&a, &ids[0]) >= 2).then_some(())
    });
    assert_eq!(attempts(&a, &ids[1]), 1, "the other job was left alone");
    // retry --all
    ok(&a.cli(&["queue", "retry", "--all"], ""));
    a.wait_for("every job to make an attempt", 10, || {
        (attempts(&a, &ids[0]) >= 3 && attempts(&a, &ids[1]) >= 2).then_some(())
    });
    assert!(
        !a.cli(&["queue", "retry"], "").status.success(),
        "needs ID or --all"
    );

    // cancel: the sender gets a signed non-delivery notice; the log says so.
    let out = ok(&a.cli(&["queue", "cancel", &job_id.to_string()], ""));
    assert!(out.contains("cancelled"), "{out}");
    let notice = a.wait_for("the non-delivery notice", 15, || {
        let m = receipts_for(&a, ALICE, "errore-consegna", &ids[0]);
        (!m.is_empty()).then_some(m)
    });
    assert_eq!(notice.len(), 1);
    openssl_verify(&notice[0], &a.ca_pem).expect("notice verifies with openssl");
    let d = daticert(&notice[0]);
    assert_eq!(d.consegna.as_deref(), Some(BOB));
    assert!(d.errore_esteso.is_some());
    assert_eq!(events_of(&a, "annullamento", Some(&ids[0])).len(), 1);
    assert!(
        queue_jobs(&a)
            .iter()
            .all(|j| j["identificativo"] != ids[0].as_str()),
        "the cancelled job left the queue"
    );
    assert!(
        !a.cli(&["queue", "cancel", &job_id.to_string()], "")
            .status
            .success(),
        "a job is cancelled once"
    );
    wait_quiet_but(&[&a], |j| j["identificativo"] == ids[1].as_str());
    assert_eq!(receipts_for(&a, ALICE, "errore-consegna", &ids[0]).len(), 1);
    // The other message is still queued.
    assert_eq!(relay_job(&a, &ids[1])["state"], "pending");
}

/// `pecd_queue_jobs{state="…"}` of the provider's `/metrics`.
fn gauge(p: &TestProvider, state: &str) -> i64 {
    let (status, text) = http_get(p.admin, "/metrics");
    assert_eq!(status, 200, "{text}");
    let key = format!("pecd_queue_jobs{{state=\"{state}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_job_that_failed_for_good_is_listed_counted_and_retried() {
    let ca = TestCa::new();
    // Alpha relays only along routes and has none to Beta yet: its relay
    // fails for good (5.4.4 no route).
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    spec.extra_config = "[dns]\nmx_lookups = false\n".into();
    let mut a = TestProvider::prepare(&ca, &spec);
    let mut b = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &["bob"]),
    );
    let index = format!("{}{}", a.index_entry(), b.index_entry());
    a.write_index(&index);
    b.write_index(&index);
    b.route_to(&a);
    a.start();
    b.start();
    let m = message(ALICE, &[BOB], &[], "Senza strada", "", "x");
    let id = ident_of(&a.submit_raw(ALICE, &[BOB], &m, false).await.unwrap());
    let failed = a.wait_for("the relay to fail for good", 30, || {
        let f = a.cli_json(&["queue", "list", "--failed", "--json"]);
        (!f.is_empty()).then_some(f)
    });
    assert_eq!(failed.len(), 1, "{failed:?}");
    let j = &failed[0];
    assert_eq!(j["identificativo"], id.as_str());
    assert_eq!(j["state"], "failed");
    assert_eq!(j["kind"], "relay");
    assert_eq!(j["attempts"], 1, "{j}");
    assert!(
        j["last_error"].as_str().unwrap().contains("no route"),
        "{j}"
    );
    // The metric and the list agree.
    assert_eq!(gauge(&a, "failed"), 1);

    // The plain list has no pending relay but says there is failed work.
    let out = a.cli(&["queue", "list"], "");
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&id),
        "a failed job is not pending work"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 job(s) failed") && err.contains("queue list --failed"),
        "{err}"
    );
    // The table of --failed: state, attempts, last error.
    let text = ok(&a.cli(&["queue", "list", "--failed"], ""));
    let head = text.lines().next().unwrap();
    for col in ["STATE", "TRY", "LAST ERROR"] {
        assert!(head.contains(col), "{head}");
    }
    let line = text
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{id} not in {text}"));
    assert!(
        line.contains("failed") && line.contains("no route"),
        "{line}"
    );
    // --all shows it too.
    let all = ok(&a.cli(&["queue", "list", "--all"], ""));
    assert!(
        all.lines().any(|l| l.contains(&id) && l.contains("failed")),
        "{all}"
    );
    let job_id = j["id"].to_string();
    let shown = ok(&a.cli(&["queue", "show", &job_id], ""));
    assert!(shown.contains("state:          failed"), "{shown}");

    // The route is added; `queue retry ID` puts the job back and the busta
    // reaches Beta.
    a.route_to(&b);
    let reloads = |p: &TestProvider| p.log().matches("configuration reloaded").count();
    let n = reloads(&a);
    a.sighup();
    a.wait_for("the reload", 20, || (reloads(&a) > n).then_some(()));
    let out = ok(&a.cli(&["queue", "retry", &job_id], ""));
    assert!(out.contains("1 job(s) due now"), "{out}");
    b.wait_for("the busta at Beta", 30, || {
        b.messages_with(BOB, "X-Trasporto", "posta-certificata")
            .into_iter()
            .find(|m| header(m, "Message-ID").as_deref() == Some(&format!("<{id}>")))
    });
    a.wait_for("the retried job to finish", 15, || {
        let all = a.cli_json(&["queue", "list", "--all", "--json"]);
        all.iter()
            .any(|x| x["id"] == j["id"] && x["state"] == "done")
            .then_some(())
    });
    assert!(a
        .cli_json(&["queue", "list", "--failed", "--json"])
        .is_empty());
    assert_eq!(gauge(&a, "failed"), 0);
    // A finished job is not retried.
    let again = a.cli(&["queue", "retry", &job_id], "");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is done"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

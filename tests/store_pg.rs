//! The store on PostgreSQL (`[store] backend = "postgresql"`, the first
//! step of issue 22): each test starts its own throwaway cluster
//! (`common::pg`), on a Unix socket in a temp folder. Mailboxes and
//! message bytes stay files under the node's data folder in this step.

use crate::common;

use common::pg::PgCluster;
use common::*;

#[test]
fn a_throwaway_cluster_starts_answers_and_goes() {
    let pg = PgCluster::start();
    let dir = pg.socket_dir();
    assert_eq!(pg.psql("pecd", "SELECT current_user"), "pecd");
    assert!(dir.join(format!(".s.PGSQL.{}", pg.port())).exists());
    let other = PgCluster::start();
    assert_ne!(other.socket_dir(), dir);
    drop(pg);
    assert!(!dir.exists(), "the cluster's folder is deleted");
    assert_eq!(other.psql("pecd", "SELECT 1"), "1");
}

fn store_section(url: &str) -> String {
    format!("[store]\nbackend = \"postgresql\"\nurl = \"{url}\"\npool = 4\n")
}

/// Alpha keeps its rows in PostgreSQL, Beta in SQLite; they know and
/// route to each other.
fn alpha_on_postgresql(ca: &TestCa, pg: &PgCluster) -> (TestProvider, TestProvider) {
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]);
    spec.extra_config = store_section(&pg.url());
    let a = TestProvider::prepare(ca, &spec);
    let b = TestProvider::prepare(
        ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &["bob"]),
    );
    let index = format!("{}{}", a.index_entry(), b.index_entry());
    a.write_index(&index);
    b.write_index(&index);
    a.route_to(&b);
    b.route_to(&a);
    (a, b)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Submit one PEC from alice@alpha to bob@beta and wait for the whole
/// cycle: accettazione, the busta in bob's mailbox, the avvenuta consegna
/// back in alice's. Gives the identificativo.
async fn cycle(a: &TestProvider, b: &TestProvider, subject: &str, n: usize) -> String {
    let msg = message(
        "alice@pec.alpha.test",
        &["bob@pec.beta.test"],
        &[],
        subject,
        "",
        "Ciao Bob",
    );
    let reply = a
        .submit_raw("alice@pec.alpha.test", &["bob@pec.beta.test"], &msg, false)
        .await
        .expect("submission accepted");
    let id = identificativo_in(&reply);
    let acc = a.wait_messages("alice@pec.alpha.test", "X-Ricevuta", "accettazione", n);
    let busta = b.wait_messages("bob@pec.beta.test", "X-Trasporto", "posta-certificata", n);
    let cons = a.wait_messages("alice@pec.alpha.test", "X-Ricevuta", "avvenuta-consegna", n);
    for m in [&acc[n - 1], &busta[n - 1], &cons[n - 1]] {
        openssl_verify(m, &a.ca_pem).expect("openssl smime -verify accepts it");
    }
    id
}

#[tokio::test]
async fn a_provider_on_postgresql_runs_the_pec_cycle_its_commands_and_a_restart() {
    let pg = PgCluster::start();
    let ca = TestCa::new();
    let (mut a, mut b) = alpha_on_postgresql(&ca, &pg);
    // `user add` (in prepare) created the schema and the user in PostgreSQL.
    assert_eq!(
        pg.psql("pecd", "SELECT address FROM users"),
        "alice@pec.alpha.test"
    );
    a.start();
    b.start();
    assert!(
        a.log().contains("not yet a cluster"),
        "serve warns that mailboxes and bytes are node-local:\n{}",
        a.log()
    );

    let id = cycle(&a, &b, "Prova PostgreSQL", 1).await;
    // The rows are in PostgreSQL, and only there.
    assert!(!a.path().join("data/pecd.sqlite3").exists());
    let logged = pg.psql(
        "pecd",
        &format!("SELECT event FROM log WHERE identificativo = '{id}' ORDER BY id"),
    );
    assert!(logged.lines().any(|l| l == "accettazione"), "{logged}");
    assert_eq!(
        pg.psql(
            "pecd",
            &format!("SELECT closed_by FROM timers WHERE identificativo = '{id}'")
        ),
        "ricevuta"
    );
    wait_quiet(&[&a, &b]);

    // The commands read and write the same database.
    let events = a.log_events(&["--id", &id]);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "ricevuta-avvenuta-consegna"),
        "{events:?}"
    );
    assert!(queue_jobs(&a).is_empty());
    let all = a.cli(&["queue", "list", "--all"], "");
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert!(stdout(&all).contains(&id), "{}", stdout(&all));
    a.add_user("carol@pec.alpha.test", PASSWORD);
    let users = a.cli(&["user", "list"], "");
    assert!(users.status.success());
    assert!(stdout(&users).contains("alice@pec.alpha.test"));
    assert!(stdout(&users).contains("carol@pec.alpha.test"));
    assert_eq!(pg.psql("pecd", "SELECT count(*) FROM users"), "2");
    let verify = a.cli(&["log", "verify"], "");
    assert!(
        verify.status.success(),
        "{}{}",
        stdout(&verify),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        stdout(&verify).contains("PEC log verified"),
        "{}",
        stdout(&verify)
    );
    let rows_before: i64 = pg.psql("pecd", "SELECT count(*) FROM log").parse().unwrap();

    // A restart against the same database keeps everything and goes on.
    // (Beta restarts too: its relay's pooled connections to the old Alpha
    // would only be replaced at its next retry.)
    a.stop();
    b.stop();
    a.start();
    b.start();
    assert_eq!(a.log_events(&["--id", &id]).len(), events.len());
    let id2 = cycle(&a, &b, "Dopo il riavvio", 2).await;
    assert_ne!(id, id2);
    wait_quiet(&[&a, &b]);
    let rows_after: i64 = pg.psql("pecd", "SELECT count(*) FROM log").parse().unwrap();
    assert!(rows_after > rows_before);
    // One chain across both runs, ids without a hole.
    assert_eq!(
        pg.psql("pecd", "SELECT max(id) - min(id) + 1 = count(*) FROM log"),
        "t"
    );
    let verify = a.cli(&["log", "verify"], "");
    assert!(verify.status.success(), "{}", stdout(&verify));
    let carol = a.cli(&["user", "list"], "");
    assert!(stdout(&carol).contains("carol@pec.alpha.test"));
    // The log stays append-only in the database itself.
    let e = pg
        .try_psql("pecd", "UPDATE log SET subject = 'x'")
        .unwrap_err();
    assert!(e.contains("append-only"), "{e}");
    a.stop();
    b.stop();
}

#[test]
fn check_config_and_serve_refuse_a_store_they_cannot_reach_with_the_drivers_words() {
    let pg = PgCluster::start();
    let ca = TestCa::new();
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &[]);
    spec.extra_config = store_section(&pg.url());
    let mut a = TestProvider::prepare(&ca, &spec);
    let ok = a.cli(&["check-config"], "");
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(
        stdout(&ok).contains("store: the PostgreSQL database of store.url answers"),
        "{}",
        stdout(&ok)
    );
    assert!(stdout(&ok).contains("not yet a cluster"), "{}", stdout(&ok));

    // A database that does not exist: the server's own words.
    let text = std::fs::read_to_string(a.config_path()).unwrap();
    let missing = text.replace(&pg.url(), &pg.url_of("nosuchdb"));
    std::fs::write(a.config_path(), &missing).unwrap();
    let out = a.cli(&["check-config"], "");
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("database \"nosuchdb\" does not exist"),
        "{}",
        stdout(&out)
    );
    let serve = a.cli(&["serve"], "");
    assert!(!serve.status.success());
    let said = String::from_utf8_lossy(&serve.stderr);
    assert!(
        said.contains("nosuchdb") && said.contains("does not exist"),
        "{said}"
    );

    // No server on the socket at all.
    let dead = text.replace(
        &pg.url(),
        &format!("postgresql://pecd@/pecd?host={}", a.path().display()),
    );
    std::fs::write(a.config_path(), &dead).unwrap();
    let out = a.cli(&["check-config"], "");
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("store: the PostgreSQL database of store.url: ")
            && stdout(&out).contains("No such file or directory"),
        "{}",
        stdout(&out)
    );
    let out = a.cli(&["queue", "list"], "");
    assert!(!out.status.success());

    // A password file others can read is refused before any connection.
    use std::os::unix::fs::PermissionsExt;
    let pw = a.path().join("pg-password");
    std::fs::write(&pw, "secret\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        a.config_path(),
        text.replace("pool = 4", "pool = 4\npassword_file = \"pg-password\""),
    )
    .unwrap();
    let out = a.cli(&["check-config"], "");
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("store.password_file") && stdout(&out).contains("chmod 600"),
        "{}",
        stdout(&out)
    );
    // Made private, it is read (trust authentication ignores it).
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    a.start();
    a.stop();
}

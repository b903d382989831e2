//! `/api/v1` for integrators (issue 25, first part) against real `pecd`
//! processes over HTTPS: API tokens made by the owner (session routes) and
//! by the operator (`pecd token`), `Authorization: Bearer` with its scopes,
//! revocation at the next request, the per-token rate, JSON sends with an
//! `Idempotency-Key` (one PEC however often it is retried), and every error
//! as `application/problem+json`.
use crate::common;

use std::time::Duration;

use common::web::{enc, Http, Resp};
use common::*;

fn client(p: &TestProvider) -> Http {
    Http::new(p.web, &p.ca_pem)
}

/// A request with `Authorization: Bearer token` (no cookie, no CSRF token).
fn bearer(
    c: &Http,
    token: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let auth = format!("Bearer {token}");
    let mut h = vec![("Authorization", auth.as_str())];
    h.extend_from_slice(extra);
    c.raw(method, path, &h, body)
}

fn send_json(c: &Http, token: &str, key: Option<&str>, v: &serde_json::Value) -> Resp {
    let mut h = vec![("Content-Type", "application/json")];
    if let Some(k) = key {
        h.push(("Idempotency-Key", k));
    }
    bearer(
        c,
        token,
        "POST",
        "/api/v1/messages",
        &h,
        v.to_string().as_bytes(),
    )
}

/// An RFC 9457 problem of `status`: its media type and members.
fn problem(r: &Resp, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.text()
    );
    let j = r.json();
    assert_eq!(j["status"], status, "{j}");
    for k in ["type", "title", "detail"] {
        assert!(j[k].as_str().is_some_and(|s| !s.is_empty()), "{k}: {j}");
    }
    j
}

fn make_token(c: &Http, name: &str, scopes: &[&str]) -> (String, String) {
    let r = c.post_json(
        "/api/v1/account/tokens",
        &serde_json::json!({"name": name, "scopes": scopes}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    (
        j["id"].as_str().unwrap().to_string(),
        j["token"].as_str().unwrap().to_string(),
    )
}

fn pec_count(p: &TestProvider, user: &str) -> usize {
    p.messages_with(user, "X-Trasporto", "posta-certificata")
        .len()
}

#[test]
fn a_token_sends_polls_to_consegna_once_per_idempotency_key_and_dies_when_revoked() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob"]);
    a.start();
    b.start();
    let alice = format!("alice@{}", a.domain);
    let bob = format!("bob@{}", b.domain);
    let mut owner = client(&a);
    owner.login(&alice, PASSWORD);
    let (send_id, send) = make_token(&owner, "gestionale", &["send", "read"]);
    let (_, read) = make_token(&owner, "protocollo", &["read"]);
    assert!(send.starts_with("pecd_") && send.len() > 60, "{send}");
    let c = client(&a);

    // Listed with their scopes, never with the token itself.
    let list = owner.get("/api/v1/account/tokens");
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(!list.text().contains(&send), "{}", list.text());
    let tokens = list.json()["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0]["name"], "gestionale");
    assert_eq!(tokens[0]["scopes"], serde_json::json!(["read", "send"]));
    assert!(tokens[0]["created"].as_str().unwrap().contains('T'));
    assert!(tokens[0]["last_used"].is_null());

    // A JSON send with a key: no cookie, no CSRF token.
    let msg = serde_json::json!({
        "to": [bob], "subject": "Diffida via API", "body": "Testo.\n",
        "attachments": [{"filename": "atto.txt", "content_type": "text/plain",
                         "content_base64": "YXR0byBmaXJtYXRv"}],
    });
    let first = send_json(&c, &send, Some("pratica-42"), &msg);
    assert_eq!(first.status, 201, "{}", first.text());
    let answer = first.json();
    let msgid = answer["msgid"].as_str().unwrap().to_string();
    // The retry gets the same answer, says it is one, and sends nothing.
    let again = send_json(&c, &send, Some("pratica-42"), &msg);
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.json(), answer);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // The same key with another body is refused.
    let mut other = msg.clone();
    other["subject"] = "Altro oggetto".into();
    let j = problem(&send_json(&c, &send, Some("pratica-42"), &other), 422);
    assert!(j["type"].as_str().unwrap().contains("idempotency"), "{j}");

    // Polled to consegnato with the token.
    let path = format!("/api/v1/sent/{}", enc(&msgid));
    a.wait_for("consegnato", 60, || {
        let s = bearer(&c, &send, "GET", &path, &[], b"");
        assert_eq!(s.status, 200, "{}", s.text());
        let j = s.json();
        let done = j["recipients"][0]["state"] == "consegnato";
        if !done {
            // A client polls at a pace, well under the rate.
            std::thread::sleep(Duration::from_millis(300));
        }
        done.then_some(j)
    });

    // Two requests with one new key at the same moment: one PEC.
    let race = serde_json::json!({"to": bob, "subject": "Corsa", "body": "x"});
    let go = std::sync::Barrier::new(2);
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    go.wait();
                    send_json(&c, &send, Some("corsa-1"), &race)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let fresh = answers
        .iter()
        .filter(|r| r.status == 201 && r.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(fresh, 1, "{answers:?}");
    for r in &answers {
        // The other waited for nothing: a replay of the answer, or 409.
        assert!(
            r.status == 201 || (r.status == 409 && r.header("retry-after").is_some()),
            "{r:?}"
        );
    }

    // Exactly one PEC per key reached bob, and one accettazione each in the log.
    b.wait_messages(&bob, "X-Trasporto", "posta-certificata", 2);
    wait_quiet(&[&a, &b]);
    assert_eq!(pec_count(&b, &bob), 2);
    let subjects: Vec<String> = b
        .messages_with(&bob, "X-Trasporto", "posta-certificata")
        .iter()
        .map(|m| header(m, "Subject").unwrap())
        .collect();
    assert_eq!(
        subjects
            .iter()
            .filter(|s| s.contains("Diffida via API"))
            .count(),
        1,
        "{subjects:?}"
    );
    assert_eq!(events_of(&a, "accettazione", None).len(), 2);

    // read: reads, but does not send (403, a problem naming the scope).
    let f = bearer(&c, &read, "GET", "/api/v1/folders", &[], b"");
    assert_eq!(f.status, 200, "{}", f.text());
    let j = problem(&send_json(&c, &read, None, &race), 403);
    assert!(j["type"].as_str().unwrap().contains("scope"), "{j}");
    assert!(j["detail"].as_str().unwrap().contains("send"), "{j}");
    // Account and session routes take no token, whatever its scopes.
    let one = format!("/api/v1/account/tokens/{send_id}");
    for (m, p) in [
        ("GET", "/api/v1/account/tokens"),
        ("POST", "/api/v1/account/tokens"),
        ("DELETE", one.as_str()),
        ("GET", "/api/v1/session"),
        ("DELETE", "/api/v1/session"),
    ] {
        let r = bearer(
            &c,
            &send,
            m,
            p,
            &[("Content-Type", "application/json")],
            b"{\"name\":\"x\",\"scopes\":[\"send\"]}",
        );
        problem(&r, 403);
    }
    // A bad token: 401 with the Bearer challenge.
    let r = bearer(&c, "pecd_0000", "GET", "/api/v1/folders", &[], b"");
    problem(&r, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer") && v.contains("invalid_token")),
        "{r:?}"
    );

    // The last use is shown; revocation holds from the very next request.
    let list = owner.get("/api/v1/account/tokens").json();
    let used = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == send_id.as_str())
        .unwrap()
        .clone();
    assert!(used["last_used"].as_str().is_some(), "{used}");
    assert_eq!(
        owner
            .delete(&format!("/api/v1/account/tokens/{send_id}"))
            .status,
        204
    );
    problem(&bearer(&c, &send, "GET", &path, &[], b""), 401);
    problem(
        &owner.delete(&format!("/api/v1/account/tokens/{send_id}")),
        404,
    );
    // The kept answer does not outlive the token's right to send.
    problem(&send_json(&c, &send, Some("pratica-42"), &msg), 401);
}

#[test]
fn operator_tokens_rate_limit_and_problems() {
    let ca = TestCa::new();
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]);
    spec.extra_config =
        "[limits]\nmax_recipients = 50\n\n[api]\nrate = \"1/m\"\nburst = 3\n".to_string();
    let mut p = TestProvider::prepare(&ca, &spec);
    p.start();
    let (alice, bob) = ("alice@pec.alpha.test", "bob@pec.alpha.test");
    let c = client(&p);
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // The operator makes tokens: printed once, alone on stdout.
    let o = p.cli(
        &["token", "create", alice, "--name", "ci", "--scope", "send"],
        "",
    );
    assert!(o.status.success(), "{}", text(&o));
    let ci = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(ci.starts_with("pecd_") && !ci.contains(' '), "{ci}");
    let o = p.cli(&["token", "create", alice, "--name", "reader"], "");
    assert!(o.status.success(), "{}", text(&o));
    let reader = String::from_utf8_lossy(&o.stdout).trim().to_string();
    for bad in [
        vec!["token", "create", "nobody@pec.alpha.test", "--name", "x"],
        vec!["token", "create", alice, "--name", "x", "--scope", "write"],
        vec!["token", "create", alice, "--name", " "],
        vec!["token", "revoke", "0000000000000000"],
    ] {
        let o = p.cli(&bad, "");
        assert!(!o.status.success(), "{bad:?}: {}", text(&o));
    }
    let o = p.cli(&["token", "list", alice], "");
    let listed = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(!listed.contains(&ci), "the token is never shown again");
    let ci_line = listed.lines().find(|l| l.contains("\"ci\"")).unwrap();
    assert!(
        ci_line.contains("scopes send") && ci_line.contains("last used never"),
        "{ci_line}"
    );
    let ci_id = ci_line.split_whitespace().next().unwrap().to_string();
    assert!(
        listed.contains("scopes read,send"),
        "default scopes: {listed}"
    );
    assert!(String::from_utf8_lossy(&p.cli(&["token", "list", bob], "").stdout).is_empty());

    // A refused submission: its SMTP code and the Italian reason.
    let many: Vec<String> = (0..51).map(|i| format!("u{i}@pec.alpha.test")).collect();
    let r = send_json(
        &c,
        &ci,
        None,
        &serde_json::json!({"to": many, "subject": "s", "body": "b"}),
    );
    let j = problem(&r, 422);
    assert_eq!(j["type"], "urn:pecd:problem:submission-refused");
    assert!(j["smtp_code"].as_str().unwrap().starts_with("55"), "{j}");
    assert!(j["reason"].as_str().is_some_and(|s| !s.is_empty()), "{j}");
    assert_eq!(j["detail"], j["reason"]);
    let j = problem(
        &send_json(
            &c,
            &ci,
            None,
            &serde_json::json!({"to": bob, "bcc": [alice]}),
        ),
        422,
    );
    assert_eq!(j["smtp_code"], "550 5.7.1");
    // A broken body, an unknown route, a wrong method: problems too.
    let r = bearer(
        &c,
        &reader,
        "POST",
        "/api/v1/messages",
        &[("Content-Type", "application/json")],
        b"{\"to\":",
    );
    problem(&r, 400);
    problem(
        &bearer(&c, &reader, "GET", "/api/v1/nowhere", &[], b""),
        404,
    );
    problem(&c.get("/api/v1/folders"), 401);

    // The operator's revocation holds at the next request: `ci` made two.
    let o = p.cli(&["token", "revoke", &ci_id], "");
    assert!(o.status.success(), "{}", text(&o));
    problem(
        &send_json(&c, &ci, None, &serde_json::json!({"to": bob, "body": "b"})),
        401,
    );
    assert_eq!(pec_count(&p, bob), 0);

    // `reader` made three requests (400, 404 … ): its burst of 3 is spent
    // with one more, then 429 with Retry-After (the rate is 1 a minute).
    let mut limited = None;
    for _ in 0..3 {
        let r = bearer(&c, &reader, "GET", "/api/v1/folders", &[], b"");
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = limited.expect("429 within the burst");
    let j = problem(&r, 429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(j["retry_after"], wait);
    // The rate is per token: the owner's session is not held to it.
    let mut owner = client(&p);
    owner.login(alice, PASSWORD);
    assert_eq!(owner.get("/api/v1/folders").status, 200);

    // A password change keeps a user's tokens (integrations go on); the
    // user's removal takes them.
    let o = p.cli(
        &["token", "create", bob, "--name", "b", "--scope", "read"],
        "",
    );
    assert!(o.status.success(), "{}", text(&o));
    let b = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let o = p.cli(
        &["user", "passwd", bob, "--password-stdin"],
        "another password 42\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        bearer(&c, &b, "GET", "/api/v1/folders", &[], b"").status,
        200
    );
    let o = p.cli(&["user", "del", bob], "");
    assert!(o.status.success(), "{}", text(&o));
    problem(&bearer(&c, &b, "GET", "/api/v1/folders", &[], b""), 401);
    assert!(
        String::from_utf8_lossy(&p.cli(&["token", "list"], "").stdout)
            .lines()
            .all(|l| !l.contains(bob))
    );
}

/// The `(METHOD, path)` of every `/api/v1` route the router declares, read
/// from the sources of `src/server/web/api/` (`.route("/api/v1/…",
/// get(…).post(…))`).
fn router_routes() -> std::collections::BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/web/api");
    let mut out = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let src = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for piece in src.split(".route(").skip(1) {
            let Some(path) = piece
                .trim_start()
                .strip_prefix('"')
                .and_then(|p| p.split('"').next())
            else {
                continue;
            };
            if !path.starts_with("/api/v1") {
                continue;
            }
            // The method router: up to the end of this `.route(…)` call.
            let mut depth = 1;
            let call: String = piece
                .chars()
                .take_while(|c| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth > 0
                })
                .collect();
            for m in ["get", "post", "put", "patch", "delete"] {
                let called = call.match_indices(&format!("{m}(")).any(|(i, _)| {
                    i == 0
                        || !call.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && call.as_bytes()[i - 1] != b'_'
                });
                if called {
                    out.insert((m.to_uppercase(), path.to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn the_openapi_document_is_valid_and_names_every_route() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    p.start();
    // Public: a client reads it before it has a token.
    let r = client(&p).get("/api/v1/openapi.json");
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    let file = p.path().join("openapi.json");
    std::fs::write(&file, &r.body).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; \
             validate(json.load(open(sys.argv[1]))); print('valid')",
        ])
        .arg(&file)
        .output()
        .expect("python3 with openapi-spec-validator (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(doc["openapi"], "3.1.0");

    let routes = router_routes();
    assert!(
        routes.len() > 20,
        "the route reader finds the routes: {routes:?}"
    );
    assert!(routes.contains(&("PATCH".into(), "/api/v1/folders/{folder}".into())));
    let documented: std::collections::BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let missing: Vec<_> = routes.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&routes).collect();
    assert!(
        extra.is_empty(),
        "openapi.json names routes the router has not: {extra:?}"
    );
    // Security as the server checks it: send needs `send`, account routes no token.
    assert_eq!(
        doc["paths"]["/api/v1/messages"]["post"]["security"][0]["bearer"],
        serde_json::json!(["send"])
    );
    assert!(!doc["paths"]["/api/v1/account/tokens"]["post"]["security"]
        .to_string()
        .contains("bearer"));
}

//! Issue 24, account self-service ("Impostazioni"), against real `pecd`
//! processes over HTTPS, IMAP, POP3 and SMTP: the password change (policy,
//! sessions), the second factor enrolled and turned off from the webmail
//! with its one-time recovery codes, app passwords (the only passwords the
//! mail protocols take once the second factor is on; revoked at once;
//! strictly per user), and the account routes' CSRF and session-only
//! refusals; the notice of each new PEC at an ordinary address (through
//! the relay to a plain SMTP sink, at most one a minute). The password policy of `pecd user add|passwd` is tested in
//! `auth::weak_passwords_are_refused_by_user_add_and_passwd_with_the_reason`.
use crate::common;
use common::totp::{base32_decode, code_now, wrong_code};

use common::web::Http;
use common::*;

const ALPHA: &str = "pec.alpha.test";
/// Small throttle delays: the tests fail logins on purpose.
const FAST_THROTTLE: &str = "[limits]\nlogin_delay = \"20ms\"\nlogin_max_delay = \"100ms\"\n";

fn alpha(ca: &TestCa, users: &[&str]) -> TestProvider {
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", ALPHA, users);
    spec.extra_config = FAST_THROTTLE.to_string();
    let mut p = TestProvider::prepare(ca, &spec);
    p.start();
    p
}

fn logged_in(p: &TestProvider, user: &str, password: &str) -> Http {
    let mut c = Http::new(p.web, &p.ca_pem);
    c.login(user, password);
    c
}

/// A JSON request with the session's cookie and CSRF token.
fn json(c: &Http, method: &str, path: &str, v: &serde_json::Value) -> common::web::Resp {
    c.send(
        method,
        path,
        Some("application/json"),
        v.to_string().as_bytes(),
        true,
    )
}

fn imap_login(p: &TestProvider, user: &str, password: &str) -> bool {
    let r = imap(p, p.imaps, "tls", user, password, "login\n");
    step(&r, 1)["typ"] == "OK"
}

fn pop3_login(p: &TestProvider, user: &str, password: &str) -> bool {
    let r = pop3(
        p,
        p.pop3s,
        "tls",
        &format!("user {user}\npass '{password}'\nquit\n"),
    );
    step(&r, 2)["ok"] == true
}

fn smtp_login(p: &TestProvider, user: &str, password: &str) -> bool {
    let mut s = SecureSmtp::connect(p.submissions, &p.ca_pem, true);
    let (code, text) = s.ehlo_auth(user, password);
    assert!(code == 235 || code == 535, "{code} {text}");
    code == 235
}

/// IMAP, POP3 and SMTP AUTH: whether each let `user` in with `password`.
fn mail_logins(p: &TestProvider, user: &str, password: &str) -> [bool; 3] {
    [
        imap_login(p, user, password),
        pop3_login(p, user, password),
        smtp_login(p, user, password),
    ]
}

#[test]
fn password_change_needs_the_current_one_refuses_weak_ones_and_keeps_only_this_session() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"]);
    let alice = format!("alice@{ALPHA}");
    let c = logged_in(&p, &alice, PASSWORD);
    let other = logged_in(&p, &alice, PASSWORD);
    let change = |current: &str, new: &str| {
        json(
            &c,
            "POST",
            "/api/v1/account/password",
            &serde_json::json!({"current": current, "new": new}),
        )
    };
    let r = change("not the password", "a brand new password");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("current"));
    for (weak, why) in [
        ("x", "at least 10"),
        ("short one", "too short"),
        ("Password123", "too common"),
    ] {
        let r = change(PASSWORD, weak);
        assert_eq!(r.status, 422, "{weak:?}: {}", r.text());
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.contains(why), "{weak:?}: {e}");
    }
    // Nothing changed so far: both sessions live, the old password works.
    assert_eq!(other.get("/api/v1/session").status, 200);
    assert!(imap_login(&p, &alice, PASSWORD));

    let new = "a brand new password";
    let r = change(PASSWORD, new);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(c.get("/api/v1/folders").status, 200, "this session goes on");
    assert_eq!(
        other.get("/api/v1/folders").status,
        401,
        "the other session is ended"
    );
    let mut fresh = Http::new(p.web, &p.ca_pem);
    assert_eq!(fresh.login_with(&alice, PASSWORD, None).status, 401);
    assert_eq!(fresh.login_with(&alice, new, None).status, 200);
    assert!(!imap_login(&p, &alice, PASSWORD));
    assert!(imap_login(&p, &alice, new));
}

#[test]
fn second_factor_enrolled_from_the_webmail_with_recovery_codes_that_work_once() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"]);
    let alice = format!("alice@{ALPHA}");
    let c = logged_in(&p, &alice, PASSWORD);
    let other = logged_in(&p, &alice, PASSWORD);

    // Confirming before enrolling: nothing to confirm.
    let r = c.post_json(
        "/api/v1/account/totp/confirm",
        &serde_json::json!({"code": "123456"}),
    );
    assert_eq!(r.status, 409, "{}", r.text());

    let r = c.post_json("/api/v1/account/totp", &serde_json::json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let uri = j["otpauth_uri"].as_str().unwrap();
    let secret_b32 = j["secret"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret_b32}&")),
        "{uri}"
    );
    assert!(j["qr"]
        .as_str()
        .unwrap()
        .starts_with("data:image/svg+xml;base64,"));
    let secret = base32_decode(secret_b32);
    assert_eq!(secret.len(), 20);
    // Pending: the login does not ask for a code yet.
    assert_eq!(
        Http::new(p.web, &p.ca_pem)
            .login_with(&alice, PASSWORD, None)
            .status,
        200
    );
    let r = c.post_json(
        "/api/v1/account/totp/confirm",
        &serde_json::json!({"code": wrong_code(&secret)}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = c.post_json(
        "/api/v1/account/totp/confirm",
        &serde_json::json!({"code": code_now(&secret)}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let recovery: Vec<String> = r.json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(recovery.len(), 10);
    let mut distinct = recovery.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    // Only hashes are kept.
    let db = std::fs::read(p.path().join("data/pecd.sqlite3")).unwrap();
    let plain = recovery[0].replace('-', "");
    assert!(!db.windows(plain.len()).any(|w| w == plain.as_bytes()));

    assert_eq!(c.get("/api/v1/folders").status, 200, "this session goes on");
    assert_eq!(other.get("/api/v1/folders").status, 401, "others end");
    // On: a second enrolment is refused until it is turned off.
    assert_eq!(
        c.post_json("/api/v1/account/totp", &serde_json::json!({}))
            .status,
        409
    );

    // The login now needs the second factor; a recovery code stands in
    // for a TOTP code once.
    let mut fresh = Http::new(p.web, &p.ca_pem);
    let r = fresh.login_with(&alice, PASSWORD, None);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["totp_required"], true);
    let r = fresh.login_with(&alice, PASSWORD, Some(&recovery[0].to_uppercase()));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = Http::new(p.web, &p.ca_pem).login_with(&alice, PASSWORD, Some(&recovery[0]));
    assert_eq!(r.status, 401, "a recovery code works once: {}", r.text());
    assert!(p.log().contains("recovery code used"), "{}", p.log());

    // Turning it off takes a code: a wrong one is refused, a recovery code
    // does it (the TOTP code of now was used by the confirmation).
    let off = |code: &str| {
        json(
            &c,
            "DELETE",
            "/api/v1/account/totp",
            &serde_json::json!({"code": code}),
        )
    };
    let r = off(&wrong_code(&secret));
    assert_eq!(r.status, 403, "{}", r.text());
    let r = off(&recovery[1]);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(c.get("/api/v1/folders").status, 200);
    assert_eq!(
        Http::new(p.web, &p.ca_pem)
            .login_with(&alice, PASSWORD, None)
            .status,
        200,
        "no code needed any more"
    );
    let r = off(&recovery[2]);
    assert_eq!(r.status, 409, "{}", r.text());
    // Its recovery codes went with it.
    let n: i64 = p
        .db()
        .query_row("SELECT count(*) FROM totp_recovery", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn with_the_second_factor_mail_protocols_take_app_passwords_only_revoked_at_once() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice", "bob"]);
    let alice = format!("alice@{ALPHA}");
    let bob = format!("bob@{ALPHA}");
    let c = logged_in(&p, &alice, PASSWORD);
    let b = logged_in(&p, &bob, PASSWORD);

    // An app password made before the second factor is on (mail clients
    // can be moved to it first).
    let r = c.post_json(
        "/api/v1/account/app-passwords",
        &serde_json::json!({"label": "  Thunderbird  "}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    let id = j["id"].as_str().unwrap().to_string();
    let app = j["password"].as_str().unwrap().to_string();
    assert_eq!(j["label"], "Thunderbird");
    assert_eq!(app.len(), 20);
    assert_eq!(
        c.post_json(
            "/api/v1/account/app-passwords",
            &serde_json::json!({"label": " "})
        )
        .status,
        422
    );
    assert_eq!(
        mail_logins(&p, &alice, PASSWORD),
        [true; 3],
        "no second factor: the account password works"
    );

    let out = p.cli(&["user", "totp", "enable", &alice], "");
    assert!(out.status.success());
    assert_eq!(
        mail_logins(&p, &alice, PASSWORD),
        [false; 3],
        "IMAP, POP3, SMTP with the account password"
    );
    assert!(
        p.log().contains("mail clients need an app password"),
        "{}",
        p.log()
    );
    assert_eq!(mail_logins(&p, &alice, &app), [true; 3], "with the app one");
    // Bob has no second factor: his password still works, and alice's app
    // password is alice's only.
    assert!(imap_login(&p, &bob, PASSWORD));
    assert!(!imap_login(&p, &bob, &app));

    // Listed with its last use, for its owner only.
    // `user totp enable` ended alice's sessions; the web login takes the
    // account password (and the code) as before.
    let r = Http::new(p.web, &p.ca_pem).login_with(&alice, &app, None);
    assert_eq!(r.status, 401, "an app password is no web login");
    let secret = base32_decode(
        String::from_utf8_lossy(&out.stdout)
            .split("secret=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap(),
    );
    let mut c = Http::new(p.web, &p.ca_pem);
    let r = c.login_with(&alice, PASSWORD, Some(&code_now(&secret)));
    assert_eq!(r.status, 200, "{}", r.text());
    let list = |h: &Http| {
        let r = h.get("/api/v1/account/app-passwords");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["app_passwords"].as_array().unwrap().clone()
    };
    let l = list(&c);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["id"], id.as_str());
    assert_eq!(l[0]["label"], "Thunderbird");
    assert!(l[0].get("password").is_none());
    assert!(l[0]["created"].as_str().unwrap().contains('T'), "{}", l[0]);
    assert!(l[0]["last_used"].is_string(), "{}", l[0]);
    assert!(list(&b).is_empty());

    // Another user's id: 404, and it still works.
    let r = b.delete(&format!("/api/v1/account/app-passwords/{id}"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(imap_login(&p, &alice, &app));

    let r = c.delete(&format!("/api/v1/account/app-passwords/{id}"));
    assert_eq!(r.status, 204, "{}", r.text());
    let failures = || -> Vec<f64> {
        let m = http_get(p.admin, "/metrics").1;
        ["imap", "pop3", "smtp"]
            .iter()
            .map(|proto| {
                let key = format!("pecd_login_failures_total{{protocol=\"{proto}\"}} ");
                m.lines()
                    .find_map(|l| l.strip_prefix(&key)?.trim().parse().ok())
                    .unwrap_or(0.0)
            })
            .collect()
    };
    let before = failures();
    assert_eq!(
        mail_logins(&p, &alice, &app),
        [false; 3],
        "revoked: IMAP, POP3, SMTP"
    );
    // A wrong app password is a failed login for the throttle and the
    // metrics, on each protocol.
    let after = failures();
    for (i, proto) in ["imap", "pop3", "smtp"].iter().enumerate() {
        assert_eq!(after[i], before[i] + 1.0, "{proto}: {before:?} {after:?}");
    }
    assert_eq!(
        c.delete(&format!("/api/v1/account/app-passwords/{id}"))
            .status,
        404
    );
    assert!(list(&c).is_empty());
}

#[test]
fn account_routes_refuse_a_request_without_the_csrf_token_or_with_other_credentials() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"]);
    let alice = format!("alice@{ALPHA}");
    let c = logged_in(&p, &alice, PASSWORD);
    let made = c.post_json(
        "/api/v1/account/app-passwords",
        &serde_json::json!({"label": "phone"}),
    );
    assert_eq!(made.status, 201);
    let id = made.json()["id"].as_str().unwrap().to_string();
    let revoke = format!("/api/v1/account/app-passwords/{id}");
    let routes: [(&str, &str, serde_json::Value); 6] = [
        (
            "POST",
            "/api/v1/account/password",
            serde_json::json!({"current": PASSWORD, "new": "a brand new password"}),
        ),
        ("POST", "/api/v1/account/totp", serde_json::json!({})),
        (
            "POST",
            "/api/v1/account/totp/confirm",
            serde_json::json!({"code": "123456"}),
        ),
        (
            "DELETE",
            "/api/v1/account/totp",
            serde_json::json!({"code": "123456"}),
        ),
        (
            "POST",
            "/api/v1/account/app-passwords",
            serde_json::json!({"label": "x"}),
        ),
        ("DELETE", &revoke, serde_json::json!({})),
    ];
    let cookie = format!("pecd_session={}", c.cookie.as_deref().unwrap());
    let csrf = c.csrf.clone().unwrap();
    for (method, path, body) in &routes {
        let body = body.to_string();
        // The cookie without the CSRF token.
        let r = c.send(
            method,
            path,
            Some("application/json"),
            body.as_bytes(),
            false,
        );
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        assert!(r.text().contains("CSRF"), "{method} {path}: {}", r.text());
        // A wrong token.
        let r = c.raw(
            method,
            path,
            &[
                ("Cookie", &cookie),
                ("X-CSRF-Token", "0000"),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        // The session and its token, but with another credential besides:
        // these routes are for web sessions only.
        let r = c.raw(
            method,
            path,
            &[
                ("Cookie", &cookie),
                ("X-CSRF-Token", &csrf),
                ("Authorization", "Bearer pecd_something"),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
    }
    let r = c.raw(
        "GET",
        "/api/v1/account/app-passwords",
        &[("Authorization", "Bearer pecd_something")],
        b"",
    );
    assert!(r.status == 401 || r.status == 403, "{}", r.text());
    // Nothing was done.
    assert_eq!(
        c.get("/api/v1/account/app-passwords").json()["app_passwords"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let pending: i64 = p
        .db()
        .query_row("SELECT count(*) FROM totp_pending", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pending, 0);
    assert_eq!(
        Http::new(p.web, &p.ca_pem)
            .login_with(&alice, PASSWORD, None)
            .status,
        200,
        "password unchanged"
    );
}

/// The settings page in headless Chromium (`tests/settings_browser.py`):
/// reached from the menu, every control labelled and nothing overflowing
/// at desktop and phone size; an app password made and shown once, the
/// second factor enrolled from the QR code's key with its recovery codes
/// shown once, a weak password refused in Italian and a good one taken, the
/// app password revoked. What the page did is then checked over the
/// protocols. `PECD_SCREENSHOTS=docs` copies the screenshots to docs/.
#[test]
fn settings_page_in_a_browser_enrols_the_second_factor_and_manages_app_passwords() {
    let python = crate::web_browser::selenium_python();
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"]);
    let alice = format!("alice@{ALPHA}");
    let work = tempfile::tempdir().unwrap();
    let shots = work.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let new_password = "una password nuova e lunga";
    let cfg = serde_json::json!({
        "base": format!("https://127.0.0.1:{}", p.web),
        "user": alice, "password": PASSWORD, "new_password": new_password,
        "shots": shots,
    });
    let cfg_path = work.path().join("cfg.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/settings_browser.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&cfg_path)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let recs: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ctx = format!(
        "{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = |name: &str| -> serde_json::Value {
        let r = recs
            .iter()
            .find(|r| r["check"] == name)
            .unwrap_or_else(|| panic!("no check {name}:\n{ctx}"));
        assert_eq!(r["ok"], true, "{name}: {r:#}\n{ctx}");
        r.clone()
    };
    for name in [
        "menu_link",
        "settings_page",
        "app_password_listed",
        "qr_shown",
        "settings-enrol_desktop",
        "settings-enrol_phone",
        "totp_on",
        "weak_password_said",
        "password_changed",
        "settings_desktop",
        "settings_phone",
        "app_password_revoked",
        "notice_address_saved",
    ] {
        check(name);
    }
    let app = check("app_password_shown")["password"]
        .as_str()
        .unwrap()
        .to_string();
    let codes: Vec<String> = check("recovery_codes_shown")["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    // What the page did, seen from outside: the new password with a
    // recovery code it showed logs in, the old one does not; the revoked
    // app password and the account password open no mailbox.
    let mut c = Http::new(p.web, &p.ca_pem);
    assert_eq!(c.login_with(&alice, PASSWORD, Some(&codes[0])).status, 401);
    let r = c.login_with(&alice, new_password, Some(&codes[1]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!imap_login(&p, &alice, &app));
    assert!(!imap_login(&p, &alice, new_password));
    assert_eq!(
        c.get("/api/v1/account/notify").json()["email"],
        "avvisi@plain.test"
    );
    if let Ok(dir) = std::env::var("PECD_SCREENSHOTS") {
        let dest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for n in [
            "webmail-settings-desktop.png",
            "webmail-settings-phone.png",
            "webmail-settings-enrol-desktop.png",
            "webmail-settings-enrol-phone.png",
        ] {
            std::fs::copy(shots.join(n), dest.join(n)).unwrap();
        }
    }
}

/// Issue 24, "notice of a new PEC at an ordinary address": the address is
/// set from the webmail (validated, PEC addresses refused, CSRF checked);
/// each PEC delivered to the box queues a notice that leaves through the
/// relay as ordinary mail (null sender, no busta, no signature) with
/// sender, subject and time but none of the message; three PEC within a
/// minute give one notice and, a minute later, one summary; an empty
/// address stops them.
#[test]
fn a_new_pec_is_told_at_an_ordinary_address_at_most_once_a_minute() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ca = TestCa::new();
    let sink = crate::relay::Sink::start();
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", ALPHA, &["alice", "bob"]);
    spec.extra_config = format!(
        "{FAST_THROTTLE}\n[[route]]\ndomain = \"plain.test\"\nnext_hop = \"127.0.0.1:{}\"\n",
        sink.port
    );
    let mut p = TestProvider::prepare(&ca, &spec);
    p.start();
    let alice = format!("alice@{ALPHA}");
    let bob = format!("bob@{ALPHA}");
    let c = logged_in(&p, &alice, PASSWORD);
    let r = c.get("/api/v1/account/notify");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["email"], "");
    for bad in ["not an address", "a@b@c", "x@-bad-.test", &bob] {
        let r = json(
            &c,
            "PUT",
            "/api/v1/account/notify",
            &serde_json::json!({ "email": bad }),
        );
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
    }
    assert!(json(
        &c,
        "PUT",
        "/api/v1/account/notify",
        &serde_json::json!({ "email": &bob })
    )
    .text()
    .contains("PEC address"));
    // Without the CSRF token nothing changes.
    let r = c.send(
        "PUT",
        "/api/v1/account/notify",
        Some("application/json"),
        br#"{"email":"x@plain.test"}"#,
        false,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(c.get("/api/v1/account/notify").json()["email"], "");
    let r = json(
        &c,
        "PUT",
        "/api/v1/account/notify",
        &serde_json::json!({ "email": " Avvisi@Plain.test " }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        c.get("/api/v1/account/notify").json()["email"],
        "avvisi@plain.test"
    );

    // Three PEC within the minute.
    let started = std::time::Instant::now();
    for i in 1..=3 {
        let m = message(
            &bob,
            &[&alice],
            &[],
            &format!("Fattura {i}"),
            "",
            &format!("Contenuto riservato {i}"),
        );
        rt.block_on(p.submit_raw(&bob, &[&alice], &m, false))
            .expect("accepted");
    }
    p.wait_for("three PEC in alice's box", 30, || {
        (p.messages_with(&alice, "X-Trasporto", "posta-certificata")
            .len()
            == 3)
            .then_some(())
    });
    let first = sink.wait_txns(1);
    let t = &first[0];
    assert_eq!(t.mail_from, "", "a notice has a null reverse path");
    assert_eq!(t.rcpts, vec!["avvisi@plain.test".to_string()]);
    let text = String::from_utf8_lossy(&t.data).to_string();
    assert_eq!(
        header(&t.data, "Subject").as_deref(),
        Some(format!("Nuovo messaggio PEC da {bob}").as_str()),
        "{text}"
    );
    assert!(text.contains(&format!("Mittente: {bob}")), "{text}");
    assert!(text.contains("Oggetto: Fattura "), "{text}");
    assert!(text.contains("Ricevuto: "), "{text}");
    assert!(text.contains("Content-Type: text/plain"), "{text}");
    for absent in [
        "Contenuto riservato",
        "posta-certificata",
        "X-Trasporto",
        "pkcs7",
        "daticert",
    ] {
        assert!(!text.contains(absent), "{absent} in the notice: {text}");
    }
    // The other two wait for the minute: one job, not two notices.
    let pending = |p: &TestProvider| {
        queue_jobs(p)
            .into_iter()
            .filter(|j| j["kind"] == "notice")
            .count()
    };
    p.wait_for("the other notices folded into one waiting job", 20, || {
        (pending(&p) == 1).then_some(())
    });
    assert_eq!(sink.txns().len(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while sink.txns().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no summary notice");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(55),
        "the summary came before the minute was over: {:?}",
        started.elapsed()
    );
    let t = &sink.txns()[1];
    let text = String::from_utf8_lossy(&t.data).to_string();
    assert_eq!(
        header(&t.data, "Subject").as_deref(),
        Some("2 altri messaggi PEC"),
        "{text}"
    );
    assert!(!text.contains("Contenuto riservato"), "{text}");
    p.wait_for("no notice job left", 20, || {
        (pending(&p) == 0).then_some(())
    });

    // Stopped: the next PEC queues no notice.
    let r = json(
        &c,
        "PUT",
        "/api/v1/account/notify",
        &serde_json::json!({ "email": "" }),
    );
    assert_eq!((r.status, r.json()["email"].as_str()), (200, Some("")));
    let m = message(&bob, &[&alice], &[], "Fattura 4", "", "x");
    rt.block_on(p.submit_raw(&bob, &[&alice], &m, false))
        .expect("accepted");
    p.wait_for("the fourth PEC in alice's box", 30, || {
        (p.messages_with(&alice, "X-Trasporto", "posta-certificata")
            .len()
            == 4)
            .then_some(())
    });
    assert_eq!(pending(&p), 0);
    assert_eq!(sink.txns().len(), 2);
}

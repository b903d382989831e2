//! The webmail's JSON API (issue 11) against real `pecd` processes over
//! HTTPS: sessions and their cookie, CSRF, the shared login throttle,
//! folders and messages scoped to the logged-in user, sends through the
//! access point with refusals mapped, the sent status derived from the
//! receipts, the evidence zip checked with `openssl smime -verify`, and the
//! public verifier.
use crate::common;
use common::totp::base32_decode;

use std::time::{Duration, Instant};

use common::web::{enc, Http};
use common::*;

const ALPHA: &str = "pec.alpha.test";

fn alpha(ca: &TestCa, users: &[&str], web: &str, extra: &str) -> TestProvider {
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", ALPHA, users);
    spec.web_config = web.to_string();
    spec.extra_config = extra.to_string();
    let mut p = TestProvider::prepare(ca, &spec);
    p.start();
    p
}

fn client(p: &TestProvider) -> Http {
    Http::new(p.web, &p.ca_pem)
}

#[test]
fn sessions_cookie_csrf_logout_and_idle_expiry() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"], "session_idle = \"2s\"", "");
    let alice = format!("alice@{ALPHA}");
    let mut c = client(&p);

    // Nothing without a session.
    assert_eq!(c.get("/api/v1/folders").status, 401);
    assert_eq!(c.login_with(&alice, "wrong", None).status, 401);
    assert_eq!(
        c.login_with("nobody@pec.alpha.test", PASSWORD, None).status,
        401
    );

    let r = c.login(&alice, PASSWORD);
    let cookie = r.header("set-cookie").unwrap();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing in {cookie}");
    }
    assert_eq!(c.csrf.as_ref().unwrap().len(), 64);
    // Every response carries the policy headers.
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline")
            && !csp.contains("http"),
        "{csp}"
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));

    let f = c.get("/api/v1/folders");
    assert_eq!(f.status, 200, "{}", f.text());
    let names: Vec<String> = f.json()["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["INBOX", "Drafts", "Sent", "Trash"]);

    // A state change without the CSRF header is refused, with it accepted.
    let body = serde_json::json!({"name": "Archivio"});
    let no_csrf = c.send(
        "POST",
        "/api/v1/folders",
        Some("application/json"),
        body.to_string().as_bytes(),
        false,
    );
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.text());
    let mut wrong = c.clone();
    wrong.csrf = Some("0".repeat(64));
    assert_eq!(wrong.post_json("/api/v1/folders", &body).status, 403);
    assert_eq!(c.post_json("/api/v1/folders", &body).status, 201);
    assert_eq!(c.post_json("/api/v1/folders", &body).status, 409);

    // Logout: CSRF-protected too, then the cookie is dead at once.
    assert_eq!(
        c.send("DELETE", "/api/v1/session", None, b"", false).status,
        403
    );
    let out = c.delete("/api/v1/session");
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(c.get("/api/v1/folders").status, 401);

    // Idle expiry: used every second the session lives past 2 s; left
    // alone for longer than 2 s it is gone.
    c.login(&alice, PASSWORD);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        assert_eq!(c.get("/api/v1/session").status, 200);
        std::thread::sleep(Duration::from_millis(700));
    }
    std::thread::sleep(Duration::from_millis(2300));
    assert_eq!(c.get("/api/v1/session").status, 401);
}

#[test]
fn failed_logins_are_throttled_with_429_across_protocols() {
    let ca = TestCa::new();
    let p = alpha(
        &ca,
        &["alice"],
        "",
        "[limits]\nlogin_delay = \"1s\"\nlogin_max_delay = \"1s\"\n",
    );
    let alice = format!("alice@{ALPHA}");
    // A failure over IMAP counts for the web login too (one throttle).
    let recs = imap(&p, p.imaps, "tls", &alice, "wrong", "login");
    assert_ne!(step(&recs, 1)["typ"], "OK", "{recs:#?}");
    let codes: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut c = client(&p);
                    c.login_with(&alice, "wrong", None).status
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(codes.contains(&429), "{codes:?}");
    assert!(codes.iter().all(|c| *c == 401 || *c == 429), "{codes:?}");
    // Once the delay has passed the right password gets in (an attempt
    // refused with 429 is not counted: the throttle's doc).
    p.wait_for("the right password to get in", 30, || {
        (client(&p).login_with(&alice, PASSWORD, None).status == 200).then_some(())
    });
    assert!(
        p.log().contains("protocol=\"web\"") || p.log().contains("protocol=web"),
        "login not logged with protocol web"
    );
}

fn wait_list(c: &Http, folder: &str, n: usize, p: &TestProvider) -> serde_json::Value {
    p.wait_for(&format!("{n} messages in {folder}"), 30, || {
        let r = c.get(&format!("/api/v1/folders/{}/messages", enc(folder)));
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        (j["total"].as_u64().unwrap() as usize >= n).then_some(j)
    })
}

#[test]
fn messages_views_parts_moves_flags_and_no_cross_user_access() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice", "bob"], "", "");
    let (alice, bob) = (format!("alice@{ALPHA}"), format!("bob@{ALPHA}"));
    let mut a = client(&p);
    a.login(&alice, PASSWORD);
    let attachment = b"%PDF-1.4 fattura di prova\n".to_vec();
    let r = a.multipart(
        "/api/v1/messages",
        &[
            ("to", None, bob.as_bytes()),
            ("subject", None, "Fattura n. 7".as_bytes()),
            (
                "body",
                None,
                "Buongiorno,\nin allegato la fattura.\n".as_bytes(),
            ),
            ("tipo_ricevuta", None, b"completa"),
            ("attachment", Some("fattura.pdf"), &attachment),
        ],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let sent = r.json();
    let ident = sent["identificativo"].as_str().unwrap().to_string();
    assert!(sent["msgid"].as_str().unwrap().starts_with('<'));

    let mut b = client(&p);
    b.login(&bob, PASSWORD);
    let list = wait_list(&b, "INBOX", 1, &p);
    let row = &list["messages"][0];
    assert_eq!(row["pec"], "posta-certificata");
    assert_eq!(row["subject"], "Fattura n. 7");
    assert_eq!(row["from"], alice.as_str());
    assert_eq!(row["identificativo"], ident.as_str());
    assert_eq!(row["attachments"], true);
    assert_eq!(row["flags"]["seen"], false);
    let id = row["id"].as_str().unwrap().to_string();

    // Search: by identificativo, subject, sender; nothing for a miss.
    for q in [ident.as_str(), "fattura", "alice@"] {
        let r = b.get(&format!("/api/v1/folders/INBOX/messages?q={}", enc(q)));
        assert_eq!(r.json()["total"], 1, "q={q}");
    }
    assert_eq!(
        b.get("/api/v1/folders/INBOX/messages?q=zzzz").json()["total"],
        0
    );
    // Full text: words only in the body (of the original inside the busta).
    for q in ["in allegato", "BUONGIORNO"] {
        let r = b.get(&format!("/api/v1/folders/INBOX/messages?q={}", enc(q)));
        assert_eq!(r.json()["total"], 1, "body q={q}");
    }

    // The space the box uses, without a quota and then with one.
    let f = b.get("/api/v1/folders").json();
    let used = f["quota"]["used"].as_u64().unwrap();
    assert!(used > 1000, "{f}");
    assert!(f["quota"]["limit"].is_null(), "{f}");
    let out = p.cli(&["user", "quota", &bob, "10MB"], "");
    assert!(out.status.success(), "{out:?}");
    let f = b.get("/api/v1/folders").json();
    assert_eq!(f["quota"]["limit"], 10_000_000u64, "{f}");
    assert_eq!(f["quota"]["used"].as_u64().unwrap(), used);
    let page = b.get("/mail/INBOX").text();
    assert!(page.contains("di 10.0 MB ("), "{page}");

    // The busta shown as PEC: the original, with the certified facts and
    // the verifier's verdict.
    let v = b.get(&format!("/api/v1/messages/{id}"));
    assert_eq!(v.status, 200, "{}", v.text());
    let v = v.json();
    assert_eq!(v["subject"], "Fattura n. 7");
    assert!(v["text"]
        .as_str()
        .unwrap()
        .contains("in allegato la fattura"));
    assert_eq!(v["attachments"][0]["filename"], "fattura.pdf");
    let pec = &v["pec"];
    assert_eq!(pec["tipo"], "posta-certificata");
    assert_eq!(pec["identificativo"], ident.as_str());
    assert_eq!(pec["daticert"]["mittente"], alice.as_str());
    assert_eq!(pec["daticert"]["destinatari"][0]["address"], bob.as_str());
    assert_eq!(pec["daticert"]["destinatari"][0]["tipo"], "certificato");
    assert_eq!(pec["verification"]["signature"]["verdict"], "valid");
    assert_eq!(pec["verification"]["provider"], "Alpha PEC S.p.A.");
    assert_eq!(pec["certified"], true, "{pec:#}");

    // Raw is byte-exact; parts download as attachments.
    let on_disk = std::fs::read(&p.mailbox(&bob)[0]).unwrap();
    let raw = b.get(&format!("/api/v1/messages/{id}/raw"));
    assert_eq!(raw.header("content-type"), Some("message/rfc822"));
    assert_eq!(raw.body, on_disk);
    let part = b.get(&format!("/api/v1/messages/{id}/parts/0"));
    assert_eq!(part.body, attachment);
    assert!(part
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
    let dati = b.get(&format!("/api/v1/messages/{id}/parts/daticert.xml"));
    assert_eq!(dati.body, raw_daticert(&on_disk));
    assert_eq!(
        b.get(&format!("/api/v1/messages/{id}/parts/postacert.eml"))
            .body,
        postacert_of(&on_disk)
    );
    assert_eq!(b.get(&format!("/api/v1/messages/{id}/parts/9")).status, 404);

    // Another user cannot reach it, whatever the id says: ids resolve in
    // the asking user's own Maildir only (alice may well have a message with
    // the same folder, UIDVALIDITY and UID: then she gets hers, never bob's).
    let mine = a.get(&format!("/api/v1/messages/{id}/raw"));
    assert!(
        mine.status == 404 || mine.body != on_disk,
        "alice read bob's busta"
    );
    let r = a.post_json(
        &format!("/api/v1/messages/{id}/flags"),
        &serde_json::json!({"seen": true}),
    );
    assert!(r.status == 404 || r.status == 200);
    // Bob's message is untouched by anything alice did with its id.
    let bob_row = &wait_list(&b, "INBOX", 1, &p)["messages"][0];
    assert_eq!(
        bob_row["flags"]["seen"], false,
        "alice's request changed bob's flags"
    );
    assert_eq!(b.get(&format!("/api/v1/messages/{id}/raw")).body, on_disk);
    let (_, v, _) = {
        let mut it = id.splitn(3, '-');
        (
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
            it.next().unwrap().to_string(),
        )
    };
    let far = format!("494e424f58-{v}-99999");
    assert_eq!(a.get(&format!("/api/v1/messages/{far}")).status, 404);
    assert_eq!(a.delete(&format!("/api/v1/messages/{far}")).status, 404);
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for evil in [
        format!("{}-1-1", hex("../bob")),
        format!("{}-1-1", hex("../../pec.alpha.test/bob")),
        format!("{}-1-1", hex("/etc")),
        "zz-1-1".to_string(),
    ] {
        assert_eq!(
            a.get(&format!("/api/v1/messages/{evil}")).status,
            404,
            "{evil}"
        );
    }
    assert_eq!(b.get(&format!("/api/v1/messages/{id}")).status, 200);

    // Flags, move, delete to Trash, then expunge from Trash.
    let f = b.post_json(
        &format!("/api/v1/messages/{id}/flags"),
        &serde_json::json!({"seen": true, "flagged": true}),
    );
    assert_eq!(f.status, 200, "{}", f.text());
    let row = &wait_list(&b, "INBOX", 1, &p)["messages"][0];
    assert_eq!(row["flags"]["seen"], true);
    assert_eq!(row["flags"]["flagged"], true);
    assert_eq!(
        b.post_json("/api/v1/folders", &serde_json::json!({"name": "Fatture"}))
            .status,
        201
    );
    let m = b.post_json(
        &format!("/api/v1/messages/{id}/move"),
        &serde_json::json!({"folder": "Fatture"}),
    );
    assert_eq!(m.status, 200, "{}", m.text());
    let moved = m.json()["id"].as_str().unwrap().to_string();
    assert_eq!(b.get(&format!("/api/v1/messages/{id}")).status, 404);
    let mv = b.get(&format!("/api/v1/messages/{moved}/raw"));
    assert_eq!(mv.body, on_disk, "a move keeps the exact bytes");
    let r = b.send(
        "PATCH",
        "/api/v1/folders/Fatture",
        Some("application/json"),
        br#"{"name":"Fatture2025"}"#,
        true,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let l = wait_list(&b, "Fatture2025", 1, &p);
    let moved = l["messages"][0]["id"].as_str().unwrap().to_string();
    let d = b.delete(&format!("/api/v1/messages/{moved}"));
    assert_eq!(d.json()["folder"], "Trash");
    let t = wait_list(&b, "Trash", 1, &p);
    let tid = t["messages"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(b.delete("/api/v1/folders/Fatture2025").status, 204);
    assert_eq!(b.delete("/api/v1/folders/Trash").status, 409);
    // The mbox of Trash holds the message once.
    let mbox = b.get("/api/v1/folders/Trash/mbox");
    assert_eq!(mbox.status, 200);
    assert!(mbox
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
    assert!(mbox.body.starts_with(b"From MAILER-DAEMON "));
    assert_eq!(
        mbox.text().matches("\nFrom ").count() + 1,
        1 + mbox.text().matches("\nFrom ").count()
    );
    assert_eq!(
        b.delete(&format!("/api/v1/messages/{tid}")).json()["expunged"],
        true
    );
    assert_eq!(b.get("/api/v1/folders/Trash/messages").json()["total"], 0);

    // Sender's side: the copy in Sent is the submitted message.
    let s = wait_list(&a, "Sent", 1, &p);
    assert_eq!(s["messages"][0]["subject"], "Fattura n. 7");
    assert_eq!(s["messages"][0]["flags"]["seen"], true);
}

#[test]
fn sends_are_refused_as_the_access_point_refuses_them() {
    let ca = TestCa::new();
    let p = alpha(
        &ca,
        &["alice", "bob"],
        "",
        "[limits]\nmax_message_size = \"20KB\"\nmax_recipients = 50\nmemory_budget = \"16MB\"\n",
    );
    let (alice, bob) = (format!("alice@{ALPHA}"), format!("bob@{ALPHA}"));
    let mut a = client(&p);
    a.login(&alice, PASSWORD);

    // Too many recipients: refused by the formal checks, with the reason.
    let many: Vec<String> = (0..51).map(|i| format!("u{i}@{ALPHA}")).collect();
    let r = a.send_pec(&many.join(", "), "troppi", "x");
    assert_eq!(r.status, 422, "{}", r.text());
    let j = r.json();
    assert_eq!(j["error"], "not accepted");
    assert!(j["smtp_code"].as_str().unwrap().starts_with("55"), "{j}");
    assert!(!j["detail"].as_str().unwrap().is_empty());
    // Hidden recipients are refused before anything is submitted.
    let r = a.multipart(
        "/api/v1/messages",
        &[
            ("to", None, bob.as_bytes()),
            ("bcc", None, b"x@pec.alpha.test"),
            ("subject", None, b"s"),
        ],
    );
    assert_eq!(r.status, 422);
    assert!(r.json()["detail"].as_str().unwrap().contains("Bcc"));
    // A bad recipient is a refusal with an SMTP code.
    let r = a.send_pec("not-an-address", "s", "b");
    assert!(r.status >= 400 && r.status < 500, "{}", r.text());
    assert!(r.json()["smtp_code"].as_str().is_some(), "{}", r.text());
    // Oversize: refused with 413, both when announced and when streamed.
    let big = vec![b'x'; 200_000];
    let r = a.multipart(
        "/api/v1/messages",
        &[
            ("to", None, bob.as_bytes()),
            ("attachment", Some("big.bin"), &big),
        ],
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["smtp_code"], "552 5.3.4");
    // Just under the byte limit but over it once base64-encoded.
    let mid = vec![b'y'; 18_000];
    let r = a.multipart(
        "/api/v1/messages",
        &[
            ("to", None, bob.as_bytes()),
            ("attachment", Some("mid.bin"), &mid),
        ],
    );
    assert_eq!(r.status, 413, "{}", r.text());
    // Without a session nothing is sent.
    let anon = client(&p);
    assert_eq!(anon.send_pec(&bob, "s", "b").status, 401);
    // Nothing above reached bob; the good one does.
    assert_eq!(a.send_pec(&bob, "ok", "b").status, 201);
    p.wait_messages(&bob, "X-Trasporto", "posta-certificata", 1);
    wait_quiet(&[&p]);
    assert_eq!(
        p.messages_with(&bob, "X-Trasporto", "posta-certificata")
            .len(),
        1
    );
}

#[test]
fn sent_status_follows_the_receipts_and_the_evidence_verifies() {
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob"]);
    a.start();
    b.start();
    let alice = format!("alice@{}", a.domain);
    let (bob, ghost) = (format!("bob@{}", b.domain), format!("ghost@{}", b.domain));
    let mut c = client(&a);
    c.login(&alice, PASSWORD);
    let r = c.send_pec(
        &format!("{bob}, {ghost}"),
        "Diffida",
        "Testo della diffida.\n",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let msgid = r.json()["msgid"].as_str().unwrap().to_string();
    let path = format!("/api/v1/sent/{}", enc(&msgid));
    let status = a.wait_for("bob consegnato and ghost errore", 60, || {
        let s = c.get(&path);
        assert_eq!(s.status, 200, "{}", s.text());
        let j = s.json();
        let st = |who: &str| {
            j["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["address"] == who)
                .map(|r| r["state"].as_str().unwrap().to_string())
        };
        (st(&bob).as_deref() == Some("consegnato") && st(&ghost).as_deref() == Some("errore"))
            .then_some(j)
    });
    for r in status["recipients"].as_array().unwrap() {
        assert_eq!(r["tipo"], "certificato");
        assert!(r["at"].as_str().unwrap().contains('T'), "{r}");
        assert!(r["receipt"].is_string(), "{r}");
    }
    let ghost_row = status["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == ghost.as_str())
        .unwrap()
        .clone();
    assert!(ghost_row["error"].is_string(), "{ghost_row}");
    // The receipt a row links to is that receipt.
    let rid = ghost_row["receipt"].as_str().unwrap();
    let rv = c.get(&format!("/api/v1/messages/{rid}")).json();
    assert_eq!(rv["pec"]["tipo"], "errore-consegna");
    assert_eq!(rv["pec"]["daticert"]["consegna"], ghost.as_str());
    // Its page links to the sent message's status, which shows both rows.
    let page = c.get(&format!("/message/{rid}")).text();
    let link = format!("/sent?msgid={}", enc(&msgid));
    assert!(page.contains(&format!("href=\"{link}\"")), "{page}");
    let one = c.get(&link).text();
    assert_eq!(one.matches("class=\"sent card\"").count(), 1, "{one}");
    assert!(one.contains("Diffida") && one.contains(&ghost), "{one}");

    // Every date the pages show is in one form: Italian time with its
    // offset, `07/12/2026 22:19:40 +01:00` (the API keeps ISO 8601).
    let human = |secs: i64| pecd::pec::clock::ItalianTime::from_unix(secs).human();
    let from_iso = |v: &serde_json::Value| {
        let iso = v.as_str().unwrap();
        let shown = pecd::pec::clock::human_from_iso(iso);
        assert_ne!(shown, iso, "not ISO 8601 with an offset: {iso}");
        shown
    };
    let accepted = from_iso(&status["accepted_at"]);
    assert!(one.contains(&accepted), "{accepted} not in {one}");
    for r in status["recipients"].as_array().unwrap() {
        let at = from_iso(&r["at"]);
        assert!(one.contains(&format!("<td>{at}</td>")), "{at} not in {one}");
    }
    let d = &rv["pec"]["daticert"];
    let zona = d["zona"].as_str().unwrap();
    let data = format!(
        "{} {} {}:{}",
        d["giorno"].as_str().unwrap(),
        d["ora"].as_str().unwrap(),
        &zona[..3],
        &zona[3..]
    );
    assert!(page.contains(&data), "daticert time {data} not in {page}");
    let date = human(rv["date"].as_i64().unwrap());
    assert!(
        page.contains(&format!("<dd>{date}</dd>")),
        "{date} not in {page}"
    );
    let rows = c.get("/api/v1/folders/INBOX/messages").json();
    let first = human(rows["messages"][0]["date"].as_i64().unwrap());
    let list = c.get("/mail/INBOX").text();
    assert!(
        list.contains(&format!("<td>{first}</td>")),
        "{first} not in {list}"
    );
    // The list view has it too.
    let list = c.get("/api/v1/sent").json();
    assert_eq!(list["sent"][0]["msgid"], msgid.as_str());
    // Another user does not see it.
    let mut other = client(&b);
    other.login(&bob, PASSWORD);
    assert_eq!(other.get(&path).status, 404);
    assert_eq!(other.get(&link).status, 404);

    // Evidence: the original, each receipt and its daticert, reports; every
    // receipt verifies with openssl against the CA.
    let z = c.get(&format!("{path}/evidence"));
    assert_eq!(z.status, 200, "{}", z.text());
    assert_eq!(z.header("content-type"), Some("application/zip"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(z.body.clone())).unwrap();
    let names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    assert!(
        names.contains(&"messaggio-originale.eml".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"verifica.json".to_string()) && names.contains(&"verifica.txt".to_string())
    );
    let mut kinds = vec![];
    for n in &names {
        use std::io::Read;
        let mut bytes = vec![];
        zip.by_name(n).unwrap().read_to_end(&mut bytes).unwrap();
        if n.ends_with(".eml") && n != "messaggio-originale.eml" {
            openssl_verify(&bytes, &a.ca_pem).unwrap_or_else(|e| panic!("{n}: {e}"));
            kinds.push(header(&bytes, "X-Ricevuta").unwrap());
            let dati = n.replace(".eml", "-daticert.xml");
            assert!(names.contains(&dati), "{dati} missing");
        }
        if n == "messaggio-originale.eml" {
            assert_eq!(
                header(&bytes, "Message-ID").as_deref(),
                Some(msgid.as_str())
            );
        }
        if n == "verifica.json" {
            let j: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert!(
                j["receipts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r["report"]["ok"] == true),
                "{j:#}"
            );
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        ["accettazione", "avvenuta-consegna", "errore-consegna"]
    );
    assert_eq!(c.get("/api/v1/sent/%3Cnone%40x%3E/evidence").status, 404);
}

#[test]
fn anyone_can_verify_a_file_within_a_rate_limit() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice", "bob"], "", "");
    let (alice, bob) = (format!("alice@{ALPHA}"), format!("bob@{ALPHA}"));
    let mut a = client(&p);
    a.login(&alice, PASSWORD);
    assert_eq!(a.send_pec(&bob, "da verificare", "x").status, 201);
    let busta = p
        .wait_messages(&bob, "X-Trasporto", "posta-certificata", 1)
        .remove(0);
    let anon = client(&p);
    let r = anon.send(
        "POST",
        "/api/v1/verify",
        Some("message/rfc822"),
        &busta,
        false,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["ok"], true, "{j:#}");
    assert_eq!(j["kind"], "busta");
    assert_eq!(j["signature"]["verdict"], "valid");
    // The same report as `pecd verify --json` gives for it.
    let mut tampered = busta.clone();
    let at = tampered
        .windows(4)
        .position(|w| w == b"x\r\n\r")
        .unwrap_or(tampered.len() - 10);
    tampered[at] = b'y';
    let r = anon.send(
        "POST",
        "/api/v1/verify",
        Some("message/rfc822"),
        &tampered,
        false,
    );
    assert_eq!(r.json()["ok"], false);
    let mut limited = false;
    for _ in 0..12 {
        if anon
            .send(
                "POST",
                "/api/v1/verify",
                Some("message/rfc822"),
                &busta,
                false,
            )
            .status
            == 429
        {
            limited = true;
            break;
        }
    }
    assert!(limited, "anonymous verification is not rate-limited");
    // A logged-in user is not held by the anonymous limit.
    let r = a.send(
        "POST",
        "/api/v1/verify",
        Some("message/rfc822"),
        &busta,
        false,
    );
    assert_eq!(r.status, 200);
}

#[test]
fn totp_second_factor_once_enabled_is_required() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"], "", "");
    let alice = format!("alice@{ALPHA}");
    let out = p.cli(&["user", "totp", "enable", &alice], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uri = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    for p in ["algorithm=SHA1", "digits=6", "period=30", "secret="] {
        assert!(uri.contains(p), "{p} missing in {uri}");
    }
    let secret = base32_decode(
        uri.split("secret=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap(),
    );
    assert_eq!(secret.len(), 20);
    let mut c = client(&p);
    let r = c.login_with(&alice, PASSWORD, None);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["totp_required"], true);
    assert_eq!(c.login_with(&alice, PASSWORD, Some("000000")).status, 401);
    // No pause for the failures' login delay: the next attempt queues
    // behind it, server side.
    let now = pecd::pec::clock::since_epoch().as_secs() as i64;
    let code = format!(
        "{:06}",
        pecd::server::web::totp::code_at(&secret, now).unwrap()
    );
    let r = c.login_with(&alice, PASSWORD, Some(&code));
    assert_eq!(r.status, 200, "{}", r.text());
    // A wrong password with a right code is still a wrong password.
    assert_eq!(
        client(&p).login_with(&alice, "wrong", Some(&code)).status,
        401
    );
    let out = p.cli(&["user", "totp", "disable", &alice], "");
    assert!(out.status.success());
    assert_eq!(client(&p).login_with(&alice, PASSWORD, None).status, 200);
}

/// Issue 11's page-load benchmark: a folder of 10,000 messages lists its
/// first page (50, newest first) in under 200 ms at p99 (release build;
/// a debug build gets 1 s). Numbers in docs/performance.md.
#[test]
fn first_page_of_a_10000_message_folder_is_fast() {
    let ca = TestCa::new();
    let p = alpha(&ca, &["alice"], "", "");
    let alice = format!("alice@{ALPHA}");
    let new = p.path().join("data/mail").join(ALPHA).join("alice/new");
    std::fs::create_dir_all(&new).unwrap();
    for i in 0..10_000 {
        let m = message(
            &alice,
            &[&alice],
            &[],
            &format!("messaggio {i}"),
            "",
            "testo\r\n",
        );
        std::fs::write(new.join(format!("{}.M{i}P1Q1.bench", 1_700_000_000 + i)), m).unwrap();
    }
    let mut c = client(&p);
    c.login(&alice, PASSWORD);
    let mut times = vec![];
    for _ in 0..100 {
        let t = Instant::now();
        let r = c.get("/api/v1/folders/INBOX/messages?limit=50");
        times.push(t.elapsed());
        assert_eq!(r.status, 200);
        let j = r.json();
        assert_eq!(j["total"], 10_000);
        assert_eq!(j["messages"][0]["subject"], "messaggio 9999");
    }
    times.sort();
    let p50 = times[49];
    let p99 = times[98];
    eprintln!(
        "first page of 10,000: p50 {p50:?}, p99 {p99:?}, max {:?}",
        times[99]
    );
    let bound = if cfg!(debug_assertions) { 1000 } else { 200 };
    assert!(p99 < Duration::from_millis(bound), "p99 {p99:?}");
}

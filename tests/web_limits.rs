//! Issue 20, the web listener's limits, against real `pecd` processes over
//! HTTPS on loopback: the CPU time (from `/proc/<pid>/stat`) of opening a
//! message whose HTML is built to make the sanitiser quadratic.
mod common;

use std::time::{Duration, Instant};

use common::web::{enc, Http};
use common::*;

const ALPHA: &str = "pec.alpha.test";

fn alpha(ca: &TestCa, web: &str, extra: &str) -> TestProvider {
    let mut spec = ProviderSpec::new("Alpha PEC S.p.A.", ALPHA, &["alice"]);
    spec.web_config = web.to_string();
    spec.extra_config = extra.to_string();
    let mut p = TestProvider::prepare(ca, &spec);
    p.start();
    p
}

fn pid(p: &TestProvider) -> u32 {
    p.child.as_ref().expect("provider running").id()
}

/// User plus system CPU time the process has used.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is the
    // 3rd field of the line, utime the 14th, stime the 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    let hz: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Duration::from_millis(ticks * 1000 / hz)
}

fn write_in_maildir(p: &TestProvider, name: &str, msg: &[u8]) {
    let new = p.path().join(format!("data/mail/{ALPHA}/alice/new"));
    std::fs::write(new.join(name), msg).unwrap();
}

fn alice(p: &TestProvider) -> Http {
    let mut c = Http::new(p.web, &p.ca_pem);
    c.login(&format!("alice@{ALPHA}"), PASSWORD);
    c
}

/// The INBOX ids of alice's messages, by subject.
fn inbox(c: &Http) -> Vec<(String, String)> {
    let r = c.get("/api/v1/folders/INBOX/messages?limit=100");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["subject"].as_str().unwrap().to_string(),
                m["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn html_message(subject: &str, text: Option<&str>, html: &str) -> Vec<u8> {
    let head = format!(
        "From: mallory@evil.test\r\nTo: alice@{ALPHA}\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <{subject}@evil.test>\r\nMIME-Version: 1.0\r\n"
    );
    match text {
        None => format!("{head}Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n").into_bytes(),
        Some(t) => format!(
            "{head}Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{t}\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b--\r\n"
        )
        .into_bytes(),
    }
}

#[test]
fn opening_html_built_to_be_quadratic_costs_a_fraction_of_a_second() {
    let ca = TestCa::new();
    let p = alpha(&ca, "", "");
    // The body: 1 MB of 200,000 nested <div>s, with a text part.
    let nested = "<div>".repeat(200_000);
    write_in_maildir(
        &p,
        "1764580000.M1P1Q1.mx",
        &html_message("annidato", Some("Il testo semplice."), &nested),
    );
    // A shape no element count sees (<li> does not close past <dd>): only
    // the CPU budget stops it. HTML only: its text is made from the HTML.
    write_in_maildir(
        &p,
        "1764580001.M1P1Q1.mx",
        &html_message("elenchi", None, &"<li><dd>".repeat(100_000)),
    );
    write_in_maildir(
        &p,
        "1764580002.M1P1Q1.mx",
        &html_message(
            "normale",
            Some("ciao"),
            "<p onclick=\"x()\">Buongiorno <b>Alice</b></p><script>alert(1)</script>",
        ),
    );
    let c = alice(&p);
    let ids = inbox(&c);
    let id = |s: &str| enc(&ids.iter().find(|(subj, _)| subj == s).unwrap().1);
    let pid = pid(&p);
    for (subject, reason) in [("annidato", "too-deep"), ("elenchi", "too-complex")] {
        for opening in ["first", "second"] {
            let before = cpu_of(pid);
            let t = Instant::now();
            // Opening a message: its page, its JSON, the HTML frame.
            let page = c.get(&format!("/message/{}", id(subject)));
            let view = c.get(&format!("/api/v1/messages/{}", id(subject)));
            let frame = c.get(&format!("/api/v1/messages/{}/html", id(subject)));
            let spent = cpu_of(pid) - before;
            eprintln!(
                "{subject}, {opening} opening: daemon CPU {spent:?}, wall {:?}",
                t.elapsed()
            );
            // Debug build: the sanitiser's budget, three times, and the rest.
            let most = match opening {
                "first" => Duration::from_millis(1500),
                _ => Duration::from_millis(500),
            };
            assert!(
                spent < most,
                "the {opening} opening of {subject:?} cost {spent:?} of CPU"
            );
            assert_eq!(page.status, 200);
            assert_eq!(view.status, 200, "{}", view.text());
            assert_eq!(frame.status, 200);
            let v = view.json();
            assert!(v["html"].is_null(), "{subject}: HTML shown");
            assert_eq!(v["html_omitted"], reason, "{subject}");
            // The page says why and shows the text instead.
            assert!(page.text().contains("troppo grande o troppo complessa"));
            assert!(frame.text().contains("<pre>"), "{}", frame.text());
            assert!(!frame.text().contains("<div><div>"));
        }
    }
    let v = c
        .get(&format!("/api/v1/messages/{}", id("annidato")))
        .json();
    assert_eq!(v["text"].as_str().unwrap().trim(), "Il testo semplice.");
    // Ordinary HTML is shown, sanitised.
    let v = c.get(&format!("/api/v1/messages/{}", id("normale"))).json();
    assert!(v["html_omitted"].is_null());
    let html = v["html"].as_str().unwrap();
    assert!(html.contains("<b>Alice</b>") && !html.contains("script") && !html.contains("onclick"));
}

//! The webmail in a real browser (issue 11 §tests): headless Chromium driven
//! by Selenium from `tests/webmail_browser.py`, against two real providers.
//! Alice logs in, sends a PEC with an attachment from the compose form and
//! watches its row reach "consegnato"; Bob sees it appear without reloading
//! and opens it as PEC; hostile HTML runs nothing; the evidence zip the
//! browser downloaded verifies with `openssl smime -verify`; logout kills
//! the cookie. The screenshots in docs/ come from here
//! (`PECD_SCREENSHOTS=docs` copies them).
use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::web::Http;
use common::*;

/// A Python that has Selenium (Debian's python3-selenium lives in /usr/bin).
pub fn selenium_python() -> PathBuf {
    for p in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(p)
            .args(["-c", "import selenium"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return PathBuf::from(p);
        }
    }
    panic!("no python3 with selenium: install chromium, chromium-driver and python3-selenium (.ci/run does)");
}

const HOSTILE: &str = r#"<html><head><script>window.x=1;document.title='pwned'</script>
<style>body{background:url("javascript:window.x=2")}</style></head>
<body onload="window.x=3;document.title='pwned'">
<p onmouseover="window.x=4">passami sopra</p>
<a id="js" href="javascript:window.x=5;document.title='pwned'">clicca</a>
<div style="width: expression(window.x=6)">css</div>
<svg xmlns="http://www.w3.org/2000/svg"><script>window.x=7;document.title='pwned'</script><a href="javascript:window.x=8"><text y="20">svg</text></a></svg>
<img src="x" onerror="window.x=9;document.title='pwned'">
<iframe src="javascript:parent.x=10"></iframe>
<object data="javascript:window.x=11"></object>
<form action="javascript:window.x=12"><button>invia</button></form>
<p>Testo innocuo</p>
</body></html>"#;

fn html_message(from: &str, to: &str, subject: &str, html: &str) -> Vec<u8> {
    let id = pecd::store::spool::unique_suffix();
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nMessage-ID: <{id}@client.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{}\r\n",
        html.replace('\n', "\r\n")
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_send_track_read_evidence_xss_and_logout() {
    let python = selenium_python();
    let ca = TestCa::new();
    let (mut a, mut b) = two_providers(&ca, &["alice"], &["bob"]);
    a.start();
    b.start();
    let alice = format!("alice@{}", a.domain);
    let (bob, ghost) = (format!("bob@{}", b.domain), format!("ghost@{}", b.domain));

    // Hostile HTML for bob: one through the PEC path (inside a busta), one
    // dropped straight into his Maildir as plain mail.
    let m = html_message(
        &alice,
        &bob,
        "XSS1 <img src=x onerror=window.x=99>",
        HOSTILE,
    );
    a.submit_raw(&alice, &[&bob], &m, false).await.unwrap();
    let plain = html_message("evil@example.com", &bob, "XSS2 senza PEC", HOSTILE);
    let newdir = b.path().join("data/mail").join(&b.domain).join("bob/new");
    std::fs::create_dir_all(&newdir).unwrap();
    std::fs::write(newdir.join("1700000000.M1P1Q1.hostile"), &plain).unwrap();
    b.wait_messages(&bob, "X-Trasporto", "posta-certificata", 1);

    let work = tempfile::tempdir().unwrap();
    let (downloads, shots) = (work.path().join("dl"), work.path().join("shots"));
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::create_dir_all(&shots).unwrap();
    let attachment = work.path().join("contratto.pdf");
    std::fs::write(&attachment, b"%PDF-1.4\n% contratto di prova\n").unwrap();
    let subject = "Contratto firmato";
    let cfg = serde_json::json!({
        "alpha": format!("https://127.0.0.1:{}", a.web),
        "beta": format!("https://127.0.0.1:{}", b.web),
        "alice": alice, "bob": bob, "ghost": ghost, "password": PASSWORD,
        "attachment": attachment, "downloads": downloads, "shots": shots,
        "subject": subject, "xss_subjects": ["XSS1", "XSS2"],
    });
    let cfg_path = work.path().join("cfg.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webmail_browser.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(cfg_path)
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let recs: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ctx = format!(
        "{stdout}\n--- stderr ---\n{}\n--- alpha ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        a.log()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let check = |name: &str| -> serde_json::Value {
        let r = recs
            .iter()
            .find(|r| r["check"] == name)
            .unwrap_or_else(|| panic!("no check {name}:\n{ctx}"));
        assert_eq!(r["ok"], true, "{name}: {r:#}\n{ctx}");
        r.clone()
    };
    check("bob_logged_in");
    check("compose_says_no_bcc");
    check("sent_page_after_send");
    check("row_consegnato");
    check("special_folders_kept");
    check("folder_created_and_renamed");
    check("folder_deleted");
    check("new_mail_without_reload");
    let busta = check("busta_shows_original_and_facts");
    assert_eq!(busta["title"], subject, "{busta:#}");
    let panel = busta["panel"].as_str().unwrap();
    assert!(panel.contains(&alice) && panel.contains(&bob), "{panel}");
    assert!(
        panel.contains("Identificativo") && panel.contains("valida"),
        "{panel}"
    );
    assert_eq!(busta["certified"], true);
    let xss: Vec<&serde_json::Value> = recs.iter().filter(|r| r["check"] == "xss_inert").collect();
    assert_eq!(xss.len(), 2, "{ctx}");
    for r in xss {
        assert_eq!(r["ok"], true, "{r:#}");
        let inner = &r["inner"];
        assert_eq!(inner["sandbox"], "", "message frame not sandboxed: {r:#}");
        assert!(inner["x"].is_null() && inner["scripts"] == 0, "{r:#}");
        let html = inner["html"].as_str().unwrap().to_ascii_lowercase();
        assert!(html.contains("testo innocuo"), "{html}");
        for bad in [
            "javascript:",
            "onerror",
            "onload",
            "onmouseover",
            "expression(",
            "<script",
            "<svg",
        ] {
            assert!(!html.contains(bad), "{bad} survived: {html}");
        }
    }
    let out = check("logged_out");
    let cookie_flags = &out["cookie_flags"];
    assert_eq!(cookie_flags["httpOnly"], true);
    assert_eq!(cookie_flags["secure"], true);
    assert_eq!(cookie_flags["sameSite"], "Strict");
    // The cookie the browser held is refused by the server now.
    let mut old = Http::new(a.web, &a.ca_pem);
    old.cookie = out["old_cookie"].as_str().map(str::to_string);
    assert_eq!(old.get("/api/v1/folders").status, 401);
    check("done");

    // The evidence the browser downloaded: every receipt verifies.
    let files = check("evidence_downloaded")["files"].clone();
    let zip_path = downloads.join(files[0].as_str().unwrap());
    let bytes = std::fs::read(&zip_path).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut receipts = 0;
    for i in 0..z.len() {
        use std::io::Read;
        let mut f = z.by_index(i).unwrap();
        let name = f.name().unwrap().into_owned();
        let mut data = vec![];
        f.read_to_end(&mut data).unwrap();
        if name.ends_with(".eml") && name != "messaggio-originale.eml" {
            openssl_verify(&data, &a.ca_pem).unwrap_or_else(|e| panic!("{name}: {e}"));
            receipts += 1;
        }
    }
    assert!(
        receipts >= 3,
        "accettazione, consegna, errore-consegna expected"
    );

    if let Ok(dir) = std::env::var("PECD_SCREENSHOTS") {
        let dest = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for n in [
            "webmail-inbox.png",
            "webmail-pec.png",
            "webmail-sent.png",
            "webmail-compose.png",
        ] {
            std::fs::copy(shots.join(n), dest.join(n)).unwrap();
        }
    }
}

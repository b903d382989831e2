//! `pecd verify` on the real sample corpus and on our own messages, and
//! `pecd index import-ldif` (issue 3).
use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// `pecd ARGS` where no configuration is found (a folder of its own, no
/// `$PECD_CONFIG`): only the flags give trust anchors.
fn pecd(args: &[&str]) -> Output {
    let nowhere = tempfile::tempdir().unwrap();
    Command::new(pecd_bin())
        .args(args)
        .current_dir(nowhere.path())
        .env_remove("PECD_CONFIG")
        .output()
        .unwrap()
}

/// The exit status of an intact message whose signer is not verified.
const UNVERIFIED: i32 = 3;

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json output does not parse ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The README's verdicts: (file, verifies, signer CN fragment, needs --inner).
const SAMPLES: &[(&str, bool, &str, bool)] = &[
    ("aruba-2018_accettazione.eml", true, "ARUBA PEC", false),
    (
        "aruba-2018_avvenuta-consegna_completa.eml",
        true,
        "ARUBA PEC",
        false,
    ),
    ("aruba-2014_busta-trasporto_a.eml", true, "ARUBA PEC", false),
    ("aruba-2014_busta-trasporto_b.eml", true, "ARUBA PEC", false),
    ("aruba-2014_accettazione.eml", true, "ARUBA PEC", false),
    (
        "aruba-2014_avvenuta-consegna_completa.eml",
        true,
        "ARUBA PEC",
        false,
    ),
    (
        "sogei-2018_busta-trasporto_sdi-invio-file.eml",
        true,
        "Sogei",
        false,
    ),
    (
        "sogei-2018_busta-trasporto_sdi-ricevuta-consegna.eml",
        true,
        "Sogei",
        false,
    ),
    (
        "namirial-2024_busta-trasporto_via-mailinglist.eml",
        true,
        "Namirial",
        true,
    ),
    (
        "NEG_sogei-2018_busta-trasporto_sdi-ricevuta-consegna_ws-stripped.eml",
        false,
        "",
        false,
    ),
    (
        "NEG_sogei-2019_busta-trasporto_sdi-mancata-consegna_ws-stripped.eml",
        false,
        "",
        false,
    ),
    ("ANON_accettazione_fakepec.eml", false, "", false),
    ("ANON_errore-consegna_fakepec.eml", false, "", false),
    ("ANON_avvenuta-consegna_sha256.eml", false, "", false),
    ("ANON_busta-trasporto_sha256.eml", false, "", false),
];

#[test]
fn sample_corpus_gets_the_readme_verdicts() {
    let dir = fixtures_dir().join("pec-samples");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no sample read from {}", dir.display());
    for f in &files {
        assert!(
            SAMPLES.iter().any(|s| s.0 == f),
            "{f} is not in this test's table: add the README's verdict"
        );
    }
    let mut read = 0;
    for (name, verifies, signer, inner) in SAMPLES {
        let path = dir.join(name);
        assert!(path.exists(), "{name} missing from {}", dir.display());
        let p = path.to_str().unwrap();
        let mut args = vec!["verify", p, "--json"];
        if *inner {
            // The whole file does not verify: the list wrapped it.
            let whole = pecd(&args);
            assert_eq!(whole.status.code(), Some(1), "{name} without --inner");
            assert_eq!(json_of(&whole)["ok"], false);
            args.push("--inner");
        }
        let out = pecd(&args);
        let j = json_of(&out);
        read += 1;
        let code = out.status.code();
        if *verifies {
            // Intact, but without a trust anchor the signer is not
            // verified: never OK, its own exit status.
            assert_eq!(
                code,
                Some(UNVERIFIED),
                "{name} should be intact: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert_eq!(j["ok"], false, "{name}");
            assert_eq!(j["signer_verified"], false, "{name}");
            assert_eq!(j["signature"]["verdict"], "valid", "{name}");
            assert_eq!(j["signature"]["chain_checked"], false, "{name}");
            let subject = j["signature"]["signer_subject"].as_str().unwrap_or("");
            assert!(subject.contains(signer), "{name}: signer {subject}");
            let fp = j["signature"]["sha1_fingerprint"].as_str().unwrap_or("");
            assert_eq!(fp.len(), 59, "{name}: SHA-1 {fp:?}");
            assert!(j["signature"]["signing_time"].is_i64(), "{name}");
            assert!(j["daticert"]["identificativo"].is_string(), "{name}");
            assert!(j["daticert"]["mittente"].is_string(), "{name}");
            // The text form names the same facts.
            let mut text_args = vec!["verify", p];
            if *inner {
                text_args.push("--inner");
            }
            let text = pecd(&text_args);
            assert_eq!(text.status.code(), Some(UNVERIFIED), "{name} (text)");
            let text = String::from_utf8_lossy(&text.stdout);
            assert!(text.contains(fp), "{name}");
            assert!(text.contains("NOT VERIFIED"), "{name}:\n{text}");
            assert!(!text.contains("Result:                   OK"), "{name}");
        } else {
            assert_eq!(
                code,
                Some(1),
                "{name} should be rejected: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert_eq!(j["ok"], false, "{name}");
            assert!(
                !j["reasons"].as_array().unwrap().is_empty(),
                "{name}: no reason given"
            );
            if name.starts_with("NEG_") {
                let reasons = j["reasons"].to_string();
                assert!(reasons.contains("digest"), "{name}: {reasons}");
            }
        }
    }
    assert_eq!(read, SAMPLES.len());
}

/// `openssl smime -verify -noverify`: the content digest and signature only.
fn openssl_integrity(path: &Path) -> bool {
    Command::new("openssl")
        .args(["smime", "-verify", "-noverify", "-in"])
        .arg(path)
        .args(["-out", "/dev/null"])
        .output()
        .expect("openssl CLI")
        .status
        .success()
}

/// A genuine sample with one unsigned outer header changed still verifies
/// (openssl agrees), but `pecd verify` names the header and fails, in text
/// and in JSON.
#[test]
fn altered_outer_headers_are_reported() {
    let dir = fixtures_dir().join("pec-samples");
    let read = |n: &str| String::from_utf8(std::fs::read(dir.join(n)).unwrap()).unwrap();
    let busta = read("aruba-2014_busta-trasporto_b.eml");
    let receipt = read("aruba-2018_avvenuta-consegna_completa.eml");
    let swap = |s: &str, from: &str, to: &str| {
        assert!(s.contains(from), "{from:?} not in the sample");
        s.replacen(from, to, 1)
    };
    let cases = [
        (
            swap(
                &busta,
                "Subject: POSTA CERTIFICATA: Re: test",
                "Subject: POSTA CERTIFICATA: Re: diffida",
            ),
            "Subject",
        ),
        (
            swap(
                &busta,
                "Per conto di: thinkstudio@pec.it",
                "Per conto di: tribunale@pec.it",
            ),
            "From",
        ),
        (
            swap(
                &busta,
                "To: Lorenzo Battistini <l.battistini@pec.it>",
                "To: Carol <carol@pec.it>",
            ),
            "To/Cc",
        ),
        (
            swap(&busta, "Message-ID: <opec275.", "Message-ID: <xpec275."),
            "Message-ID",
        ),
        (
            swap(&receipt, "Subject: CONSEGNA: ", "Subject: ACCETTAZIONE: "),
            "Subject",
        ),
        (
            swap(
                &receipt,
                "X-Riferimento-Message-ID: <1542123565.",
                "X-Riferimento-Message-ID: <2542123565.",
            ),
            "X-Riferimento-Message-ID",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (i, (bytes, header)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("altered-{i}.eml"));
        std::fs::write(&path, bytes).unwrap();
        assert!(
            openssl_integrity(&path),
            "{header}: openssl rejects the copy"
        );
        let p = path.to_str().unwrap();
        let out = pecd(&["verify", p, "--json"]);
        assert_eq!(out.status.code(), Some(1), "{header}");
        let j = json_of(&out);
        assert_eq!(j["ok"], false, "{header}");
        assert_eq!(j["signature"]["verdict"], "valid", "{header}");
        let m = j["header_mismatches"].as_array().unwrap();
        assert_eq!(m.len(), 1, "{header}: {m:?}");
        assert_eq!(m[0]["header"], *header);
        assert!(
            j["reasons"]
                .to_string()
                .contains(&format!("outer {header}")),
            "{header}: {}",
            j["reasons"]
        );
        let text = pecd(&["verify", p]);
        assert_eq!(text.status.code(), Some(1), "{header} (text)");
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains(&format!("{:<26}{header} is", "Header mismatch:")),
            "{header}:\n{text}"
        );
        assert!(text.contains("NOT VALID"), "{header}:\n{text}");
    }
}

#[test]
fn verify_fails_when_nothing_is_read() {
    let out = pecd(&["verify", "/nonexistent/message.eml"]);
    assert_eq!(out.status.code(), Some(1));
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = pecd(&["verify", empty.path().to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_of(&out)["ok"], false);
}

/// Base64 of `der`, folded as LDIF does (76 columns, continuation lines
/// start with one space).
fn ldif_b64(attr: &str, der: &[u8]) -> String {
    let b64 = openssl::base64::encode_block(der);
    let line = format!("{attr}:: {b64}");
    let mut out = String::new();
    let mut rest = line.as_str();
    let mut first = true;
    while !rest.is_empty() {
        let take = rest.len().min(if first { 76 } else { 75 });
        if !first {
            out.push(' ');
        }
        out.push_str(&rest[..take]);
        out.push('\n');
        rest = &rest[take..];
        first = false;
    }
    out
}

fn sha1_hex(pem_path: &Path) -> String {
    let cert = openssl::x509::X509::from_pem(&std::fs::read(pem_path).unwrap()).unwrap();
    let d = cert.digest(openssl::hash::MessageDigest::sha1()).unwrap();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn our_messages_with_ca_and_index_and_ldif_import() {
    let ca = TestCa::new();
    let mut a = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    let b = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Beta PEC S.p.A.", "pec.beta.test", &["bob"]),
    );
    a.start();
    let msg = message(
        "alice@pec.alpha.test",
        &["alice@pec.alpha.test"],
        &[],
        "Da verificare",
        "",
        "x",
    );
    a.submit_raw(
        "alice@pec.alpha.test",
        &["alice@pec.alpha.test"],
        &msg,
        false,
    )
    .await
    .unwrap();
    let acc = a.wait_messages("alice@pec.alpha.test", "X-Ricevuta", "accettazione", 1);
    let busta = a.wait_messages(
        "alice@pec.alpha.test",
        "X-Trasporto",
        "posta-certificata",
        1,
    );
    a.stop();
    let work = tempfile::tempdir().unwrap();
    let acc_file = work.path().join("accettazione.eml");
    std::fs::write(&acc_file, &acc[0]).unwrap();
    let busta_file = work.path().join("busta.eml");
    std::fs::write(&busta_file, &busta[0]).unwrap();
    let other = pecd::certs::generate_ca("Unrelated CA").unwrap();
    let other_pem = work.path().join("other-ca.pem");
    std::fs::write(&other_pem, other.cert_pem()).unwrap();
    let (acc_p, busta_p, ca_p, other_p) = (
        acc_file.to_str().unwrap(),
        busta_file.to_str().unwrap(),
        ca.pem_path(),
        other_pem.to_str().unwrap().to_string(),
    );
    let ca_p = ca_p.to_str().unwrap();

    let index_a = a.path().join("index.toml");
    let idx_p = index_a.to_str().unwrap();
    for f in [acc_p, busta_p] {
        // The chain alone proves a certificate, not a provider: without
        // the index the signer's provider is not checked.
        let chain_only = pecd(&["verify", f, "--ca", ca_p, "--json"]);
        assert_eq!(chain_only.status.code(), Some(UNVERIFIED), "{f}");
        assert_eq!(json_of(&chain_only)["ok"], false);
        let ok = pecd(&["verify", f, "--ca", ca_p, "--index", idx_p, "--json"]);
        assert_eq!(
            ok.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&ok.stdout)
        );
        let j = json_of(&ok);
        assert_eq!(j["signature"]["chain_checked"], true);
        assert_eq!(j["daticert"]["gestore_emittente"], "Alpha PEC S.p.A.");
        let bad = pecd(&["verify", f, "--ca", &other_p, "--index", idx_p, "--json"]);
        assert_eq!(bad.status.code(), Some(1), "unrelated CA accepted for {f}");
        assert_eq!(json_of(&bad)["ok"], false);
        // Both CAs: the right one is enough.
        let both = pecd(&[
            "verify", f, "--ca", &other_p, "--ca", ca_p, "--index", idx_p,
        ]);
        assert_eq!(both.status.code(), Some(0));
    }
    assert_eq!(
        json_of(&pecd(&["verify", busta_p, "--json"]))["kind"],
        "busta"
    );

    // An LDIF index (pec-spec §10): Alpha by certificate (DER, base64,
    // folded) plus a roll-over hash, Beta by hash only.
    let a_cert_pem = a.path().join("certs/signing.pem");
    let a_der = openssl::x509::X509::from_pem(&std::fs::read(&a_cert_pem).unwrap())
        .unwrap()
        .to_der()
        .unwrap();
    let b_sha1 = sha1_hex(&b.path().join("certs/signing.pem"));
    let b_sha1_colons = b_sha1
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap().to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    let rollover = "00112233445566778899aabbccddeeff00112233";
    let ldif = format!(
        "version: 1\n\n\
         dn: o=postacert\nobjectClass: top\nobjectClass: organization\no: postacert\n\n\
         dn: providerName=Alpha PEC S.p.A.,o=postacert\nobjectClass: top\nobjectClass: provider\n\
         providerName: Alpha PEC S.p.A.\nproviderCertificateHash: {rollover}\n{}\
         mailReceipt: posta-certificata@pec.alpha.test\nmanagedDomains: pec.alpha.test\n\
         managedDomains: PEC.Alpha-Due.test\n\n\
         dn: providerName=Beta PEC S.p.A.,o=postacert\nobjectClass: top\nobjectClass: provider\n\
         providerName: Beta PEC S.p.A.\nproviderCertificateHash: {b_sha1_colons}\n\
         mailReceipt: ricevute@pec.beta.test\nmanagedDomains: pec.beta.test\n",
        ldif_b64("providerCertificate", &a_der)
    );
    let ldif_file = work.path().join("index.ldif");
    std::fs::write(&ldif_file, &ldif).unwrap();
    let out = pecd(&["index", "import-ldif", ldif_file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "import-ldif: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml_text = String::from_utf8(out.stdout).unwrap();
    let idx = pecd::pec::index::ProviderIndex::from_toml(&toml_text, &|p: &str| {
        Err(format!("no file {p}"))
    })
    .unwrap_or_else(|e| panic!("import output is not an index: {}\n{toml_text}", e.0));
    assert_eq!(idx.providers.len(), 2, "{toml_text}");
    let pa = idx
        .provider_for_domain("pec.alpha-due.test")
        .expect("alpha");
    assert_eq!(pa.name, "Alpha PEC S.p.A.");
    assert_eq!(pa.receipt_mailbox, "posta-certificata@pec.alpha.test");
    assert_eq!(pa.sha1.len(), 2, "roll-over hash and certificate hash");
    let pb = idx.provider_for_domain("pec.beta.test").expect("beta");
    assert_eq!(pb.receipt_mailbox, "ricevute@pec.beta.test");
    let b_raw: Vec<u8> = (0..20)
        .map(|i| u8::from_str_radix(&b_sha1[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(pb.sha1, vec![<[u8; 20]>::try_from(b_raw).unwrap()]);

    // pecd itself accepts it: as --index for verify, as [trust] index of a provider.
    let imported = work.path().join("imported.toml");
    std::fs::write(&imported, &toml_text).unwrap();
    let v = pecd(&[
        "verify",
        busta_p,
        "--ca",
        ca_p,
        "--index",
        imported.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
    assert_eq!(json_of(&v)["provider"], "Alpha PEC S.p.A.");
    // ... and the LDIF directly.
    let v = pecd(&[
        "verify",
        busta_p,
        "--ca",
        ca_p,
        "--index",
        ldif_file.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v.status.code(), Some(0));
    assert_eq!(json_of(&v)["provider"], "Alpha PEC S.p.A.");
    // An index without Alpha: the signer is unknown.
    let only_b = work.path().join("only-beta.toml");
    std::fs::write(&only_b, b.index_entry()).unwrap();
    let v = pecd(&["verify", busta_p, "--index", only_b.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1));

    std::fs::copy(&imported, a.path().join("index.toml")).unwrap();
    let cc = a.cli(&["check-config"], "");
    assert!(
        cc.status.success(),
        "check-config with the imported index: {}{}",
        String::from_utf8_lossy(&cc.stdout),
        String::from_utf8_lossy(&cc.stderr)
    );
    a.start();
    a.stop();
}

/// `pecd verify CONFIG`: a busta re-signed with a self-made certificate
/// bearing the provider's name is never OK. Without a configuration the
/// signer is not verified (exit 3); with the provider's configuration
/// (`--config` or `$PECD_CONFIG`) its `[trust] ca` and index refuse it
/// (exit 1) while the genuine busta passes (exit 0); the webmail's
/// public verifier of the same provider agrees.
#[tokio::test]
async fn a_forged_signer_is_never_ok() {
    let ca = TestCa::new();
    let mut a = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice"]),
    );
    a.start();
    let alice = "alice@pec.alpha.test";
    let msg = message(alice, &[alice], &[], "Contratto", "", "firmato");
    a.submit_raw(alice, &[alice], &msg, false).await.unwrap();
    let busta = a
        .wait_messages(alice, "X-Trasporto", "posta-certificata", 1)
        .remove(0);
    let selfmade = pecd::certs::generate_ca("Alpha PEC S.p.A. CA").unwrap();
    let c = pecd::certs::generate_signing(&selfmade, "Alpha PEC S.p.A.", "pec.alpha.test").unwrap();
    let forger =
        pecd::pec::smime::Signer::from_pem(&c.cert_pem(), &c.key_pem(), &selfmade.cert_pem())
            .unwrap();
    let m = pecd::pec::classify::classify(&busta);
    let entity = busta[m.signed_entity.unwrap()].to_vec();
    let (fields, _) = pecd::pec::headers::raw_fields(&busta);
    let headers = fields
        .iter()
        .filter(|f| !f.name.eq_ignore_ascii_case("Content-Type"))
        .map(|f| {
            let v = String::from_utf8_lossy(f.raw_value(&busta));
            (f.name.clone(), v.trim_start().to_string())
        })
        .collect();
    let forged = forger
        .sign(
            &pecd::pec::types::Unsigned { headers, entity },
            "forged-boundary",
        )
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let (forged_f, genuine_f) = (
        work.path().join("forged.eml"),
        work.path().join("busta.eml"),
    );
    std::fs::write(&forged_f, &forged).unwrap();
    std::fs::write(&genuine_f, &busta).unwrap();
    assert!(openssl_integrity(&forged_f), "the forgery must be intact");
    let (forged_p, genuine_p) = (forged_f.to_str().unwrap(), genuine_f.to_str().unwrap());

    // No trust anchor at all: not OK, its own exit status, and it says why.
    let out = pecd(&["verify", forged_p]);
    assert_eq!(out.status.code(), Some(UNVERIFIED));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOT VERIFIED"), "{text}");
    assert!(text.contains("signer not verified"), "{text}");
    assert!(!text.contains("Result:                   OK"), "{text}");

    // The provider's configuration, named or found through the environment.
    let config = a.config_path();
    let cfg = config.to_str().unwrap();
    for (file, code) in [(forged_p, 1), (genuine_p, 0)] {
        let out = pecd(&["--config", cfg, "verify", file, "--json"]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{file} with --config: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(json_of(&out)["signer_verified"], code == 0, "{file}");
        let nowhere = tempfile::tempdir().unwrap();
        let env = Command::new(pecd_bin())
            .args(["verify", file])
            .current_dir(nowhere.path())
            .env("PECD_CONFIG", &config)
            .output()
            .unwrap();
        assert_eq!(env.status.code(), Some(code), "{file} with $PECD_CONFIG");
    }
    let out = pecd(&["--config", cfg, "verify", forged_p]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOT VALID"), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(cfg),
        "the configuration used is named"
    );
    // A configuration that cannot be read is an error, not a verdict.
    let out = pecd(&["--config", "/nonexistent/pecd.toml", "verify", genuine_p]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pecd.toml"));

    // The webmail's verifier judges with the same anchors.
    let web = common::web::Http::new(a.web, &a.ca_pem);
    for (bytes, ok) in [(&forged, false), (&busta, true)] {
        let r = web.send(
            "POST",
            "/api/v1/verify",
            Some("message/rfc822"),
            bytes,
            false,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["ok"], ok, "{:#}", r.json());
    }
    a.stop();
}

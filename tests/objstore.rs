//! The object-store client (`src/objstore/`) and `[blobs]` in
//! `check-config`, against a real S3 server on loopback: moto's, started by
//! `tests/s3_server.py` on an ephemeral port with signature checking on, its
//! bucket created at start (the keys are moto's, made at test time).
use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use pecd::objstore::sigv4::Keys;
use pecd::objstore::{content_key, Bucket, Endpoint, Error, Settings, DEFAULT_TIMEOUT};

/// A moto server; it stops when its stdin closes (on drop, or when the test
/// process dies).
struct S3 {
    child: Child,
    port: u16,
    https: bool,
    keys: Keys,
}

impl S3 {
    /// A server holding these (empty) buckets.
    fn start(buckets: &[&str]) -> S3 {
        S3::spawn(None, buckets)
    }

    /// The same over https with this certificate and key.
    fn start_tls(cert: &Path, key: &Path, buckets: &[&str]) -> S3 {
        S3::spawn(Some((cert, key)), buckets)
    }

    fn spawn(tls: Option<(&Path, &Path)>, buckets: &[&str]) -> S3 {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script);
        if let Some((cert, key)) = tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        let mut child = cmd
            .args(buckets)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 tests/s3_server.py (scripts/test installs moto[server])");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("s3_server.py did not start ({e}): {line:?}"));
        S3 {
            child,
            port: v["port"].as_u64().unwrap() as u16,
            https: tls.is_some(),
            keys: Keys {
                access_key: v["access_key"].as_str().unwrap().into(),
                secret_key: v["secret_key"].as_str().unwrap().into(),
            },
        }
    }

    fn endpoint(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A client of `bucket` on this server, path-style.
    fn bucket(&self, bucket: &str) -> Bucket {
        self.bucket_with(bucket, self.keys.clone(), self.port)
    }

    fn bucket_with(&self, bucket: &str, keys: Keys, port: u16) -> Bucket {
        Bucket::new(Settings {
            endpoint: Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            path_style: true,
            keys,
            timeout: DEFAULT_TIMEOUT,
        })
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Bytes that are not text: every byte value, then a pseudo-random tail.
fn binary(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|i| {
            if i < 256 {
                i as u8
            } else {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            }
        })
        .collect()
}

fn now() -> i64 {
    pecd::pec::clock::since_epoch().as_secs() as i64
}

#[test]
fn objects_round_trip_byte_exact_empty_binary_and_5_mb() {
    let s3 = S3::start(&["pecd"]);
    let b = s3.bucket("pecd");
    let five_mb = binary(5 * 1024 * 1024);
    for (key, bytes) in [
        ("rt/empty", Vec::new()),
        ("rt/binary", binary(4096)),
        ("rt/five-mb", five_mb.clone()),
        // Every character a key may keep unencoded. (Keys that need
        // percent-encoding are left to the unit tests: moto checks their
        // signature against a path it re-encodes, AWS does not.)
        ("rt/AZaz09-._~", b"unreserved".to_vec()),
    ] {
        b.put(key, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let got = b.get(key, 10 * 1024 * 1024).unwrap();
        assert!(
            got == bytes,
            "{key}: {} bytes back for {}",
            got.len(),
            bytes.len()
        );
        let info = b.head(key).unwrap().expect("head");
        assert_eq!(info.size, bytes.len() as u64, "{key}");
        assert!((now() - info.last_modified).abs() < 120, "{key}: {info:?}");
    }
    // Streamed rather than held: the same bytes, and the size first.
    let (size, mut reader) = b.open("rt/five-mb").unwrap();
    assert_eq!(size, five_mb.len() as u64);
    let mut streamed = Vec::new();
    reader.read_to_end(&mut streamed).unwrap();
    assert!(streamed == five_mb, "{} bytes streamed", streamed.len());
    assert!(b.open("rt/absent").err().unwrap().is_not_found());
    // The caller's limit holds: the object is not read past it.
    let e = b.get("rt/five-mb", 1024 * 1024).unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 1048576, .. }), "{e}");
}

#[test]
fn byte_ranges_are_read_cut_at_the_end_and_refused_past_it() {
    let s3 = S3::start(&["pecd"]);
    let b = s3.bucket("pecd");
    let bytes = binary(1000);
    b.put("r/obj", &bytes).unwrap();
    assert_eq!(b.get_range("r/obj", 10..20).unwrap(), &bytes[10..20]);
    assert_eq!(b.get_range("r/obj", 0..1).unwrap(), &bytes[..1]);
    assert_eq!(b.get_range("r/obj", 990..2000).unwrap(), &bytes[990..]);
    assert_eq!(b.get_range("r/obj", 5..5).unwrap(), Vec::<u8>::new());
    let e = b.get_range("r/obj", 5000..5010).unwrap_err();
    assert_eq!(e.code(), Some("InvalidRange"), "{e}");
    assert!(b.get_range("r/none", 0..10).unwrap_err().is_not_found());
}

#[test]
fn head_and_delete_of_present_and_absent_objects() {
    let s3 = S3::start(&["pecd"]);
    let b = s3.bucket("pecd");
    b.put("d/obj", b"bytes").unwrap();
    assert!(b.head("d/obj").unwrap().is_some());
    b.delete("d/obj").unwrap();
    assert_eq!(b.head("d/obj").unwrap(), None);
    let e = b.get("d/obj", 100).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("s3://pecd/d/obj"), "{e}");
    // Deleting what is not there is what a retried delete does.
    b.delete("d/obj").unwrap();
}

#[test]
fn a_listing_pages_through_more_keys_than_a_page_with_sizes_and_dates() {
    let s3 = S3::start(&["pecd"]);
    let b = s3.bucket("pecd");
    let before = now();
    let mut want = Vec::new();
    // Prefixes without '/': moto checks the signature of a query against
    // its decoded value (`prefix=gc/`), where S3 signs it encoded
    // (`prefix=gc%2F`, as the SDKs and pecd send it).
    for i in 0..7 {
        let key = format!("gc-{i:02}");
        b.put(&key, &vec![b'x'; i * 10]).unwrap();
        want.push((key, (i * 10) as u64));
    }
    b.put("other/1", b"not listed").unwrap();
    b.put("gcx", b"not under gc-").unwrap();

    let first = b.list("gc-", None, 3).unwrap();
    assert_eq!(first.objects.len(), 3);
    let token = first.next.expect("a token: more than one page");
    let second = b.list("gc-", Some(&token), 3).unwrap();
    assert_eq!(second.objects[0].key, "gc-03");

    let all: Vec<_> = b
        .list_all("gc-")
        .page_size(3)
        .collect::<Result<_, _>>()
        .unwrap();
    let got: Vec<(String, u64)> = all.iter().map(|o| (o.key.clone(), o.size)).collect();
    assert_eq!(got, want);
    for o in &all {
        assert!(
            o.last_modified >= before - 60 && o.last_modified <= now() + 60,
            "{o:?}"
        );
    }
    assert_eq!(b.list_all("").count(), 9);
    assert_eq!(b.list_all("nothing").count(), 0);
}

#[test]
fn content_addressed_puts_are_idempotent_and_checked_on_read() {
    let s3 = S3::start(&["pecd"]);
    let b = s3.bucket("pecd");
    let msg = binary(70_000);
    let key = b.put_content(&msg).unwrap();
    assert_eq!(key, content_key(&msg));
    let parts: Vec<&str> = key.split('/').collect();
    assert_eq!(parts.len(), 3, "{key}");
    assert!(parts[2].starts_with(parts[0]) && parts[2][2..].starts_with(parts[1]));
    assert_eq!(parts[2].len(), 64);
    // A retried put writes the same object: one object, same bytes.
    assert_eq!(b.put_content(&msg).unwrap(), key);
    assert_eq!(b.list_all("").count(), 1);
    assert_eq!(b.get_content(&key, 100_000).unwrap(), msg);
    assert_ne!(b.put_content(b"other").unwrap(), key);

    // Bytes that do not hash to the name are refused on read.
    b.put(&key, b"damaged").unwrap();
    let e = b.get_content(&key, 100_000).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
}

#[test]
fn an_upload_carries_its_md5_so_a_server_can_refuse_a_damaged_one() {
    // A proxy that flips one byte of the request body on its way, the way
    // a faulty link or middlebox would. AWS and MinIO answer BadDigest to
    // such an upload; moto does not check Content-MD5, so here the test
    // shows what the server was given to check with, and that a read of
    // the content-addressed object refuses the damaged bytes.
    let s3 = S3::start(&["pecd"]);
    let (port, seen) = damaging_proxy(s3.port);
    let via = s3.bucket_with("pecd", s3.keys.clone(), port);
    let msg = b"PEC message bytes, one of which is damaged in transit".to_vec();
    let key = via.put_content(&msg).unwrap();
    let head = seen.join().unwrap();
    let md5 = openssl::hash::hash(openssl::hash::MessageDigest::md5(), &msg).unwrap();
    let want = format!("content-md5: {}", openssl::base64::encode_block(&md5));
    assert!(
        head.to_ascii_lowercase()
            .contains(&want.to_ascii_lowercase()),
        "{want} not in the request:\n{head}"
    );
    let e = s3.bucket("pecd").get_content(&key, 1000).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
}

/// A proxy to `upstream` for one request: it flips the last byte of the
/// request body, then relays the reply. The thread returns the request head.
fn damaging_proxy(upstream: u16) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            let n = client.read(&mut chunk).unwrap();
            assert!(n > 0, "the client closed before its request ended");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("a content-length");
        while buf.len() < head_end + len {
            let n = client.read(&mut chunk).unwrap();
            assert!(n > 0, "the client closed before its body ended");
            buf.extend_from_slice(&chunk[..n]);
        }
        let last = head_end + len - 1;
        buf[last] ^= 0x01;
        server.write_all(&buf).unwrap();
        // The reply, relayed until the server has sent it whole.
        let mut reply = server.try_clone().unwrap();
        let mut out = client.try_clone().unwrap();
        let relay = std::thread::spawn(move || {
            let _ = std::io::copy(&mut reply, &mut out);
        });
        let _ = std::io::copy(&mut client, &mut server);
        let _ = server.shutdown(std::net::Shutdown::Both);
        let _ = relay.join();
        head
    });
    (port, t)
}

#[test]
fn wrong_keys_and_a_missing_bucket_are_told_in_the_servers_words() {
    let s3 = S3::start(&["pecd"]);
    let mut wrong = s3.keys.clone();
    wrong.secret_key = "not-the-secret".into();
    let b = s3.bucket_with("pecd", wrong, s3.port);
    for e in [b.put("k", b"x").unwrap_err(), b.check().unwrap_err()] {
        assert_eq!(e.code(), Some("SignatureDoesNotMatch"), "{e}");
        assert!(e.to_string().contains("SignatureDoesNotMatch"), "{e}");
    }
    let unknown = Keys {
        access_key: "AKIANOTAKEYOFMOTO000".into(),
        secret_key: "x".into(),
    };
    let e = s3
        .bucket_with("pecd", unknown, s3.port)
        .check()
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidAccessKeyId"), "{e}");

    let e = s3.bucket("no-such-bucket").check().unwrap_err();
    assert_eq!(e.code(), Some("NoSuchBucket"), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("s3://no-such-bucket/") && text.contains("does not exist"),
        "{text}"
    );
    let e = s3.bucket("no-such-bucket").get("k", 10).unwrap_err();
    assert_eq!(e.code(), Some("NoSuchBucket"), "{e}");
    assert!(
        !e.is_not_found(),
        "a missing bucket is not a missing object: {e}"
    );

    // The right keys work on the same server.
    s3.bucket("pecd").check().unwrap();
}

/// A provider whose config has this `[blobs]` table, its key files written
/// with `mode`.
fn provider_with_blobs(blobs: &str, keys: &Keys, mode: u32) -> (TestCa, TestProvider) {
    use std::os::unix::fs::PermissionsExt;
    let ca = TestCa::new();
    let p = TestProvider::prepare(&ca, &ProviderSpec::new("alpha", "pec.alpha.test", &[]));
    for (name, value) in [
        ("s3-access", &keys.access_key),
        ("s3-secret", &keys.secret_key),
    ] {
        let f = p.path().join(name);
        std::fs::write(&f, format!("{value}\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    p.append_config(blobs);
    (ca, p)
}

fn blobs_table(endpoint: &str, bucket: &str) -> String {
    format!(
        "[blobs]\nbackend = \"s3\"\nendpoint = \"{endpoint}\"\nbucket = \"{bucket}\"\nregion = \"us-east-1\"\npath_style = true\naccess_key_file = \"s3-access\"\nsecret_key_file = \"s3-secret\"\n"
    )
}

fn check_config(p: &TestProvider, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(pecd_bin())
        .arg("--config")
        .arg(p.config_path())
        .arg("check-config")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("SSL_CERT_FILE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_config_asks_the_store_and_reports_its_answer() {
    let s3 = S3::start(&["pecd"]);
    let (_ca, p) = provider_with_blobs(&blobs_table(&s3.endpoint(), "pecd"), &s3.keys, 0o600);
    let (ok, out) = check_config(&p, &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "blobs: bucket \"pecd\" at {} answers to access key {}",
            s3.endpoint(),
            s3.keys.access_key
        )),
        "{out}"
    );
    // Honest about the state of the daemon.
    assert!(
        out.contains("warning: blobs.backend: \"s3\" is checked but not used yet"),
        "{out}"
    );

    // A bucket that does not exist: refused in the server's words.
    let (_ca, p) = provider_with_blobs(&blobs_table(&s3.endpoint(), "absent"), &s3.keys, 0o600);
    let (ok, out) = check_config(&p, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("does not answer") && out.contains("NoSuchBucket"),
        "{out}"
    );

    // A wrong secret.
    let mut wrong = s3.keys.clone();
    wrong.secret_key = "wrong".into();
    let (_ca, p) = provider_with_blobs(&blobs_table(&s3.endpoint(), "pecd"), &wrong, 0o600);
    let (ok, out) = check_config(&p, &[]);
    assert!(!ok && out.contains("SignatureDoesNotMatch"), "{out}");
}

#[test]
fn check_config_refuses_a_dead_endpoint_with_the_systems_words() {
    let keys = Keys {
        access_key: "AKIAEXAMPLE".into(),
        secret_key: "secret".into(),
    };
    // Nothing listens there.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (_ca, p) = provider_with_blobs(&blobs_table(&dead, "pecd"), &keys, 0o600);
    let (ok, out) = check_config(&p, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("blobs: bucket \"pecd\" at {dead} does not answer"))
            && out.contains("Connection refused"),
        "{out}"
    );
}

#[test]
fn check_config_names_each_bad_blobs_key() {
    let keys = Keys {
        access_key: "AKIAEXAMPLE".into(),
        secret_key: "secret".into(),
    };
    // Key files readable by others are refused, like signing.pin_file.
    let (_ca, p) = provider_with_blobs(&blobs_table("http://127.0.0.1:9", "pecd"), &keys, 0o644);
    let (ok, out) = check_config(&p, &[]);
    assert!(!ok, "{out}");
    for key in ["blobs.access_key_file", "blobs.secret_key_file"] {
        assert!(
            out.contains(&format!("{key}: "))
                && out.contains("readable by others (mode 644): chmod 600 it"),
            "{key}: {out}"
        );
    }
    // The store is not asked while its own keys are wrong.
    assert!(!out.contains("does not answer"), "{out}");

    for (table, want) in [
        (
            "[blobs]\nbackend = \"s3\"\n".to_string(),
            vec!["blobs.endpoint: required", "blobs.bucket: required"],
        ),
        (
            "[blobs]\nbackend = \"s3\"\nendpoint = \"127.0.0.1:9000\"\nbucket = \"Pecd_1\"\npath_style = true\n".into(),
            vec![
                "blobs.endpoint: \"127.0.0.1:9000\" must start with http:// or https://",
                "blobs.bucket: \"Pecd_1\" is not a bucket name",
            ],
        ),
        (
            "[blobs]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:9000/pecd\"\nbucket = \"pecd\"\n".into(),
            vec!["blobs.endpoint: \"http://127.0.0.1:9000/pecd\": only scheme, host and port"],
        ),
        (
            "[blobs]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"pecd\"\n".into(),
            vec!["blobs.path_style: http://127.0.0.1:9000 is an IP address"],
        ),
        (
            blobs_table("http://127.0.0.1:9", "pecd").replace("s3-access", "missing-file"),
            vec!["blobs.access_key_file: ", "missing-file: No such file or directory"],
        ),
        (
            "[blobs]\nbackend = \"ftp\"\n".into(),
            vec!["blobs.backend: unknown variant `ftp`"],
        ),
        (
            "[blobs]\nbucket = \"pecd\"\n".into(),
            vec!["blobs.bucket: only with blobs.backend = \"s3\""],
        ),
        (
            "[blobs]\nbackend = \"s3\"\nendpont = \"http://x\"\n".into(),
            vec!["blobs.endpont: unknown field"],
        ),
    ] {
        let (_ca, p) = provider_with_blobs(&table, &keys, 0o600);
        let (ok, out) = check_config(&p, &[]);
        assert!(!ok, "{table}: {out}");
        for w in want {
            assert!(out.contains(w), "{table}: {w:?} not in {out}");
        }
    }
}

#[test]
fn keys_come_from_the_environment_when_no_file_is_named() {
    let s3 = S3::start(&["pecd"]);
    let table = format!(
        "[blobs]\nbackend = \"s3\"\nendpoint = \"{}\"\nbucket = \"pecd\"\npath_style = true\n",
        s3.endpoint()
    );
    let (_ca, p) = provider_with_blobs(&table, &s3.keys, 0o600);
    let (ok, out) = check_config(&p, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("blobs.access_key_file: not set and AWS_ACCESS_KEY_ID not in the environment"),
        "{out}"
    );
    let (ok, out) = check_config(
        &p,
        &[
            ("AWS_ACCESS_KEY_ID", &s3.keys.access_key),
            ("AWS_SECRET_ACCESS_KEY", &s3.keys.secret_key),
        ],
    );
    assert!(ok && out.contains("answers to access key"), "{out}");
}

#[test]
fn an_https_endpoint_is_verified_with_the_system_roots() {
    let ca = TestCa::new();
    let p = TestProvider::prepare(&ca, &ProviderSpec::new("alpha", "pec.alpha.test", &[]));
    // The provider's TLS certificate names 127.0.0.1; its CA is the test's.
    let certs: PathBuf = p.path().join("certs");
    let s3 = S3::start_tls(&certs.join("tls.pem"), &certs.join("tls.key"), &["pecd"]);
    let (_ca2, q) = provider_with_blobs(&blobs_table(&s3.endpoint(), "pecd"), &s3.keys, 0o600);
    // A CA the system does not trust: refused.
    let (ok, out) = check_config(&q, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("does not answer") && out.contains("certificate verify failed"),
        "{out}"
    );
    // Trusted through openssl's own variable: it answers.
    let ca_pem = certs.join("ca.pem");
    let (ok, out) = check_config(&q, &[("SSL_CERT_FILE", ca_pem.to_str().unwrap())]);
    assert!(ok && out.contains("answers to access key"), "{out}");
}

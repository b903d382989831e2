//! The protocol engine over real TCP on 127.0.0.1, with a raw client and a
//! backend that only records what reached it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_openssl::SslStream;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<(SessionInfo, Envelope, Vec<u8>)>>,
}

impl Recorder {
    fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }
}

impl Backend for Recorder {
    async fn authenticate(
        &self,
        _info: &SessionInfo,
        user: &str,
        password: &str,
    ) -> Result<String, Reply> {
        if user == "alice" && password == "secret" {
            Ok("alice@pec.test".into())
        } else {
            Err(Reply::auth_failed())
        }
    }

    async fn mail_from(&self, _info: &SessionInfo, from: &str) -> Result<(), Reply> {
        if from == "blocked@bad.test" {
            Err(Reply::new(550, (5, 7, 1), "Sender refused"))
        } else {
            Ok(())
        }
    }

    async fn rcpt_to(&self, _info: &SessionInfo, _env: &Envelope, rcpt: &str) -> Result<(), Reply> {
        if rcpt.starts_with("nobody@") {
            Err(Reply::new(550, (5, 1, 1), "No such user"))
        } else {
            Ok(())
        }
    }

    async fn data(&self, info: &SessionInfo, env: &Envelope, message: Vec<u8>) -> Reply {
        let mut m = self.messages.lock().unwrap();
        m.push((info.clone(), env.clone(), message));
        Reply::queued(&format!("TEST{}", m.len()))
    }
}

/// Throwaway CA and a TLS acceptor for `localhost`, made once per test binary.
fn pki() -> &'static (crate::tls::Acceptor, X509) {
    static PKI: OnceLock<(crate::tls::Acceptor, X509)> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = crate::certs::generate_ca("smtp test CA").unwrap();
        let tls = crate::certs::generate_tls(&ca, "mx.test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
        tls.write(&cert, &key).unwrap();
        let acceptor = crate::tls::acceptor_from_files(&cert, &key).unwrap();
        (acceptor, ca.cert)
    })
}

fn config(mode: Mode) -> SmtpConfig {
    let mut c = SmtpConfig::new("mx.test", mode);
    c.max_message_size = 1000;
    c
}

fn with_tls(mut c: SmtpConfig) -> SmtpConfig {
    c.tls = Some(pki().0.clone());
    c
}

struct Server {
    addr: SocketAddr,
    backend: Arc<Recorder>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn start(cfg: SmtpConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = Arc::new(Recorder::default());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve(listener, Arc::new(cfg), backend.clone(), rx));
    Server {
        addr,
        backend,
        stop,
        task,
    }
}

struct Client<S> {
    io: BufReader<S>,
}

impl Client<TcpStream> {
    async fn connect(addr: SocketAddr) -> Self {
        Client {
            io: BufReader::new(TcpStream::connect(addr).await.unwrap()),
        }
    }

    /// Connect and read the banner.
    async fn greeted(addr: SocketAddr) -> Self {
        let mut c = Self::connect(addr).await;
        assert_eq!(c.reply().await, (220, "mx.test ESMTP pecd".to_string()));
        c
    }

    async fn starttls(mut self) -> Client<SslStream<TcpStream>> {
        self.expect("STARTTLS", 220, "2.0.0").await;
        assert!(self.io.buffer().is_empty(), "bytes after 220 to STARTTLS");
        Client {
            io: BufReader::new(tls_connect(self.io.into_inner()).await),
        }
    }
}

async fn tls_connect(tcp: TcpStream) -> SslStream<TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.cert_store_mut().add_cert(pki().1.clone()).unwrap();
    b.set_verify(SslVerifyMode::PEER);
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap();
    let mut s = SslStream::new(ssl, tcp).unwrap();
    timeout(WAIT, Pin::new(&mut s).connect())
        .await
        .unwrap()
        .unwrap();
    s
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, bytes: &[u8]) {
        self.io.get_mut().write_all(bytes).await.unwrap();
        self.io.get_mut().flush().await.unwrap();
    }

    /// One complete reply: its code and its text lines joined by `'\n'`.
    async fn reply(&mut self) -> (u16, String) {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = timeout(WAIT, self.io.read_line(&mut l))
                .await
                .expect("no reply in time")
                .unwrap();
            assert!(n > 0, "connection closed; lines so far {lines:?}");
            assert!(l.ends_with("\r\n"), "reply line without CRLF: {l:?}");
            let code: u16 = l[..3].parse().unwrap();
            let last = l.as_bytes()[3] == b' ';
            lines.push(l[4..].trim_end_matches("\r\n").to_string());
            if last {
                return (code, lines.join("\n"));
            }
        }
    }

    /// Next reply must have `code` and its text must start with `prefix`.
    async fn expect_reply(&mut self, code: u16, prefix: &str) -> String {
        let (c, text) = self.reply().await;
        assert_eq!(c, code, "reply text: {text}");
        assert!(
            text.starts_with(prefix),
            "{c} {text:?} does not start with {prefix:?}"
        );
        text
    }

    async fn expect(&mut self, line: &str, code: u16, prefix: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.expect_reply(code, prefix).await
    }

    async fn ehlo(&mut self) -> Vec<String> {
        let text = self.expect("EHLO client.test", 250, "mx.test").await;
        text.lines().skip(1).map(str::to_string).collect()
    }

    async fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        let r = timeout(WAIT, self.io.read_to_end(&mut rest))
            .await
            .expect("connection not closed");
        // A reset is as closed as a FIN.
        if r.is_ok() {
            assert!(
                rest.is_empty(),
                "unexpected bytes {:?}",
                String::from_utf8_lossy(&rest)
            );
        }
    }
}

fn b64(s: &[u8]) -> String {
    openssl::base64::encode_block(s)
}

#[tokio::test]
async fn banner_and_ehlo_capabilities() {
    let srv = start(with_tls(config(Mode::Inbound))).await;
    let mut c = Client::greeted(srv.addr).await;
    let caps = c.ehlo().await;
    assert_eq!(
        caps,
        [
            "PIPELINING",
            "SIZE 1000",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "STARTTLS"
        ]
    );
    c.expect("HELO client.test", 250, "mx.test").await;
    c.expect("QUIT", 221, "2.0.0").await;
    c.expect_closed().await;

    // Submission in clear: no AUTH offered, and no STARTTLS without a TLS context.
    let srv = start(config(Mode::Submission)).await;
    let mut c = Client::greeted(srv.addr).await;
    let caps = c.ehlo().await;
    assert!(
        !caps
            .iter()
            .any(|c| c.starts_with("AUTH") || c == "STARTTLS"),
        "{caps:?}"
    );
    c.expect("STARTTLS", 502, "5.5.1").await;
}

#[tokio::test]
async fn pipelined_transactions() {
    let srv = start(config(Mode::Inbound)).await;
    let mut c = Client::greeted(srv.addr).await;
    c.send(
        b"EHLO client.test\r\nMAIL FROM:<a@b.test> BODY=8BITMIME\r\nRCPT TO:<x@y.test>\r\n\
          RCPT TO:<nobody@y.test>\r\nRCPT TO: <z@y.test>\r\nDATA\r\n",
    )
    .await;
    c.expect_reply(250, "mx.test").await;
    c.expect_reply(250, "2.1.0").await;
    c.expect_reply(250, "2.1.5").await;
    c.expect_reply(550, "5.1.1").await;
    c.expect_reply(250, "2.1.5").await;
    c.expect_reply(354, "").await;
    // The end of this message and the whole next transaction arrive in one write.
    c.send(
        b"Subject: t\r\n\r\n..dot\r\nbody\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<q@y.test>\r\nDATA\r\n",
    )
    .await;
    c.expect_reply(250, "2.0.0 Ok: queued as TEST1").await;
    c.expect_reply(250, "2.1.0").await;
    c.expect_reply(250, "2.1.5").await;
    c.expect_reply(354, "").await;
    c.send(b".\r\n").await;
    c.expect_reply(250, "2.0.0 Ok: queued as TEST2").await;
    // A client that does not wait for 354: content right behind DATA is not lost.
    c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nthird\r\n.\r\nQUIT\r\n")
        .await;
    c.expect_reply(250, "2.1.0").await;
    c.expect_reply(250, "2.1.5").await;
    c.expect_reply(354, "").await;
    c.expect_reply(250, "2.0.0 Ok: queued as TEST3").await;
    c.expect_reply(221, "2.0.0").await;
    c.expect_closed().await;

    let m = srv.backend.messages.lock().unwrap();
    assert_eq!(m.len(), 3);
    let (info, env, bytes) = &m[0];
    assert_eq!(info.helo.as_deref(), Some("client.test"));
    assert!(!info.tls);
    assert_eq!(env.mail_from, "a@b.test");
    assert_eq!(env.rcpt_to, ["x@y.test", "z@y.test"]);
    assert!(env.body_8bit);
    assert_eq!(bytes, b"Subject: t\r\n\r\n.dot\r\nbody\r\n");
    assert_eq!(m[1].1.mail_from, "");
    assert_eq!(m[1].2, b"");
    assert_eq!(m[2].2, b"third\r\n");
}

#[tokio::test]
async fn sequence_errors() {
    let srv = start(config(Mode::Inbound)).await;
    let mut c = Client::greeted(srv.addr).await;
    c.expect("MAIL FROM:<a@b.test>", 503, "5.5.1").await;
    c.ehlo().await;
    c.expect("RCPT TO:<x@y.test>", 503, "5.5.1").await;
    c.expect("DATA", 503, "5.5.1").await;
    c.expect("MAIL FROM:<a@b.test>", 250, "2.1.0").await;
    c.expect("MAIL FROM:<a@b.test>", 503, "5.5.1").await;
    c.expect("DATA", 503, "5.5.1").await;
    c.expect("RCPT TO:<x@y.test> NOTIFY=NEVER", 555, "5.5.4")
        .await;
    c.expect("RSET", 250, "2.0.0").await;
    c.expect("RCPT TO:<x@y.test>", 503, "5.5.1").await;
    c.expect("MAIL FROM:a@b.test", 501, "5.5.4").await;
    c.expect("VRFY alice", 252, "2.0.0").await;
    c.expect("HELP", 214, "2.0.0").await;
    c.expect("NOOP", 250, "2.0.0").await;
    assert_eq!(srv.backend.count(), 0);
}

#[tokio::test]
async fn long_lines_and_unknown_commands() {
    let srv = start(config(Mode::Inbound)).await;
    let mut c = Client::greeted(srv.addr).await;
    // 510 octets + CRLF = 512: the limit itself is fine.
    let at_limit = format!("NOOP {}", "x".repeat(505));
    c.expect(&at_limit, 250, "2.0.0").await;
    let over = format!("NOOP {}", "x".repeat(506));
    c.expect(&over, 500, "5.5.2 Line too long").await;
    // Far beyond any buffer: discarded up to its LF, the session stays in sync.
    let huge = "x".repeat(50_000);
    c.expect(&huge, 500, "5.5.2 Line too long").await;
    c.expect("FOO bar", 500, "5.5.2").await;
    c.expect("NOOP", 250, "2.0.0").await;
}

#[tokio::test]
async fn too_many_errors_closes() {
    let mut cfg = config(Mode::Inbound);
    cfg.max_errors = 3;
    let srv = start(cfg).await;
    let mut c = Client::greeted(srv.addr).await;
    for _ in 0..3 {
        c.expect("FOO", 500, "5.5.2").await;
    }
    c.expect("FOO", 421, "4.7.0").await;
    c.expect_closed().await;
}

#[tokio::test]
async fn oversize_by_parameter_and_by_content() {
    let srv = start(config(Mode::Inbound)).await;
    let mut c = Client::greeted(srv.addr).await;
    c.ehlo().await;
    c.expect("MAIL FROM:<a@b.test> SIZE=1001", 552, "5.3.4")
        .await;
    c.expect("MAIL FROM:<a@b.test> SIZE=1000", 250, "2.1.0")
        .await;
    c.expect("RCPT TO:<x@y.test>", 250, "2.1.5").await;
    c.expect("DATA", 354, "").await;
    let mut big = Vec::new();
    for _ in 0..100 {
        big.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    big.extend_from_slice(b".\r\nNOOP\r\n");
    c.send(&big).await;
    c.expect_reply(552, "5.3.4").await;
    c.expect_reply(250, "2.0.0").await;
    assert_eq!(srv.backend.count(), 0);
    // The session goes on and a message within the limit passes.
    c.expect("MAIL FROM:<a@b.test>", 250, "2.1.0").await;
    c.expect("RCPT TO:<x@y.test>", 250, "2.1.5").await;
    c.expect("DATA", 354, "").await;
    c.expect("small\r\n.", 250, "2.0.0").await;
    assert_eq!(srv.backend.count(), 1);
}

#[tokio::test]
async fn spooled_data_is_exact_and_bounded_by_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let budget = crate::memory::MemoryBudget::new(400_000);
    let mut cfg = config(Mode::Inbound);
    cfg.max_message_size = 1 << 20;
    cfg.spool_threshold = 8 * 1024;
    cfg.spool_dir = dir.path().to_path_buf();
    cfg.memory = budget.clone();
    cfg.message_memory_factor = 2;
    cfg.memory_wait = Duration::from_millis(50);
    let srv = start(cfg).await;
    let mut c = Client::greeted(srv.addr).await;
    c.ehlo().await;
    // Dot-stuffed lines land on both sides of every spill, some split there.
    let (mut wire, mut want) = (Vec::new(), Vec::new());
    for i in 0..3000 {
        let line = format!(".{i:05} the leading dot was doubled on the wire\r\n");
        wire.push(b'.');
        wire.extend_from_slice(line.as_bytes());
        want.extend_from_slice(line.as_bytes());
    }
    wire.extend_from_slice(b".\r\nNOOP\r\n");
    c.expect("MAIL FROM:<a@b.test>", 250, "2.1.0").await;
    c.expect("RCPT TO:<x@y.test>", 250, "2.1.5").await;
    c.expect("DATA", 354, "").await;
    for piece in wire.chunks(1000) {
        c.send(piece).await;
    }
    c.expect_reply(250, "2.0.0").await;
    c.expect_reply(250, "2.0.0 Ok").await;
    assert_eq!(srv.backend.messages.lock().unwrap()[0].2, want);
    assert_eq!(budget.in_use(), 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // A bare LF after the first spill still refuses the whole message.
    c.expect("MAIL FROM:<a@b.test>", 250, "2.1.0").await;
    c.expect("RCPT TO:<x@y.test>", 250, "2.1.5").await;
    c.expect("DATA", 354, "").await;
    let mut body = want.clone();
    body.extend_from_slice(b"x\n.\r\nMAIL FROM:<evil@x.test>\r\n.\r\n");
    c.send(&body).await;
    c.expect_reply(554, "5.6.0").await;

    // Twice the size of a message that big cannot be had: 452, and the
    // session goes on with a small one.
    c.expect("MAIL FROM:<a@b.test>", 250, "2.1.0").await;
    c.expect("RCPT TO:<x@y.test>", 250, "2.1.5").await;
    c.expect("DATA", 354, "").await;
    let mut body = want.repeat(2);
    body.extend_from_slice(b".\r\n");
    c.send(&body).await;
    c.expect_reply(452, "4.3.1").await;
    c.expect("MAIL FROM:<a@b.test>", 250, "2.1.0").await;
    c.expect("RCPT TO:<x@y.test>", 250, "2.1.5").await;
    c.expect("DATA", 354, "").await;
    c.expect("small\r\n.", 250, "2.0.0").await;
    assert_eq!(srv.backend.count(), 2);
    assert_eq!(budget.in_use(), 0);
}

#[tokio::test]
async fn smuggling_never_starts_a_second_transaction() {
    let srv = start(config(Mode::Inbound)).await;
    let mut c = Client::greeted(srv.addr).await;
    c.ehlo().await;
    let payloads: [&[u8]; 5] = [b"\n.\r\n", b"\n.\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r"];
    for p in payloads {
        c.expect("MAIL FROM:<a@b.test>", 250, "2.1.0").await;
        c.expect("RCPT TO:<x@y.test>", 250, "2.1.5").await;
        c.expect("DATA", 354, "").await;
        let mut body = b"Subject: hi\r\n\r\nhello".to_vec();
        body.extend_from_slice(p);
        body.extend_from_slice(
            b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\nevil\r\n.\r\nNOOP\r\n",
        );
        c.send(&body).await;
        // Exactly one answer for the whole thing, then the NOOP's.
        c.expect_reply(554, "5.6.0").await;
        c.expect_reply(250, "2.0.0 Ok").await;
        assert_eq!(srv.backend.count(), 0, "payload {p:?}");
    }
    c.expect("MAIL FROM:<a@b.test>", 250, "2.1.0").await;
    c.expect("RCPT TO:<x@y.test>", 250, "2.1.5").await;
    c.expect("DATA", 354, "").await;
    c.expect("clean\r\n.", 250, "2.0.0").await;
    let m = srv.backend.messages.lock().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].1.rcpt_to, ["x@y.test"]);
    assert_eq!(m[0].2, b"clean\r\n");
}

#[tokio::test]
async fn submission_needs_tls_then_auth() {
    let srv = start(with_tls(config(Mode::Submission))).await;
    let mut c = Client::greeted(srv.addr).await;
    let caps = c.ehlo().await;
    assert!(caps.contains(&"STARTTLS".to_string()));
    assert!(!caps.iter().any(|c| c.starts_with("AUTH")), "{caps:?}");
    c.expect(
        &format!("AUTH PLAIN {}", b64(b"\0alice\0secret")),
        538,
        "5.7.11",
    )
    .await;
    c.expect("MAIL FROM:<alice@pec.test>", 530, "5.7.0").await;

    let mut c = c.starttls().await;
    // RFC 3207: the session starts over.
    c.expect("MAIL FROM:<alice@pec.test>", 503, "5.5.1").await;
    let caps = c.ehlo().await;
    assert!(caps.contains(&"AUTH PLAIN LOGIN".to_string()), "{caps:?}");
    assert!(!caps.contains(&"STARTTLS".to_string()));
    c.expect("STARTTLS", 503, "5.5.1").await;
    c.expect("MAIL FROM:<alice@pec.test>", 530, "5.7.0").await;
    c.expect(
        &format!("AUTH PLAIN {}", b64(b"\0alice\0wrong")),
        535,
        "5.7.8",
    )
    .await;
    c.expect(
        &format!("AUTH PLAIN {}", b64(b"bob\0alice\0secret")),
        535,
        "5.7.8",
    )
    .await;
    c.expect(
        &format!("AUTH PLAIN {}", b64(b"alice\0alice\0secret")),
        235,
        "2.7.0",
    )
    .await;
    c.expect("AUTH LOGIN", 503, "5.5.1").await;
    c.expect("MAIL FROM:<alice@pec.test>", 250, "2.1.0").await;
    c.expect("RCPT TO:<bob@pec.test>", 250, "2.1.5").await;
    c.expect("DATA", 354, "").await;
    c.expect("Subject: x\r\n\r\nciao\r\n.", 250, "2.0.0").await;
    c.expect("QUIT", 221, "2.0.0").await;

    let m = srv.backend.messages.lock().unwrap();
    assert_eq!(m.len(), 1);
    assert!(m[0].0.tls);
    assert_eq!(m[0].0.auth_user.as_deref(), Some("alice@pec.test"));
    assert_eq!(m[0].2, b"Subject: x\r\n\r\nciao\r\n");
}

#[tokio::test]
async fn starttls_discards_pipelined_plaintext() {
    let srv = start(with_tls(config(Mode::Inbound))).await;
    let mut c = Client::greeted(srv.addr).await;
    c.ehlo().await;
    // The injected HELP would answer 214; EHLO would re-greet the session.
    c.send(b"STARTTLS\r\nHELP\r\nEHLO injected\r\n").await;
    c.expect_reply(220, "2.0.0").await;
    let mut c = Client {
        io: BufReader::new(tls_connect(c.io.into_inner()).await),
    };
    c.expect("NOOP", 250, "2.0.0 Ok").await;
    c.expect("MAIL FROM:<a@b.test>", 503, "5.5.1").await;
}

#[tokio::test]
async fn implicit_tls_and_auth_exchanges() {
    let mut cfg = with_tls(config(Mode::Submission));
    cfg.implicit_tls = true;
    let srv = start(cfg).await;
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let mut c = Client {
        io: BufReader::new(tls_connect(tcp).await),
    };
    c.expect_reply(220, "mx.test ESMTP pecd").await;
    c.expect("AUTH LOGIN", 503, "5.5.1").await; // before EHLO
    let caps = c.ehlo().await;
    assert!(caps.contains(&"AUTH PLAIN LOGIN".to_string()));
    assert!(!caps.contains(&"STARTTLS".to_string()));
    c.expect("STARTTLS", 503, "5.5.1").await;
    c.expect("AUTH CRAM-MD5", 504, "5.5.4").await;

    // Cancelling either mechanism.
    c.expect("AUTH LOGIN", 334, "VXNlcm5hbWU6").await;
    c.expect("*", 501, "5.7.0").await;
    let text = c.expect("AUTH PLAIN", 334, "").await;
    assert_eq!(text, "");
    c.expect("*", 501, "5.7.0").await;
    c.expect("AUTH PLAIN", 334, "").await;
    c.expect("!!not base64!!", 501, "5.5.2").await;

    // LOGIN without, then with, an initial response.
    c.expect("AUTH LOGIN", 334, "VXNlcm5hbWU6").await;
    c.expect(&b64(b"alice"), 334, "UGFzc3dvcmQ6").await;
    c.expect(&b64(b"wrong"), 535, "5.7.8").await;
    c.expect(
        &format!("AUTH LOGIN {}", b64(b"alice")),
        334,
        "UGFzc3dvcmQ6",
    )
    .await;
    c.expect(&b64(b"secret"), 235, "2.7.0").await;
    c.expect("MAIL FROM:<alice@pec.test>", 250, "2.1.0").await;

    // PLAIN as a challenge response, on a fresh connection.
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let mut c = Client {
        io: BufReader::new(tls_connect(tcp).await),
    };
    c.expect_reply(220, "mx.test").await;
    c.ehlo().await;
    c.expect("AUTH PLAIN", 334, "").await;
    c.expect(&b64(b"\0alice\0secret"), 235, "2.7.0").await;
}

#[tokio::test]
async fn inbound_mode_rules_and_limits() {
    let mut cfg = with_tls(config(Mode::Inbound));
    cfg.max_recipients = 2;
    let srv = start(cfg).await;
    let mut c = Client::greeted(srv.addr).await;
    c.ehlo().await;
    c.expect(
        &format!("AUTH PLAIN {}", b64(b"\0alice\0secret")),
        502,
        "5.5.1",
    )
    .await;
    let mut c = c.starttls().await;
    let caps = c.ehlo().await;
    assert!(!caps.iter().any(|c| c.starts_with("AUTH")), "{caps:?}");
    c.expect("AUTH LOGIN", 502, "5.5.1").await;
    c.expect("MAIL FROM:<blocked@bad.test>", 550, "5.7.1").await;
    c.expect("MAIL FROM:<a@b.test>", 250, "2.1.0").await;
    c.expect("RCPT TO:<x1@y.test>", 250, "2.1.5").await;
    c.expect("RCPT TO:<x2@y.test>", 250, "2.1.5").await;
    c.expect("RCPT TO:<x3@y.test>", 452, "4.5.3").await;
    c.expect("DATA", 354, "").await;
    c.expect("hi\r\n.", 250, "2.0.0").await;
    let m = srv.backend.messages.lock().unwrap();
    assert_eq!(m[0].1.rcpt_to, ["x1@y.test", "x2@y.test"]);
    assert!(m[0].0.tls);
    assert_eq!(m[0].0.auth_user, None);
}

#[tokio::test]
async fn shutdown_answers_421_and_serve_returns() {
    let srv = start(config(Mode::Inbound)).await;
    let mut idle = Client::greeted(srv.addr).await;
    idle.ehlo().await;
    let mut busy = Client::greeted(srv.addr).await;
    busy.ehlo().await;
    busy.expect("MAIL FROM:<a@b.test>", 250, "2.1.0").await;
    busy.expect("RCPT TO:<x@y.test>", 250, "2.1.5").await;
    busy.expect("DATA", 354, "").await;
    busy.send(b"first half\r\n").await;

    srv.stop.send(true).unwrap();
    idle.expect_reply(421, "4.3.2").await;
    idle.expect_closed().await;
    // A message in flight is finished, then the session is told to go.
    busy.send(b"second half\r\n.\r\n").await;
    busy.expect_reply(250, "2.0.0").await;
    busy.expect_reply(421, "4.3.2").await;
    busy.expect_closed().await;

    timeout(WAIT, srv.task)
        .await
        .expect("serve did not return")
        .unwrap();
    assert!(
        TcpStream::connect(srv.addr).await.is_err(),
        "still accepting"
    );
    assert_eq!(
        srv.backend.messages.lock().unwrap()[0].2,
        b"first half\r\nsecond half\r\n"
    );
}

#[tokio::test]
async fn command_and_data_timeouts() {
    let mut cfg = config(Mode::Inbound);
    cfg.command_timeout = Duration::from_millis(200);
    let srv = start(cfg).await;
    let mut c = Client::greeted(srv.addr).await;
    c.expect_reply(421, "4.4.2").await;
    c.expect_closed().await;

    let mut cfg = config(Mode::Inbound);
    cfg.data_timeout = Duration::from_millis(300);
    let srv = start(cfg).await;
    let mut c = Client::greeted(srv.addr).await;
    c.ehlo().await;
    c.expect("MAIL FROM:<a@b.test>", 250, "2.1.0").await;
    c.expect("RCPT TO:<x@y.test>", 250, "2.1.5").await;
    c.expect("DATA", 354, "").await;
    // Trickling bytes keeps each read short, yet the whole phase is bounded
    // (command_timeout is the 5-minute default here, so only data_timeout can fire).
    for _ in 0..3 {
        c.send(b"x\r\n").await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    c.expect_reply(421, "4.4.2").await;
    c.expect_closed().await;
    assert_eq!(srv.backend.count(), 0);
}

#[tokio::test]
async fn connection_limit() {
    let mut cfg = config(Mode::Inbound);
    cfg.max_connections = 1;
    let srv = start(cfg).await;
    let mut first = Client::greeted(srv.addr).await;
    let mut second = Client::connect(srv.addr).await;
    second.expect_reply(421, "4.7.0").await;
    second.expect_closed().await;
    first.expect("QUIT", 221, "2.0.0").await;
    first.expect_closed().await;
    // The slot frees once the first session task has ended.
    let mut ok = false;
    for _ in 0..50 {
        let mut c = Client::connect(srv.addr).await;
        if c.reply().await.0 == 220 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "slot never freed");
}

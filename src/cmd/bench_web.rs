//! `pecd bench --webmail`: how long the webmail takes to answer the first
//! page of a large folder (issue 11's figure: 10,000 messages, p99 under
//! 200 ms), over HTTPS with a new TLS connection per request as a browser
//! tab opened afresh would, against a provider running in this process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslStream};

use super::percentiles::Percentiles;
use crate::lab::{Lab, LabProvider, LAB_PASSWORD};

const ALICE: &str = "alice@pec.alpha.test";
/// The issue's target for the first page's p99.
const TARGET_MS: f64 = 200.0;

/// What one webmail run measured.
#[derive(Debug, serde::Serialize)]
pub struct WebReport {
    /// Messages in the folder.
    pub messages: usize,
    /// Requests timed.
    pub requests: usize,
    /// Request (TLS handshake included) -> whole response (ms).
    pub first_page_ms: Percentiles,
    /// p99 divided by the 200 ms target (below 1 meets it).
    pub p99_of_target: f64,
    /// Whether the build has debug assertions (figures of a debug build are
    /// not the product's).
    pub debug_build: bool,
}

/// Why the webmail benchmark stopped.
#[derive(Debug)]
pub enum WebBenchError {
    /// The folder could not be filled: the folder and why.
    Fill(std::path::PathBuf, std::io::Error),
    /// OpenSSL failed setting up the client.
    Tls(openssl::error::ErrorStack),
    /// The TLS handshake failed.
    Handshake(String),
    /// Connecting, writing or reading failed.
    Io(std::io::Error),
    /// The response has no head.
    NoHead,
    /// The response's status line has no status.
    NoStatus,
    /// The login was refused: the status.
    Login(u16),
    /// The login answer set no session cookie.
    NoCookie,
    /// The first page was not the whole folder: the status and the count
    /// expected.
    FirstPage(u16, String),
}

impl std::fmt::Display for WebBenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebBenchError::Fill(p, e) => write!(f, "{}: {e}", p.display()),
            WebBenchError::Tls(e) => write!(f, "{e}"),
            WebBenchError::Handshake(e) => f.write_str(e),
            WebBenchError::Io(e) => write!(f, "{e}"),
            WebBenchError::NoHead => f.write_str("no HTTP head"),
            WebBenchError::NoStatus => f.write_str("no HTTP status"),
            WebBenchError::Login(status) => write!(f, "login answered {status}"),
            WebBenchError::NoCookie => f.write_str("login set no cookie"),
            WebBenchError::FirstPage(status, total) => {
                write!(f, "first page answered {status} without {total}")
            }
        }
    }
}

impl std::error::Error for WebBenchError {}

impl From<std::io::Error> for WebBenchError {
    fn from(e: std::io::Error) -> Self {
        WebBenchError::Io(e)
    }
}

impl From<openssl::error::ErrorStack> for WebBenchError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        WebBenchError::Tls(e)
    }
}

/// Fill alice's INBOX with `n` messages, log in, time `requests` first pages.
pub async fn bench(n: usize, requests: usize) -> Result<WebReport, Box<dyn std::error::Error>> {
    let lab = Lab::start(
        &[LabProvider {
            name: "Alpha PEC S.p.A.".into(),
            domain: "pec.alpha.test".into(),
            users: vec!["alice".into()],
            config: String::new(),
        }],
        "",
    )
    .await?;
    let p = &lab.providers[0];
    let addr = p.bound.web.ok_or("the lab has no webmail listener")?;
    let new = crate::store::mailbox::address_dir(&p.ctx.store.paths().mail, ALICE)
        .map_err(|e| format!("{ALICE}: {e:?}"))?
        .join("new");
    let ca = openssl::x509::X509::from_pem(&lab.ca_pem)?;
    let timed = tokio::task::spawn_blocking(move || -> Result<Vec<f64>, WebBenchError> {
        fill(&new, n).map_err(|e| WebBenchError::Fill(new.clone(), e))?;
        let mut b = SslConnector::builder(SslMethod::tls_client())?;
        b.cert_store_mut().add_cert(ca)?;
        let tls = b.build();
        let login = format!(r#"{{"username":"{ALICE}","password":"{LAB_PASSWORD}"}}"#);
        let (status, head, _) = request(&tls, addr, "POST", "/api/v1/session", None, &login)?;
        if status != 200 {
            return Err(WebBenchError::Login(status));
        }
        let cookie = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("set-cookie: ")
                    .or(l.strip_prefix("Set-Cookie: "))
            })
            .and_then(|c| c.split(';').next())
            .ok_or(WebBenchError::NoCookie)?
            .to_string();
        let path = "/api/v1/folders/INBOX/messages?limit=50";
        let mut times = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            let (status, _, body) = request(&tls, addr, "GET", path, Some(&cookie), "")?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            let total = format!("\"total\":{n}");
            if status != 200 || !body.contains(&total) {
                return Err(WebBenchError::FirstPage(status, total));
            }
        }
        Ok(times)
    })
    .await??;
    lab.stop().await;
    let first_page_ms = Percentiles::of(timed);
    Ok(WebReport {
        messages: n,
        requests,
        p99_of_target: first_page_ms.p99 / TARGET_MS,
        first_page_ms,
        debug_build: cfg!(debug_assertions),
    })
}

/// `n` small messages, newest last, straight into `new/` as a delivery leaves them.
fn fill(new: &std::path::Path, n: usize) -> std::io::Result<()> {
    for i in 0..n {
        let m = format!(
            "From: {ALICE}\r\nTo: {ALICE}\r\nSubject: messaggio {i}\r\n\
             Date: Tue, 1 Dec 2026 10:00:00 +0100\r\nMessage-ID: <bench-{i}@pec.alpha.test>\r\n\r\ntesto\r\n"
        );
        std::fs::write(new.join(format!("{}.M{i}P1Q1.bench", 1_700_000_000 + i)), m)?;
    }
    Ok(())
}

/// One HTTP/1.1 request on a new TLS connection: status, head, body.
fn request(
    tls: &SslConnector,
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> Result<(u16, String, String), WebBenchError> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut s: SslStream<TcpStream> = tls
        .connect("127.0.0.1", tcp)
        .map_err(|e| WebBenchError::Handshake(e.to_string()))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut all = Vec::new();
    // `Connection: close`: the response ends where the stream does.
    match s.read_to_end(&mut all) {
        Ok(_) => {}
        Err(e) if !all.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.into()),
    }
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or(WebBenchError::NoHead)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(WebBenchError::NoStatus)?;
    Ok((status, head.to_string(), body.to_string()))
}

//! Virus scanning with ClamAV's daemon over its socket (`INSTREAM`, no
//! temporary files), and the attachment-name rules of the access point.
//!
//! The protocol side is sans-IO ([`instream_frames`], [`parse_reply`]) so it
//! is tested without a clamd; [`Scanner::scan`] drives it over one fresh
//! connection per scan, so scans run side by side with no shared lock.

pub mod endpoint;
pub mod probe;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::{AntivirusSection, Config, OnError};

pub use endpoint::{Endpoint, EndpointError};

/// What clamd said about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No signature matched.
    Clean,
    /// A signature matched: its name.
    Infected(String),
}

/// A scan that gave no verdict: clamd down, slow, or answering an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError(pub String);

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Chunk size of the stream; clamd reads chunks of any size up to its limit.
pub const CHUNK: usize = 64 * 1024;

/// The `INSTREAM` request for `data`: command, length-prefixed chunks, and
/// the zero-length terminator, as a sequence of byte slices to write.
pub fn instream_frames(data: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let head = std::iter::once(b"zINSTREAM\0".to_vec());
    let chunks = data.chunks(CHUNK).map(|c| {
        let mut v = Vec::with_capacity(4 + c.len());
        v.extend_from_slice(&(c.len() as u32).to_be_bytes());
        v.extend_from_slice(c);
        v
    });
    head.chain(chunks).chain(std::iter::once(vec![0, 0, 0, 0]))
}

/// Longest line of a clamd reply taken: a signature name is short, and
/// what clamd says reaches SMTP replies and notices.
pub const MAX_REPLY_LINE: usize = 256;

/// Interpret clamd's reply to `zINSTREAM`: NUL-terminated lines, exactly
/// `stream: OK`, `stream: <name> FOUND` (one line per signature with
/// `AllMatchScanning`) or `<text> ERROR`, in printable ASCII of at most
/// [`MAX_REPLY_LINE`] bytes. Anything else (a bare `OK`, a control byte, a
/// line cut short or too long) is a scan failure, never a verdict: a
/// broken or hostile clamd cannot pass a message as clean, nor put its
/// bytes into a reply to a client.
pub fn parse_reply(reply: &[u8]) -> Result<Verdict, ScanError> {
    if reply.is_empty() {
        return Err(ScanError(
            "clamd closed the connection without a reply".into(),
        ));
    }
    // Each line ends with the z-commands' NUL (a newline from n-commands).
    let Some(body) = reply
        .strip_suffix(b"\0")
        .or_else(|| reply.strip_suffix(b"\n"))
    else {
        return Err(unexpected(reply));
    };
    let lines: Vec<&[u8]> = body.split(|&b| b == 0 || b == b'\n').collect();
    let printable = |l: &[u8]| {
        !l.is_empty() && l.len() <= MAX_REPLY_LINE && l.iter().all(|b| (0x20..0x7f).contains(b))
    };
    if !lines.iter().all(|l| printable(l)) {
        return Err(unexpected(reply));
    }
    // Printable ASCII: UTF-8.
    let lines: Vec<&str> = lines
        .iter()
        .filter_map(|l| std::str::from_utf8(l).ok())
        .collect();
    if let [text] = lines.as_slice() {
        if text.ends_with(" ERROR") {
            if text.contains("size limit exceeded") {
                return Err(ScanError(format!(
                    "clamd refused the stream ({text}): its StreamMaxLength is below antivirus.max_scan_size"
                )));
            }
            return Err(ScanError(format!("clamd: {text}")));
        }
        if *text == "stream: OK" {
            return Ok(Verdict::Clean);
        }
    }
    let mut names = lines.iter().map(|l| {
        l.strip_prefix("stream: ")
            .and_then(|r| r.strip_suffix(" FOUND"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()))
    });
    match names.next() {
        Some(Some(first)) if names.all(|n| n.is_some()) => Ok(Verdict::Infected(first.to_string())),
        _ => Err(unexpected(reply)),
    }
}

/// A scan failure quoting what clamd said, escaped and cut to a bounded length.
fn unexpected(reply: &[u8]) -> ScanError {
    const SHOWN: usize = 80;
    let head: String = reply
        .iter()
        .take(SHOWN)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    let more = if reply.len() > SHOWN {
        format!("... ({} bytes)", reply.len())
    } else {
        String::new()
    };
    ScanError(format!("clamd: unexpected reply \"{head}{more}\""))
}

/// Why `[antivirus]` makes no scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    /// `antivirus.clamd` names no socket.
    Clamd(EndpointError),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Clamd(e) => write!(f, "antivirus.clamd: {e}"),
        }
    }
}

impl std::error::Error for SetupError {}

/// The configured scanner (`[antivirus]`).
#[derive(Debug, Clone)]
pub struct Scanner {
    /// clamd's socket.
    pub endpoint: Endpoint,
    /// Longest one scan may take, connection included.
    pub timeout: Duration,
    /// Largest stream sent; larger content is a scan error.
    pub max_scan_size: usize,
    /// What a scan error means for the message.
    pub on_error: OnError,
    /// Attachment extensions refused at submission.
    pub blocked_extensions: Vec<String>,
}

impl Scanner {
    /// The scanner of `cfg`, or `None` without an `[antivirus]` section.
    pub fn from_config(cfg: &Config) -> Result<Option<Scanner>, SetupError> {
        let Some(av) = &cfg.antivirus else {
            return Ok(None);
        };
        Ok(Some(Scanner::new(av, cfg)?))
    }

    fn new(av: &AntivirusSection, cfg: &Config) -> Result<Scanner, SetupError> {
        Ok(Scanner {
            endpoint: Endpoint::parse(&av.clamd).map_err(SetupError::Clamd)?,
            timeout: cfg.duration(&av.timeout, Duration::from_secs(30)),
            max_scan_size: av.max_scan_size(cfg.max_message_size()),
            on_error: av.on_error,
            blocked_extensions: av
                .blocked_extensions
                .iter()
                .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
                .collect(),
        })
    }

    /// Scan `data` with one fresh clamd connection, within the timeout.
    pub async fn scan(&self, data: &[u8]) -> Result<Verdict, ScanError> {
        if data.len() > self.max_scan_size {
            return Err(ScanError(format!(
                "{} bytes exceed antivirus.max_scan_size ({})",
                data.len(),
                self.max_scan_size
            )));
        }
        match tokio::time::timeout(self.timeout, self.scan_unbounded(data)).await {
            Ok(r) => r,
            Err(_) => Err(ScanError(format!(
                "clamd at {} did not answer within {:?}",
                self.endpoint, self.timeout
            ))),
        }
    }

    async fn scan_unbounded(&self, data: &[u8]) -> Result<Verdict, ScanError> {
        let err = |e: std::io::Error| ScanError(format!("clamd at {}: {e}", self.endpoint));
        match &self.endpoint {
            Endpoint::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p).await.map_err(err)?;
                exchange(s, data).await.map_err(err)
            }
            Endpoint::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a.as_str())
                    .await
                    .map_err(err)?;
                exchange(s, data).await.map_err(err)
            }
        }
        .and_then(|r| parse_reply(&r))
    }

    /// Whether clamd takes a stream of `max_scan_size` bytes. clamd has no
    /// command that reports its `StreamMaxLength`, so this sends that many
    /// zero bytes and reads what it answers: `Ok(None)` when it scanned
    /// them, `Ok(Some(problem))` when it refused them for their size.
    pub async fn check_stream_limit(&self) -> Result<Option<String>, ScanError> {
        let err = |e: std::io::Error| ScanError(format!("clamd at {}: {e}", self.endpoint));
        let total = self.max_scan_size;
        let ask = async {
            match &self.endpoint {
                Endpoint::Unix(p) => {
                    zeros_exchange(tokio::net::UnixStream::connect(p).await?, total).await
                }
                Endpoint::Tcp(a) => {
                    zeros_exchange(tokio::net::TcpStream::connect(a.as_str()).await?, total).await
                }
            }
        };
        // Scanning the zeros takes clamd a while with a full database.
        let r = match tokio::time::timeout(self.timeout * 4, ask).await {
            Ok(r) => r.map_err(err)?,
            Err(_) => {
                return Err(ScanError(format!(
                    "clamd at {} did not answer within {:?}",
                    self.endpoint,
                    self.timeout * 4
                )))
            }
        };
        match parse_reply(&r) {
            Ok(_) => Ok(None),
            Err(e) if e.0.contains("StreamMaxLength") => Ok(Some(format!(
                "clamd at {} refuses a stream of {total} bytes: set its StreamMaxLength to at least antivirus.max_scan_size ({total} bytes), or larger messages cannot be scanned",
                self.endpoint
            ))),
            Err(e) => Err(e),
        }
    }

    /// Whether clamd finds a virus nested deeper than it looks:
    /// `Ok(Some(problem))` when it passes the EICAR test file inside
    /// [`probe::PROBE_DEPTH`] archives as clean (`AlertExceedsMax` off:
    /// past `MaxRecursion` it stops looking and answers OK). clamd reports
    /// neither setting over any command, so it is asked this way.
    pub async fn check_recursion(&self) -> Result<Option<String>, ScanError> {
        let depth = probe::PROBE_DEPTH;
        let p = probe::nested(depth)
            .map_err(|e| ScanError(format!("building the recursion probe: {e}")))?;
        match self.scan(&p).await? {
            Verdict::Infected(_) => Ok(None),
            Verdict::Clean => Ok(Some(format!(
                "clamd at {} passes the EICAR test file nested {depth} archives deep as clean: past its MaxRecursion it stops looking and, with AlertExceedsMax off, answers OK, so a virus nested deeper would be delivered; set \"AlertExceedsMax yes\" in clamd.conf (docs/operations.md, Viruses)",
                self.endpoint
            ))),
        }
    }

    /// `zVERSION`: whether clamd answers, and what it runs.
    pub async fn version(&self) -> Result<String, ScanError> {
        let err = |e: std::io::Error| ScanError(format!("clamd at {}: {e}", self.endpoint));
        let ask = async {
            let r = match &self.endpoint {
                Endpoint::Unix(p) => {
                    command(tokio::net::UnixStream::connect(p).await?, b"zVERSION\0").await
                }
                Endpoint::Tcp(a) => {
                    command(
                        tokio::net::TcpStream::connect(a.as_str()).await?,
                        b"zVERSION\0",
                    )
                    .await
                }
            }?;
            // Shown in logs and check-config: printable, bounded.
            let text: String = String::from_utf8_lossy(&r)
                .trim_end_matches('\0')
                .chars()
                .take(MAX_REPLY_LINE)
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            Ok::<_, std::io::Error>(text)
        };
        match tokio::time::timeout(self.timeout, ask).await {
            Ok(r) => r.map_err(err),
            Err(_) => Err(ScanError(format!(
                "clamd at {} did not answer within {:?}",
                self.endpoint, self.timeout
            ))),
        }
    }
}

/// Most a reply may be: a signature name is short; anything longer is not clamd.
const MAX_REPLY: u64 = 4096;

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    data: &[u8],
) -> std::io::Result<Vec<u8>> {
    for frame in instream_frames(data) {
        if let Err(e) = s.write_all(&frame).await {
            // clamd closes early when the stream passes its StreamMaxLength,
            // after writing why: that reply is worth more than the EPIPE.
            let mut r = Vec::new();
            let _ = (&mut s).take(MAX_REPLY).read_to_end(&mut r).await;
            if r.is_empty() {
                return Err(e);
            }
            return Ok(r);
        }
    }
    s.flush().await?;
    let mut r = Vec::new();
    (&mut s).take(MAX_REPLY).read_to_end(&mut r).await?;
    Ok(r)
}

/// `INSTREAM` of `total` zero bytes, written chunk by chunk from one buffer.
async fn zeros_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    total: usize,
) -> std::io::Result<Vec<u8>> {
    let zeros = vec![0u8; CHUNK];
    let mut left = total;
    let mut result = Ok(());
    if let Err(e) = s.write_all(b"zINSTREAM\0").await {
        result = Err(e);
    }
    while result.is_ok() && left > 0 {
        let n = left.min(CHUNK);
        result = async {
            s.write_all(&(n as u32).to_be_bytes()).await?;
            s.write_all(&zeros[..n]).await
        }
        .await;
        left -= n;
    }
    if result.is_ok() {
        result = s.write_all(&[0, 0, 0, 0]).await;
    }
    let mut r = Vec::new();
    let read = (&mut s).take(MAX_REPLY).read_to_end(&mut r).await;
    // clamd closes early past its StreamMaxLength, after saying why: what
    // it said counts, whatever the write or the end of the read met.
    if !r.is_empty() {
        return Ok(r);
    }
    result?;
    read?;
    Ok(r)
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    cmd: &[u8],
) -> std::io::Result<Vec<u8>> {
    s.write_all(cmd).await?;
    s.flush().await?;
    let mut r = Vec::new();
    (&mut s).take(MAX_REPLY).read_to_end(&mut r).await?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"stream: OK\0"), Ok(Verdict::Clean));
        assert_eq!(
            parse_reply(b"stream: Eicar-Test-Signature FOUND\0"),
            Ok(Verdict::Infected("Eicar-Test-Signature".into()))
        );
        assert_eq!(
            parse_reply(b"stream: Win.Test.EICAR_HDB-1 FOUND\n"),
            Ok(Verdict::Infected("Win.Test.EICAR_HDB-1".into()))
        );
        let e = parse_reply(b"INSTREAM size limit exceeded. ERROR\0").unwrap_err();
        assert!(e.0.contains("StreamMaxLength"), "{e}");
        assert!(parse_reply(b"").is_err());
        assert!(parse_reply(b"stream: lstat() failed ERROR\0").is_err());
        assert!(parse_reply(b"PONG\0").is_err());
        // AllMatchScanning: one line per signature.
        assert_eq!(
            parse_reply(b"stream: A FOUND\0stream: B FOUND\0"),
            Ok(Verdict::Infected("A".into()))
        );
    }

    #[test]
    fn anything_unexpected_is_a_failure_never_clean_and_says_so_printably() {
        let long = format!("stream: {} FOUND\0", "A".repeat(MAX_REPLY_LINE));
        for bad in [
            &b"OK\0"[..],
            b"OK",
            b"stream: OK",
            b"stream: OK\0\0",
            b"stream: OK\0garbage",
            b"stream:  OK\0",
            b"\0",
            b"stream: Evil\0Name FOUND\0",
            b"stream: Evil\x1b[31m FOUND\0",
            b"stream: Evil\rName FOUND\0",
            b"stream:  FOUND\0",
            b"stream: Two words FOUND\0",
            b"stream: A FOUND\0stream: OK\0",
            b"stream: \xc3\xa8 FOUND\0",
            long.as_bytes(),
            b"bad \x07 ERROR\0",
        ] {
            let e = parse_reply(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(
                e.0.len() < 200 && !e.0.chars().any(|c| c.is_control()),
                "{bad:?}: {e:?}"
            );
        }
        let e = parse_reply(b"stream: Evil\0Name FOUND\0").unwrap_err();
        assert_eq!(
            e.0,
            "clamd: unexpected reply \"stream: Evil\\x00Name FOUND\\x00\""
        );
    }

    #[test]
    fn frames() {
        let data = vec![7u8; CHUNK + 10];
        let f: Vec<Vec<u8>> = instream_frames(&data).collect();
        assert_eq!(f.len(), 4);
        assert_eq!(f[0], b"zINSTREAM\0");
        assert_eq!(&f[1][..4], &(CHUNK as u32).to_be_bytes());
        assert_eq!(f[1].len(), CHUNK + 4);
        assert_eq!(&f[2][..4], &10u32.to_be_bytes());
        assert_eq!(f[3], vec![0, 0, 0, 0]);
        let empty: Vec<Vec<u8>> = instream_frames(b"").collect();
        assert_eq!(empty.len(), 2);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("unix:/run/clamav/clamd.ctl"),
            Ok(Endpoint::Unix("/run/clamav/clamd.ctl".into()))
        );
        assert_eq!(
            Endpoint::parse("tcp:127.0.0.1:3310"),
            Ok(Endpoint::Tcp("127.0.0.1:3310".into()))
        );
        assert!(Endpoint::parse("tcp:127.0.0.1").is_err());
        assert!(Endpoint::parse("/run/clamd.ctl").is_err());
        assert_eq!(Endpoint::parse("unix:"), Err(EndpointError::NoSocketPath));
        assert_eq!(
            Endpoint::parse("/run/clamd.ctl").unwrap_err().to_string(),
            "\"/run/clamd.ctl\": expected \"unix:/path\" or \"tcp:host:port\""
        );
    }
}

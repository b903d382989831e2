//! The PROXY protocol version 2 (HAProxy's `proxy-protocol.txt`, section
//! 2.2), spoken by a TCP load balancer in front of the listeners when
//! `[listen] proxy_protocol = true`: the first bytes of every connection are
//! a binary header carrying the client's address, which then stands for the
//! TCP peer (the balancer) in the per-IP caps, the login throttle, the logs
//! and the SMTP `Received` trace.
//!
//! [`parse`] is sans-IO (bytes in, verdict out) so that it can be tested and
//! fuzzed alone; [`client_of`] reads exactly the header off a stream, never a
//! byte of what follows (a TLS ClientHello may arrive in the same segment).
//! Only TCP over IPv4 and IPv6 is taken; TLVs are skipped, within
//! [`MAX_BODY`]. Version 1 (the text form) is not accepted: HAProxy sends v2
//! with `send-proxy-v2`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Bytes of the fixed part: signature, version and command, family, length.
pub const FIXED: usize = 16;

/// Largest address block (addresses and TLVs) taken. Addresses take at most
/// 36 bytes for TCP over IPv6; HAProxy's TLVs (ALPN, authority, unique id,
/// SSL details) stay well under this. The 16-bit length field would let a
/// sender claim 64 KiB per pending connection.
pub const MAX_BODY: usize = 1024;

/// Longest wait for the header: a balancer sends it with its first segment.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// How long a listener whose commands may take `command_timeout` waits for
/// a connection's PROXY header: that timeout, but never more than [`MAX_WAIT`].
pub fn header_timeout(command_timeout: Duration) -> Duration {
    command_timeout.min(MAX_WAIT)
}

/// What the bytes so far make of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// Not enough bytes: the header is at least this long in all.
    More(usize),
    /// A whole header.
    Done(Header),
}

/// A complete, valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes, signature to last TLV: the connection's own
    /// bytes start there.
    pub len: usize,
    /// The client's address and port; `None` for a LOCAL header (the
    /// balancer's own connection, a health check) or a PROXY header of the
    /// UNSPEC family: the TCP peer stands.
    pub source: Option<SocketAddr>,
}

/// Why bytes are not a v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The first bytes are not the v2 signature: a client talking to the
    /// listener directly, or a v1 (text) header.
    Signature,
    /// A version other than 2.
    Version(u8),
    /// A command other than LOCAL (0) and PROXY (1).
    Command(u8),
    /// PROXY for an address family or transport other than TCP over IPv4
    /// or IPv6 (or UNSPEC): the family byte.
    Family(u8),
    /// An address block too short for its family's addresses.
    Short(usize),
    /// An address block longer than [`MAX_BODY`].
    TooLong(usize),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Signature => write!(f, "no PROXY protocol v2 signature"),
            HeaderError::Version(v) => write!(f, "PROXY protocol version {v}, not 2"),
            HeaderError::Command(c) => write!(f, "unknown PROXY command {c}"),
            HeaderError::Family(b) => write!(
                f,
                "unsupported PROXY address family 0x{b:02x} (only TCP over IPv4 or IPv6)"
            ),
            HeaderError::Short(n) => write!(f, "PROXY address block of {n} bytes is too short"),
            HeaderError::TooLong(n) => write!(
                f,
                "PROXY address block of {n} bytes is over the limit of {MAX_BODY}"
            ),
        }
    }
}

impl std::error::Error for HeaderError {}

const LOCAL: u8 = 0x0;
const PROXY: u8 = 0x1;
const TCP4: u8 = 0x11;
const TCP6: u8 = 0x21;

/// Read a v2 header at the start of `buf`. Every check is made as soon as
/// the byte it needs is there, so bad input is refused after as few bytes
/// as possible and a prefix of a valid header is never refused. Bytes past
/// the header are not looked at.
pub fn parse(buf: &[u8]) -> Result<Parse, HeaderError> {
    let sig = buf.len().min(SIGNATURE.len());
    if buf[..sig] != SIGNATURE[..sig] {
        return Err(HeaderError::Signature);
    }
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(Parse::More(FIXED));
    };
    if ver_cmd >> 4 != 2 {
        return Err(HeaderError::Version(ver_cmd >> 4));
    }
    let command = ver_cmd & 0x0f;
    if command != LOCAL && command != PROXY {
        return Err(HeaderError::Command(command));
    }
    let Some(&family) = buf.get(13) else {
        return Ok(Parse::More(FIXED));
    };
    // LOCAL ignores the family whatever it says (spec 2.2); so does PROXY
    // with AF_UNSPEC, which a sender uses for what it cannot describe.
    let addresses = match (command, family) {
        (LOCAL, _) => 0,
        (_, f) if f >> 4 == 0 => 0,
        (_, TCP4) => 12,
        (_, TCP6) => 36,
        (_, f) => return Err(HeaderError::Family(f)),
    };
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Ok(Parse::More(FIXED));
    };
    let body = usize::from(u16::from_be_bytes([hi, lo]));
    if body > MAX_BODY {
        return Err(HeaderError::TooLong(body));
    }
    if body < addresses {
        return Err(HeaderError::Short(body));
    }
    let len = FIXED + body;
    if buf.len() < len {
        return Ok(Parse::More(len));
    }
    let a = &buf[FIXED..len];
    let source = match (addresses, family) {
        (0, _) => None,
        (_, TCP4) => {
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([a[8], a[9]]),
            ))
        }
        _ => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(ip)),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
    };
    Ok(Parse::Done(Header { len, source }))
}

/// Why a connection was closed before its first byte was served.
#[derive(Debug)]
pub enum Refused {
    /// The bytes are not a valid header.
    Header(HeaderError),
    /// The connection ended after this many bytes, before a whole header.
    Closed(usize),
    /// No whole header within the deadline.
    Timeout,
    /// Reading failed.
    Io(std::io::Error),
    /// Too many connections of the listener are waiting for their header.
    Busy,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Header(e) => e.fmt(f),
            Refused::Closed(n) => write!(f, "closed by the client after {n} bytes of header"),
            Refused::Timeout => write!(f, "no PROXY protocol v2 header in time"),
            Refused::Io(e) => write!(f, "reading the PROXY header: {e}"),
            Refused::Busy => write!(f, "too many connections waiting for their PROXY header"),
        }
    }
}

impl std::error::Error for Refused {}

impl From<HeaderError> for Refused {
    fn from(e: HeaderError) -> Self {
        Refused::Header(e)
    }
}

/// Read one header off `s`, exactly its bytes: the address it carries
/// (`None`: LOCAL or UNSPEC).
pub async fn read_header<S: AsyncRead + Unpin>(s: &mut S) -> Result<Option<SocketAddr>, Refused> {
    let mut fixed = [0u8; FIXED];
    let mut have = 0;
    while have < FIXED {
        let n = s.read(&mut fixed[have..]).await.map_err(Refused::Io)?;
        if n == 0 {
            return Err(Refused::Closed(have));
        }
        have += n;
        // A client speaking its protocol directly is known by its first byte.
        parse(&fixed[..have])?;
    }
    let len = match parse(&fixed)? {
        Parse::Done(h) => return Ok(h.source),
        Parse::More(len) => len,
    };
    let mut buf = vec![0u8; len];
    buf[..FIXED].copy_from_slice(&fixed);
    if let Err(e) = s.read_exact(&mut buf[FIXED..]).await {
        return Err(match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Refused::Closed(FIXED),
            _ => Refused::Io(e),
        });
    }
    match parse(&buf)? {
        Parse::Done(h) => Ok(h.source),
        // parse() asked for exactly these bytes.
        Parse::More(n) => Err(Refused::Closed(n)),
    }
}

/// The client of a connection accepted from `tcp_peer`: the address its
/// header carries, or `tcp_peer` for LOCAL; the header must be whole within
/// `deadline`.
pub async fn client_of<S: AsyncRead + Unpin>(
    s: &mut S,
    tcp_peer: SocketAddr,
    deadline: Duration,
) -> Result<SocketAddr, Refused> {
    match tokio::time::timeout(deadline, read_header(s)).await {
        Ok(r) => r.map(|source| source.unwrap_or(tcp_peer)),
        Err(_) => Err(Refused::Timeout),
    }
}

/// Between two log lines of one listener about refused headers.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Logs a listener's refused connections at most once per [`LOG_EVERY`],
/// with the number left unsaid since the last line: a scanner or a
/// misconfigured balancer cannot flood the log, and nothing grows.
#[derive(Debug)]
pub struct RefusalLog {
    listener: &'static str,
    /// When the last line was written, and refusals since then.
    state: Mutex<(Option<Instant>, u64)>,
}

impl RefusalLog {
    /// A log for the listener `listener` (its config key).
    pub fn new(listener: &'static str) -> RefusalLog {
        RefusalLog {
            listener,
            state: Mutex::new((None, 0)),
        }
    }

    /// One connection from `peer` closed for `why`.
    pub fn refused(&self, peer: SocketAddr, why: &Refused) {
        self.refused_at(peer, why, Instant::now());
    }

    fn refused_at(&self, peer: SocketAddr, why: &Refused, now: Instant) -> bool {
        if let Refused::Closed(0) = why {
            // Connect and close: a TCP health check or a port scan.
            tracing::debug!(listener = self.listener, %peer, "connection closed before any byte");
            return false;
        }
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if g.0
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_EVERY)
        {
            g.1 = g.1.saturating_add(1);
            return false;
        }
        let unlogged = std::mem::take(&mut g.1);
        g.0 = Some(now);
        drop(g);
        tracing::warn!(
            listener = self.listener,
            %peer,
            error = %why,
            unlogged,
            "connection closed without a byte sent: [listen] proxy_protocol wants a PROXY protocol v2 header first"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(command: u8, src: [u8; 4], sport: u16, tlvs: &[u8]) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(TCP4);
        h.extend_from_slice(&((12 + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(&src);
        h.extend_from_slice(&[127, 0, 0, 1]);
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&587u16.to_be_bytes());
        h.extend_from_slice(tlvs);
        h
    }

    fn v6(src: Ipv6Addr, sport: u16) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, TCP6, 0, 36]);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&993u16.to_be_bytes());
        h
    }

    fn done(buf: &[u8]) -> Header {
        match parse(buf) {
            Ok(Parse::Done(h)) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn proxy_over_ipv4_gives_the_client_address_and_ignores_tlvs() {
        // A PP2_TYPE_AUTHORITY TLV and a NOOP, as HAProxy may send.
        let tlvs = [0x02, 0, 4, b'm', b'x', b'.', b'a', 0x04, 0, 1, 0];
        let mut wire = v4(PROXY, [192, 0, 2, 77], 40000, &tlvs);
        let len = wire.len();
        wire.extend_from_slice(b"\x16\x03\x01 the ClientHello that follows");
        let h = done(&wire);
        assert_eq!(h.len, len);
        assert_eq!(h.source, Some("192.0.2.77:40000".parse().unwrap()));
    }

    #[test]
    fn proxy_over_ipv6_gives_the_client_address() {
        let ip: Ipv6Addr = "2001:db8::77".parse().unwrap();
        let h = done(&v6(ip, 5555));
        assert_eq!(h.len, 52);
        assert_eq!(h.source, Some(SocketAddr::new(IpAddr::V6(ip), 5555)));
    }

    #[test]
    fn local_keeps_the_tcp_peer_whatever_its_family_says() {
        let h = done(&v4(LOCAL, [192, 0, 2, 77], 1, &[]));
        assert_eq!(h.source, None);
        // HAProxy's health checks: LOCAL, UNSPEC, no address block.
        let mut bare = SIGNATURE.to_vec();
        bare.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            done(&bare),
            Header {
                len: 16,
                source: None
            }
        );
        // Any family is ignored with LOCAL, even one PROXY would refuse.
        let mut unix = SIGNATURE.to_vec();
        unix.extend_from_slice(&[0x20, 0x31, 0, 0]);
        assert_eq!(done(&unix).source, None);
    }

    #[test]
    fn proxy_with_the_unspec_family_is_taken_as_local() {
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x00, 0, 3, 1, 2, 3]);
        assert_eq!(
            done(&h),
            Header {
                len: 19,
                source: None
            }
        );
    }

    #[test]
    fn truncated_input_asks_for_more_and_never_errs() {
        let wire = v4(PROXY, [10, 1, 2, 3], 1, &[0x04, 0, 2, 0, 0]);
        for k in 0..wire.len() {
            match parse(&wire[..k]) {
                Ok(Parse::More(n)) => {
                    assert!(n > k && n <= wire.len(), "{k}: more({n})");
                    if k >= FIXED {
                        assert_eq!(n, wire.len());
                    }
                }
                other => panic!("prefix of {k} bytes: {other:?}"),
            }
        }
        assert_eq!(parse(&[]), Ok(Parse::More(FIXED)));
    }

    #[test]
    fn a_client_speaking_directly_is_refused_at_its_first_byte() {
        assert_eq!(parse(b"E"), Err(HeaderError::Signature));
        assert_eq!(parse(b"EHLO client.test\r\n"), Err(HeaderError::Signature));
        // A TLS ClientHello.
        assert_eq!(parse(&[0x16, 0x03, 0x01]), Err(HeaderError::Signature));
        // Version 1 (text).
        assert_eq!(
            parse(b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n"),
            Err(HeaderError::Signature)
        );
        // A wrong byte deep in the signature.
        let mut s = SIGNATURE.to_vec();
        s[10] = b'X';
        assert_eq!(parse(&s), Err(HeaderError::Signature));
    }

    #[test]
    fn wrong_version_and_command_are_refused() {
        let mut h = v4(PROXY, [10, 0, 0, 1], 1, &[]);
        h[12] = 0x11;
        assert_eq!(parse(&h[..13]), Err(HeaderError::Version(1)));
        h[12] = 0x31;
        assert_eq!(parse(&h), Err(HeaderError::Version(3)));
        h[12] = 0x22;
        assert_eq!(parse(&h[..13]), Err(HeaderError::Command(2)));
    }

    #[test]
    fn families_other_than_tcp_are_refused_with_proxy() {
        for fam in [0x12, 0x22, 0x31, 0x32, 0x41, 0x10, 0x20, 0xff] {
            let mut h = SIGNATURE.to_vec();
            h.extend_from_slice(&[0x21, fam, 0, 216]);
            assert_eq!(parse(&h[..14]), Err(HeaderError::Family(fam)), "{fam:#x}");
        }
    }

    #[test]
    fn oversize_and_short_address_blocks_are_refused_from_the_length_alone() {
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, TCP4, 0xff, 0xff]);
        assert_eq!(parse(&h), Err(HeaderError::TooLong(65535)));
        let over = (MAX_BODY + 1) as u16;
        h[14..16].copy_from_slice(&over.to_be_bytes());
        assert_eq!(parse(&h), Err(HeaderError::TooLong(MAX_BODY + 1)));
        // At the limit it is only waiting for the bytes.
        h[14..16].copy_from_slice(&(MAX_BODY as u16).to_be_bytes());
        assert_eq!(parse(&h), Ok(Parse::More(FIXED + MAX_BODY)));
        // TCP over IPv4 needs 12 bytes of addresses, IPv6 36.
        h[14..16].copy_from_slice(&11u16.to_be_bytes());
        assert_eq!(parse(&h), Err(HeaderError::Short(11)));
        h[13] = TCP6;
        h[14..16].copy_from_slice(&35u16.to_be_bytes());
        assert_eq!(parse(&h), Err(HeaderError::Short(35)));
    }

    #[tokio::test]
    async fn reading_takes_the_header_and_leaves_what_follows() {
        let mut wire = v4(PROXY, [192, 0, 2, 9], 2525, &[0x04, 0, 3, 1, 2, 3]);
        wire.extend_from_slice(b"EHLO x\r\n");
        let mut r: &[u8] = &wire;
        let tcp_peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let got = client_of(&mut r, tcp_peer, Duration::from_secs(1)).await;
        assert_eq!(got.unwrap(), "192.0.2.9:2525".parse().unwrap());
        assert_eq!(r, b"EHLO x\r\n");
        let mut bare = SIGNATURE.to_vec();
        bare.extend_from_slice(&[0x20, 0x00, 0, 0]);
        let mut r: &[u8] = &bare;
        let got = client_of(&mut r, tcp_peer, Duration::from_secs(1)).await;
        assert_eq!(got.unwrap(), tcp_peer);
    }

    #[tokio::test]
    async fn reading_refuses_bad_short_and_late_headers() {
        let tcp_peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let wait = Duration::from_millis(200);
        let mut r: &[u8] = b"EHLO x\r\n";
        let e = client_of(&mut r, tcp_peer, wait).await.unwrap_err();
        assert!(matches!(e, Refused::Header(HeaderError::Signature)), "{e}");
        let wire = v4(PROXY, [192, 0, 2, 9], 1, &[]);
        let mut r: &[u8] = &wire[..20];
        let e = client_of(&mut r, tcp_peer, wait).await.unwrap_err();
        assert!(matches!(e, Refused::Closed(_)), "{e}");
        let (mut near, mut far) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut far, &wire[..10])
            .await
            .unwrap();
        let e = client_of(&mut near, tcp_peer, wait).await.unwrap_err();
        assert!(matches!(e, Refused::Timeout), "{e}");
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_interval() {
        let log = RefusalLog::new("submission");
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let t = Instant::now();
        assert!(log.refused_at(peer, &Refused::Timeout, t));
        for i in 1..1000 {
            assert!(!log.refused_at(peer, &Refused::Timeout, t + Duration::from_millis(i)));
        }
        assert_eq!(log.state.lock().unwrap().1, 999);
        assert!(log.refused_at(peer, &Refused::Timeout, t + LOG_EVERY));
        assert_eq!(log.state.lock().unwrap().1, 0);
        // A bare connect and close is not a refusal.
        let later = t + LOG_EVERY * 2;
        assert!(!log.refused_at(peer, &Refused::Closed(0), later));
        assert!(log.refused_at(peer, &Refused::Closed(3), later));
    }
}

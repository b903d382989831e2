//! A small stub resolver for MX and A records over UDP.
//!
//! pecd needs exactly two questions answered (the MX hosts of a domain and
//! their IPv4 addresses) from the name servers the operator configures; a
//! full resolver crate would double the build for that. Answers are taken
//! from the configured servers in turn; names use RFC 1035 compression.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

const TYPE_A: u16 = 1;
const TYPE_MX: u16 = 15;

/// Encode a query for `name`/`qtype` with transaction id `id`.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            return Some((labels.join("."), end.unwrap_or(pos + 1)));
        }
        if len & 0xC0 == 0xC0 {
            let ptr = ((len & 0x3F) << 8) | *msg.get(pos + 1)? as usize;
            end.get_or_insert(pos + 2);
            pos = ptr;
            continue;
        }
        let label = msg.get(pos + 1..pos + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += 1 + len;
    }
    None
}

/// A parsed answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// MX preference and exchange.
    Mx(u16, String),
    /// IPv4 address.
    A(Ipv4Addr),
}

/// Parse the answer section of a response to query `id`.
pub fn parse_response(id: u16, msg: &[u8]) -> Option<Vec<Record>> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id || msg[2] & 0x80 == 0 {
        return None;
    }
    let rcode = msg[3] & 0x0F;
    if rcode != 0 && rcode != 3 {
        return None;
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]) as usize;
    let an = u16::from_be_bytes([msg[6], msg[7]]) as usize;
    let mut pos = 12;
    for _ in 0..qd {
        let (_, p) = read_name(msg, pos)?;
        pos = p + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        let (_, p) = read_name(msg, pos)?;
        let rtype = u16::from_be_bytes([*msg.get(p)?, *msg.get(p + 1)?]);
        let rdlen = u16::from_be_bytes([*msg.get(p + 8)?, *msg.get(p + 9)?]) as usize;
        let rdata = p + 10;
        msg.get(rdata..rdata + rdlen)?;
        match rtype {
            TYPE_MX if rdlen >= 3 => {
                let pref = u16::from_be_bytes([msg[rdata], msg[rdata + 1]]);
                let (host, _) = read_name(msg, rdata + 2)?;
                out.push(Record::Mx(pref, host));
            }
            TYPE_A if rdlen == 4 => out.push(Record::A(Ipv4Addr::new(
                msg[rdata],
                msg[rdata + 1],
                msg[rdata + 2],
                msg[rdata + 3],
            ))),
            _ => {}
        }
        pos = rdata + rdlen;
    }
    Some(out)
}

/// Name servers from `/etc/resolv.conf` (port 53).
pub fn system_nameservers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Why no server answered a query (the last server's failure).
#[derive(Debug)]
pub enum DnsError {
    /// The list of servers is empty.
    NoServers,
    /// No local socket to ask from.
    Bind(std::io::Error),
    /// The query could not be sent to that server.
    Send(SocketAddr, std::io::Error),
    /// The answer could not be received from that server.
    Receive(SocketAddr, std::io::Error),
    /// That server's answer does not parse (or is not to our query).
    Malformed(SocketAddr),
    /// An answer came from another address than the server asked.
    Elsewhere(SocketAddr),
    /// That server did not answer in time.
    Timeout(SocketAddr),
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsError::NoServers => f.write_str("no name servers configured"),
            DnsError::Bind(e) => write!(f, "{e}"),
            DnsError::Send(s, e) | DnsError::Receive(s, e) => write!(f, "{s}: {e}"),
            DnsError::Malformed(s) => write!(f, "{s}: malformed answer"),
            DnsError::Elsewhere(s) => write!(f, "{s}: answer from elsewhere"),
            DnsError::Timeout(s) => write!(f, "{s}: timeout"),
        }
    }
}

impl std::error::Error for DnsError {}

/// Ask the servers in turn; the first well-formed answer wins.
pub async fn lookup(
    servers: &[SocketAddr],
    name: &str,
    qtype: u16,
) -> Result<Vec<Record>, DnsError> {
    let mut last = DnsError::NoServers;
    for server in servers {
        let id: u16 = {
            let mut b = [0u8; 2];
            let _ = openssl::rand::rand_bytes(&mut b);
            u16::from_be_bytes(b)
        };
        let bind = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let sock = match UdpSocket::bind(bind).await {
            Ok(s) => s,
            Err(e) => {
                last = DnsError::Bind(e);
                continue;
            }
        };
        if let Err(e) = sock.send_to(&encode_query(id, name, qtype), server).await {
            last = DnsError::Send(*server, e);
            continue;
        }
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from == *server => {
                if let Some(r) = parse_response(id, &buf[..n]) {
                    return Ok(r);
                }
                last = DnsError::Malformed(*server);
            }
            Ok(Ok(_)) => last = DnsError::Elsewhere(*server),
            Ok(Err(e)) => last = DnsError::Receive(*server, e),
            Err(_) => last = DnsError::Timeout(*server),
        }
    }
    Err(last)
}

/// The mail exchangers of `domain`, best first, as (host name, IPv4 address).
/// Falls back to the domain's own A record when it has no MX (RFC 5321 §5.1).
pub async fn resolve_mx(
    servers: &[SocketAddr],
    domain: &str,
) -> Result<Vec<(String, Ipv4Addr)>, String> {
    // The worker keeps this error as text (a temporary failure's reason).
    let mut mx: Vec<(u16, String)> = lookup(servers, domain, TYPE_MX)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|r| match r {
            Record::Mx(p, h) => Some((p, h)),
            Record::A(_) => None,
        })
        .collect();
    mx.sort();
    if mx.is_empty() {
        mx.push((0, domain.to_string()));
    }
    let mut out = Vec::new();
    for (_, host) in mx {
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            out.push((host.clone(), ip));
            continue;
        }
        for r in lookup(servers, &host, TYPE_A).await.unwrap_or_default() {
            if let Record::A(ip) = r {
                out.push((host.clone(), ip));
            }
        }
    }
    if out.is_empty() {
        Err(format!("{domain}: no mail exchanger address found"))
    } else {
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a response the way a server would, with a compressed MX target.
    fn answer(id: u16, q: &[u8]) -> Vec<u8> {
        let mut r = q.to_vec();
        r[0..2].copy_from_slice(&id.to_be_bytes());
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        // name pointer to the question (offset 12), type MX, class IN, ttl, rdlen
        r.extend_from_slice(&[0xC0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 7, 0, 10]);
        r.extend_from_slice(&[2, b'm', b'x', 0xC0, 12]);
        r
    }

    #[test]
    fn mx_with_compression_parses() {
        let q = encode_query(7, "pec.beta.test", TYPE_MX);
        let r = answer(7, &q);
        assert_eq!(
            parse_response(7, &r).unwrap(),
            vec![Record::Mx(10, "mx.pec.beta.test".into())]
        );
        assert!(parse_response(8, &r).is_none());
        assert!(
            parse_response(7, &r[..20]).is_some_and(|v| v.is_empty())
                || parse_response(7, &r[..20]).is_none()
        );
    }

    #[test]
    fn a_failed_lookup_names_the_server_and_what_went_wrong() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt
            .block_on(lookup(&[], "pec.beta.test", TYPE_MX))
            .unwrap_err();
        assert!(matches!(e, DnsError::NoServers), "{e}");
        // A server that answers every query with junk.
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (_, from) = server.recv_from(&mut buf).unwrap();
            server.send_to(b"junk", from).unwrap();
        });
        let e = rt
            .block_on(lookup(&[addr], "pec.beta.test", TYPE_MX))
            .unwrap_err();
        t.join().unwrap();
        assert!(matches!(e, DnsError::Malformed(a) if a == addr), "{e}");
        assert_eq!(e.to_string(), format!("{addr}: malformed answer"));
    }
}

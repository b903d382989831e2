//! clamd's address as written in `antivirus.clamd`. Apart from the scanner
//! so that `config` can check it without depending on the scanner, which
//! reads `config`.

use std::path::PathBuf;

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:/path` (clamd's `LocalSocket`).
    Unix(PathBuf),
    /// `tcp:host:port` (clamd's `TCPSocket`/`TCPAddr`).
    Tcp(String),
}

impl Endpoint {
    /// Parse `unix:/path` or `tcp:host:port`.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            Ok(Endpoint::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            match a.rsplit_once(':') {
                Some((h, port)) if !h.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(Endpoint::Tcp(a.to_string()))
                }
                _ => Err(format!("{s:?}: expected tcp:host:port")),
            }
        } else {
            Err(format!(
                "{s:?}: expected \"unix:/path\" or \"tcp:host:port\""
            ))
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

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
    pub fn parse(s: &str) -> Result<Endpoint, EndpointError> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(EndpointError::NoSocketPath);
            }
            Ok(Endpoint::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            match a.rsplit_once(':') {
                Some((h, port)) if !h.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(Endpoint::Tcp(a.to_string()))
                }
                _ => Err(EndpointError::NotHostPort(s.to_string())),
            }
        } else {
            Err(EndpointError::UnknownKind(s.to_string()))
        }
    }
}

/// Why `antivirus.clamd` names no socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointError {
    /// `unix:` with nothing after it.
    NoSocketPath,
    /// `tcp:` not followed by `host:port`: the value.
    NotHostPort(String),
    /// Neither `unix:` nor `tcp:`: the value.
    UnknownKind(String),
}

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointError::NoSocketPath => f.write_str("unix: needs a socket path"),
            EndpointError::NotHostPort(s) => write!(f, "{s:?}: expected tcp:host:port"),
            EndpointError::UnknownKind(s) => {
                write!(f, "{s:?}: expected \"unix:/path\" or \"tcp:host:port\"")
            }
        }
    }
}

impl std::error::Error for EndpointError {}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

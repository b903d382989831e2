//! The byte stream under an SMTP session ([`crate::tls::Stream`]) and the
//! STARTTLS upgrade, behind a trait so tests can run sessions on other streams.

use std::future::Future;
use std::io;

use openssl::ssl::SslAcceptor;
use tokio::io::{AsyncRead, AsyncWrite};

/// A stream a session can run on and, if still plain, upgrade to TLS.
pub trait SmtpStream: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    /// True when the stream is encrypted.
    fn is_tls(&self) -> bool;
    /// Run the server side of a TLS handshake (STARTTLS).
    fn upgrade(self, acceptor: &SslAcceptor) -> impl Future<Output = io::Result<Self>> + Send;
}

pub use crate::tls::Stream;

impl SmtpStream for Stream {
    fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    async fn upgrade(self, acceptor: &SslAcceptor) -> io::Result<Self> {
        match self {
            Stream::Plain(tcp) => Ok(Stream::Tls(Box::new(
                crate::tls::accept(acceptor, tcp).await?,
            ))),
            Stream::Tls(_) => Err(io::Error::other("stream is already TLS")),
        }
    }
}

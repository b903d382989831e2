//! The byte stream under a session: plain TCP or TLS, one type so the session
//! code is written once, plus the STARTTLS upgrade.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use openssl::ssl::SslAcceptor;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

/// A stream a session can run on and, if still plain, upgrade to TLS.
pub trait SmtpStream: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    /// True when the stream is encrypted.
    fn is_tls(&self) -> bool;
    /// Run the server side of a TLS handshake (STARTTLS).
    fn upgrade(self, acceptor: &SslAcceptor) -> impl Future<Output = io::Result<Self>> + Send;
}

/// Plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// Not encrypted (yet).
    Plain(TcpStream),
    /// After implicit TLS or STARTTLS.
    Tls(SslStream<TcpStream>),
}

impl SmtpStream for Stream {
    fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    async fn upgrade(self, acceptor: &SslAcceptor) -> io::Result<Self> {
        match self {
            Stream::Plain(tcp) => Ok(Stream::Tls(crate::tls::accept(acceptor, tcp).await?)),
            Stream::Tls(_) => Err(io::Error::other("stream is already TLS")),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

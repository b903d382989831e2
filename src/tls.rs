//! TLS plumbing shared by the SMTP and IMAP listeners (tokio-openssl on the
//! server side, one OpenSSL stack for TLS and S/MIME).

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

/// A server-side TLS context, cheap to clone.
pub type Acceptor = Arc<SslAcceptor>;

/// Build an acceptor from PEM certificate (with optional chain after it) and key files.
pub fn acceptor_from_files(
    cert: &Path,
    key: &Path,
) -> Result<Acceptor, openssl::error::ErrorStack> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_certificate_chain_file(cert)?;
    b.set_private_key_file(key, SslFiletype::PEM)?;
    b.check_private_key()?;
    Ok(Arc::new(b.build()))
}

/// Run the server side of a TLS handshake over an accepted TCP stream.
pub async fn accept(
    acceptor: &SslAcceptor,
    tcp: TcpStream,
) -> std::io::Result<SslStream<TcpStream>> {
    let ssl = Ssl::new(acceptor.context()).map_err(std::io::Error::other)?;
    let mut stream = SslStream::new(ssl, tcp).map_err(std::io::Error::other)?;
    Pin::new(&mut stream)
        .accept()
        .await
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e.to_string()))?;
    Ok(stream)
}

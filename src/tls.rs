//! TLS plumbing shared by the SMTP and IMAP listeners (tokio-openssl on the
//! server side, one OpenSSL stack for TLS and S/MIME).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

/// Why the `[tls]` files make no acceptor; each names the key at fault
/// (`tls.certificate` or `tls.key`) and its file.
#[derive(Debug)]
pub enum TlsFilesError {
    /// `tls.certificate` cannot be read.
    ReadCertificate(std::path::PathBuf, io::Error),
    /// `tls.key` cannot be read.
    ReadKey(std::path::PathBuf, io::Error),
    /// `tls.certificate` holds no PEM certificate; `swapped` when it holds
    /// a private key instead.
    NoCertificate {
        /// The file.
        path: std::path::PathBuf,
        /// It holds a private key: the two keys are likely swapped.
        swapped: bool,
    },
    /// `tls.key` holds no usable PEM private key; `swapped` when it holds a
    /// certificate instead.
    NoKey {
        /// The file.
        path: std::path::PathBuf,
        /// It holds a certificate: the two keys are likely swapped.
        swapped: bool,
        /// OpenSSL's reason.
        error: openssl::error::ErrorStack,
    },
    /// The key is not the certificate's.
    Mismatch {
        /// `tls.key`.
        key: std::path::PathBuf,
        /// `tls.certificate`.
        certificate: std::path::PathBuf,
    },
    /// OpenSSL refused the files anyway (the chain after the certificate).
    Acceptor(std::path::PathBuf, openssl::error::ErrorStack),
}

impl std::fmt::Display for TlsFilesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFilesError::ReadCertificate(p, e) => {
                write!(f, "tls.certificate: cannot read {}: {e}", p.display())
            }
            TlsFilesError::ReadKey(p, e) => write!(f, "tls.key: cannot read {}: {e}", p.display()),
            TlsFilesError::NoCertificate { path, swapped } => write!(
                f,
                "tls.certificate: {} holds no PEM certificate{}",
                path.display(),
                if *swapped {
                    " (it holds a private key: are tls.certificate and tls.key swapped?)"
                } else {
                    ""
                }
            ),
            TlsFilesError::NoKey {
                path,
                swapped,
                error,
            } => write!(
                f,
                "tls.key: {} holds no usable PEM private key{} ({error})",
                path.display(),
                if *swapped {
                    " (it holds a certificate: are tls.certificate and tls.key swapped?)"
                } else {
                    ""
                }
            ),
            TlsFilesError::Mismatch { key, certificate } => write!(
                f,
                "tls.key: the key in {} does not belong to the certificate in {} (tls.certificate); \
                 give the key the certificate was issued for",
                key.display(),
                certificate.display()
            ),
            TlsFilesError::Acceptor(p, e) => write!(f, "tls.certificate: {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for TlsFilesError {}

/// [`acceptor_from_files`] for the `[tls]` keys, with each failure in plain
/// words naming the key at fault (`tls.certificate` or `tls.key`) and its
/// file; OpenSSL's error chain follows only as detail.
pub fn acceptor_for_config(cert: &Path, key: &Path) -> Result<Acceptor, TlsFilesError> {
    let cert_pem =
        std::fs::read(cert).map_err(|e| TlsFilesError::ReadCertificate(cert.to_path_buf(), e))?;
    let key_pem = std::fs::read(key).map_err(|e| TlsFilesError::ReadKey(key.to_path_buf(), e))?;
    let leaf = match openssl::x509::X509::stack_from_pem(&cert_pem) {
        Ok(chain) if !chain.is_empty() => chain.into_iter().next(),
        Ok(_) => None,
        Err(_) => None,
    }
    .ok_or_else(|| TlsFilesError::NoCertificate {
        path: cert.to_path_buf(),
        swapped: openssl::pkey::PKey::private_key_from_pem(&cert_pem).is_ok(),
    })?;
    let pkey =
        openssl::pkey::PKey::private_key_from_pem(&key_pem).map_err(|e| TlsFilesError::NoKey {
            path: key.to_path_buf(),
            swapped: openssl::x509::X509::from_pem(&key_pem).is_ok(),
            error: e,
        })?;
    let matches = leaf
        .public_key()
        .map(|pk| pk.public_eq(&pkey))
        .unwrap_or(false);
    if !matches {
        return Err(TlsFilesError::Mismatch {
            key: key.to_path_buf(),
            certificate: cert.to_path_buf(),
        });
    }
    acceptor_from_files(cert, key).map_err(|e| TlsFilesError::Acceptor(cert.to_path_buf(), e))
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

/// A connection before or after TLS: one type, so session code is written once
/// for plain, STARTTLS and implicit-TLS listeners (SMTP and IMAP).
#[derive(Debug)]
pub enum Stream {
    /// Not encrypted (yet).
    Plain(TcpStream),
    /// After implicit TLS or STARTTLS.
    Tls(Box<SslStream<TcpStream>>),
}

impl Stream {
    /// True when the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
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
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
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
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

//! A client for an S3-compatible object store (AWS S3, MinIO, Ceph RGW, …)
//! with exactly what pecd needs for message bytes: PUT, GET (whole or a
//! byte range), HEAD, DELETE and ListObjectsV2, signed with AWS Signature
//! Version 4, path-style or virtual-hosted addressing, over http or https.
//!
//! Blocking, like [`crate::http`]: call it from a blocking thread
//! (`tokio::task::spawn_blocking`), as the store calls its blobs today.
//! Built on the `ureq` client pecd already has, with TLS from openssl
//! (through native-tls) and the system's trusted roots (`SSL_CERT_FILE`
//! and `SSL_CERT_DIR` are honoured), so the project keeps one crypto stack.
//!
//! Message bytes go in content-addressed, immutable objects
//! ([`Bucket::put_content`]): the name is the SHA-256 of the bytes, so a
//! retried upload is harmless and a read can check what it got.

pub mod sigv4;
pub mod xml;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openssl::sha::sha256;

use sigv4::{hex, uri_encode, AmzDate, Keys};
pub use xml::ListPage;

/// How long one exchange (request, reply and body) may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The environment variables read when no key file is configured, as the
/// AWS tools and SDKs read them.
pub const ACCESS_KEY_ENV: &str = "AWS_ACCESS_KEY_ID";
/// See [`ACCESS_KEY_ENV`].
pub const SECRET_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";

/// An object as listed or looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key in the bucket.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was written, Unix seconds.
    pub last_modified: i64,
    /// The server's entity tag, without quotes.
    pub etag: String,
}

/// The scheme, host and port of the store's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https` rather than `http`.
    pub https: bool,
    /// The host: a name, an IPv4 address or a bracketed IPv6 address.
    pub host: String,
    /// The port when written.
    pub port: Option<u16>,
}

/// Why an endpoint URL is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointError {
    /// Neither `http://` nor `https://`.
    Scheme(String),
    /// No host after the scheme.
    NoHost(String),
    /// A port that is not a number from 1 to 65535.
    Port(String),
    /// A path, query, user or fragment: the endpoint is only the server.
    Extra(String),
    /// Characters no host name has.
    Host(String),
}

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointError::Scheme(u) => write!(f, "{u:?} must start with http:// or https://"),
            EndpointError::NoHost(u) => write!(f, "{u:?} names no host"),
            EndpointError::Port(u) => write!(f, "{u:?}: the port must be a number from 1 to 65535"),
            EndpointError::Extra(u) => write!(
                f,
                "{u:?}: only scheme, host and port (the bucket goes in blobs.bucket)"
            ),
            EndpointError::Host(u) => write!(f, "{u:?}: not a host name or address"),
        }
    }
}

impl std::error::Error for EndpointError {}

impl Endpoint {
    /// Parse `http://host[:port]` or `https://host[:port]`, with an
    /// optional final `/`.
    pub fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        let err = |f: fn(String) -> EndpointError| f(url.to_string());
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(err(EndpointError::Scheme));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(err(EndpointError::Extra));
        }
        let (host, port) = if rest.starts_with('[') {
            let end = rest.find(']').ok_or_else(|| err(EndpointError::Host))?;
            let (h, p) = rest.split_at(end + 1);
            if h[1..h.len() - 1].parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err(EndpointError::Host));
            }
            match p {
                "" => (h, None),
                p => (
                    h,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| err(EndpointError::Port))?,
                    ),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(err(EndpointError::NoHost));
        }
        let name_ok = host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !name_ok {
            return Err(err(EndpointError::Host));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(err(EndpointError::Port)),
            },
        };
        Ok(Endpoint {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether the host is an IP address (which has no bucket subdomains).
    pub fn is_ip(&self) -> bool {
        self.host.starts_with('[') || self.host.parse::<std::net::Ipv4Addr>().is_ok()
    }

    /// `host[:port]` for `host`, the port left out when it is the scheme's.
    fn authority(&self, host: &str) -> String {
        match self.port {
            Some(p) if p != if self.https { 443 } else { 80 } => format!("{host}:{p}"),
            _ => host.to_string(),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        match self.port {
            Some(p) => write!(f, "{scheme}://{}:{p}", self.host),
            None => write!(f, "{scheme}://{}", self.host),
        }
    }
}

/// Whether `name` is a valid S3 bucket name: 3 to 63 lowercase letters,
/// digits, `-` and `.`, starting and ending with a letter or a digit.
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

/// Why the access keys could not be had.
#[derive(Debug)]
pub enum CredentialsError {
    /// Neither the key file nor the environment variable: the config key
    /// and the variable.
    Missing(&'static str, &'static str),
    /// The key file cannot be read: the config key, the file, why.
    Unreadable(&'static str, PathBuf, std::io::Error),
    /// The key file is readable by others: the config key, the file, its mode.
    Exposed(&'static str, PathBuf, u32),
    /// The key file's first line is empty: the config key and the file.
    Empty(&'static str, PathBuf),
}

impl std::fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialsError::Missing(key, env) => {
                write!(f, "{key}: not set and {env} not in the environment")
            }
            CredentialsError::Unreadable(key, p, e) => write!(f, "{key}: {}: {e}", p.display()),
            CredentialsError::Exposed(key, p, mode) => write!(
                f,
                "{key}: {} is readable by others (mode {mode:o}): chmod 600 it",
                p.display()
            ),
            CredentialsError::Empty(key, p) => write!(f, "{key}: {} is empty", p.display()),
        }
    }
}

impl std::error::Error for CredentialsError {}

/// Check a key file: it exists and only its owner may read it. The file
/// and its config key are named in the error.
pub fn check_key_file(key: &'static str, path: &Path) -> Result<(), CredentialsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| CredentialsError::Unreadable(key, path.to_path_buf(), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::Exposed(key, path.to_path_buf(), mode));
    }
    Ok(())
}

/// The first line of a secret file, checked with [`check_key_file`] (the
/// file and its config key named in the error).
pub fn read_secret_file(key: &'static str, path: &Path) -> Result<String, CredentialsError> {
    check_key_file(key, path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| CredentialsError::Unreadable(key, path.to_path_buf(), e))?;
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        return Err(CredentialsError::Empty(key, path.to_path_buf()));
    }
    Ok(line)
}

/// The first line of a key file (checked with [`check_key_file`]), else the
/// environment variable.
fn read_key(
    key: &'static str,
    file: Option<&Path>,
    env: &'static str,
) -> Result<String, CredentialsError> {
    let Some(path) = file else {
        return std::env::var(env)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.trim().to_string())
            .ok_or(CredentialsError::Missing(key, env));
    };
    read_secret_file(key, path)
}

/// Everything a [`Bucket`] needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server.
    pub endpoint: Endpoint,
    /// The bucket, which holds pecd's objects alone.
    pub bucket: String,
    /// The region named in the signatures (`us-east-1` for most
    /// S3-compatible servers).
    pub region: String,
    /// `http://host/bucket/key` rather than `http://bucket.host/key`.
    pub path_style: bool,
    /// The access key pair.
    pub keys: Keys,
    /// How long one exchange may take.
    pub timeout: Duration,
}

impl Settings {
    /// The access keys from `access_key_file` and `secret_key_file` (only
    /// their owner may read them; the first line of each), else from
    /// [`ACCESS_KEY_ENV`] and [`SECRET_KEY_ENV`].
    pub fn load_keys(
        access_key_file: Option<&Path>,
        secret_key_file: Option<&Path>,
    ) -> Result<Keys, CredentialsError> {
        Ok(Keys {
            access_key: read_key("blobs.access_key_file", access_key_file, ACCESS_KEY_ENV)?,
            secret_key: read_key("blobs.secret_key_file", secret_key_file, SECRET_KEY_ENV)?,
        })
    }
}

/// What went wrong talking to the store. Each names the operation
/// (`GET s3://pecd/ab/cd/…`) and, when the server answered, its own words.
#[derive(Debug)]
pub enum Error {
    /// No exchange: address, connection, TLS, timeout.
    Transport {
        /// The operation.
        op: String,
        /// The client's error.
        source: ureq::Error,
    },
    /// The server refused, with its status and, from its XML body, the S3
    /// error code (`SignatureDoesNotMatch`, `NoSuchBucket`, …) and message.
    Refused {
        /// The operation.
        op: String,
        /// The HTTP status.
        status: u16,
        /// The S3 error code; empty when the body had none (HEAD).
        code: String,
        /// The server's message.
        message: String,
    },
    /// No such object (404 `NoSuchKey`, or 404 to a HEAD).
    NotFound {
        /// The operation.
        op: String,
    },
    /// The object is larger than the caller's limit.
    TooLarge {
        /// The operation.
        op: String,
        /// The limit, bytes.
        limit: u64,
    },
    /// The reply was not what S3 sends.
    BadReply {
        /// The operation.
        op: String,
        /// What was wrong.
        what: String,
    },
    /// A content-addressed object whose bytes do not hash to its name.
    Corrupt {
        /// The operation.
        op: String,
        /// The SHA-256 of the bytes received.
        sha256: String,
    },
    /// openssl refused to compute a digest (MD5 off in a FIPS setup).
    Digest(openssl::error::ErrorStack),
}

impl Error {
    /// Whether the object is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// The S3 error code when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Refused { code, .. } if !code.is_empty() => Some(code),
            _ => None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Transport { op, source } => write!(f, "{op}: {source}"),
            Error::Refused {
                op,
                status,
                code,
                message,
            } => {
                write!(f, "{op}: HTTP {status}")?;
                if !code.is_empty() {
                    write!(f, " {code}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            Error::NotFound { op } => write!(f, "{op}: no such object"),
            Error::TooLarge { op, limit } => write!(f, "{op}: larger than {limit} bytes"),
            Error::BadReply { op, what } => write!(f, "{op}: a reply S3 does not send: {what}"),
            Error::Corrupt { op, sha256 } => {
                write!(
                    f,
                    "{op}: the bytes read hash to {sha256}, not to the object's name"
                )
            }
            Error::Digest(e) => write!(f, "computing Content-MD5: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport { source, .. } => Some(source),
            Error::Digest(e) => Some(e),
            _ => None,
        }
    }
}

/// The content address of `bytes`: `ab/cd/<sha256 hex>`, the first two
/// pairs of hex digits as a fan-out so no listing prefix grows too large.
pub fn content_key(bytes: &[u8]) -> String {
    let h = hex(&sha256(bytes));
    format!("{}/{}/{h}", &h[..2], &h[2..4])
}

/// One bucket of one store.
#[derive(Clone)]
pub struct Bucket {
    s: Settings,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("settings", &self.s).finish()
    }
}

/// A request before signing.
struct Call<'a> {
    method: &'static str,
    key: &'a str,
    query: &'a [(&'a str, &'a str)],
    extra: Vec<(&'static str, String)>,
    body: &'a [u8],
}

impl Bucket {
    /// A client for the bucket the settings name (no connection is made yet).
    pub fn new(settings: Settings) -> Bucket {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .http_status_as_error(false)
            // A redirect (S3's 301 for a bucket of another region) is an
            // error to report, not to follow with a signature for this host.
            .max_redirects(0)
            .tls_config(tls)
            .build()
            .into();
        Bucket { s: settings, agent }
    }

    /// The settings this client was made with.
    pub fn settings(&self) -> &Settings {
        &self.s
    }

    /// `s3://bucket/key`, as errors name an object.
    fn name(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.s.bucket)
    }

    /// Host header and URL path for `key` (already encoded).
    fn address(&self, key: &str) -> (String, String) {
        let e = &self.s.endpoint;
        let key = uri_encode(key, true);
        if self.s.path_style {
            // The bucket itself (LIST) is `/bucket`, as the SDKs send it.
            let path = if key.is_empty() {
                format!("/{}", self.s.bucket)
            } else {
                format!("/{}/{key}", self.s.bucket)
            };
            (e.authority(&e.host), path)
        } else {
            (
                e.authority(&format!("{}.{}", self.s.bucket, e.host)),
                format!("/{key}"),
            )
        }
    }

    /// Sign and send one request; the reply whatever its status.
    fn send(&self, op: &str, call: Call) -> Result<ureq::http::Response<ureq::Body>, Error> {
        let (host, path) = self.address(call.key);
        let payload = if call.body.is_empty() {
            sigv4::EMPTY_SHA256.to_string()
        } else {
            hex(&sha256(call.body))
        };
        // The wall clock, never a test's or a replay's: S3 refuses a
        // signature dated more than 15 minutes from its own time.
        let now = crate::pec::clock::since_epoch().as_secs() as i64;
        let date = AmzDate::from_unix(now);
        let mut headers: Vec<(&str, &str)> = vec![
            ("host", &host),
            ("x-amz-date", &date.stamp),
            ("x-amz-content-sha256", &payload),
        ];
        headers.extend(call.extra.iter().map(|(n, v)| (*n, v.as_str())));
        let req = sigv4::Request {
            method: call.method,
            path: &path,
            query: call.query,
            headers: &headers,
            payload_sha256: &payload,
        };
        let auth = sigv4::authorization(&req, &self.s.keys, &date, &self.s.region);
        let query = sigv4::canonical_query(call.query);
        let scheme = if self.s.endpoint.https {
            "https"
        } else {
            "http"
        };
        let url = if query.is_empty() {
            format!("{scheme}://{host}{path}")
        } else {
            format!("{scheme}://{host}{path}?{query}")
        };
        let mut b = ureq::http::Request::builder()
            .method(call.method)
            .uri(&url)
            .header("authorization", &auth);
        for (n, v) in &headers {
            b = b.header(*n, *v);
        }
        let transport = |source| Error::Transport {
            op: op.to_string(),
            source,
        };
        let resp = if call.method == "PUT" {
            let req = b
                .body(call.body)
                .map_err(|e| transport(ureq::Error::Http(e)))?;
            self.agent.run(req)
        } else {
            let req = b.body(()).map_err(|e| transport(ureq::Error::Http(e)))?;
            self.agent.run(req)
        };
        resp.map_err(transport)
    }

    /// The error a non-2xx reply stands for, with the server's words.
    fn refusal(op: &str, mut resp: ureq::http::Response<ureq::Body>) -> Error {
        let status = resp.status().as_u16();
        // An error body is a few hundred bytes; more is not one.
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        let parsed = xml::error(&body).unwrap_or_default();
        if status == 404 && (parsed.code.is_empty() || parsed.code == "NoSuchKey") {
            return Error::NotFound { op: op.to_string() };
        }
        let message = if parsed.message.is_empty() && parsed.code.is_empty() {
            resp.status()
                .canonical_reason()
                .unwrap_or_default()
                .to_string()
        } else {
            parsed.message
        };
        Error::Refused {
            op: op.to_string(),
            status,
            code: parsed.code,
            message,
        }
    }

    /// Read a 2xx reply's body, at most `limit` bytes.
    fn body(
        op: &str,
        mut resp: ureq::http::Response<ureq::Body>,
        limit: u64,
    ) -> Result<Vec<u8>, Error> {
        let declared = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(Error::TooLarge {
                op: op.to_string(),
                limit,
            });
        }
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => Error::TooLarge {
                    op: op.to_string(),
                    limit,
                },
                source => Error::Transport {
                    op: op.to_string(),
                    source,
                },
            })
    }

    /// Store `bytes` under `key`, replacing any object there. The server
    /// checks the bytes against `Content-MD5` and the signed SHA-256, so an
    /// upload cut or damaged on the way is refused, not stored.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<(), Error> {
        let op = format!("PUT {}", self.name(key));
        let md5 = openssl::hash::hash(openssl::hash::MessageDigest::md5(), bytes)
            .map_err(Error::Digest)?;
        let call = Call {
            method: "PUT",
            key,
            query: &[],
            extra: vec![("content-md5", openssl::base64::encode_block(&md5))],
            body: bytes,
        };
        let resp = self.send(&op, call)?;
        if !resp.status().is_success() {
            return Err(Self::refusal(&op, resp));
        }
        Ok(())
    }

    /// Store `bytes` under their content address ([`content_key`]) and
    /// return it. Putting the same bytes again writes the same object.
    pub fn put_content(&self, bytes: &[u8]) -> Result<String, Error> {
        let key = content_key(bytes);
        self.put(&key, bytes)?;
        Ok(key)
    }

    /// A successful GET of `key`, with the operation's name for errors.
    fn fetch(&self, key: &str) -> Result<(String, ureq::http::Response<ureq::Body>), Error> {
        let op = format!("GET {}", self.name(key));
        let call = Call {
            method: "GET",
            key,
            query: &[],
            extra: Vec::new(),
            body: &[],
        };
        let resp = self.send(&op, call)?;
        if !resp.status().is_success() {
            return Err(Self::refusal(&op, resp));
        }
        Ok((op, resp))
    }

    /// The whole object, at most `limit` bytes.
    pub fn get(&self, key: &str, limit: u64) -> Result<Vec<u8>, Error> {
        let (op, resp) = self.fetch(key)?;
        Self::body(&op, resp, limit)
    }

    /// The object as a stream, for bytes too many to hold at once (a
    /// message sent out over POP3 or IMAP), and its size. Read errors come
    /// from the connection as `std::io::Error`s.
    pub fn open(&self, key: &str) -> Result<(u64, ObjectReader), Error> {
        let (op, resp) = self.fetch(key)?;
        let size = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Error::BadReply {
                op: op.clone(),
                what: "no Content-Length".into(),
            })?;
        Ok((
            size,
            ObjectReader(resp.into_body().into_with_config().limit(size).reader()),
        ))
    }

    /// A content-addressed object (a key from [`Bucket::put_content`]),
    /// checked against its name.
    pub fn get_content(&self, key: &str, limit: u64) -> Result<Vec<u8>, Error> {
        let bytes = self.get(key, limit)?;
        let got = hex(&sha256(&bytes));
        if !key.ends_with(&got) {
            return Err(Error::Corrupt {
                op: format!("GET {}", self.name(key)),
                sha256: got,
            });
        }
        Ok(bytes)
    }

    /// The bytes `range` of the object (cut short at its end). An empty
    /// range reads nothing; a range starting past the end is refused by the
    /// server (`InvalidRange`).
    pub fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, Error> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let op = format!(
            "GET {} bytes {}-{}",
            self.name(key),
            range.start,
            range.end - 1
        );
        let call = Call {
            method: "GET",
            key,
            query: &[],
            extra: vec![("range", format!("bytes={}-{}", range.start, range.end - 1))],
            body: &[],
        };
        let resp = self.send(&op, call)?;
        match resp.status().as_u16() {
            206 => Self::body(&op, resp, range.end - range.start),
            // A 200 is the whole object: a server that ignores Range.
            200 => Err(Error::BadReply {
                op,
                what: "the whole object instead of the range (200, not 206)".into(),
            }),
            _ => Err(Self::refusal(&op, resp)),
        }
    }

    /// The object's size, date and tag; None if there is no such object.
    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, Error> {
        let op = format!("HEAD {}", self.name(key));
        let call = Call {
            method: "HEAD",
            key,
            query: &[],
            extra: Vec::new(),
            body: &[],
        };
        let resp = self.send(&op, call)?;
        if !resp.status().is_success() {
            return match Self::refusal(&op, resp) {
                Error::NotFound { .. } => Ok(None),
                e => Err(e),
            };
        }
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let size = header("content-length");
        let size = size.parse().map_err(|_| Error::BadReply {
            op: op.clone(),
            what: format!("Content-Length {size:?}"),
        })?;
        let date = header("last-modified");
        let last_modified = xml::http_date_unix(&date).ok_or_else(|| Error::BadReply {
            op: op.clone(),
            what: format!("Last-Modified {date:?}"),
        })?;
        Ok(Some(ObjectInfo {
            key: key.to_string(),
            size,
            last_modified,
            etag: header("etag").trim_matches('"').to_string(),
        }))
    }

    /// Remove the object; removing one that is not there is not an error
    /// (S3 answers 204 either way).
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        let op = format!("DELETE {}", self.name(key));
        let call = Call {
            method: "DELETE",
            key,
            query: &[],
            extra: Vec::new(),
            body: &[],
        };
        let resp = self.send(&op, call)?;
        if !resp.status().is_success() {
            return Err(Self::refusal(&op, resp));
        }
        Ok(())
    }

    /// One page of at most `max_keys` objects whose key starts with
    /// `prefix`, in key order, from the start or from the token a previous
    /// page gave.
    pub fn list(
        &self,
        prefix: &str,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, Error> {
        let op = format!("LIST {}", self.name(prefix));
        let max = max_keys.to_string();
        let mut query = vec![("list-type", "2"), ("prefix", prefix), ("max-keys", &max)];
        if let Some(t) = token {
            query.push(("continuation-token", t));
        }
        let call = Call {
            method: "GET",
            key: "",
            query: &query,
            extra: Vec::new(),
            body: &[],
        };
        let resp = self.send(&op, call)?;
        if !resp.status().is_success() {
            return Err(Self::refusal(&op, resp));
        }
        // A page of 1000 keys is about 300 KB of XML.
        let body = Self::body(&op, resp, 16 * 1024 * 1024)?;
        xml::list(&body).map_err(|e| Error::BadReply {
            op,
            what: e.to_string(),
        })
    }

    /// Every object under `prefix`, page after page (1000 keys a request).
    pub fn list_all(&self, prefix: &str) -> Listing<'_> {
        Listing {
            bucket: self,
            prefix: prefix.to_string(),
            page: Vec::new().into_iter(),
            next: Some(None),
            max_keys: 1000,
        }
    }

    /// Whether the bucket answers to these keys: a LIST of one key. The
    /// error carries the server's words (`NoSuchBucket`,
    /// `SignatureDoesNotMatch`, `InvalidAccessKeyId`, a refused connection).
    pub fn check(&self) -> Result<(), Error> {
        self.list("", None, 1).map(|_| ())
    }
}

/// An object being read ([`Bucket::open`]).
pub struct ObjectReader(ureq::BodyReader<'static>);

impl std::io::Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

/// The objects under a prefix, fetched a page at a time
/// ([`Bucket::list_all`]). Stops after the first error.
pub struct Listing<'a> {
    bucket: &'a Bucket,
    prefix: String,
    page: std::vec::IntoIter<ObjectInfo>,
    /// The token of the next page; None once the last was fetched.
    next: Option<Option<String>>,
    max_keys: u32,
}

impl Listing<'_> {
    /// Fetch `n` keys a request instead of 1000.
    pub fn page_size(mut self, n: u32) -> Self {
        self.max_keys = n.max(1);
        self
    }
}

impl Iterator for Listing<'_> {
    type Item = Result<ObjectInfo, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(o) = self.page.next() {
                return Some(Ok(o));
            }
            let token = self.next.take()?;
            match self
                .bucket
                .list(&self.prefix, token.as_deref(), self.max_keys)
            {
                Ok(page) => {
                    self.next = page.next.map(Some);
                    self.page = page.objects.into_iter();
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(endpoint: &str, path_style: bool) -> Bucket {
        Bucket::new(Settings {
            endpoint: Endpoint::parse(endpoint).unwrap(),
            bucket: "pecd".into(),
            region: "us-east-1".into(),
            path_style,
            keys: Keys {
                access_key: "a".into(),
                secret_key: "s".into(),
            },
            timeout: DEFAULT_TIMEOUT,
        })
    }

    #[test]
    fn endpoints_are_scheme_host_and_port_only() {
        let e = Endpoint::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(
            (e.https, e.host.as_str(), e.port),
            (false, "127.0.0.1", Some(9000))
        );
        assert!(e.is_ip());
        let e = Endpoint::parse("https://S3.EU-South-1.amazonaws.com").unwrap();
        assert_eq!(
            (e.https, e.host.as_str(), e.port),
            (true, "s3.eu-south-1.amazonaws.com", None)
        );
        assert!(!e.is_ip());
        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("[::1]", Some(9000)));
        assert!(e.is_ip());
        for (bad, want) in [
            (
                "127.0.0.1:9000",
                EndpointError::Scheme("127.0.0.1:9000".into()),
            ),
            ("ftp://h", EndpointError::Scheme("ftp://h".into())),
            ("http://", EndpointError::NoHost("http://".into())),
            ("http://h:0", EndpointError::Port("http://h:0".into())),
            (
                "http://h:99999",
                EndpointError::Port("http://h:99999".into()),
            ),
            ("http://h:x", EndpointError::Port("http://h:x".into())),
            (
                "http://h/pecd",
                EndpointError::Extra("http://h/pecd".into()),
            ),
            ("http://u:p@h", EndpointError::Extra("http://u:p@h".into())),
            ("http://h_1 x", EndpointError::Host("http://h_1 x".into())),
            ("http://[zz]:1", EndpointError::Host("http://[zz]:1".into())),
        ] {
            assert_eq!(Endpoint::parse(bad), Err(want), "{bad}");
        }
    }

    #[test]
    fn path_style_and_virtual_hosted_addresses() {
        let b = bucket("http://127.0.0.1:9000", true);
        assert_eq!(
            b.address("ab/cd/e f"),
            (
                "127.0.0.1:9000".to_string(),
                "/pecd/ab/cd/e%20f".to_string()
            )
        );
        assert_eq!(b.address("").1, "/pecd");
        let b = bucket("https://s3.example.net", false);
        assert_eq!(b.address("").1, "/");
        assert_eq!(
            b.address("ab/cd/x"),
            ("pecd.s3.example.net".to_string(), "/ab/cd/x".to_string())
        );
        // The scheme's own port is not written in Host, as clients send it.
        let b = bucket("https://s3.example.net:443", false);
        assert_eq!(b.address("").0, "pecd.s3.example.net");
        let b = bucket("http://minio.local:9000", false);
        assert_eq!(b.address("k").0, "pecd.minio.local:9000");
    }

    #[test]
    fn content_keys_fan_out_by_the_hash() {
        // SHA-256 of "abc" (FIPS 180-2 appendix B.1).
        assert_eq!(
            content_key(b"abc"),
            "ba/78/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bucket_names() {
        for ok in ["pecd", "pec-d.1", "abc"] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Pecd",
            "pecd-",
            "-pecd",
            "pe_cd",
            "pe..cd",
            &"a".repeat(64),
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_bucket_is_shared_across_blocking_threads() {
        fn shared<T: Send + Sync + Clone + 'static>() {}
        shared::<Bucket>();
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let b = bucket("http://127.0.0.1:9000", true);
        let shown = format!("{b:?}");
        assert!(shown.contains("access_key: \"a\""), "{shown}");
        assert!(!shown.contains("secret_key: \"s\""), "{shown}");
    }
}

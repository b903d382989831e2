//! The few HTTP requests pecd makes as a client: RFC 3161 time stamps for
//! the log seals, OCSP and CRLs for revocation. Blocking (call them from a
//! blocking thread), bounded in time and in the size of what is read.

use std::time::Duration;

/// Why an exchange gave no reply body.
#[derive(Debug)]
pub enum HttpError {
    /// The request failed: address, connection, timeout.
    Request(ureq::Error),
    /// The server answered with a status other than 2xx.
    Status(u16),
    /// The reply body could not be read whole (larger than the limit, cut,
    /// too slow).
    Body(ureq::Error),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Request(e) => write!(f, "{e}"),
            HttpError::Status(code) => write!(f, "HTTP status {code}"),
            HttpError::Body(e) => write!(f, "reading the reply: {e}"),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpError::Request(e) | HttpError::Body(e) => Some(e),
            HttpError::Status(_) => None,
        }
    }
}

/// A client with one timeout for a whole exchange.
#[derive(Clone)]
pub struct Client(ureq::Agent);

impl Client {
    /// A client whose every exchange ends within `timeout`.
    pub fn new(timeout: Duration) -> Client {
        Client(
            ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .build()
                .into(),
        )
    }

    /// POST `body` as `content_type`; the reply body, at most `limit` bytes,
    /// if the status is 2xx.
    pub fn post(
        &self,
        url: &str,
        content_type: &str,
        body: &[u8],
        limit: u64,
    ) -> Result<Vec<u8>, HttpError> {
        let resp = self
            .0
            .post(url)
            .header("Content-Type", content_type)
            .send(body)
            .map_err(HttpError::Request)?;
        read(resp, limit)
    }

    /// GET `url`; the body, at most `limit` bytes, if the status is 2xx.
    pub fn get(&self, url: &str, limit: u64) -> Result<Vec<u8>, HttpError> {
        read(self.0.get(url).call().map_err(HttpError::Request)?, limit)
    }
}

fn read(mut resp: ureq::http::Response<ureq::Body>, limit: u64) -> Result<Vec<u8>, HttpError> {
    let status = resp.status();
    if !status.is_success() {
        return Err(HttpError::Status(status.as_u16()));
    }
    resp.body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(HttpError::Body)
}

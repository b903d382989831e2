//! The few HTTP requests pecd makes as a client: RFC 3161 time stamps for
//! the log seals, OCSP and CRLs for revocation. Blocking (call them from a
//! blocking thread), bounded in time and in the size of what is read.

use std::time::Duration;

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
    ) -> Result<Vec<u8>, String> {
        let resp = self
            .0
            .post(url)
            .header("Content-Type", content_type)
            .send(body)
            .map_err(|e| e.to_string())?;
        read(resp, limit)
    }

    /// GET `url`; the body, at most `limit` bytes, if the status is 2xx.
    pub fn get(&self, url: &str, limit: u64) -> Result<Vec<u8>, String> {
        read(self.0.get(url).call().map_err(|e| e.to_string())?, limit)
    }
}

fn read(mut resp: ureq::http::Response<ureq::Body>, limit: u64) -> Result<Vec<u8>, String> {
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("HTTP status {}", status.as_u16()));
    }
    resp.body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| format!("reading the reply: {e}"))
}

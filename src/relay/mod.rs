//! Outbound SMTP to peer providers and ordinary MX hosts (lettre client,
//! native-tls, i.e. OpenSSL).
//!
//! One pooled transport per next hop, so bursts to a busy peer reuse
//! connections. TLS is required toward providers in the index (their
//! certificates must chain to `[trust] ca`) and opportunistic toward ordinary
//! domains, as most MX hosts on the open internet present certificates no one
//! could verify.

pub mod dns;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::PoolConfig;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

/// How hard to insist on TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsPolicy {
    /// STARTTLS with a certificate verified against our trust roots.
    Required,
    /// STARTTLS when offered, certificate not verified; plain otherwise.
    Opportunistic,
}

/// Where to send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextHop {
    /// Host name or IP to connect to.
    pub host: String,
    /// Name the peer's TLS certificate must carry (the MX host name; else `host`).
    pub tls_name: String,
    /// TCP port.
    pub port: u16,
    /// TLS policy.
    pub tls: TlsPolicy,
}

/// The single classification of a delivery attempt: retries and notices read only this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The peer accepted the message.
    Sent,
    /// Try again later (connection refused, timeout, TLS failure, 4xx).
    Temporary(String),
    /// Do not try again (5xx, malformed addresses).
    Permanent(String),
}

/// Classify a lettre error once, for every caller.
pub fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    let text = e.to_string();
    if e.is_permanent() {
        Outcome::Permanent(text)
    } else {
        // Transient replies, timeouts, TLS and connection failures, and
        // anything unknown: retrying is the choice that loses nothing.
        Outcome::Temporary(text)
    }
}

/// The SMTP client side of the provider.
pub struct Relay {
    hello: String,
    roots: Vec<Vec<u8>>,
    timeout: Duration,
    pool_size: u32,
    pools: Mutex<HashMap<NextHop, AsyncSmtpTransport<Tokio1Executor>>>,
}

impl Relay {
    /// A relay that says `EHLO hello`, trusts the given PEM roots for required
    /// TLS, and keeps up to `pool_size` connections open per next hop.
    pub fn new(hello: &str, roots: Vec<Vec<u8>>, timeout: Duration, pool_size: u32) -> Relay {
        Relay {
            hello: hello.to_string(),
            roots,
            timeout,
            pool_size: pool_size.max(1),
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn transport(&self, hop: &NextHop) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let mut pools = self
            .pools
            .lock()
            .map_err(|_| "relay pool poisoned".to_string())?;
        if let Some(t) = pools.get(hop) {
            return Ok(t.clone());
        }
        let mut params = TlsParameters::builder(hop.tls_name.clone());
        params = match hop.tls {
            TlsPolicy::Required => {
                for pem in &self.roots {
                    let cert = Certificate::from_pem(pem).map_err(|e| e.to_string())?;
                    params = params.add_root_certificate(cert);
                }
                params
            }
            TlsPolicy::Opportunistic => params
                .dangerous_accept_invalid_certs(true)
                .dangerous_accept_invalid_hostnames(true),
        };
        let params = params.build_native().map_err(|e| e.to_string())?;
        let tls = match hop.tls {
            TlsPolicy::Required => Tls::Required(params),
            TlsPolicy::Opportunistic => Tls::Opportunistic(params),
        };
        let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(hop.host.clone())
            .port(hop.port)
            .hello_name(ClientId::Domain(self.hello.clone()))
            .timeout(Some(self.timeout))
            .tls(tls)
            // As many connections as jobs may send at once: one opened beyond
            // the pool is closed after a single message, a TLS handshake wasted.
            .pool_config(
                PoolConfig::new()
                    .max_size(self.pool_size)
                    .idle_timeout(Duration::from_secs(30)),
            )
            .build();
        pools.insert(hop.clone(), t.clone());
        Ok(t)
    }

    /// Send `bytes` as is to `hop` for `rcpts` in one transaction.
    pub async fn send(
        &self,
        hop: &NextHop,
        mail_from: &str,
        rcpts: &[String],
        bytes: &[u8],
    ) -> Outcome {
        let from = if mail_from.is_empty() {
            None
        } else {
            match mail_from.parse::<Address>() {
                Ok(a) => Some(a),
                Err(e) => return Outcome::Permanent(format!("bad sender {mail_from}: {e}")),
            }
        };
        let mut to = Vec::with_capacity(rcpts.len());
        for r in rcpts {
            match r.parse::<Address>() {
                Ok(a) => to.push(a),
                Err(e) => return Outcome::Permanent(format!("bad recipient {r}: {e}")),
            }
        }
        let env = match Envelope::new(from, to) {
            Ok(e) => e,
            Err(e) => return Outcome::Permanent(e.to_string()),
        };
        let t = match self.transport(hop) {
            Ok(t) => t,
            Err(e) => return Outcome::Temporary(format!("TLS setup: {e}")),
        };
        match t.send_raw(&env, bytes).await {
            Ok(_) => Outcome::Sent,
            Err(e) => classify(&e),
        }
    }
}

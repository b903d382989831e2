//! A laboratory of providers in one process on loopback, for `pecd demo` and
//! `pecd bench`: a throwaway CA, one folder per provider, each in the other's
//! index and static routes between them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use lettre::Address;

use crate::config::Config;
use crate::store::users;

use crate::server::Running;

/// `base` with the tables and keys of `extra` merged in, recursively: the
/// lab's config already has a `[limits]` table, and TOML refuses a second.
fn merge_toml(base: &str, extra: &str) -> Result<String, String> {
    fn merge(into: &mut toml::Table, from: toml::Table) {
        for (k, v) in from {
            match (into.get_mut(&k), v) {
                (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
                (_, v) => {
                    into.insert(k, v);
                }
            }
        }
    }
    if extra.trim().is_empty() {
        return Ok(base.to_string());
    }
    let mut doc: toml::Table = toml::from_str(base).map_err(|e| format!("lab config: {e}"))?;
    let more: toml::Table = toml::from_str(extra).map_err(|e| format!("lab extra config: {e}"))?;
    merge(&mut doc, more);
    toml::to_string(&doc).map_err(|e| e.to_string())
}

/// Password of every lab user.
pub const LAB_PASSWORD: &str = "lab-password";

/// One provider of the lab before it starts.
pub struct LabProvider {
    /// Descriptive name.
    pub name: String,
    /// Certified domain.
    pub domain: String,
    /// Local parts of its users.
    pub users: Vec<String>,
}

/// A key in a PKCS#11 token that every lab provider signs with (`pecd bench
/// --pkcs11-key`), each under its own certificate from the lab CA. The PIN
/// comes from `PECD_PKCS11_PIN`, as for `pecd serve`.
pub struct LabToken {
    /// The token's PKCS#11 module.
    pub module: PathBuf,
    /// RFC 7512 URI of the private key.
    pub uri: String,
}

impl LabToken {
    /// The token's key handle, logged in with `PECD_PKCS11_PIN`.
    pub fn key(&self) -> Result<openssl::pkey::PKey<openssl::pkey::Private>, String> {
        let pin = std::env::var(crate::config::PIN_ENV).map_err(|_| {
            format!(
                "--pkcs11-key: set {} to the token's PIN",
                crate::config::PIN_ENV
            )
        })?;
        crate::sys::pkcs11::load_private_key(&self.module, &self.uri, &pin)
            .map_err(|e| e.to_string())
    }
}

/// Providers running in this process.
pub struct Lab {
    /// Root folder (removed by [`Lab::stop`]).
    pub dir: PathBuf,
    /// The providers, in the order given.
    pub providers: Vec<Running>,
    /// PEM of the lab CA.
    pub ca_pem: Vec<u8>,
    /// One runtime per provider, as each would be its own process: sharing
    /// one made every provider's tasks queue behind the other's.
    runtimes: Vec<OwnRuntime>,
}

/// A runtime that may be dropped from async code (it is shut down in the
/// background instead of blocking on its tasks).
pub struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    /// A multi-threaded runtime whose threads are called `name`.
    pub fn new(name: &str) -> Result<OwnRuntime, String> {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(name)
            .build()
            .map(|rt| OwnRuntime(Some(rt)))
            .map_err(|e| e.to_string())
    }

    /// Its handle, to spawn on.
    pub fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(|rt| rt.handle())
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

impl Lab {
    /// Create and start providers under a fresh folder in the temp dir.
    /// `extra` is merged into every provider's config (e.g. `[queue]` or
    /// `[limits]` settings; its keys win).
    pub async fn start(specs: &[LabProvider], extra: &str) -> Result<Lab, String> {
        Lab::start_signing(specs, extra, None).await
    }

    /// [`Lab::start`], the providers signing with `token`'s key when given.
    pub async fn start_signing(
        specs: &[LabProvider],
        extra: &str,
        token: Option<&LabToken>,
    ) -> Result<Lab, String> {
        // The token's public half, for the lab CA to certify.
        let token_key = token.map(LabToken::key).transpose()?;
        let dir = std::env::temp_dir().join(format!(
            "pecd-lab-{}-{}",
            std::process::id(),
            crate::store::spool::unique_suffix()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let ca = crate::certs::generate_ca("pecd lab CA").map_err(|e| e.to_string())?;
        let ca_pem = ca.cert_pem();
        let mut index = String::new();
        let mut inbound_ports = Vec::new();
        for s in specs {
            let certs = dir.join(&s.domain).join("certs");
            crate::layout::write_dev_certs(&certs, &ca, &s.name, &s.domain)?;
            if let Some(key) = &token_key {
                let cert = crate::certs::signing_cert_for(&ca, key, &s.name, &s.domain)
                    .map_err(|e| e.to_string())?;
                write(
                    &certs.join("signing.pem"),
                    &cert.to_pem().map_err(|e| e.to_string())?,
                )?;
                std::fs::remove_file(certs.join("signing.key")).map_err(|e| e.to_string())?;
            }
            index.push_str(&crate::layout::index_entry(
                &s.name,
                &s.domain,
                &certs.join("signing.pem"),
            ));
            inbound_ports.push(free_port().map_err(|e| e.to_string())?);
        }
        let mut routes = String::new();
        for (s, port) in specs.iter().zip(&inbound_ports) {
            routes.push_str(&crate::layout::route_entry(
                &s.domain,
                &format!("127.0.0.1:{port}"),
            ));
        }
        let mut providers = Vec::new();
        let mut runtimes = Vec::new();
        for (s, port) in specs.iter().zip(&inbound_ports) {
            let pdir = dir.join(&s.domain);
            write(&pdir.join("index.toml"), index.as_bytes())?;
            let text = crate::layout::provider_config_text(
                &s.name,
                &s.domain,
                &format!("mx.{}", s.domain),
                [0, 0, *port, 0, 0, 0, 0, 0, 0],
            ) + "\n"
                + &routes;
            let text = merge_toml(&text, extra)?;
            let text = match token {
                Some(t) => merge_toml(
                    &text,
                    &format!(
                        "[signing]\nkey = {}\npkcs11_module = {}\n",
                        toml::Value::String(t.uri.clone()),
                        toml::Value::String(t.module.display().to_string())
                    ),
                )?,
                None => text,
            };
            let cfg = Config::from_str_at(&text, &pdir).map_err(|e| e.to_string())?;
            let data = cfg.data_dir();
            let st = crate::store::Store::open(&data).map_err(|e| e.to_string())?;
            for u in &s.users {
                let addr = format!("{u}@{}", s.domain);
                let hash = users::hash_password(LAB_PASSWORD)?;
                let a = addr.clone();
                st.write_blocking(move |c| users::add(c, &a, &hash, crate::store::now_ms()))
                    .map_err(|e| e.to_string())?;
                crate::server::create_mailbox(&st.paths().mail, &addr)?;
            }
            st.close();
            let rt = OwnRuntime::new(&format!("pecd-{}", s.domain))?;
            let handle = rt.handle().ok_or("runtime gone")?;
            providers.push(
                handle
                    .spawn(crate::server::start(cfg))
                    .await
                    .map_err(|e| e.to_string())??,
            );
            runtimes.push(rt);
        }
        Ok(Lab {
            dir,
            providers,
            ca_pem,
            runtimes,
        })
    }

    /// The standard pair: Alpha (alice) and Beta (`beta_users`).
    pub async fn alpha_beta(beta_users: &[String], extra: &str) -> Result<Lab, String> {
        Lab::alpha_beta_signing(beta_users, extra, None).await
    }

    /// [`Lab::alpha_beta`], both signing with `token`'s key when given.
    pub async fn alpha_beta_signing(
        beta_users: &[String],
        extra: &str,
        token: Option<&LabToken>,
    ) -> Result<Lab, String> {
        Lab::start_signing(
            &[
                LabProvider {
                    name: "Alpha PEC S.p.A.".into(),
                    domain: "pec.alpha.test".into(),
                    users: vec!["alice".into()],
                },
                LabProvider {
                    name: "Beta PEC S.p.A.".into(),
                    domain: "pec.beta.test".into(),
                    users: beta_users.to_vec(),
                },
            ],
            extra,
            token,
        )
        .await
    }

    /// TLS settings of a client that trusts the lab CA.
    pub fn client_tls(&self) -> Result<TlsParameters, String> {
        let ca = Certificate::from_pem(&self.ca_pem).map_err(|e| e.to_string())?;
        TlsParameters::builder("127.0.0.1".into())
            .add_root_certificate(ca)
            .build_native()
            .map_err(|e| e.to_string())
    }

    /// Stop every provider and remove the folder.
    pub async fn stop(self) {
        for p in self.providers {
            p.stop(Duration::from_secs(10)).await;
        }
        drop(self.runtimes);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A simple text message from `from` to `to`, with its envelope.
fn message(
    from: &str,
    to: &[String],
    subject: &str,
    body: &str,
) -> Result<(Envelope, String), String> {
    let mut raw = format!(
        "From: {from}\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: <{}@lab.client>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        to.join(", "),
        crate::store::spool::unique_suffix()
    );
    raw.push_str(body);
    raw.push_str("\r\n");
    let env = Envelope::new(
        Some(from.parse::<Address>().map_err(|e| e.to_string())?),
        to.iter()
            .map(|r| r.parse::<Address>().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?,
    )
    .map_err(|e| e.to_string())?;
    Ok((env, raw))
}

/// The identificativo in an access point's `250` to DATA.
fn identificativo_of(reply: &Response) -> String {
    let text = reply.message().collect::<Vec<_>>().join(" ");
    text.rsplit(' ').next().unwrap_or_default().to_string()
}

/// Submit a simple text message on an open session; returns the
/// identificativo from the reply.
pub async fn submit(
    conn: &mut AsyncSmtpConnection,
    from: &str,
    to: &[String],
    subject: &str,
    body: &str,
) -> Result<String, String> {
    let (env, raw) = message(from, to, subject, body)?;
    let reply = crate::relay::send_on(conn, &env, raw.as_bytes(), CLIENT_TIMEOUT).await?;
    Ok(identificativo_of(&reply))
}

/// How long a lab client waits for the access point.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// An authenticated STARTTLS session with the access point at `lab_addr`,
/// kept by its caller as a mail client keeps its connection.
pub async fn session(
    lab_addr: std::net::SocketAddr,
    tls: TlsParameters,
    user: &str,
) -> Result<AsyncSmtpConnection, String> {
    let hello = ClientId::Domain("lab.client".into());
    let ip = lab_addr.ip().to_string();
    let tcp = crate::relay::tcp_connect(&ip, lab_addr.port(), CLIENT_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let mut c = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
        .await
        .map_err(|e| e.to_string())?;
    c.starttls(tls, &hello).await.map_err(|e| e.to_string())?;
    c.auth(
        &[Mechanism::Plain],
        &Credentials::new(user.into(), LAB_PASSWORD.into()),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(c)
}

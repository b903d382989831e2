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

/// Why the lab did not start, or a lab client failed.
#[derive(Debug)]
pub enum LabError {
    /// A file or folder of the lab: the path and why.
    File(PathBuf, std::io::Error),
    /// Another I/O failure (folders, ports, runtimes).
    Io(std::io::Error),
    /// A lab configuration that does not parse: which one and why.
    Config(&'static str, toml::de::Error),
    /// The merged configuration does not write back.
    ConfigOut(toml::ser::Error),
    /// A certificate could not be made.
    Openssl(openssl::error::ErrorStack),
    /// The development certificates were not written.
    Certs(crate::layout::DevCertsError),
    /// No PIN for the token's key in the environment.
    NoPin,
    /// The token does not give its key.
    Token(crate::sys::pkcs11::Pkcs11Error),
    /// A provider's store does not open.
    Store(crate::store::StoreError),
    /// A user or mailbox of a provider could not be made, or a provider
    /// did not start: its words.
    Provider(String),
    /// A provider's runtime is gone.
    RuntimeGone,
    /// A provider's start task panicked or was cancelled.
    Join(tokio::task::JoinError),
    /// The client side: addresses, TLS settings, the SMTP session.
    Client(String),
    /// The message was not accepted.
    Send(crate::relay::SendError),
}

impl std::fmt::Display for LabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabError::File(p, e) => write!(f, "{}: {e}", p.display()),
            LabError::Io(e) => write!(f, "{e}"),
            LabError::Config(what, e) => write!(f, "{what}: {e}"),
            LabError::ConfigOut(e) => write!(f, "{e}"),
            LabError::Openssl(e) => write!(f, "{e}"),
            LabError::Certs(e) => write!(f, "{e}"),
            LabError::NoPin => write!(
                f,
                "--pkcs11-key: set {} to the token's PIN",
                crate::config::PIN_ENV
            ),
            LabError::Token(e) => write!(f, "{e}"),
            LabError::Store(e) => write!(f, "{e}"),
            LabError::Provider(e) | LabError::Client(e) => f.write_str(e),
            LabError::RuntimeGone => f.write_str("runtime gone"),
            LabError::Join(e) => write!(f, "{e}"),
            LabError::Send(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LabError {}

impl From<std::io::Error> for LabError {
    fn from(e: std::io::Error) -> Self {
        LabError::Io(e)
    }
}

impl From<openssl::error::ErrorStack> for LabError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        LabError::Openssl(e)
    }
}

/// A lettre error on the client side, as text.
fn client(e: impl std::fmt::Display) -> LabError {
    LabError::Client(e.to_string())
}

/// `base` with the tables and keys of `extra` merged in, recursively: the
/// lab's config already has a `[limits]` table, and TOML refuses a second.
fn merge_toml(base: &str, extra: &str) -> Result<String, LabError> {
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
    let mut doc: toml::Table =
        toml::from_str(base).map_err(|e| LabError::Config("lab config", e))?;
    let more: toml::Table =
        toml::from_str(extra).map_err(|e| LabError::Config("lab extra config", e))?;
    merge(&mut doc, more);
    toml::to_string(&doc).map_err(LabError::ConfigOut)
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
    /// Configuration of this provider alone, merged last (e.g. its
    /// `[store]`).
    pub config: String,
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
    pub fn key(&self) -> Result<openssl::pkey::PKey<openssl::pkey::Private>, LabError> {
        let pin = std::env::var(crate::config::PIN_ENV).map_err(|_| LabError::NoPin)?;
        crate::sys::pkcs11::load_private_key(&self.module, &self.uri, &pin).map_err(LabError::Token)
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
    pub fn new(name: &str) -> Result<OwnRuntime, LabError> {
        Ok(tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(name)
            .build()
            .map(|rt| OwnRuntime(Some(rt)))?)
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

/// A port free on 127.0.0.1 now (bound and released: whoever binds it
/// next is expected to be the caller).
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), LabError> {
    std::fs::write(path, bytes).map_err(|e| LabError::File(path.to_path_buf(), e))
}

impl Lab {
    /// Create and start providers under a fresh folder in the temp dir.
    /// `extra` is merged into every provider's config (e.g. `[queue]` or
    /// `[limits]` settings; its keys win).
    pub async fn start(specs: &[LabProvider], extra: &str) -> Result<Lab, LabError> {
        Lab::start_signing(specs, extra, None).await
    }

    /// [`Lab::start`], the providers signing with `token`'s key when given.
    pub async fn start_signing(
        specs: &[LabProvider],
        extra: &str,
        token: Option<&LabToken>,
    ) -> Result<Lab, LabError> {
        // The token's public half, for the lab CA to certify.
        let token_key = token.map(LabToken::key).transpose()?;
        let dir = std::env::temp_dir().join(format!(
            "pecd-lab-{}-{}",
            std::process::id(),
            crate::store::spool::unique_suffix()
        ));
        std::fs::create_dir_all(&dir)?;
        let ca = crate::certs::generate_ca("pecd lab CA")?;
        let ca_pem = ca.cert_pem();
        let mut index = String::new();
        let mut inbound_ports = Vec::new();
        for s in specs {
            let certs = dir.join(&s.domain).join("certs");
            crate::layout::write_dev_certs(&certs, &ca, &s.name, &s.domain)
                .map_err(LabError::Certs)?;
            if let Some(key) = &token_key {
                let cert = crate::certs::signing_cert_for(&ca, key, &s.name, &s.domain)?;
                write(&certs.join("signing.pem"), &cert.to_pem()?)?;
                std::fs::remove_file(certs.join("signing.key"))?;
            }
            index.push_str(&crate::layout::index_entry(
                &s.name,
                &s.domain,
                &certs.join("signing.pem"),
            ));
            inbound_ports.push(free_port()?);
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
            ) + crate::layout::DEV_LOG_SECTION
                + "\n"
                + &routes;
            let text = merge_toml(&merge_toml(&text, extra)?, &s.config)?;
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
            let cfg =
                Config::from_str_at(&text, &pdir).map_err(|e| LabError::Config("lab config", e))?;
            let database = crate::server::database::database(&cfg)
                .map_err(|e| LabError::Provider(e.to_string()))?;
            // Off the runtime: PostgreSQL's client blocks on one of its own.
            let (data, domain, users) = (cfg.data_dir(), s.domain.clone(), s.users.clone());
            tokio::task::spawn_blocking(move || -> Result<(), LabError> {
                let st =
                    crate::store::Store::open_with(&data, &database).map_err(LabError::Store)?;
                for u in &users {
                    let addr = format!("{u}@{domain}");
                    let hash = users::hash_password(LAB_PASSWORD).map_err(LabError::Provider)?;
                    let now = {
                        use crate::pec::clock::Clock;
                        crate::pec::clock::SystemClock.unix_ms()
                    };
                    st.add_user_blocking(&addr, &hash, now)
                        .map_err(LabError::Store)?;
                    crate::server::create_mailbox(&st.paths().mail, &addr)
                        .map_err(LabError::Provider)?;
                }
                st.close();
                Ok(())
            })
            .await
            .map_err(LabError::Join)??;
            let rt = OwnRuntime::new(&format!("pecd-{}", s.domain))?;
            let handle = rt.handle().ok_or(LabError::RuntimeGone)?;
            providers.push(
                handle
                    .spawn(crate::server::start(cfg))
                    .await
                    .map_err(LabError::Join)?
                    .map_err(LabError::Provider)?,
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
    pub async fn alpha_beta(beta_users: &[String], extra: &str) -> Result<Lab, LabError> {
        Lab::alpha_beta_signing(beta_users, extra, None, None).await
    }

    /// [`Lab::alpha_beta`], both signing with `token`'s key when given,
    /// and each keeping its rows in a database of its own in `pg` when
    /// given (else SQLite).
    pub async fn alpha_beta_signing(
        beta_users: &[String],
        extra: &str,
        token: Option<&LabToken>,
        pg: Option<&crate::labpg::PgCluster>,
    ) -> Result<Lab, LabError> {
        let store = |db: &str| -> Result<String, LabError> {
            let Some(pg) = pg else {
                return Ok(String::new());
            };
            let url = pg
                .create_database(db)
                .map_err(|e| LabError::Provider(e.to_string()))?;
            Ok(format!(
                "[store]\nbackend = \"postgresql\"\nurl = {}\n",
                toml::Value::String(url)
            ))
        };
        Lab::start_signing(
            &[
                LabProvider {
                    name: "Alpha PEC S.p.A.".into(),
                    domain: "pec.alpha.test".into(),
                    users: vec!["alice".into()],
                    config: store("alpha")?,
                },
                LabProvider {
                    name: "Beta PEC S.p.A.".into(),
                    domain: "pec.beta.test".into(),
                    users: beta_users.to_vec(),
                    config: store("beta")?,
                },
            ],
            extra,
            token,
        )
        .await
    }

    /// TLS settings of a client that trusts the lab CA.
    pub fn client_tls(&self) -> Result<TlsParameters, LabError> {
        let ca = Certificate::from_pem(&self.ca_pem).map_err(client)?;
        TlsParameters::builder("127.0.0.1".into())
            .add_root_certificate(ca)
            .build_native()
            .map_err(client)
    }

    /// Stop every provider and remove the folder.
    pub async fn stop(mut self) {
        for p in std::mem::take(&mut self.providers) {
            p.stop(Duration::from_secs(10)).await;
        }
        // Drop removes the folder once the runtimes are gone.
    }
}

impl Drop for Lab {
    /// A lab dropped without [`Lab::stop`] (an interrupted `pecd bench`)
    /// still leaves no folder behind: its runtimes are shut down first.
    fn drop(&mut self) {
        drop(std::mem::take(&mut self.runtimes));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A simple text message from `from` to `to`, with its envelope.
fn message(
    from: &str,
    to: &[String],
    subject: &str,
    body: &str,
) -> Result<(Envelope, String), LabError> {
    let mut raw = format!(
        "From: {from}\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: <{}@lab.client>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        to.join(", "),
        crate::store::spool::unique_suffix()
    );
    raw.push_str(body);
    raw.push_str("\r\n");
    let env = Envelope::new(
        Some(from.parse::<Address>().map_err(client)?),
        to.iter()
            .map(|r| r.parse::<Address>().map_err(client))
            .collect::<Result<_, _>>()?,
    )
    .map_err(client)?;
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
) -> Result<String, LabError> {
    let (env, raw) = message(from, to, subject, body)?;
    let reply = crate::relay::send_on(conn, &env, raw.as_bytes(), CLIENT_TIMEOUT)
        .await
        .map_err(LabError::Send)?;
    Ok(identificativo_of(&reply))
}

/// What the access point answered to one message, and when the client
/// finished sending it.
pub struct Submitted {
    /// The identificativo in the `250` reply.
    pub id: String,
    /// Unix ms when the message's last byte had been written to the
    /// connection and only the final `.` was left to send: the end of DATA.
    pub data_end_ms: i64,
}

/// Yields the message once and notes the time when asked for more: lettre
/// asks after writing the message, just before it writes the final dot.
struct EndOfData<'a> {
    message: Option<&'a [u8]>,
    at: &'a mut Option<i64>,
}

impl<'a> Iterator for EndOfData<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let part = self.message.take();
        if part.is_none() && self.at.is_none() {
            use crate::pec::clock::Clock;
            *self.at = Some(crate::pec::clock::SystemClock.unix_ms());
        }
        part
    }
}

/// [`submit`], noting the end of DATA: MAIL, RCPT and DATA in lock step and
/// the same bytes on the wire as [`submit`], which a bench run needs to set
/// its latencies against.
pub async fn submit_timed(
    conn: &mut AsyncSmtpConnection,
    from: &str,
    to: &[String],
    subject: &str,
    body: &str,
) -> Result<Submitted, LabError> {
    use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
    let (env, raw) = message(from, to, subject, body)?;
    let step =
        |what: &str, e: lettre::transport::smtp::Error| LabError::Client(format!("{what}: {e}"));
    let within = |what: &'static str| {
        move |_| LabError::Client(format!("no answer to {what} in {CLIENT_TIMEOUT:?}"))
    };
    tokio::time::timeout(
        CLIENT_TIMEOUT,
        conn.command(Mail::new(env.from().cloned(), vec![])),
    )
    .await
    .map_err(within("MAIL"))?
    .map_err(|e| step("MAIL", e))?;
    for rcpt in env.to() {
        tokio::time::timeout(
            CLIENT_TIMEOUT,
            conn.command(Rcpt::new(rcpt.clone(), vec![])),
        )
        .await
        .map_err(within("RCPT"))?
        .map_err(|e| step("RCPT", e))?;
    }
    tokio::time::timeout(CLIENT_TIMEOUT, conn.command(Data))
        .await
        .map_err(within("DATA"))?
        .map_err(|e| step("DATA", e))?;
    let mut at = None;
    let parts = EndOfData {
        message: Some(raw.as_bytes()),
        at: &mut at,
    };
    let reply = tokio::time::timeout(CLIENT_TIMEOUT, conn.message_iter(parts))
        .await
        .map_err(within("the message"))?
        .map_err(|e| step("the message", e))?;
    let data_end_ms = at.ok_or_else(|| LabError::Client("the message was not sent".into()))?;
    Ok(Submitted {
        id: identificativo_of(&reply),
        data_end_ms,
    })
}

/// How long a lab client waits for the access point.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// An authenticated STARTTLS session with the access point at `lab_addr`,
/// kept by its caller as a mail client keeps its connection.
pub async fn session(
    lab_addr: std::net::SocketAddr,
    tls: TlsParameters,
    user: &str,
) -> Result<AsyncSmtpConnection, LabError> {
    let hello = ClientId::Domain("lab.client".into());
    let ip = lab_addr.ip().to_string();
    let tcp = crate::relay::tcp_connect(&ip, lab_addr.port(), CLIENT_TIMEOUT)
        .await
        .map_err(client)?;
    let mut c = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
        .await
        .map_err(client)?;
    c.starttls(tls, &hello).await.map_err(client)?;
    c.auth(
        &[Mechanism::Plain],
        &Credentials::new(user.into(), LAB_PASSWORD.into()),
    )
    .await
    .map_err(client)?;
    Ok(c)
}

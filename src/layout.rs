//! The files of a provider folder as `pecd init` writes them: the
//! configuration and the index. The lab and the tests build theirs from here.

use crate::pec::revocation::Mode;

/// The config `pecd init` writes (also the shape of `config/pecd.toml`),
/// listening on loopback.
pub fn provider_config_text(name: &str, domain: &str, hostname: &str, ports: [u16; 9]) -> String {
    provider_config_text_at(name, domain, hostname, "127.0.0.1", ports)
}

/// [`provider_config_text`] with the listeners on `host`; ports in the order
/// submission, submissions, inbound, imap, imaps, pop3, pop3s, admin (on
/// loopback), web. A development configuration: no revocation checks.
pub fn provider_config_text_at(
    name: &str,
    domain: &str,
    hostname: &str,
    host: &str,
    ports: [u16; 9],
) -> String {
    provider_config_text_with(name, domain, hostname, host, ports, Mode::Off)
}

/// [`provider_config_text_at`] with `[trust] revocation = revocation`
/// (`pecd init` writes `ocsp+crl` for a real domain, `off` with `--dev`).
pub fn provider_config_text_with(
    name: &str,
    domain: &str,
    hostname: &str,
    host: &str,
    ports: [u16; 9],
    revocation: Mode,
) -> String {
    let revocation = revocation.as_str();
    format!(
        r#"# pecd provider configuration; every key is documented in docs/configuration.md.

[provider]
name = "{name}"
domains = ["{domain}"]
hostname = "{hostname}"
data_dir = "data"

[signing]
certificate = "certs/signing.pem"
key = "certs/signing.key"
chain = ["certs/ca.pem"]
generate_if_missing = false

[tls]
certificate = "certs/tls.pem"
key = "certs/tls.key"

[listen]
submission = "{host}:{}"
submissions = "{host}:{}"
inbound = "{host}:{}"
imap = "{host}:{}"
imaps = "{host}:{}"
pop3 = "{host}:{}"
pop3s = "{host}:{}"

[admin]
listen = "127.0.0.1:{}"

[web]
listen = "{host}:{}"   # webmail, HTTPS with the [tls] certificate

[trust]
ca = ["certs/ca.pem"]
index = "index.toml"
# Peers' signing certificates checked for revocation: "ocsp+crl" in
# production, "off" for development certificates (docs/operations.md).
revocation = "{revocation}"
soft_fail = false

[limits]
max_message_size = "30MB"
max_recipients = 100
"#,
        ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7], ports[8]
    )
}

/// The `[log]` table of a development provider: its log seals are signed,
/// not time-stamped, and `serve` says so at start.
pub const DEV_LOG_SECTION: &str = r#"
[log]
# No time-stamping authority: the daily seals of the PEC log are signed but
# not time-stamped, so whoever holds the signing key could rewrite past days.
# Development only: a provider sets its TSA's URL (docs/log-integrity.md).
tsa_url = "none"
"#;

/// The `[log]` table `pecd init` writes for a real domain: the daily time
/// stamp is the operator's to configure, and `serve` refuses to start
/// until `tsa_url` is set.
pub const PRODUCTION_LOG_SECTION: &str = r#"
[log]
# The daily time stamp (marca temporale) of the PEC log, DPR 68/2005 art. 10
# c. 2: the RFC 3161 URL of your time-stamping authority and the CA file its
# certificate chains to. `pecd serve` refuses to start until tsa_url is set
# (docs/log-integrity.md, docs/operations.md).
# tsa_url = "http://timestamp.example-tsp.it/tsa"
# tsa_ca = "certs/tsa-ca.pem"
"#;

/// An index file listing only ourselves.
pub fn own_index_text(name: &str, domain: &str) -> String {
    format!(
        r#"# Provider index (pec-spec.md §10). Add one [[provider]] per peer provider.
[[provider]]
name = "{name}"
domains = ["{domain}"]
receipt_mailbox = "posta-certificata@{domain}"
certificate = "certs/signing.pem"
"#
    )
}

/// The empty index `pecd init` writes: no peers yet, and this provider's own
/// entry as a comment, ready to hand to the peers for their indexes.
pub fn empty_index_text(name: &str, domain: &str) -> String {
    let own: String = own_index_text(name, domain)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("# {l}\n"))
        .collect();
    format!(
        "# Provider index (pec-spec.md §10): one [[provider]] table per peer provider.\n\
         # Empty for now. This provider's own entry, for the peers' indexes:\n{own}"
    )
}

/// One `[[provider]]` entry of an index, naming its signing certificate.
pub fn index_entry(name: &str, domain: &str, signing_cert: &std::path::Path) -> String {
    format!(
        "[[provider]]\nname = \"{name}\"\ndomains = [\"{domain}\"]\nreceipt_mailbox = \"posta-certificata@{domain}\"\ncertificate = \"{}\"\n\n",
        signing_cert.display()
    )
}

/// A static `[[route]]` sending `domain`'s mail to `next_hop`.
pub fn route_entry(domain: &str, next_hop: &str) -> String {
    format!("[[route]]\ndomain = \"{domain}\"\nnext_hop = \"{next_hop}\"\n\n")
}

/// Why the development certificates were not written: their folder and
/// the reason.
#[derive(Debug)]
pub struct DevCertsError {
    /// The folder of the certificates.
    pub dir: std::path::PathBuf,
    /// What failed.
    pub reason: DevCertsProblem,
}

/// What failed writing development certificates.
#[derive(Debug)]
pub enum DevCertsProblem {
    /// A file or the folder could not be written.
    Io(std::io::Error),
    /// A certificate could not be made.
    Openssl(openssl::error::ErrorStack),
}

impl std::fmt::Display for DevCertsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            DevCertsProblem::Io(e) => write!(f, "{}: {e}", self.dir.display()),
            DevCertsProblem::Openssl(e) => write!(f, "{}: {e}", self.dir.display()),
        }
    }
}

impl std::error::Error for DevCertsError {}

/// A development provider's certificates in `certs`, issued by `ca`:
/// `ca.pem`, `signing.pem`/`.key` (for `name`, `domain`) and `tls.pem`/`.key`
/// for `mx.<domain>` — the files the configuration above names.
pub fn write_dev_certs(
    certs: &std::path::Path,
    ca: &crate::certs::CertKey,
    name: &str,
    domain: &str,
) -> Result<(), DevCertsError> {
    let at = |reason| DevCertsError {
        dir: certs.to_path_buf(),
        reason,
    };
    let io = |e| at(DevCertsProblem::Io(e));
    let ssl = |e| at(DevCertsProblem::Openssl(e));
    std::fs::create_dir_all(certs).map_err(io)?;
    std::fs::write(certs.join("ca.pem"), ca.cert_pem()).map_err(io)?;
    let signing = crate::certs::generate_signing(ca, name, domain).map_err(ssl)?;
    signing
        .write(&certs.join("signing.pem"), &certs.join("signing.key"))
        .map_err(io)?;
    let tls = crate::certs::generate_tls(ca, &format!("mx.{domain}")).map_err(ssl)?;
    tls.write(&certs.join("tls.pem"), &certs.join("tls.key"))
        .map_err(io)
}

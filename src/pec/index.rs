//! The provider index (*indice dei gestori PEC*, `pec-spec.md` §10).
//!
//! Two inputs, one model: the TOML form of issue 3 (a contract) and an LDIF
//! snapshot in the RFC 6109 schema, which is what the AgID LDAP directory
//! exports. No file I/O here: the TOML `certificate = "x.pem"` paths are read
//! through a loader closure supplied by the caller, who knows the index file's
//! directory.

use std::fmt;

use openssl::x509::X509;
use serde::{Deserialize, Serialize};

use super::mime::decode_base64;
use super::x509::{cert_sha1, hex_colon};

/// One PEC provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// `providerName`.
    pub name: String,
    /// `managedDomains`, lower case.
    pub domains: Vec<String>,
    /// `mailReceipt`: where presa in carico and virus notices go.
    pub receipt_mailbox: String,
    /// `providerCertificateHash`: SHA-1 fingerprints of the signing certificates.
    pub sha1: Vec<[u8; 20]>,
    /// `providerCertificate` (DER), when the source carried it.
    pub certificate_der: Option<Vec<u8>>,
}

impl Provider {
    /// Whether this provider manages `domain` (case-insensitive).
    pub fn manages(&self, domain: &str) -> bool {
        let d = domain.trim().trim_end_matches('.');
        self.domains.iter().any(|x| x.eq_ignore_ascii_case(d))
    }
}

/// The whole index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderIndex {
    /// Every provider, in source order.
    pub providers: Vec<Provider>,
}

/// An index that could not be read; the message names the key or entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexError(pub String);

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "provider index: {}", self.0)
    }
}

impl std::error::Error for IndexError {}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TomlIndex {
    #[serde(default)]
    provider: Vec<TomlProvider>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TomlProvider {
    name: String,
    domains: Vec<String>,
    receipt_mailbox: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    certificate_sha1: Vec<String>,
}

/// Parse a SHA-1 fingerprint: 40 hex digits, colons/spaces allowed, any case.
pub fn parse_sha1(s: &str) -> Option<[u8; 20]> {
    let hex: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b':' | b' ' | b'-'))
        .collect();
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, pair) in hex.chunks(2).enumerate() {
        let h = (pair[0] as char).to_digit(16)?;
        let l = (pair[1] as char).to_digit(16)?;
        out[i] = (h * 16 + l) as u8;
    }
    Some(out)
}

/// A PEM or DER certificate's DER bytes and SHA-1.
fn cert_from_bytes(bytes: &[u8]) -> Result<(Vec<u8>, [u8; 20]), CertError> {
    let cert = X509::from_pem(bytes)
        .or_else(|_| X509::from_der(bytes))
        .map_err(CertError::NotACertificate)?;
    let der = cert.to_der().map_err(CertError::Der)?;
    let sha1 = cert_sha1(&cert).map_err(CertError::Sha1)?;
    Ok((der, sha1))
}

/// Why an index entry's certificate file gives no fingerprint.
#[derive(Debug)]
enum CertError {
    /// Neither PEM nor DER.
    NotACertificate(openssl::error::ErrorStack),
    /// It does not encode back to DER.
    Der(openssl::error::ErrorStack),
    /// Its SHA-1 cannot be taken.
    Sha1(super::x509::SmimeError),
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::NotACertificate(e) => write!(f, "not a certificate: {e}"),
            CertError::Der(e) => write!(f, "{e}"),
            CertError::Sha1(e) => write!(f, "{e}"),
        }
    }
}

impl ProviderIndex {
    /// Read the TOML form. `load` returns the bytes of a `certificate` path
    /// (relative to the index file); unknown keys are errors naming the key.
    pub fn from_toml<E: std::fmt::Display>(
        text: &str,
        load: &dyn Fn(&str) -> Result<Vec<u8>, E>,
    ) -> Result<ProviderIndex, IndexError> {
        let parsed: TomlIndex = toml::from_str(text).map_err(|e| IndexError(e.to_string()))?;
        let mut providers = Vec::new();
        for (i, p) in parsed.provider.into_iter().enumerate() {
            let ctx = |m: String| IndexError(format!("provider[{i}] ({}): {m}", p.name));
            let mut sha1 = Vec::new();
            for s in &p.certificate_sha1 {
                sha1.push(
                    parse_sha1(s)
                        .ok_or_else(|| ctx(format!("certificate_sha1 {s:?} is not a SHA-1")))?,
                );
            }
            let mut certificate_der = None;
            if let Some(path) = &p.certificate {
                let bytes = load(path).map_err(|e| ctx(format!("certificate {path:?}: {e}")))?;
                let (der, fp) = cert_from_bytes(&bytes)
                    .map_err(|e| ctx(format!("certificate {path:?}: {e}")))?;
                if !sha1.contains(&fp) {
                    sha1.push(fp);
                }
                certificate_der = Some(der);
            }
            if sha1.is_empty() {
                return Err(ctx("needs certificate or certificate_sha1".into()));
            }
            providers.push(Provider {
                name: p.name.clone(),
                domains: p
                    .domains
                    .iter()
                    .map(|d| d.trim().to_ascii_lowercase())
                    .collect(),
                receipt_mailbox: p.receipt_mailbox.clone(),
                sha1,
                certificate_der,
            });
        }
        Ok(ProviderIndex { providers })
    }

    /// Read an LDIF snapshot (RFC 6109 schema). Entries without
    /// `providerName` (the `o=postacert` base, …) are skipped.
    pub fn from_ldif(text: &str) -> Result<ProviderIndex, IndexError> {
        let mut providers = Vec::new();
        for record in ldif_records(text)? {
            let get = |n: &'static str| {
                record
                    .attrs
                    .iter()
                    .filter(move |(k, _)| k == n)
                    .map(|(_, v)| v)
            };
            let text_of = |v: &Vec<u8>| String::from_utf8_lossy(v).trim().to_string();
            let Some(name) = get("providername").next().map(text_of) else {
                continue;
            };
            let ctx = |m: String| IndexError(format!("entry {:?}: {m}", record.dn));
            let mut sha1 = Vec::new();
            for v in get("providercertificatehash") {
                let s = text_of(v);
                sha1.push(
                    parse_sha1(&s).ok_or_else(|| {
                        ctx(format!("providerCertificateHash {s:?} is not a SHA-1"))
                    })?,
                );
            }
            let mut certificate_der = None;
            if let Some(v) = get("providercertificate").next() {
                let (der, fp) =
                    cert_from_bytes(v).map_err(|e| ctx(format!("providerCertificate: {e}")))?;
                if !sha1.contains(&fp) {
                    sha1.push(fp);
                }
                certificate_der = Some(der);
            }
            if sha1.is_empty() {
                return Err(ctx(
                    "no providerCertificateHash nor providerCertificate".into()
                ));
            }
            let receipt_mailbox = get("mailreceipt")
                .next()
                .map(text_of)
                .ok_or_else(|| ctx("no mailReceipt".into()))?;
            let domains = get("manageddomains")
                .map(|v| text_of(v).to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect();
            providers.push(Provider {
                name,
                domains,
                receipt_mailbox,
                sha1,
                certificate_der,
            });
        }
        Ok(ProviderIndex { providers })
    }

    /// The TOML form (for `pecd index import-ldif`); certificates become
    /// `certificate_sha1` fingerprints, since TOML paths cannot hold DER.
    pub fn to_toml(&self) -> String {
        let doc = TomlIndex {
            provider: self
                .providers
                .iter()
                .map(|p| TomlProvider {
                    name: p.name.clone(),
                    domains: p.domains.clone(),
                    receipt_mailbox: p.receipt_mailbox.clone(),
                    certificate: None,
                    certificate_sha1: p.sha1.iter().map(|s| hex_colon(s)).collect(),
                })
                .collect(),
        };
        toml::to_string(&doc).unwrap_or_default()
    }

    /// The provider managing `domain` (case-insensitive).
    pub fn provider_for_domain(&self, domain: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.manages(domain))
    }

    /// The provider whose signing certificate has this SHA-1.
    pub fn provider_by_sha1(&self, sha1: &[u8; 20]) -> Option<&Provider> {
        self.providers.iter().find(|p| p.sha1.contains(sha1))
    }

    /// Whether `domain` is a PEC domain (recipient type `certificato`).
    pub fn is_certified(&self, domain: &str) -> bool {
        self.provider_for_domain(domain).is_some()
    }
}

struct LdifRecord {
    dn: String,
    /// Attribute names lower case, options (`;binary`) dropped.
    attrs: Vec<(String, Vec<u8>)>,
}

fn ldif_records(text: &str) -> Result<Vec<LdifRecord>, IndexError> {
    // Unfold continuation lines (a line starting with one space continues the previous).
    let mut logical: Vec<Option<String>> = Vec::new(); // None = record separator
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(cont) = line.strip_prefix(' ') {
            if let Some(Some(prev)) = logical.last_mut() {
                prev.push_str(cont);
                continue;
            }
        }
        if line.is_empty() {
            logical.push(None);
        } else {
            logical.push(Some(line.to_string()));
        }
    }
    let mut records = Vec::new();
    let mut cur: Option<LdifRecord> = None;
    for (n, l) in logical.into_iter().enumerate() {
        let Some(l) = l else {
            records.extend(cur.take());
            continue;
        };
        if l.starts_with('#') {
            continue;
        }
        let colon = l
            .find(':')
            .ok_or_else(|| IndexError(format!("LDIF line {}: no ':' in {l:?}", n + 1)))?;
        let name = l[..colon]
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let rest = &l[colon + 1..];
        let value: Vec<u8> = if let Some(b64) = rest.strip_prefix(':') {
            decode_base64(b64.trim().as_bytes())
        } else if rest.starts_with('<') {
            return Err(IndexError(format!(
                "LDIF line {}: URL values ({name}:<) are not supported",
                n + 1
            )));
        } else {
            rest.trim_start_matches(' ').as_bytes().to_vec()
        };
        match name.as_str() {
            "version" if cur.is_none() => {}
            "dn" => {
                records.extend(cur.take());
                cur = Some(LdifRecord {
                    dn: String::from_utf8_lossy(&value).into_owned(),
                    attrs: Vec::new(),
                });
            }
            _ => {
                let rec = cur.get_or_insert_with(|| LdifRecord {
                    dn: String::new(),
                    attrs: Vec::new(),
                });
                rec.attrs.push((name, value));
            }
        }
    }
    records.extend(cur);
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{generate_ca, generate_signing};
    use crate::pec::mime::encode_base64_lines;

    #[test]
    fn toml_contract() {
        let ca = generate_ca("CA").unwrap();
        let beta = generate_signing(&ca, "Beta PEC", "pec.beta.test").unwrap();
        let pem = beta.cert_pem();
        let text = r#"
[[provider]]
name = "Beta PEC S.p.A."
domains = ["pec.beta.test", "PEC.Beta2.test"]
receipt_mailbox = "posta-certificata@pec.beta.test"
certificate = "beta-signing.pem"

[[provider]]
name = "Aruba"
domains = ["pec.aruba.it"]
receipt_mailbox = "posta-certificata@pec.aruba.it"
certificate_sha1 = ["ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:AB:CD:EF:01"]
"#;
        let load = |p: &str| {
            if p == "beta-signing.pem" {
                Ok(pem.clone())
            } else {
                Err(format!("no file {p}"))
            }
        };
        let idx = ProviderIndex::from_toml(text, &load).unwrap();
        assert_eq!(idx.providers.len(), 2);
        let fp = cert_sha1(&beta.cert).unwrap();
        assert_eq!(idx.provider_by_sha1(&fp).unwrap().name, "Beta PEC S.p.A.");
        assert!(idx.is_certified("pec.beta2.test"));
        assert!(idx.is_certified("PEC.ARUBA.IT"));
        assert!(!idx.is_certified("gmail.com"));
        assert_eq!(
            idx.provider_for_domain("pec.aruba.it").unwrap().sha1[0][0],
            0xab
        );

        let bad = text.replace(
            "receipt_mailbox = \"posta-certificata@pec.aruba.it\"",
            "mailbox = \"x\"",
        );
        let e = ProviderIndex::from_toml(&bad, &load).unwrap_err();
        assert!(e.0.contains("unknown field `mailbox`"), "{e}");
        let bad = text.replace("beta-signing.pem", "missing.pem");
        assert!(ProviderIndex::from_toml(&bad, &load)
            .unwrap_err()
            .0
            .contains("missing.pem"));
        let bad = text.replace("ab:cd:ef:01", "zz");
        assert!(ProviderIndex::from_toml(&bad, &load).is_err());
    }

    #[test]
    fn ldif_to_toml_round_trip() {
        let ca = generate_ca("CA").unwrap();
        let alpha = generate_signing(&ca, "Alpha PEC", "pec.alpha.test").unwrap();
        let der = alpha.cert.to_der().unwrap();
        let b64 = String::from_utf8(encode_base64_lines(&der, 76)).unwrap();
        // LDIF continuation lines: one leading space.
        let folded = b64.trim_end().replace("\r\n", "\n ");
        let ldif = format!(
            "version: 1\n\n# provider index\ndn: o=postacert\nobjectClass: organization\no: postacert\n\n\
dn: providerName=Alpha PEC,o=postacert\nobjectClass: provider\nproviderName: Alpha PEC\n\
providerCertificateHash: 00112233445566778899AABBCCDDEEFF00112233\n\
providerCertificate:: {folded}\nmailReceipt: posta-certificata@pec.alpha.test\n\
managedDomains: pec.alpha.test\nmanagedDomains: PEC.Alpha-2.test\n\
description: a very long\n  description\n\n\
dn: providerName=Beta,o=postacert\r\nproviderName: Beta\r\nproviderCertificateHash: \
AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD\r\nmailReceipt: pc@pec.beta.test\r\n\
managedDomains: pec.beta.test\r\n"
        );
        let idx = ProviderIndex::from_ldif(&ldif).unwrap();
        assert_eq!(idx.providers.len(), 2);
        let a = &idx.providers[0];
        assert_eq!(a.name, "Alpha PEC");
        assert_eq!(a.domains, vec!["pec.alpha.test", "pec.alpha-2.test"]);
        assert_eq!(a.certificate_der.as_deref(), Some(der.as_slice()));
        assert_eq!(
            a.sha1.len(),
            2,
            "listed hash + computed hash of the certificate"
        );
        let fp = cert_sha1(&alpha.cert).unwrap();
        assert_eq!(idx.provider_by_sha1(&fp).unwrap().name, "Alpha PEC");
        assert_eq!(idx.providers[1].receipt_mailbox, "pc@pec.beta.test");

        let toml_text = idx.to_toml();
        let back = ProviderIndex::from_toml(&toml_text, &|p: &str| Err(format!("no {p}"))).unwrap();
        assert_eq!(back.providers.len(), 2);
        for (x, y) in idx.providers.iter().zip(&back.providers) {
            assert_eq!(x.name, y.name);
            assert_eq!(x.domains, y.domains);
            assert_eq!(x.receipt_mailbox, y.receipt_mailbox);
            assert_eq!(x.sha1, y.sha1);
        }
        assert!(toml_text.contains("certificate_sha1"));

        let broken = ldif.replace("mailReceipt: posta-certificata@pec.alpha.test\n", "");
        assert!(ProviderIndex::from_ldif(&broken)
            .unwrap_err()
            .0
            .contains("mailReceipt"));
    }
}

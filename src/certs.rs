//! Throwaway development PKI: a CA, an S/MIME signing certificate and a TLS
//! certificate, shaped like the real AgID profile (`pec-spec.md` §7.1) so that
//! our verifier is exercised on the same extensions it meets in the field.
//!
//! Nothing here is meant for production: keys are written unencrypted.

use std::path::Path;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{HasPublic, PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509};

/// A certificate with its private key.
pub struct CertKey {
    /// The certificate.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
}

impl CertKey {
    /// PEM of the certificate.
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().expect("encode certificate")
    }
    /// PEM (PKCS#8) of the private key.
    pub fn key_pem(&self) -> Vec<u8> {
        self.key
            .private_key_to_pem_pkcs8()
            .expect("encode private key")
    }
    /// Write certificate and key to two files (key mode 0600).
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> std::io::Result<()> {
        write_file(cert_path, &self.cert_pem(), 0o644)?;
        write_file(key_path, &self.key_pem(), 0o600)
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn name(cn: &str, org: &str) -> Result<X509Name, ErrorStack> {
    let mut b = X509NameBuilder::new()?;
    b.append_entry_by_text("C", "IT")?;
    b.append_entry_by_text("O", org)?;
    b.append_entry_by_text("CN", cn)?;
    Ok(b.build())
}

fn new_key(bits: u32) -> Result<PKey<Private>, ErrorStack> {
    PKey::from_rsa(Rsa::generate(bits)?)
}

fn serial() -> Result<Asn1Integer, ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(120, openssl::bn::MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

fn base_builder<T: HasPublic>(
    subject: &X509Name,
    key: &PKeyRef<T>,
    days: u32,
) -> Result<X509Builder, ErrorStack> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = serial()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(subject)?;
    b.set_pubkey(key)?;
    // Backdate a little so that clocks a few minutes apart still agree.
    let not_before = Asn1Time::from_unix(unix_now() - 3600)?;
    b.set_not_before(&not_before)?;
    let not_after = Asn1Time::days_from_now(days)?;
    b.set_not_after(&not_after)?;
    Ok(b)
}

fn unix_now() -> i64 {
    crate::pec::clock::since_epoch().as_secs() as i64
}

/// A self-signed CA named after the provider (or the test).
pub fn generate_ca(cn: &str) -> Result<CertKey, ErrorStack> {
    let key = new_key(2048)?;
    let subject = name(cn, "pecd development CA (throwaway)")?;
    let mut b = base_builder(&subject, &key, 3650)?;
    b.set_issuer_name(&subject)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok(CertKey {
        cert: b.build(),
        key,
    })
}

/// An S/MIME signing certificate for `posta-certificata@<domain>`, issued by `ca`.
pub fn generate_signing(
    ca: &CertKey,
    provider_name: &str,
    domain: &str,
) -> Result<CertKey, ErrorStack> {
    let key = new_key(2048)?;
    let cert = signing_cert_for(ca, &key, provider_name, domain)?;
    Ok(CertKey { cert, key })
}

/// A signing certificate like [`generate_signing`]'s for a key made
/// elsewhere (the public half of a key kept in a PKCS#11 token).
pub fn signing_cert_for<T: HasPublic>(
    ca: &CertKey,
    key: &PKeyRef<T>,
    provider_name: &str,
    domain: &str,
) -> Result<X509, ErrorStack> {
    let subject = name(&format!("Posta Certificata {provider_name}"), provider_name)?;
    let mut b = base_builder(&subject, key, 1095)?;
    b.set_issuer_name(ca.cert.subject_name())?;
    b.append_extension(BasicConstraints::new().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().email_protection().build()?)?;
    let san = SubjectAlternativeName::new()
        .email(&format!("posta-certificata@{domain}"))
        .build(&b.x509v3_context(Some(&ca.cert), None))?;
    b.append_extension(san)?;
    b.sign(&ca.key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// A TLS server certificate for `hostname` (plus `localhost` and loopback IPs), issued by `ca`.
pub fn generate_tls(ca: &CertKey, hostname: &str) -> Result<CertKey, ErrorStack> {
    let key = new_key(2048)?;
    let subject = name(hostname, "pecd development TLS")?;
    let mut b = base_builder(&subject, &key, 825)?;
    b.set_issuer_name(ca.cert.subject_name())?;
    b.append_extension(BasicConstraints::new().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_encipherment()
            .build()?,
    )?;
    b.append_extension(
        ExtendedKeyUsage::new()
            .server_auth()
            .client_auth()
            .build()?,
    )?;
    let san = SubjectAlternativeName::new()
        .dns(hostname)
        .dns("localhost")
        .ip("127.0.0.1")
        .ip("::1")
        .build(&b.x509v3_context(Some(&ca.cert), None))?;
    b.append_extension(san)?;
    b.sign(&ca.key, MessageDigest::sha256())?;
    Ok(CertKey {
        cert: b.build(),
        key,
    })
}

/// Paths of a complete development PKI on disk.
pub struct DevPkiPaths<'a> {
    /// CA certificate (PEM).
    pub ca_cert: &'a Path,
    /// CA key; written only when given (`pecd init` keeps it to issue more).
    pub ca_key: Option<&'a Path>,
    /// Signing certificate.
    pub signing_cert: &'a Path,
    /// Signing key.
    pub signing_key: &'a Path,
    /// TLS certificate.
    pub tls_cert: &'a Path,
    /// TLS key.
    pub tls_key: &'a Path,
}

/// Generate and write a CA, a signing and a TLS certificate for one provider.
pub fn write_dev_pki(
    paths: &DevPkiPaths<'_>,
    provider_name: &str,
    domain: &str,
    hostname: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let ca = generate_ca(&format!("{provider_name} development CA"))?;
    let signing = generate_signing(&ca, provider_name, domain)?;
    let tls = generate_tls(&ca, hostname)?;
    write_file(paths.ca_cert, &ca.cert_pem(), 0o644)?;
    if let Some(k) = paths.ca_key {
        write_file(k, &ca.key_pem(), 0o600)?;
    }
    signing.write(paths.signing_cert, paths.signing_key)?;
    tls.write(paths.tls_cert, paths.tls_key)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_cert_chains_to_ca_and_names_the_domain() {
        let ca = generate_ca("test CA").unwrap();
        let s = generate_signing(&ca, "Alpha PEC", "pec.alpha.test").unwrap();
        assert!(s.cert.verify(&ca.key).unwrap());
        let sans: Vec<String> = s
            .cert
            .subject_alt_names()
            .unwrap()
            .iter()
            .filter_map(|n| n.email().map(str::to_string))
            .collect();
        assert_eq!(sans, vec!["posta-certificata@pec.alpha.test".to_string()]);
    }
}

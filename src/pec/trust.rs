//! Trusted CAs, and what verifying signatures against them has established.
//!
//! OpenSSL 3.0 runs every certificate's public key through its generic
//! decoder framework each time a PKCS#7 structure is parsed; on a busy
//! reception point that cost more than the signature check itself
//! (`docs/performance.md`). Providers sign every message with the same few
//! certificates, so each distinct certificate is parsed once, and a chain
//! is remembered with the span of signing times it verified for. This path
//! only ever says yes: whenever it cannot (anything unusual in the
//! structure, a bad signature, an unknown chain that fails), the full
//! OpenSSL verification in [`super::smime::verify_entity`] decides and
//! gives the reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Public};
use openssl::sign::Verifier;
use openssl::stack::Stack;
use openssl::x509::store::X509Store;
use openssl::x509::X509;

use super::x509::{cert_sha1, check_chain, der, name_to_string, unix_time, SmimeError};

/// Entries kept per cache before it starts afresh (a few per provider).
const CACHE_MAX: usize = 1024;

/// Trusted CAs (`[trust] ca`) with the memory of verifications against them.
pub struct Trust {
    store: X509Store,
    certs: Mutex<HashMap<Vec<u8>, Arc<KnownCert>>>,
    chains: Mutex<HashMap<[u8; 32], (i64, i64)>>,
}

/// A certificate parsed once, with what a verdict reports about it.
pub struct KnownCert {
    /// The certificate.
    pub x509: X509,
    key: PKey<Public>,
    issuer_der: Vec<u8>,
    serial: Vec<u8>,
    /// SHA-1 of its DER.
    pub sha1: [u8; 20],
    /// Subject, `C=IT, O=…, CN=…`.
    pub subject: String,
    /// Issuer, same format.
    pub issuer: String,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

impl KnownCert {
    /// Parse what verdicts need from `x509`.
    pub fn new(x509: X509) -> Result<KnownCert, SmimeError> {
        let key = x509.public_key()?;
        let issuer_der = x509.issuer_name().to_der()?;
        let serial = x509.serial_number().to_bn()?.to_vec();
        let sha1 = cert_sha1(&x509)?;
        Ok(KnownCert {
            key,
            issuer_der,
            serial,
            sha1,
            subject: name_to_string(x509.subject_name()),
            issuer: name_to_string(x509.issuer_name()),
            not_after: unix_time(x509.not_after()).unwrap_or(i64::MAX),
            x509,
        })
    }
}

fn without_leading_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[i..]
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, k: K, v: V) {
    if map.len() >= CACHE_MAX {
        map.clear();
    }
    map.insert(k, v);
}

impl Trust {
    /// Trust the CAs of `store`.
    pub fn new(store: X509Store) -> Trust {
        Trust {
            store,
            certs: Mutex::default(),
            chains: Mutex::default(),
        }
    }

    /// The CAs themselves.
    pub fn store(&self) -> &X509Store {
        &self.store
    }

    /// `der` parsed, from the cache when seen before.
    pub(crate) fn known(&self, der: &[u8]) -> Option<Arc<KnownCert>> {
        if let Some(k) = self.certs.lock().ok()?.get(der) {
            return Some(k.clone());
        }
        let k = Arc::new(KnownCert::new(X509::from_der(der).ok()?).ok()?);
        bounded_insert(&mut *self.certs.lock().ok()?, der.to_vec(), k.clone());
        Some(k)
    }

    /// The signer of PKCS#7 `p7`, if its signature over the signed
    /// attributes verifies with digest `md` (`digest` as the SignerInfo
    /// names it) and its chain verifies at time `at`. The caller has
    /// already matched the content against the `messageDigest` attribute.
    pub(crate) fn verify_known(
        &self,
        p7: &[u8],
        digest: der::Digest,
        md: MessageDigest,
        at: i64,
    ) -> Option<Arc<KnownCert>> {
        let parts = der::signed_parts(p7)?;
        if parts.sig_digest.is_some_and(|d| d != digest)
            || parts.serial.first().is_none_or(|b| b & 0x80 != 0)
        {
            return None;
        }
        let certs: Vec<Arc<KnownCert>> = parts
            .certs
            .iter()
            .map(|c| self.known(c))
            .collect::<Option<_>>()?;
        let signer_at = certs.iter().position(|k| {
            k.issuer_der == parts.issuer
                && without_leading_zeros(&k.serial) == without_leading_zeros(parts.serial)
        })?;
        let signer = &certs[signer_at];
        if signer.key.id() != Id::RSA {
            return None;
        }
        // The signature covers the attributes DER-encoded as a SET.
        let mut signed = parts.attrs.to_vec();
        signed[0] = 0x31;
        let mut v = Verifier::new(md, &signer.key).ok()?;
        v.update(&signed).ok()?;
        if !v.verify(parts.signature).ok()? {
            return None;
        }
        let mut h = openssl::sha::Sha256::new();
        h.update(&[signer_at as u8]);
        for c in &parts.certs {
            h.update(&(c.len() as u32).to_be_bytes());
            h.update(c);
        }
        let chain_key = h.finish();
        let span = self.chains.lock().ok()?.get(&chain_key).copied();
        if !span.is_some_and(|(lo, hi)| lo <= at && at <= hi) {
            let mut embedded = Stack::new().ok()?;
            for k in &certs {
                embedded.push(k.x509.clone()).ok()?;
            }
            let span = check_chain(&self.store, &signer.x509, Some(&embedded), at).ok()?;
            bounded_insert(&mut *self.chains.lock().ok()?, chain_key, span);
        }
        Some(signer.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{generate_ca, generate_signing, CertKey};
    use crate::pec::mime::Entity;
    use crate::pec::smime::tests::{samples, tests_now};
    use crate::pec::smime::{trust_store_from_pem, verify_signed, VerifyOptions};
    use openssl::pkcs7::{Pkcs7, Pkcs7Flags};

    fn p7_of(signer: &CertKey, ca: &CertKey, content: &[u8]) -> Vec<u8> {
        let mut chain = Stack::new().unwrap();
        chain.push(ca.cert.clone()).unwrap();
        let flags = Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY;
        Pkcs7::sign(&signer.cert, &signer.key, &chain, content, flags)
            .unwrap()
            .to_der()
            .unwrap()
    }

    fn known(trust: &Trust, p7: &[u8], at: i64) -> bool {
        let sha256 = MessageDigest::sha256();
        trust
            .verify_known(p7, der::Digest::Sha256, sha256, at)
            .is_some()
    }

    #[test]
    fn says_yes_only_to_a_good_signature_from_a_trusted_chain() {
        let ca = generate_ca("Test CA").unwrap();
        let sc = generate_signing(&ca, "Alpha PEC", "pec.alpha.test").unwrap();
        let trust = trust_store_from_pem(&[&ca.cert_pem()]).unwrap();
        let now = tests_now();
        let p7 = p7_of(&sc, &ca, b"body\r\n");
        assert!(known(&trust, &p7, now));
        assert!(known(&trust, &p7, now), "and again from the caches");
        assert_eq!(trust.chains.lock().unwrap().len(), 1);

        let mut forged = p7.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(!known(&trust, &forged, now), "a changed signature");

        let far = now + 20 * 365 * 86_400;
        assert!(
            !known(&trust, &p7, far),
            "a remembered chain, past its span"
        );

        let other = trust_store_from_pem(&[&generate_ca("Other CA").unwrap().cert_pem()]).unwrap();
        assert!(!known(&other, &p7, now), "another CA");
        assert!(!known(&trust, b"\x30\x03\x02\x01\x01", now), "not PKCS#7");
    }

    #[test]
    fn agrees_with_openssl_on_every_sample() {
        // Real providers' chains, to whichever roots this machine has.
        let Ok(bundle) = std::fs::read("/etc/ssl/certs/ca-certificates.crt") else {
            return;
        };
        let trust = trust_store_from_pem(&[&bundle]).unwrap();
        let opts = VerifyOptions {
            revocation: None,
            trust: Some(&trust),
            now: 1_760_000_000,
        };
        for (name, raw) in samples() {
            let e = Entity::whole(&raw);
            let slow = verify_signed(&raw, &e, &opts, false);
            let fast = verify_signed(&raw, &e, &opts, true);
            let view = |r: &Result<crate::pec::smime::Verified, crate::pec::smime::VerifyError>| {
                r.as_ref()
                    .map(|v| {
                        (
                            v.sha1,
                            v.signer_subject.clone(),
                            v.issuer_subject.clone(),
                            v.signing_time,
                            v.digest.clone(),
                            v.chain_checked,
                            v.expired_now,
                            v.signed_entity.clone(),
                        )
                    })
                    .map_err(|e| e.clone())
            };
            assert_eq!(view(&fast), view(&slow), "{name}");
        }
        assert!(
            !trust.chains.lock().unwrap().is_empty(),
            "no sample took the known-certificate path"
        );
    }
}

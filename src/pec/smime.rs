//! S/MIME sign and verify on in-memory bytes (openssl), `pec-spec.md` §2, §7.1.
//!
//! Signing produces the wire format every provider uses: detached
//! `multipart/signed`, SHA-256, signer certificate and chain embedded, signed
//! attributes contentType / signingTime / messageDigest only.
//!
//! Verification takes the first body part byte-exact (via [`super::mime`]),
//! canonicalises it to CRLF the way openssl does and checks the detached
//! signature. The content digest is compared by us first, so that a tampered
//! body ([`VerifyError::DigestMismatch`]) is told apart from a forged
//! signature. With a trust store the chain is verified **at the signing time**
//! stated in the signed attributes (issue 3: "was valid at signing time"), so
//! old archived PEC still verifies after the provider certificate expired;
//! `Verified::expired_now` reports that case. A signing time more than ten
//! minutes after `now` is not believed and `now` is used instead. With a
//! trust store, `Trust::verify_known` answers first for certificates and
//! chains already seen; OpenSSL's full path decides everything else. With
//! a trust store and a [`super::revocation::RevocationCheck`], the signer
//! certificate must also not have been revoked before that same time
//! ([`VerifyError::Revoked`]); when no source can say,
//! [`VerifyError::RevocationUnavailable`] (unless `soft_fail`).
//!
//! openssl reads the system clock for `signingTime` when signing; that is the
//! one clock read in `src/pec` and it only affects a signed attribute.

use std::fmt;
use std::ops::Range;

use openssl::hash::hash;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

use super::mime::{self, Entity};
use super::revocation::{Revocation, RevocationCheck, Status, StatusRequest};
use super::trust::KnownCert;
pub use super::trust::Trust;
use super::types::Unsigned;
pub(crate) use super::x509::der;
pub use super::x509::{cert_sha1, hex_colon, hex_plain, name_to_string, SmimeError};
use super::x509::{check_chain, ChainError};

/// The provider's signing identity.
pub struct Signer {
    /// Signing certificate.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
    /// Intermediate certificates embedded after the signer certificate.
    pub chain: Vec<X509>,
}

impl Signer {
    /// Load from PEM: the certificate, the key and (possibly empty) chain PEMs.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        chain_pem: &[u8],
    ) -> Result<Signer, SmimeError> {
        Signer::with_key(cert_pem, PKey::private_key_from_pem(key_pem)?, chain_pem)
    }

    /// From a key loaded elsewhere (a PKCS#11 token's handle) and the PEMs
    /// of its certificate and (possibly empty) chain.
    pub fn with_key(
        cert_pem: &[u8],
        key: PKey<Private>,
        chain_pem: &[u8],
    ) -> Result<Signer, SmimeError> {
        let cert = X509::from_pem(cert_pem)?;
        let chain = if chain_pem.iter().all(|b| b.is_ascii_whitespace()) {
            Vec::new()
        } else {
            X509::stack_from_pem(chain_pem)?
        };
        if !cert.public_key()?.public_eq(&key) {
            return Err(SmimeError(
                "certificate and private key do not match".into(),
            ));
        }
        Ok(Signer { cert, key, chain })
    }

    /// A detached PKCS#7/CMS SignedData over `data`, DER: the log seals'
    /// `.p7s`, made by the same key and code path as every receipt.
    pub fn sign_detached(&self, data: &[u8]) -> Result<Vec<u8>, SmimeError> {
        let mut chain = Stack::new()?;
        for c in &self.chain {
            chain.push(c.clone())?;
        }
        let flags = Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY | Pkcs7Flags::NOSMIMECAP;
        Ok(Pkcs7::sign(&self.cert, &self.key, &chain, data, flags)?.to_der()?)
    }

    /// Sign `msg` into a complete RFC 5322 message (CRLF line endings).
    /// A `Content-Type` among `msg.headers` is dropped (the outer one is
    /// ours); `MIME-Version: 1.0` is added unless already present.
    pub fn sign(&self, msg: &Unsigned, boundary: &str) -> Result<Vec<u8>, SmimeError> {
        if boundary.is_empty() || boundary.contains(['"', '\r', '\n']) {
            return Err(SmimeError(format!("unusable boundary {boundary:?}")));
        }
        let signed = mime::canonicalize_crlf(&msg.entity);
        let mut chain = Stack::new()?;
        for c in &self.chain {
            chain.push(c.clone())?;
        }
        let flags = Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY | Pkcs7Flags::NOSMIMECAP;
        let p7 = Pkcs7::sign(&self.cert, &self.key, &chain, &signed, flags)?;
        let der = p7.to_der()?;

        let mut out = Vec::with_capacity(msg.entity.len() + der.len() * 2 + 1024);
        let mut has_mime_version = false;
        for (name, value) in &msg.headers {
            if name.eq_ignore_ascii_case("Content-Type") {
                continue;
            }
            has_mime_version |= name.eq_ignore_ascii_case("MIME-Version");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !has_mime_version {
            out.extend_from_slice(b"MIME-Version: 1.0\r\n");
        }
        out.extend_from_slice(
            format!(
                "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"{boundary}\"\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(b"This is an S/MIME signed message\r\n\r\n");
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        // The line break before the next delimiter belongs to the delimiter,
        // so the signed part is `entity` exactly.
        out.extend_from_slice(&msg.entity);
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        out.extend_from_slice(
            b"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n\
              Content-Transfer-Encoding: base64\r\n\
              Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\
              Content-Description: S/MIME Cryptographic Signature\r\n\r\n",
        );
        out.extend_from_slice(&mime::encode_base64_lines(&der, 64));
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        Ok(out)
    }
}

/// What to check besides integrity.
#[derive(Clone, Copy)]
pub struct VerifyOptions<'a> {
    /// Trusted CAs (`[trust] ca`); `None` checks integrity only (like `-noverify`).
    pub trust: Option<&'a Trust>,
    /// Current time (Unix seconds): bounds the believed signing time and sets `expired_now`.
    pub now: i64,
    /// Revocation of the signer certificate, checked once its chain has
    /// verified (only with `trust`); `None` checks none.
    pub revocation: Option<&'a dyn RevocationCheck>,
}

/// A signature that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Signer certificate.
    pub signer: X509,
    /// Signer subject, `C=IT, O=…, CN=…` in certificate order.
    pub signer_subject: String,
    /// Signer issuer, same format.
    pub issuer_subject: String,
    /// SHA-1 of the signer certificate DER.
    pub sha1: [u8; 20],
    /// SHA-1 fingerprint, upper-case hex with colons (`AB:CD:…`).
    pub sha1_fingerprint: String,
    /// SHA-1 fingerprint, upper-case hex without separators.
    pub sha1_hex: String,
    /// `signingTime` signed attribute (Unix seconds).
    pub signing_time: Option<i64>,
    /// Digest algorithm of the signer info (`sha1`, `sha256`, …).
    pub digest: String,
    /// `micalg` parameter as written in the header.
    pub micalg: String,
    /// Byte range of the signed entity (first part of multipart/signed) in the input.
    pub signed_entity: Range<usize>,
    /// Whether the chain was verified against a trust store.
    pub chain_checked: bool,
    /// Signer certificate's notAfter is before `now` (verification was done at signing time).
    pub expired_now: bool,
    /// The revocation check, when one was asked for.
    pub revocation: Option<Revocation>,
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// Not a `multipart/signed` S/MIME message.
    NotSigned(String),
    /// Structure unusable (no boundary, missing parts, undecodable PKCS#7).
    Malformed(String),
    /// Content digest differs from the signed `messageDigest`: altered after signing.
    DigestMismatch,
    /// The signature itself does not verify.
    BadSignature(String),
    /// Chain does not lead to a trusted CA (or a constraint/purpose fails).
    Untrusted(String),
    /// Signer certificate not valid at the signing time.
    Expired(String),
    /// Signer certificate revoked before the signing time.
    Revoked(Box<Revocation>),
    /// No revocation source answered, and `soft_fail` is off: a temporary
    /// condition, to be tried again.
    RevocationUnavailable(Box<Revocation>),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::NotSigned(s) => write!(f, "not signed: {s}"),
            VerifyError::Malformed(s) => write!(f, "malformed S/MIME: {s}"),
            VerifyError::DigestMismatch => {
                write!(
                    f,
                    "content digest mismatch: the message was altered after signing"
                )
            }
            VerifyError::BadSignature(s) => write!(f, "bad signature: {s}"),
            VerifyError::Untrusted(s) => write!(f, "untrusted signer certificate: {s}"),
            VerifyError::Expired(s) => write!(f, "signer certificate expired: {s}"),
            VerifyError::Revoked(r) => write!(f, "signer certificate {r}"),
            VerifyError::RevocationUnavailable(r) => {
                write!(f, "signer certificate revocation status {r}")
            }
        }
    }
}

impl std::error::Error for VerifyError {}

impl From<ChainError> for VerifyError {
    fn from(e: ChainError) -> Self {
        match e {
            ChainError::Untrusted(s) => VerifyError::Untrusted(s),
            ChainError::Expired(s) => VerifyError::Expired(s),
        }
    }
}

/// Verify a message whose top-level entity is `multipart/signed`.
pub fn verify(raw: &[u8], opts: &VerifyOptions) -> Result<Verified, VerifyError> {
    verify_entity(raw, &Entity::whole(raw), opts)
}

/// Verify the first body part of an outer `multipart/*` (a list server or
/// gateway wrapped the signed message, as in the Namirial mailing-list sample).
pub fn verify_inner(raw: &[u8], opts: &VerifyOptions) -> Result<Verified, VerifyError> {
    let root = Entity::whole(raw);
    let ct = root.content_type(raw);
    if !ct.is_multipart() {
        return Err(VerifyError::NotSigned(format!(
            "outer entity is {}, not multipart",
            ct.mime_type
        )));
    }
    let boundary = ct
        .param("boundary")
        .ok_or_else(|| VerifyError::Malformed("outer multipart without boundary".into()))?;
    let mp = mime::multipart_parts(raw, root.body.clone(), &boundary);
    let first = mp
        .parts
        .first()
        .ok_or_else(|| VerifyError::Malformed("outer multipart has no parts".into()))?;
    verify_entity(raw, &Entity::parse(raw, first.clone()), opts)
}

/// Verify the `multipart/signed` entity `e` of `raw`.
pub fn verify_entity(
    raw: &[u8],
    e: &Entity,
    opts: &VerifyOptions,
) -> Result<Verified, VerifyError> {
    verify_signed(raw, e, opts, true)
}

/// [`verify_entity`]; `known` lets [`Trust::verify_known`] answer first.
pub(crate) fn verify_signed(
    raw: &[u8],
    e: &Entity,
    opts: &VerifyOptions,
    known: bool,
) -> Result<Verified, VerifyError> {
    let ct = e.content_type(raw);
    if ct.mime_type != "multipart/signed" {
        return Err(VerifyError::NotSigned(format!(
            "content type is {}",
            ct.mime_type
        )));
    }
    let protocol = ct
        .param("protocol")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if protocol != "application/pkcs7-signature" && protocol != "application/x-pkcs7-signature" {
        return Err(VerifyError::NotSigned(format!(
            "unsupported multipart/signed protocol {protocol:?}"
        )));
    }
    let micalg = ct.param("micalg").unwrap_or_default().to_ascii_lowercase();
    let boundary = ct
        .param("boundary")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| VerifyError::Malformed("multipart/signed without boundary".into()))?;
    let mp = mime::multipart_parts(raw, e.body.clone(), &boundary);
    // openssl refuses a multipart/signed without its close delimiter; so do we.
    if !mp.closed {
        return Err(VerifyError::Malformed("missing close delimiter".into()));
    }
    if mp.parts.len() != 2 {
        return Err(VerifyError::Malformed(format!(
            "multipart/signed has {} parts, expected 2",
            mp.parts.len()
        )));
    }
    let signed_range = mp.parts[0].clone();
    let sig = Entity::parse(raw, mp.parts[1].clone());
    let sig_type = sig.content_type(raw).mime_type;
    if sig_type != "application/pkcs7-signature" && sig_type != "application/x-pkcs7-signature" {
        return Err(VerifyError::Malformed(format!(
            "signature part is {sig_type}"
        )));
    }
    let der = sig.decoded_body(raw);
    let content = mime::canonicalize_crlf(&raw[signed_range.clone()]);

    let info = der::signer_info(&der);
    let mut digest_matched = None;
    if let Some(info) = &info {
        if let (Some(md), Some(expected)) = (info.digest.message_digest(), &info.message_digest) {
            let got = hash(md, &content).map_err(|e| VerifyError::BadSignature(e.to_string()))?;
            if got.as_ref() != expected.as_slice() {
                return Err(VerifyError::DigestMismatch);
            }
            digest_matched = Some((info.digest, md));
        }
    }
    let signing_time = info.as_ref().and_then(|i| i.signing_time);
    let at = match signing_time {
        Some(t) if t <= opts.now + 600 => t,
        _ => opts.now,
    };
    let verdict = |k: &KnownCert, chain_checked: bool| Verified {
        signer: k.x509.clone(),
        signer_subject: k.subject.clone(),
        issuer_subject: k.issuer.clone(),
        sha1_fingerprint: hex_colon(&k.sha1),
        sha1_hex: hex_plain(&k.sha1),
        sha1: k.sha1,
        signing_time,
        digest: info
            .as_ref()
            .map(|i| i.digest.name().to_string())
            .unwrap_or_else(|| "unknown".into()),
        micalg: micalg.clone(),
        signed_entity: signed_range.clone(),
        chain_checked,
        expired_now: k.not_after < opts.now,
        revocation: None,
    };
    if let (true, Some(trust), Some((digest, md))) = (known, opts.trust, digest_matched) {
        if let Some(k) = trust.verify_known(&der, digest, md, at) {
            let embedded = || {
                der::signed_parts(&der)
                    .map(|p| {
                        p.certs
                            .iter()
                            .filter_map(|c| trust.known(c).map(|k| k.x509.clone()))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            return revoked(verdict(&k, true), &k, trust, embedded, at, opts);
        }
    }

    let p7 = Pkcs7::from_der(&der)
        .map_err(|e| VerifyError::Malformed(format!("signature is not PKCS#7: {e}")))?;
    let empty_certs: Stack<X509> =
        Stack::new().map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let empty_store = X509StoreBuilder::new()
        .map_err(|e| VerifyError::Malformed(e.to_string()))?
        .build();
    let flags = Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY;
    if let Err(e) = p7.verify(&empty_certs, &empty_store, Some(&content), None, flags) {
        let text = e.to_string();
        return Err(if text.contains("digest failure") {
            VerifyError::DigestMismatch
        } else {
            VerifyError::BadSignature(text)
        });
    }
    let signers = p7
        .signers(&empty_certs, Pkcs7Flags::empty())
        .map_err(|e| VerifyError::Malformed(format!("no signer certificate: {e}")))?;
    let signer = signers
        .iter()
        .next()
        .map(|c| c.to_owned())
        .ok_or_else(|| VerifyError::Malformed("no signer certificate".into()))?;

    let mut chain_checked = false;
    let embedded = p7.signed().and_then(|s| s.certificates());
    if let Some(trust) = opts.trust {
        check_chain(trust.store(), &signer, embedded, at)?;
        chain_checked = true;
    }
    let k = KnownCert::new(signer).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    match opts.trust {
        Some(trust) => {
            let embedded = || {
                embedded
                    .map(|s| s.iter().map(|c| c.to_owned()).collect())
                    .unwrap_or_default()
            };
            revoked(verdict(&k, chain_checked), &k, trust, embedded, at, opts)
        }
        None => Ok(verdict(&k, chain_checked)),
    }
}

/// `v` with the revocation check of its signer `k` (chain verified at `at`),
/// or the error a revoked certificate (or a required check no source could
/// answer) makes of it.
fn revoked(
    mut v: Verified,
    k: &KnownCert,
    trust: &Trust,
    embedded: impl FnOnce() -> Vec<X509>,
    at: i64,
    opts: &VerifyOptions,
) -> Result<Verified, VerifyError> {
    let Some(checker) = opts.revocation else {
        return Ok(v);
    };
    if checker.policy().mode == super::revocation::Mode::Off {
        v.revocation = Some(Revocation::not_checked("[trust] revocation = \"off\"", at));
        return Ok(v);
    }
    let embedded = embedded();
    let r = checker.check(&StatusRequest {
        signer: &k.x509,
        sha1: &k.sha1,
        embedded: &embedded,
        roots: trust.store(),
        at,
        now: opts.now,
    });
    match r.status {
        Status::Revoked => Err(VerifyError::Revoked(Box::new(r))),
        Status::Unavailable if !checker.policy().soft_fail => {
            Err(VerifyError::RevocationUnavailable(Box::new(r)))
        }
        _ => {
            v.revocation = Some(r);
            Ok(v)
        }
    }
}

/// Trust the CAs of concatenated PEM certificates.
pub fn trust_store_from_pem(pems: &[&[u8]]) -> Result<Trust, SmimeError> {
    let mut b = X509StoreBuilder::new()?;
    for pem in pems {
        for c in X509::stack_from_pem(pem)? {
            b.add_cert(c)?;
        }
    }
    Ok(Trust::new(b.build()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::certs::{generate_ca, generate_signing};
    use std::path::PathBuf;

    const NOW: i64 = 1_760_000_000;

    /// Wall clock for tests only (certificates are generated relative to it).
    pub(crate) fn tests_now() -> i64 {
        crate::pec::clock::since_epoch().as_secs() as i64
    }

    pub(crate) fn samples() -> Vec<(String, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pec-samples");
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .expect("pec-samples directory")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        out.sort();
        assert!(!out.is_empty(), "no sample read from {}", dir.display());
        out
    }

    #[test]
    fn sample_verdicts() {
        let opts = VerifyOptions {
            revocation: None,
            trust: None,
            now: NOW,
        };
        let mut failures = Vec::new();
        for (name, raw) in samples() {
            let inner = name.starts_with("namirial");
            let r = if inner {
                verify_inner(&raw, &opts)
            } else {
                verify(&raw, &opts)
            };
            let expect_ok = !name.starts_with("NEG_") && !name.starts_with("ANON_");
            match (&r, expect_ok) {
                (Ok(v), true) => {
                    assert_eq!(v.sha1_hex.len(), 40);
                    assert!(v.signing_time.is_some(), "{name}: no signing time");
                    assert!(v.signer_subject.contains("CN=Posta Certificata"), "{name}");
                }
                (Err(VerifyError::DigestMismatch), false) if name.starts_with("NEG_") => {}
                (Err(_), false) if name.starts_with("ANON_") => {}
                _ => failures.push(format!("{name}: {r:?}")),
            }
            if inner {
                assert!(
                    verify(&raw, &opts).is_err(),
                    "{name}: whole file must not verify"
                );
            }
        }
        assert!(
            failures.is_empty(),
            "unexpected verdicts:\n{}",
            failures.join("\n")
        );
    }

    #[test]
    fn real_chain_with_system_roots() {
        // Aruba 2018 chains AgID CA1 (embedded) -> Actalis root, valid at signing time.
        let root = std::fs::read("/etc/ssl/certs/Actalis_Authentication_Root_CA.pem");
        let Ok(root) = root else { return };
        let store = trust_store_from_pem(&[&root]).unwrap();
        let raw = samples()
            .into_iter()
            .find(|(n, _)| n == "aruba-2018_accettazione.eml")
            .unwrap()
            .1;
        let v = verify(
            &raw,
            &VerifyOptions {
                revocation: None,
                trust: Some(&store),
                now: NOW,
            },
        )
        .unwrap();
        assert!(v.chain_checked);
        assert!(v.expired_now);
        assert_eq!(v.digest, "sha1");
        // a different root is not trusted
        let other = generate_ca("Other CA").unwrap();
        let store = trust_store_from_pem(&[&other.cert_pem()]).unwrap();
        let r = verify(
            &raw,
            &VerifyOptions {
                revocation: None,
                trust: Some(&store),
                now: NOW,
            },
        );
        assert!(matches!(r, Err(VerifyError::Untrusted(_))), "{r:?}");
    }

    fn unsigned() -> Unsigned {
        Unsigned {
            headers: vec![
                ("From".into(), "posta-certificata@pec.alpha.test".into()),
                ("To".into(), "bob@pec.beta.test".into()),
                ("Subject".into(), "ACCETTAZIONE: prova".into()),
                ("X-Ricevuta".into(), "accettazione".into()),
            ],
            entity: b"Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\nRicevuta di accettazione\r\n\r\n-- fine\r\n".to_vec(),
        }
    }

    fn openssl_verify(msg: &[u8], ca_pem: &[u8]) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let (m, ca) = (dir.path().join("m.eml"), dir.path().join("ca.pem"));
        std::fs::write(&m, msg).unwrap();
        std::fs::write(&ca, ca_pem).unwrap();
        std::process::Command::new("openssl")
            .args(["smime", "-verify", "-CAfile"])
            .arg(&ca)
            .arg("-in")
            .arg(&m)
            .args(["-out", "/dev/null"])
            .output()
            .expect("run openssl")
            .status
            .success()
    }

    #[test]
    fn sign_round_trip() {
        let ca = generate_ca("Test CA").unwrap();
        let sc = generate_signing(&ca, "Alpha PEC", "pec.alpha.test").unwrap();
        let signer = Signer::from_pem(&sc.cert_pem(), &sc.key_pem(), b"").unwrap();
        let msg = unsigned();
        let out = signer.sign(&msg, "----B0UNDARY42").unwrap();
        let store = trust_store_from_pem(&[&ca.cert_pem()]).unwrap();
        let now = tests_now();
        let v = verify(
            &out,
            &VerifyOptions {
                revocation: None,
                trust: Some(&store),
                now,
            },
        )
        .unwrap();
        assert_eq!(&out[v.signed_entity.clone()], msg.entity.as_slice());
        assert_eq!(v.digest, "sha256");
        assert!(v.chain_checked && !v.expired_now);
        assert!(v.signer_subject.contains("CN=Posta Certificata Alpha PEC"));
        assert_eq!(v.sha1, cert_sha1(&sc.cert).unwrap());
        assert!(
            openssl_verify(&out, &ca.cert_pem()),
            "openssl rejects our signature"
        );

        // one byte of the body flipped: both reject
        let pos = out.windows(11).position(|w| w == b"Ricevuta di").unwrap();
        let mut bad = out.clone();
        bad[pos] = b'r';
        assert_eq!(
            verify(
                &bad,
                &VerifyOptions {
                    revocation: None,
                    trust: Some(&store),
                    now
                }
            )
            .unwrap_err(),
            VerifyError::DigestMismatch
        );
        assert!(!openssl_verify(&bad, &ca.cert_pem()));

        // signer from another CA: untrusted for us and for openssl
        let other = generate_ca("Other CA").unwrap();
        let osc = generate_signing(&other, "Evil PEC", "pec.alpha.test").unwrap();
        let evil = Signer::from_pem(&osc.cert_pem(), &osc.key_pem(), b"").unwrap();
        let out2 = evil.sign(&msg, "b").unwrap();
        let r = verify(
            &out2,
            &VerifyOptions {
                revocation: None,
                trust: Some(&store),
                now,
            },
        );
        assert!(matches!(r, Err(VerifyError::Untrusted(_))), "{r:?}");
        assert!(!openssl_verify(&out2, &ca.cert_pem()));
        // but integrity alone holds
        assert!(verify(
            &out2,
            &VerifyOptions {
                revocation: None,
                trust: None,
                now
            }
        )
        .is_ok());

        // LF-converted copy still verifies (canonicalisation)
        let lf: Vec<u8> = out.iter().copied().filter(|&b| b != b'\r').collect();
        assert!(verify(
            &lf,
            &VerifyOptions {
                revocation: None,
                trust: Some(&store),
                now
            }
        )
        .is_ok());

        // not signed at all
        let plain = b"From: a@b\r\nSubject: x\r\n\r\nhi\r\n";
        assert!(matches!(
            verify(
                plain,
                &VerifyOptions {
                    revocation: None,
                    trust: None,
                    now
                }
            ),
            Err(VerifyError::NotSigned(_))
        ));
    }

    #[test]
    fn expired_at_signing_time() {
        // A signing time after the signer's notAfter must read as Expired.
        let ca = generate_ca("Test CA").unwrap();
        let sc = generate_signing(&ca, "Alpha PEC", "pec.alpha.test").unwrap();
        let store = trust_store_from_pem(&[&ca.cert_pem()]).unwrap();
        let far = tests_now() + 5 * 365 * 86400;
        let r = check_chain(store.store(), &sc.cert, None, far);
        assert!(matches!(r, Err(ChainError::Expired(_))), "{r:?}");
        assert!(check_chain(store.store(), &sc.cert, None, tests_now()).is_ok());
    }
}

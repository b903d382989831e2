//! X.509 pieces shared by [`super::smime`], [`super::trust`],
//! [`super::revocation`] and [`super::tsa`]: DER reading, fingerprints,
//! names, times and chain verification. It depends on none of them, so the
//! arrows between those modules go one way.

use std::fmt;

use openssl::hash::MessageDigest;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509NameRef, X509PurposeId, X509StoreContext, X509};

/// Signature generation or key material failure.
#[derive(Debug)]
pub struct SmimeError(pub String);

impl fmt::Display for SmimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S/MIME: {}", self.0)
    }
}

impl std::error::Error for SmimeError {}

impl From<openssl::error::ErrorStack> for SmimeError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        SmimeError(e.to_string())
    }
}

/// Why a certificate chain does not verify at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// The chain does not lead to a trusted CA (or a constraint/purpose fails).
    Untrusted(String),
    /// A certificate of the chain was not valid at that time.
    Expired(String),
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainError::Untrusted(s) | ChainError::Expired(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for ChainError {}

/// Verify `signer`'s chain to `trust` at time `at`; on success, the span of
/// times the chain found is valid for (latest notBefore, earliest notAfter).
pub(crate) fn check_chain(
    trust: &X509Store,
    signer: &X509,
    embedded: Option<&openssl::stack::StackRef<X509>>,
    at: i64,
) -> Result<(i64, i64), ChainError> {
    let err = |e: openssl::error::ErrorStack| ChainError::Untrusted(e.to_string());
    let mut b = X509StoreBuilder::new().map_err(err)?;
    for c in trust.all_certificates() {
        b.add_cert(c).map_err(err)?;
    }
    let mut param = X509VerifyParam::new().map_err(err)?;
    param.set_time(at as libc::time_t);
    param.set_purpose(X509PurposeId::SMIME_SIGN).map_err(err)?;
    b.set_param(&param).map_err(err)?;
    let store = b.build();
    let mut untrusted = Stack::new().map_err(err)?;
    if let Some(certs) = embedded {
        for c in certs {
            untrusted.push(c.to_owned()).map_err(err)?;
        }
    }
    let mut ctx = X509StoreContext::new().map_err(err)?;
    let (ok, code, text, span) = ctx
        .init(&store, signer, &untrusted, |c| {
            let ok = c.verify_cert()?;
            let span = c.chain().map(|chain| {
                chain.iter().fold((i64::MIN, i64::MAX), |(lo, hi), x| {
                    (
                        lo.max(unix_time(x.not_before()).unwrap_or(i64::MAX)),
                        hi.min(unix_time(x.not_after()).unwrap_or(i64::MIN)),
                    )
                })
            });
            Ok((ok, c.error().as_raw(), c.error().error_string(), span))
        })
        .map_err(err)?;
    if ok {
        // A chain whose dates cannot be read is valid only at `at`.
        return Ok(span.filter(|(lo, hi)| lo <= hi).unwrap_or((at, at)));
    }
    // X509_V_ERR_CERT_NOT_YET_VALID = 9, X509_V_ERR_CERT_HAS_EXPIRED = 10
    if code == 9 || code == 10 {
        Err(ChainError::Expired(text.to_string()))
    } else {
        Err(ChainError::Untrusted(text.to_string()))
    }
}

/// An ASN.1 time as Unix seconds.
pub(crate) fn unix_time(t: &openssl::asn1::Asn1TimeRef) -> Option<i64> {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let d = epoch.diff(t).ok()?;
    Some(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

/// `C=IT, O=…, CN=…` in certificate order.
pub fn name_to_string(name: &X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let val = e
                .data()
                .to_string()
                .unwrap_or_else(|_| String::from_utf8_lossy(e.data().as_slice()).into_owned());
            format!("{key}={val}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Upper-case hex with colons.
pub fn hex_colon(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Upper-case hex without separators.
pub fn hex_plain(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// SHA-1 of a certificate's DER.
pub fn cert_sha1(cert: &X509) -> Result<[u8; 20], SmimeError> {
    let d = cert.digest(MessageDigest::sha1())?;
    let mut out = [0u8; 20];
    out.copy_from_slice(&d[..20]);
    Ok(out)
}

/// Minimal DER reading of the first SignerInfo: rust-openssl exposes no
/// signed attributes, and we need signingTime and messageDigest.
pub(crate) mod der {
    use super::MessageDigest;

    /// Digest algorithm of a SignerInfo.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Digest {
        Sha1,
        Sha224,
        Sha256,
        Sha384,
        Sha512,
        Other,
    }

    impl Digest {
        pub fn name(self) -> &'static str {
            match self {
                Digest::Sha1 => "sha1",
                Digest::Sha224 => "sha224",
                Digest::Sha256 => "sha256",
                Digest::Sha384 => "sha384",
                Digest::Sha512 => "sha512",
                Digest::Other => "unknown",
            }
        }
        pub fn message_digest(self) -> Option<MessageDigest> {
            Some(match self {
                Digest::Sha1 => MessageDigest::sha1(),
                Digest::Sha224 => MessageDigest::sha224(),
                Digest::Sha256 => MessageDigest::sha256(),
                Digest::Sha384 => MessageDigest::sha384(),
                Digest::Sha512 => MessageDigest::sha512(),
                Digest::Other => return None,
            })
        }
    }

    pub struct SignerInfo {
        pub digest: Digest,
        pub signing_time: Option<i64>,
        pub message_digest: Option<Vec<u8>>,
    }

    /// (tag, content, rest); definite lengths only.
    pub(crate) fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *b.first()?;
        let l0 = *b.get(1)?;
        let (len, hdr) = if l0 < 0x80 {
            (l0 as usize, 2)
        } else {
            let n = (l0 & 0x7f) as usize;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *b.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let end = hdr.checked_add(len)?;
        if end > b.len() {
            return None;
        }
        Some((tag, &b[hdr..end], &b[end..]))
    }

    /// Every (tag, content) of a concatenation of elements.
    pub(crate) fn items(mut b: &[u8]) -> Option<Vec<(u8, &[u8])>> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let (t, c, r) = tlv(b)?;
            out.push((t, c));
            b = r;
        }
        Some(out)
    }

    /// (tag, content, whole element, rest).
    type DerTlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

    /// Like [`tlv`], also returning the whole element, and only for the
    /// minimal (DER) length encoding: bytes that are verified as they stand
    /// must be the encoding the signer signed, with nothing to re-encode.
    fn der_tlv(b: &[u8]) -> Option<DerTlv<'_>> {
        let (tag, content, rest) = tlv(b)?;
        let full = &b[..b.len() - rest.len()];
        let len = content.len();
        let minimal = match len {
            0..=0x7f => 2,
            0x80..=0xff => 3,
            0x100..=0xffff => 4,
            0x1_0000..=0xff_ffff => 5,
            _ => 6,
        };
        (full.len() - len == minimal).then_some((tag, content, full, rest))
    }

    /// (tag, content, whole element).
    type DerItem<'a> = (u8, &'a [u8], &'a [u8]);

    fn der_items(mut b: &[u8]) -> Option<Vec<DerItem<'_>>> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let (t, c, full, r) = der_tlv(b)?;
            out.push((t, c, full));
            b = r;
        }
        Some(out)
    }

    /// The parts of a detached, single-signer PKCS#7 SignedData that a
    /// verification needs, as they stand in the DER.
    pub struct SignedParts<'a> {
        /// Each embedded certificate, whole.
        pub certs: Vec<&'a [u8]>,
        /// The signer's issuer Name, whole.
        pub issuer: &'a [u8],
        /// The signer's serial number (INTEGER content).
        pub serial: &'a [u8],
        /// The signed attributes, whole, as tagged in the SignerInfo (`[0]`).
        pub attrs: &'a [u8],
        /// Digest the signature uses, when the signature algorithm names one.
        pub sig_digest: Option<Digest>,
        /// The signature value.
        pub signature: &'a [u8],
    }

    const OID_SIGNED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];
    const OID_RSA_PREFIX: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01];

    /// [`SignedParts`] of `der`, or `None` for anything else (several
    /// signers, embedded content, no signed attributes, a signature
    /// algorithm other than RSA PKCS#1 v1.5, non-DER lengths).
    pub fn signed_parts(der: &[u8]) -> Option<SignedParts<'_>> {
        let (_, ci, _, _) = der_tlv(der)?;
        let ci = der_items(ci)?;
        if ci.len() != 2 || ci[0].1 != OID_SIGNED_DATA || ci[1].0 != 0xA0 {
            return None;
        }
        let (_, sd, _, _) = der_tlv(ci[1].1)?;
        let sd = der_items(sd)?;
        // version, digestAlgorithms, contentInfo, [0] certificates, signerInfos
        let [(0x02, _, _), (0x31, _, _), (0x30, content_info, _), (0xA0, certs, _), (0x31, infos, _)] =
            sd.as_slice()
        else {
            return None;
        };
        if der_items(content_info)?.len() != 1 {
            return None; // the content is embedded, not detached
        }
        let certs = der_items(certs)?
            .into_iter()
            .map(|(_, _, full)| full)
            .collect();
        let infos = der_items(infos)?;
        let [(0x30, info, _)] = infos.as_slice() else {
            return None;
        };
        // version, issuerAndSerialNumber, digestAlgorithm, [0] attributes,
        // digestEncryptionAlgorithm, encryptedDigest (no unsigned attributes)
        let info = der_items(info)?;
        let [(0x02, _, _), (0x30, ias, _), (0x30, _, _), (0xA0, _, attrs), (0x30, sig_alg, _), (0x04, signature, _)] =
            info.as_slice()
        else {
            return None;
        };
        let ias = der_items(ias)?;
        let [(0x30, _, issuer), (0x02, serial, _)] = ias.as_slice() else {
            return None;
        };
        let sig_oid = der_items(sig_alg)?.first().map(|(_, c, _)| *c)?;
        if sig_oid.len() != 9 || !sig_oid.starts_with(OID_RSA_PREFIX) {
            return None;
        }
        let sig_digest = match sig_oid[8] {
            1 => None,
            5 => Some(Digest::Sha1),
            11 => Some(Digest::Sha256),
            12 => Some(Digest::Sha384),
            13 => Some(Digest::Sha512),
            14 => Some(Digest::Sha224),
            _ => return None,
        };
        Some(SignedParts {
            certs,
            issuer,
            serial,
            attrs,
            sig_digest,
            signature,
        })
    }

    const OID_SHA1: &[u8] = &[0x2B, 0x0E, 0x03, 0x02, 0x1A];
    const OID_SHA2_PREFIX: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];
    const OID_SIGNING_TIME: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x05];
    const OID_MESSAGE_DIGEST: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x04];

    pub fn signer_info(der: &[u8]) -> Option<SignerInfo> {
        let (_, ci, _) = tlv(der)?; // ContentInfo SEQUENCE
        let ci = items(ci)?;
        let explicit = ci.iter().find(|(t, _)| *t == 0xA0)?.1;
        let (_, sd, _) = tlv(explicit)?; // SignedData SEQUENCE
        let sd = items(sd)?;
        let signer_infos = sd.iter().rev().find(|(t, _)| *t == 0x31)?.1;
        let (_, si, _) = tlv(signer_infos)?;
        let si = items(si)?;
        let alg = items(si.get(2)?.1)?;
        let oid = alg.first()?.1;
        let digest = if oid == OID_SHA1 {
            Digest::Sha1
        } else if oid.len() == 9 && oid.starts_with(OID_SHA2_PREFIX) {
            match oid[8] {
                1 => Digest::Sha256,
                2 => Digest::Sha384,
                3 => Digest::Sha512,
                4 => Digest::Sha224,
                _ => Digest::Other,
            }
        } else {
            Digest::Other
        };
        let mut out = SignerInfo {
            digest,
            signing_time: None,
            message_digest: None,
        };
        if let Some((_, attrs)) = si.iter().find(|(t, _)| *t == 0xA0) {
            for (_, attr) in items(attrs)? {
                let a = items(attr)?;
                let (oid, set) = (a.first()?.1, a.get(1)?.1);
                let (vt, v, _) = tlv(set)?;
                if oid == OID_SIGNING_TIME {
                    out.signing_time = parse_time(vt, v);
                } else if oid == OID_MESSAGE_DIGEST && vt == 0x04 {
                    out.message_digest = Some(v.to_vec());
                }
            }
        }
        Some(out)
    }

    /// Unix seconds of a UTCTime (0x17) or GeneralizedTime (0x18).
    pub(crate) fn parse_time(tag: u8, v: &[u8]) -> Option<i64> {
        let s = std::str::from_utf8(v).ok()?;
        let s = s.strip_suffix('Z')?;
        let (year, rest) = match tag {
            0x17 => {
                let yy: i64 = s.get(0..2)?.parse().ok()?;
                (if yy < 50 { 2000 + yy } else { 1900 + yy }, s.get(2..)?)
            }
            0x18 => (s.get(0..4)?.parse().ok()?, s.get(4..)?),
            _ => return None,
        };
        let n = |r: std::ops::Range<usize>| -> Option<i64> { rest.get(r)?.parse().ok() };
        let (mo, d, h, mi) = (n(0..2)?, n(2..4)?, n(4..6)?, n(6..8)?);
        let sec = n(8..10).unwrap_or(0);
        Some(days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + sec)
    }

    /// Days since 1970-01-01 (Howard Hinnant's algorithm).
    pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146097 + doe - 719468
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn time() {
            assert_eq!(super::parse_time(0x17, b"181113153927Z"), Some(1542123567));
            assert_eq!(super::parse_time(0x18, b"19700101000000Z"), Some(0));
        }
    }
}

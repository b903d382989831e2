//! RFC 3161 time stamps for the daily log seals: the request (built here,
//! it is a few dozen bytes of DER) and the check of the reply's token (the
//! HTTP exchange, RFC 3161 §3.4, is the sealer's: no I/O here): its CMS
//! signature against the TSA's roots with the timeStamping purpose, then
//! the TSTInfo's message imprint, nonce and policy. Every DER read is
//! bounded and returns an error, never panics.

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509PurposeId, X509};

use super::x509::der::{items, parse_time, tlv};

/// DER of the sha256 AlgorithmIdentifier OID (2.16.840.1.101.3.4.2.1).
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
/// id-ct-TSTInfo (1.2.840.113549.1.9.16.1.4).
const OID_TST_INFO: &[u8] = &[
    0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x10, 0x01, 0x04,
];
/// Largest reply read from a TSA.
pub const MAX_REPLY: u64 = 1 << 20;

/// A policy OID (`log.tsa_policy`) that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidError {
    /// Not numbers separated by dots: the text.
    NotDotted(String),
    /// The first two arcs break X.660's rules: the text.
    Invalid(String),
    /// The first two arcs overflow: the text.
    ArcTooLarge(String),
}

impl std::fmt::Display for OidError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OidError::NotDotted(s) => write!(
                f,
                "{s:?} is not a dotted object identifier like 1.3.6.1.4.1.99999.1"
            ),
            OidError::Invalid(s) => write!(f, "{s:?} is not a valid object identifier"),
            OidError::ArcTooLarge(s) => write!(f, "{s:?}: arc too large"),
        }
    }
}

impl std::error::Error for OidError {}

/// Why a TSA's reply or its token is not taken.
#[derive(Debug, Clone)]
pub enum TsaError {
    /// The reply is not a DER TimeStampResp.
    NotAResponse,
    /// The TSA refused: its PKIStatus and status strings.
    Refused {
        /// PKIStatus (2 rejection, 3 waiting, 4/5 revocation notices).
        status: u8,
        /// The reply's PKIFreeText, if any.
        text: Vec<String>,
    },
    /// Granted, but no token in the reply.
    NoToken,
    /// The token is not a SignedData over a TSTInfo.
    NotSignedTstInfo,
    /// The TSTInfo does not parse.
    UnreadableTstInfo,
    /// The token is not CMS.
    BadToken(openssl::error::ErrorStack),
    /// The signature does not verify against the roots (`log.tsa_ca`).
    BadSignature(openssl::error::ErrorStack),
    /// The imprint's hash is not SHA-256.
    NotSha256,
    /// The imprint is not the hash of the data.
    OtherData,
    /// The nonce sent is not in the token.
    NoNonce,
    /// The token's policy is not the one asked for.
    OtherPolicy,
    /// OpenSSL failed building the store or drawing the nonce.
    Openssl(openssl::error::ErrorStack),
}

impl std::fmt::Display for TsaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TsaError::NotAResponse => f.write_str("the TSA's reply is not a TimeStampResp"),
            TsaError::Refused { status, text } => {
                write!(f, "the TSA refused the request (status {status}")?;
                if !text.is_empty() {
                    write!(f, ": {}", text.join("; "))?;
                }
                f.write_str(")")
            }
            TsaError::NoToken => f.write_str("the TSA granted the request but sent no token"),
            TsaError::NotSignedTstInfo => {
                f.write_str("the time stamp token is not a signed TSTInfo (RFC 3161)")
            }
            TsaError::UnreadableTstInfo => f.write_str("the token's TSTInfo cannot be read"),
            TsaError::BadToken(e) => write!(f, "token: {e}"),
            TsaError::BadSignature(e) => write!(
                f,
                "the time stamp token's signature does not verify against log.tsa_ca: {e}"
            ),
            TsaError::NotSha256 => f.write_str("the token's imprint is not SHA-256"),
            TsaError::OtherData => {
                f.write_str("the token stamps other data (message imprint differs)")
            }
            TsaError::NoNonce => f.write_str("the token does not carry the nonce of the request"),
            TsaError::OtherPolicy => f.write_str("the token's policy is not log.tsa_policy"),
            TsaError::Openssl(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TsaError {}

impl From<openssl::error::ErrorStack> for TsaError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        TsaError::Openssl(e)
    }
}

// Bridges for callers that still return `Result<_, String>` (the sealer).
impl From<TsaError> for String {
    fn from(e: TsaError) -> String {
        e.to_string()
    }
}

impl From<OidError> for String {
    fn from(e: OidError) -> String {
        e.to_string()
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// DER INTEGER content of an unsigned big-endian number (minimal, positive).
fn unsigned_integer(b: &[u8]) -> Vec<u8> {
    let b = &b[b
        .iter()
        .take_while(|x| **x == 0)
        .count()
        .min(b.len().saturating_sub(1))..];
    let mut v = Vec::with_capacity(b.len() + 1);
    if b.first().is_some_and(|x| x & 0x80 != 0) {
        v.push(0);
    }
    v.extend_from_slice(b);
    if v.is_empty() {
        v.push(0);
    }
    v
}

/// The DER content of a dotted OID (`1.3.6.1.4.1.…`), or why not.
pub fn oid_from_dotted(s: &str) -> Result<Vec<u8>, OidError> {
    let arcs: Vec<u64> = s
        .split('.')
        .map(|a| a.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| OidError::NotDotted(s.to_string()))?;
    if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] >= 40) {
        return Err(OidError::Invalid(s.to_string()));
    }
    let mut out = Vec::new();
    let first = arcs[0]
        .checked_mul(40)
        .and_then(|x| x.checked_add(arcs[1]))
        .ok_or_else(|| OidError::ArcTooLarge(s.to_string()))?;
    for arc in std::iter::once(first).chain(arcs[2..].iter().copied()) {
        let mut chunk = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            chunk.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        chunk.reverse();
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn imprint(hash: &[u8; 32]) -> Vec<u8> {
    let mut alg = der(0x06, OID_SHA256);
    alg.extend_from_slice(&[0x05, 0x00]);
    let mut mi = der(0x30, &alg);
    mi.extend_from_slice(&der(0x04, hash));
    der(0x30, &mi)
}

/// A DER TimeStampReq: version 1, the sha256 imprint of the data, the
/// policy when asked for one, the nonce, and certReq so the token carries
/// the TSA's certificate (it is checked offline, years later).
pub fn request(hash: &[u8; 32], policy: Option<&[u8]>, nonce: &[u8]) -> Vec<u8> {
    let mut body = der(0x02, &[1]);
    body.extend_from_slice(&imprint(hash));
    if let Some(p) = policy {
        body.extend_from_slice(&der(0x06, p));
    }
    body.extend_from_slice(&der(0x02, &unsigned_integer(nonce)));
    body.extend_from_slice(&[0x01, 0x01, 0xFF]);
    der(0x30, &body)
}

/// A fresh 64-bit nonce.
pub fn nonce() -> Result<[u8; 8], TsaError> {
    let mut n = [0u8; 8];
    openssl::rand::rand_bytes(&mut n)?;
    Ok(n)
}

/// The TimeStampToken of a TimeStampResp, or the TSA's refusal.
pub fn token_of_response(resp: &[u8]) -> Result<Vec<u8>, TsaError> {
    let bad = || TsaError::NotAResponse;
    let (tag, content, _) = tlv(resp).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let (st_tag, status_info, rest) = tlv(content).ok_or_else(bad)?;
    if st_tag != 0x30 {
        return Err(bad());
    }
    let fields = items(status_info).ok_or_else(bad)?;
    let status = match fields.first() {
        Some((0x02, v)) if v.len() == 1 => v[0],
        _ => return Err(bad()),
    };
    // granted (0) or grantedWithMods (1).
    if status > 1 {
        let text: Vec<String> = fields
            .iter()
            .filter(|(t, _)| *t == 0x30)
            .filter_map(|(_, v)| items(v))
            .flatten()
            .filter(|(t, _)| *t == 0x0C)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        return Err(TsaError::Refused { status, text });
    }
    if rest.is_empty() {
        return Err(TsaError::NoToken);
    }
    let (t, _, after) = tlv(rest).ok_or_else(bad)?;
    if t != 0x30 || !after.is_empty() {
        return Err(bad());
    }
    Ok(rest.to_vec())
}

/// What a checked token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// genTime, unix seconds.
    pub gen_time: i64,
    /// The TSA's policy, DER OID content.
    pub policy: Vec<u8>,
    /// Serial number, hex.
    pub serial: String,
    /// The signer's subject.
    pub tsa: String,
}

struct TstInfo<'a> {
    policy: &'a [u8],
    alg: &'a [u8],
    hash: &'a [u8],
    serial: &'a [u8],
    gen_time: i64,
    nonce: Option<&'a [u8]>,
}

fn embedded_tst_info(token: &[u8]) -> Option<&[u8]> {
    let (_, ci, _) = tlv(token)?;
    let ci = items(ci)?;
    let explicit = ci.iter().find(|(t, _)| *t == 0xA0)?.1;
    let (_, sd, _) = tlv(explicit)?;
    let sd = items(sd)?;
    // version, digestAlgorithms, encapContentInfo, ...
    let (t, eci) = *sd.get(2)?;
    if t != 0x30 {
        return None;
    }
    let eci = items(eci)?;
    if eci.first()?.0 != 0x06 || eci.first()?.1 != OID_TST_INFO {
        return None;
    }
    let (_, wrapped, _) = tlv(eci.get(1)?.1)?; // [0] EXPLICIT OCTET STRING
    Some(wrapped)
}

fn parse_tst_info(der: &[u8]) -> Option<TstInfo<'_>> {
    let (t, c, _) = tlv(der)?;
    if t != 0x30 {
        return None;
    }
    let f = items(c)?;
    let [(0x02, _), (0x06, policy), (0x30, mi), (0x02, serial), (0x18, gen), rest @ ..] =
        f.as_slice()
    else {
        return None;
    };
    let mi = items(mi)?;
    let [(0x30, alg), (0x04, hash)] = mi.as_slice() else {
        return None;
    };
    let alg = items(alg)?.first().filter(|(t, _)| *t == 0x06)?.1;
    let nonce = rest.iter().find(|(t, _)| *t == 0x02).map(|(_, v)| *v);
    Some(TstInfo {
        policy,
        alg,
        hash,
        serial,
        gen_time: parse_time(0x18, strip_fraction(gen)?.as_bytes())?,
        nonce,
    })
}

/// GeneralizedTime may carry fractions of a second (`…SS.sssZ`).
fn strip_fraction(g: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(g).ok()?;
    let s = s.strip_suffix('Z')?;
    let whole = s.split('.').next()?;
    Some(format!("{whole}Z"))
}

fn same_integer(a: &[u8], b: &[u8]) -> bool {
    let strip = |x: &[u8]| -> Vec<u8> {
        let n = x.iter().take_while(|b| **b == 0).count();
        x[n..].to_vec()
    };
    strip(a) == strip(b)
}

/// Check `token` (DER TimeStampToken) over data whose SHA-256 is `hash`:
/// its CMS signature by a certificate that chains to `roots` with the
/// timeStamping purpose (checked at the token's own genTime, so a token
/// outlives its TSA certificate), the imprint, and, when given, the nonce
/// sent and the policy asked for.
pub fn verify_token(
    token: &[u8],
    roots: &[X509],
    hash: &[u8; 32],
    nonce: Option<&[u8]>,
    policy: Option<&[u8]>,
) -> Result<TokenInfo, TsaError> {
    let embedded = embedded_tst_info(token).ok_or(TsaError::NotSignedTstInfo)?;
    let unverified = parse_tst_info(embedded).ok_or(TsaError::UnreadableTstInfo)?;
    let mut param = X509VerifyParam::new()?;
    param.set_time(unverified.gen_time as _);
    let mut sb = X509StoreBuilder::new()?;
    for c in roots {
        sb.add_cert(c.clone())?;
    }
    sb.set_param(&param)?;
    sb.set_purpose(X509PurposeId::TIMESTAMP_SIGN)?;
    let store = sb.build();
    let mut cms = CmsContentInfo::from_der(token).map_err(TsaError::BadToken)?;
    let mut content = Vec::new();
    let none = Stack::<X509>::new()?;
    cms.verify(
        Some(&none),
        Some(&store),
        None,
        Some(&mut content),
        CMSOptions::BINARY,
    )
    .map_err(TsaError::BadSignature)?;
    // What was verified is what we read: parse the verified content again.
    let tst = parse_tst_info(&content).ok_or(TsaError::UnreadableTstInfo)?;
    if tst.alg != OID_SHA256 {
        return Err(TsaError::NotSha256);
    }
    if tst.hash != hash {
        return Err(TsaError::OtherData);
    }
    if let Some(n) = nonce {
        if !tst.nonce.is_some_and(|t| same_integer(t, n)) {
            return Err(TsaError::NoNonce);
        }
    }
    if let Some(p) = policy {
        if tst.policy != p {
            return Err(TsaError::OtherPolicy);
        }
    }
    let tsa = signer_subject(token).unwrap_or_default();
    Ok(TokenInfo {
        gen_time: tst.gen_time,
        policy: tst.policy.to_vec(),
        serial: super::x509::hex_plain(tst.serial),
        tsa,
    })
}

fn signer_subject(token: &[u8]) -> Option<String> {
    let p7 = openssl::pkcs7::Pkcs7::from_der(token).ok()?;
    let certs = p7.signed()?.certificates()?;
    let c = certs.iter().next()?;
    Some(super::x509::name_to_string(c.subject_name()))
}

/// Dotted form of a DER OID content (for messages).
pub fn oid_to_dotted(o: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut v: u64 = 0;
    for (i, b) in o.iter().enumerate() {
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() && i < 8 {
                let first = (v / 40).min(2);
                arcs.push(first);
                arcs.push(v - first * 40);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_der_openssl_reads() {
        let h = [7u8; 32];
        let req = request(
            &h,
            Some(&oid_from_dotted("1.3.6.1.4.1.99999.1").unwrap()),
            &[0x80, 1],
        );
        let (t, c, rest) = tlv(&req).unwrap();
        assert_eq!((t, rest.len()), (0x30, 0));
        let f = items(c).unwrap();
        assert_eq!(f.len(), 5);
        assert_eq!(f[3], (0x02, &[0x00, 0x80, 0x01][..]), "nonce kept positive");
        assert_eq!(f[4], (0x01, &[0xFF][..]));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.tsq");
        std::fs::write(&p, &req).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["ts", "-query", "-in"])
            .arg(&p)
            .arg("-text")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1.3.6.1.4.1.99999.1"), "{text}");
        assert!(text.contains("Certificate required: yes"), "{text}");
    }

    fn sh(dir: &std::path::Path, args: &[&str]) {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A reply from `openssl ts -reply` to our own request, and the TSA's CA.
    fn openssl_reply(hash: &[u8; 32], nonce: &[u8]) -> (Vec<u8>, X509, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sh(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=t",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
            ],
        );
        sh(
            d,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr",
                "-subj", "/CN=tsa",
            ],
        );
        std::fs::write(d.join("ext"), "extendedKeyUsage=critical,timeStamping\n").unwrap();
        sh(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "tsa.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "tsa.pem",
                "-days",
                "2",
                "-extfile",
                "ext",
            ],
        );
        std::fs::write(d.join("serial"), "01\n").unwrap();
        std::fs::write(
            d.join("ts.cnf"),
            "[tsa]\ndefault_tsa = t\n[t]\nserial = serial\nsigner_cert = tsa.pem\n\
             signer_key = tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4\n\
             digests = sha256\ness_cert_id_alg = sha256\n",
        )
        .unwrap();
        std::fs::write(d.join("q.tsq"), request(hash, None, nonce)).unwrap();
        sh(
            d,
            &[
                "ts",
                "-reply",
                "-config",
                "ts.cnf",
                "-queryfile",
                "q.tsq",
                "-out",
                "r.tsr",
            ],
        );
        let ca = X509::from_pem(&std::fs::read(d.join("ca.pem")).unwrap()).unwrap();
        (std::fs::read(d.join("r.tsr")).unwrap(), ca, dir)
    }

    #[test]
    fn a_real_reply_verifies_and_every_wrong_expectation_is_refused() {
        let hash = openssl::sha::sha256(b"seal");
        let nonce = [0x9a, 1, 2, 3, 4, 5, 6, 7];
        let (reply, ca, _dir) = openssl_reply(&hash, &nonce);
        let token = token_of_response(&reply).unwrap();
        let policy = oid_from_dotted("1.2.3.4").unwrap();
        let info = verify_token(
            &token,
            std::slice::from_ref(&ca),
            &hash,
            Some(&nonce),
            Some(&policy),
        )
        .unwrap();
        assert_eq!(oid_to_dotted(&info.policy), "1.2.3.4");
        assert!(info.tsa.contains("tsa"), "{}", info.tsa);
        let now = crate::pec::clock::since_epoch().as_secs() as i64;
        assert!((info.gen_time - now).abs() < 300, "{}", info.gen_time);
        let roots = std::slice::from_ref(&ca);
        let other = openssl::sha::sha256(b"another seal");
        assert!(matches!(
            verify_token(&token, roots, &other, None, None),
            Err(TsaError::OtherData)
        ));
        assert!(verify_token(&token, roots, &other, None, None)
            .unwrap_err()
            .to_string()
            .contains("imprint"));
        assert!(matches!(
            verify_token(&token, roots, &hash, Some(&[1]), None),
            Err(TsaError::NoNonce)
        ));
        let p2 = oid_from_dotted("1.2.3.5").unwrap();
        assert!(matches!(
            verify_token(&token, roots, &hash, None, Some(&p2)),
            Err(TsaError::OtherPolicy)
        ));
        let stranger = crate::certs::generate_ca("not the TSA's CA").unwrap();
        let stranger = X509::from_pem(&stranger.cert_pem()).unwrap();
        assert!(matches!(
            verify_token(&token, &[stranger], &hash, None, None),
            Err(TsaError::BadSignature(_))
        ));
        // Cut or damaged anywhere: an error or a verdict, never a panic,
        // and never a token that passes with a changed signed byte.
        for n in 0..reply.len() {
            let _ = token_of_response(&reply[..n]);
        }
        for i in (0..token.len()).step_by(7) {
            let mut t = token.clone();
            t[i] ^= 0x20;
            let _ = verify_token(&t, roots, &hash, None, None);
        }
    }

    #[test]
    fn oids_round_trip_and_bad_ones_are_refused() {
        for s in [
            "1.3.6.1.4.1.99999.1",
            "2.16.840.1.101.3.4.2.1",
            "0.4.0.2023.1.1",
        ] {
            assert_eq!(oid_to_dotted(&oid_from_dotted(s).unwrap()), s);
        }
        assert_eq!(
            oid_from_dotted("2.16.840.1.101.3.4.2.1").unwrap(),
            OID_SHA256
        );
        for s in ["", "1", "x.y", "3.1", "1.40", "1.2.-3"] {
            assert!(oid_from_dotted(s).is_err(), "{s}");
        }
        assert_eq!(
            oid_from_dotted("3.1").unwrap_err().to_string(),
            "\"3.1\" is not a valid object identifier"
        );
    }

    #[test]
    fn garbage_replies_are_errors_not_panics() {
        for r in [
            &b""[..],
            b"\x30",
            b"\x30\x03\x30\x01",
            b"\x30\x05\x30\x03\x02\x01\x02",
            b"\xff\xff",
        ] {
            assert!(token_of_response(r).is_err());
            assert!(embedded_tst_info(r).is_none());
            assert!(parse_tst_info(r).is_none());
        }
        let refused = b"\x30\x0b\x30\x09\x02\x01\x02\x30\x04\x0c\x02no";
        let e = token_of_response(refused).unwrap_err();
        assert_eq!(e.to_string(), "the TSA refused the request (status 2: no)");
        let e = token_of_response(b"\x30\x05\x30\x03\x02\x01\x00").unwrap_err();
        assert!(matches!(e, TsaError::NoToken), "{e}");
    }
}

//! Peers' certificates: revocation (issue 13 §2), the decisions without I/O.
//!
//! A busta or receipt whose signer certificate was revoked before the
//! signing time is not PEC. Which sources speak for a certificate (its
//! OCSP responders and CRL distribution points), what a CRL or an OCSP
//! response says about it, and what all the answers together mean are
//! decided here, on bytes already in memory. Fetching and caching those
//! bytes is [`crate::trust_fetch`]'s business, behind [`RevocationCheck`].
//!
//! Only the signer certificate is checked, not the CAs above it: AgID's
//! list of providers' CAs is itself the trust decision for those.

use std::fmt;

use openssl::hash::MessageDigest;
use openssl::ocsp::OcspResponseStatus;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspFlag, OcspRequest, OcspResponse};
use openssl::stack::Stack;
use openssl::x509::store::X509Store;
use openssl::x509::{CrlStatus, ReasonCode, X509Crl, X509CrlRef, X509Ref, X509VerifyResult, X509};
use serde::{Deserialize, Serialize};

use super::x509::unix_time;

/// Clock skew tolerated on thisUpdate / nextUpdate.
const SKEW: i64 = 300;
/// How long an OCSP response without nextUpdate is reused.
pub const OCSP_NO_NEXT_UPDATE_TTL: i64 = 300;
/// How long a CRL without nextUpdate is believed after its thisUpdate.
pub const CRL_NO_NEXT_UPDATE_TTL: i64 = 86_400;

/// `[trust] revocation`: which sources are asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum Mode {
    /// No revocation check.
    #[serde(rename = "off")]
    Off,
    /// CRLs only (files, then distribution points).
    #[serde(rename = "crl")]
    Crl,
    /// OCSP only (the certificate's AIA responders).
    #[serde(rename = "ocsp")]
    Ocsp,
    /// OCSP first, CRLs when OCSP gives no answer.
    #[default]
    #[serde(rename = "ocsp+crl")]
    OcspCrl,
}

impl Mode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Crl => "crl",
            Mode::Ocsp => "ocsp",
            Mode::OcspCrl => "ocsp+crl",
        }
    }

    /// Parse the configuration spelling.
    pub fn parse(s: &str) -> Option<Mode> {
        [Mode::Off, Mode::Crl, Mode::Ocsp, Mode::OcspCrl]
            .into_iter()
            .find(|m| m.as_str() == s)
    }

    /// Whether OCSP responders are asked.
    pub fn ocsp(self) -> bool {
        matches!(self, Mode::Ocsp | Mode::OcspCrl)
    }

    /// Whether CRLs are consulted.
    pub fn crl(self) -> bool {
        matches!(self, Mode::Crl | Mode::OcspCrl)
    }
}

/// `[trust] revocation` and `soft_fail` together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Which sources.
    pub mode: Mode,
    /// No answer from any source: accept (`true`) or try again later.
    pub soft_fail: bool,
}

/// Where an answer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// `ocsp` or `crl`.
    pub kind: &'static str,
    /// The responder or distribution point URL, or the CRL file.
    pub location: String,
    /// The location is a file (`[trust] crl`, `--crl`).
    pub file: bool,
    /// Answered from the cache, not asked this time.
    pub cached: bool,
}

impl Source {
    /// An OCSP responder.
    pub fn ocsp(url: &str) -> Source {
        Source {
            kind: "ocsp",
            location: url.into(),
            file: false,
            cached: false,
        }
    }

    /// A CRL distribution point.
    pub fn crl_url(url: &str) -> Source {
        Source {
            kind: "crl",
            location: url.into(),
            file: false,
            cached: false,
        }
    }

    /// A CRL file.
    pub fn crl_file(path: &str) -> Source {
        Source {
            kind: "crl",
            location: path.into(),
            file: true,
            cached: false,
        }
    }

    /// The same source, marked as answered from the cache.
    pub fn cached(mut self, cached: bool) -> Source {
        self.cached = cached;
        self
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.kind == "ocsp" { "OCSP" } else { "CRL" };
        let file = if self.file { " file" } else { "" };
        let cached = if self.cached { " (cached)" } else { "" };
        write!(f, "{kind}{file} {}{cached}", self.location)
    }
}

/// What one source says about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Not revoked.
    Good,
    /// Revoked at `at` (Unix seconds), for `reason` when given.
    Revoked {
        /// Revocation time.
        at: i64,
        /// RFC 5280 reason name.
        reason: Option<String>,
    },
    /// The source does not know the certificate (OCSP `unknown`).
    Unknown,
}

/// An answer and the time until which it may be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    /// The answer.
    pub answer: Answer,
    /// Reusable until (Unix seconds).
    pub until: i64,
}

/// The verdict on a signer certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Not checked (`revocation = "off"`, or no source for this certificate).
    NotChecked,
    /// Not revoked.
    Good,
    /// Revoked, but after the signing time: the signature stands.
    RevokedAfterSigning,
    /// Revoked before the signing time: not PEC.
    Revoked,
    /// No source gave an answer.
    Unavailable,
}

impl Status {
    /// The kebab-case name, as in `--json` and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotChecked => "not-checked",
            Status::Good => "good",
            Status::RevokedAfterSigning => "revoked-after-signing",
            Status::Revoked => "revoked",
            Status::Unavailable => "unavailable",
        }
    }
}

/// The revocation check of one signature, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    /// The verdict.
    pub status: Status,
    /// The source that gave it (for `good` and the `revoked` ones).
    pub source: Option<Source>,
    /// Revocation time, Unix seconds.
    pub revoked_at: Option<i64>,
    /// Revocation reason (RFC 5280 name).
    pub reason: Option<String>,
    /// The time the certificate had to be unrevoked at (the signing time).
    pub checked_at: i64,
    /// What was tried, for `unavailable` and `not-checked`.
    pub detail: Option<String>,
}

impl Revocation {
    /// Not checked, because of `why`.
    pub fn not_checked(why: &str, at: i64) -> Revocation {
        Revocation {
            status: Status::NotChecked,
            source: None,
            revoked_at: None,
            reason: None,
            checked_at: at,
            detail: Some(why.into()),
        }
    }
}

/// Unix seconds as `YYYY-MM-DDThh:mm:ssZ`.
pub fn utc(t: i64) -> String {
    let (y, m, d) = super::clock::civil_from_days(t.div_euclid(86400));
    let s = t.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

impl fmt::Display for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let src = self
            .source
            .as_ref()
            .map(|s| format!(", per {s}"))
            .unwrap_or_default();
        let revoked = || {
            let reason = self
                .reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!("revoked at {}{reason}", utc(self.revoked_at.unwrap_or(0)))
        };
        match self.status {
            Status::NotChecked => write!(
                f,
                "not checked: {}",
                self.detail.as_deref().unwrap_or_default()
            ),
            Status::Good => write!(f, "not revoked{src}"),
            Status::RevokedAfterSigning => write!(
                f,
                "{}, after the signing time {}: valid when it signed{src}",
                revoked(),
                utc(self.checked_at)
            ),
            Status::Revoked => write!(
                f,
                "{}, before the signing time {}{src}",
                revoked(),
                utc(self.checked_at)
            ),
            Status::Unavailable => write!(
                f,
                "unknown: no source answered ({})",
                self.detail.as_deref().unwrap_or_default()
            ),
        }
    }
}

/// What a revocation checker is asked about one signature.
pub struct StatusRequest<'a> {
    /// The signer certificate (its chain verified).
    pub signer: &'a X509Ref,
    /// SHA-1 of its DER (the cache key).
    pub sha1: &'a [u8; 20],
    /// The certificates embedded in the signature (where its issuer usually is).
    pub embedded: &'a [X509],
    /// The trusted roots (`[trust] ca`): the issuer when not embedded, and
    /// what an OCSP responder's certificate must chain to.
    pub roots: &'a X509Store,
    /// The signing time the chain was verified at.
    pub at: i64,
    /// Now, Unix seconds.
    pub now: i64,
}

/// Why one source (an OCSP responder, a CRL) said nothing about a
/// certificate. Each becomes a line of [`Revocation::detail`].
#[derive(Debug, Clone)]
pub enum SourceError {
    /// Fetching it failed (transport, status, size): the fetcher's words.
    Fetch(String),
    /// OpenSSL failed building the request or the checks.
    Openssl(openssl::error::ErrorStack),
    /// Not a DER OCSP response.
    NotOcsp(openssl::error::ErrorStack),
    /// The responder's status is not `successful`: the raw status.
    OcspStatus(i32),
    /// A successful response without a basic response.
    NoBasicResponse(openssl::error::ErrorStack),
    /// The response's signature does not verify (or its signer may not
    /// speak for the issuer).
    BadOcspSignature(openssl::error::ErrorStack),
    /// The response does not name the certificate.
    NotNamed,
    /// A time in it does not read: which one (`thisUpdate`, …).
    UnreadableTime(&'static str),
    /// Revoked, at a time that does not read.
    RevokedAtUnreadableTime,
    /// Its thisUpdate is after now: `response` or `CRL`, and the time.
    FromTheFuture {
        /// `response` (OCSP) or `CRL`.
        what: &'static str,
        /// thisUpdate, Unix seconds.
        this_update: i64,
    },
    /// An OCSP response past its nextUpdate (Unix seconds).
    Stale(i64),
    /// A CRL past its nextUpdate (Unix seconds), not listing the certificate.
    CrlOutOfDate(i64),
    /// Not a CRL in PEM or DER.
    NotACrl(openssl::error::ErrorStack),
    /// The CRL is not signed by the certificate's issuer.
    CrlNotFromIssuer,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Fetch(e) => f.write_str(e),
            SourceError::Openssl(e) => write!(f, "{e}"),
            SourceError::NotOcsp(e) => write!(f, "not an OCSP response: {e}"),
            SourceError::OcspStatus(s) => {
                write!(f, "responder answered status {s} (not successful)")
            }
            SourceError::NoBasicResponse(e) => write!(f, "no basic response: {e}"),
            SourceError::BadOcspSignature(e) => {
                write!(f, "response signature does not verify: {e}")
            }
            SourceError::NotNamed => f.write_str("the response does not name the certificate"),
            SourceError::UnreadableTime(what) => write!(f, "unreadable {what}"),
            SourceError::RevokedAtUnreadableTime => f.write_str("revoked, at an unreadable time"),
            SourceError::FromTheFuture { what, this_update } => {
                write!(
                    f,
                    "{what} from the future (thisUpdate {})",
                    utc(*this_update)
                )
            }
            SourceError::Stale(t) => write!(f, "stale response (nextUpdate {})", utc(*t)),
            SourceError::CrlOutOfDate(t) => write!(f, "CRL out of date (nextUpdate {})", utc(*t)),
            SourceError::NotACrl(e) => write!(f, "not a CRL (PEM or DER): {e}"),
            SourceError::CrlNotFromIssuer => {
                f.write_str("the CRL is not signed by the certificate's issuer")
            }
        }
    }
}

impl std::error::Error for SourceError {}

impl From<openssl::error::ErrorStack> for SourceError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        SourceError::Openssl(e)
    }
}

/// Answers revocation questions (fetching and caching as it sees fit).
pub trait RevocationCheck: Send + Sync {
    /// The policy in force.
    fn policy(&self) -> Policy;
    /// The verdict on `req.signer` at `req.at`.
    fn check(&self, req: &StatusRequest<'_>) -> Revocation;
}

/// The `http://` URLs of the certificate's CRL distribution points (LDAP
/// and HTTPS ones are skipped: an HTTPS fetch of a CRL would need the
/// revocation status of the server's own certificate).
pub fn crl_urls(cert: &X509Ref) -> Vec<String> {
    let mut out = Vec::new();
    for dp in cert.crl_distribution_points().iter().flatten() {
        let Some(names) = dp.distpoint().and_then(|n| n.fullname()) else {
            continue;
        };
        for n in names {
            if let Some(u) = n.uri().filter(|u| is_http(u)) {
                out.push(u.to_string());
            }
        }
    }
    out
}

/// The `http://` OCSP responders of the certificate's AIA.
pub fn ocsp_urls(cert: &X509Ref) -> Vec<String> {
    cert.ocsp_responders()
        .map(|s| {
            s.iter()
                .map(|u| u.to_string())
                .filter(|u| is_http(u))
                .collect()
        })
        .unwrap_or_default()
}

fn is_http(u: &str) -> bool {
    u.len() > 7 && u[..7].eq_ignore_ascii_case("http://")
}

/// The certificate among `candidates` that issued `cert` (name, key
/// identifiers and signature all match).
pub fn find_issuer<'a>(
    cert: &X509Ref,
    candidates: impl IntoIterator<Item = &'a X509Ref>,
) -> Option<X509> {
    candidates.into_iter().find_map(|c| {
        let ok = c.issued(cert) == X509VerifyResult::OK
            && c.public_key()
                .is_ok_and(|k| cert.verify(&k).unwrap_or(false));
        ok.then(|| c.to_owned())
    })
}

/// The DER of an OCSP request for `cert` (SHA-1 CertID, as every responder
/// understands; no nonce, so that the response may be cached).
pub fn ocsp_request(cert: &X509Ref, issuer: &X509Ref) -> Result<Vec<u8>, SourceError> {
    let id = OcspCertId::from_cert(MessageDigest::sha1(), cert, issuer)?;
    let mut req = OcspRequest::new()?;
    req.add_id(id)?;
    Ok(req.to_der()?)
}

/// What the OCSP response `der` says about `cert`: the response must be
/// successful, signed by the issuer or by a responder it delegated to
/// (chaining to `roots`), name `cert`, and be current at `now`.
pub fn ocsp_answer(
    der: &[u8],
    cert: &X509Ref,
    issuer: &X509Ref,
    embedded: &[X509],
    roots: &X509Store,
    now: i64,
) -> Result<Fresh, SourceError> {
    let resp = OcspResponse::from_der(der).map_err(SourceError::NotOcsp)?;
    if resp.status() != OcspResponseStatus::SUCCESSFUL {
        return Err(SourceError::OcspStatus(resp.status().as_raw()));
    }
    let basic = resp.basic().map_err(SourceError::NoBasicResponse)?;
    let mut certs = Stack::new()?;
    certs.push(issuer.to_owned())?;
    for c in embedded {
        certs.push(c.clone())?;
    }
    basic
        .verify(&certs, roots, OcspFlag::empty())
        .map_err(SourceError::BadOcspSignature)?;
    let id = OcspCertId::from_cert(MessageDigest::sha1(), cert, issuer)?;
    let st = basic.find_status(&id).ok_or(SourceError::NotNamed)?;
    let this_update = generalized_time(&st.this_update.to_string())
        .ok_or(SourceError::UnreadableTime("thisUpdate"))?;
    let next_update = match st.next_update() {
        Some(t) => Some(
            generalized_time(&t.to_string()).ok_or(SourceError::UnreadableTime("nextUpdate"))?,
        ),
        None => None,
    };
    if this_update > now + SKEW {
        return Err(SourceError::FromTheFuture {
            what: "response",
            this_update,
        });
    }
    if let Some(n) = next_update.filter(|n| n + SKEW < now) {
        return Err(SourceError::Stale(n));
    }
    let until = next_update.unwrap_or(now + OCSP_NO_NEXT_UPDATE_TTL);
    let answer = if st.status == OcspCertStatus::GOOD {
        Answer::Good
    } else if st.status == OcspCertStatus::REVOKED {
        let at = st
            .revocation_time
            .and_then(|t| generalized_time(&t.to_string()))
            .ok_or(SourceError::RevokedAtUnreadableTime)?;
        Answer::Revoked {
            at,
            reason: reason_name(i64::from(st.reason.as_raw())),
        }
    } else {
        Answer::Unknown
    };
    Ok(Fresh { answer, until })
}

/// A CRL in PEM or DER.
pub fn parse_crl(bytes: &[u8]) -> Result<X509Crl, SourceError> {
    X509Crl::from_der(bytes)
        .or_else(|_| X509Crl::from_pem(bytes))
        .map_err(SourceError::NotACrl)
}

/// Whether `crl` is `issuer`'s: its issuer name matches and its signature
/// verifies with `issuer`'s key.
pub fn crl_is_from(crl: &X509CrlRef, issuer: &X509Ref) -> bool {
    crl.issuer_name()
        .try_cmp(issuer.subject_name())
        .is_ok_and(|o| o.is_eq())
        && issuer
            .public_key()
            .is_ok_and(|k| crl.verify(&k).unwrap_or(false))
}

/// The end of `crl`'s validity (nextUpdate, or a day after thisUpdate).
pub fn crl_until(crl: &X509CrlRef) -> i64 {
    match crl.next_update().and_then(unix_time) {
        Some(t) => t,
        None => unix_time(crl.last_update()).unwrap_or(0) + CRL_NO_NEXT_UPDATE_TTL,
    }
}

/// What `issuer`'s CRL says about `cert` at `now`. A revocation it lists
/// holds even when the CRL is out of date (revocations are not undone); a
/// certificate it does not list is good only while it is current.
pub fn crl_answer(
    crl: &X509CrlRef,
    cert: &X509Ref,
    issuer: &X509Ref,
    now: i64,
) -> Result<Fresh, SourceError> {
    if !crl_is_from(crl, issuer) {
        return Err(SourceError::CrlNotFromIssuer);
    }
    let this_update =
        unix_time(crl.last_update()).ok_or(SourceError::UnreadableTime("thisUpdate"))?;
    if this_update > now + SKEW {
        return Err(SourceError::FromTheFuture {
            what: "CRL",
            this_update,
        });
    }
    let until = crl_until(crl);
    let cert = cert.to_owned();
    match crl.get_by_cert(&cert) {
        CrlStatus::Revoked(entry) => {
            let at = unix_time(entry.revocation_date())
                .ok_or(SourceError::UnreadableTime("revocation date"))?;
            let reason = entry
                .extension::<ReasonCode>()
                .ok()
                .flatten()
                .and_then(|(_, r)| r.get_i64().ok())
                .and_then(reason_name);
            Ok(Fresh {
                answer: Answer::Revoked { at, reason },
                until: until.max(now),
            })
        }
        // A certificate on hold and then released (removeFromCRL, delta
        // CRLs) counts as good.
        CrlStatus::NotRevoked | CrlStatus::RemoveFromCrl(_) => {
            if until + SKEW < now {
                Err(SourceError::CrlOutOfDate(until))
            } else {
                Ok(Fresh {
                    answer: Answer::Good,
                    until,
                })
            }
        }
    }
}

/// RFC 5280 §5.3.1 reason names.
fn reason_name(code: i64) -> Option<String> {
    let name = match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        _ => return None,
    };
    Some(name.into())
}

/// OpenSSL's printed GeneralizedTime (`Dec  1 17:03:59 2026 GMT`) as Unix seconds.
fn generalized_time(s: &str) -> Option<i64> {
    let mut it = s.split_whitespace();
    let mon = it.next()?;
    let day: i64 = it.next()?.parse().ok()?;
    let hms = it.next()?;
    let year: i64 = it.next()?.parse().ok()?;
    if it.next() != Some("GMT") {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| *x == mon)? as i64 + 1;
    let mut p = hms.split(':');
    let h: i64 = p.next()?.parse().ok()?;
    let mi: i64 = p.next()?.parse().ok()?;
    // Fractional seconds may follow.
    let sec: i64 = p.next()?.split('.').next()?.parse().ok()?;
    let days = super::x509::der::days_from_civil(year, m, day);
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

/// The verdict from the answers of the sources tried, in the order asked:
/// the first that says good or revoked decides; `at` is the signing time.
/// `tried` empty means the certificate offers no source at all.
pub fn decide(mode: Mode, at: i64, tried: Vec<(Source, Result<Fresh, SourceError>)>) -> Revocation {
    if mode == Mode::Off {
        return Revocation::not_checked("[trust] revocation = \"off\"", at);
    }
    if tried.is_empty() {
        let what = match mode {
            Mode::Ocsp => "OCSP responder",
            Mode::Crl => "CRL distribution point (and no [trust] crl file is from its issuer)",
            _ => "OCSP responder or CRL distribution point (and no [trust] crl file is from its issuer)",
        };
        return Revocation::not_checked(&format!("the certificate names no HTTP {what}"), at);
    }
    let mut failures = Vec::new();
    for (source, r) in tried {
        match r {
            Ok(Fresh {
                answer: Answer::Good,
                ..
            }) => {
                return Revocation {
                    status: Status::Good,
                    source: Some(source),
                    revoked_at: None,
                    reason: None,
                    checked_at: at,
                    detail: None,
                }
            }
            Ok(Fresh {
                answer: Answer::Revoked { at: when, reason },
                ..
            }) => {
                let status = if when <= at {
                    Status::Revoked
                } else {
                    Status::RevokedAfterSigning
                };
                return Revocation {
                    status,
                    source: Some(source),
                    revoked_at: Some(when),
                    reason,
                    checked_at: at,
                    detail: None,
                };
            }
            Ok(Fresh {
                answer: Answer::Unknown,
                ..
            }) => failures.push(format!("{source}: certificate unknown to the responder")),
            Err(e) => failures.push(format!("{source}: {e}")),
        }
    }
    Revocation {
        status: Status::Unavailable,
        source: None,
        revoked_at: None,
        reason: None,
        checked_at: at,
        detail: Some(failures.join("; ")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::certs::{generate_ca, generate_signing, CertKey};
    use openssl::asn1::{Asn1Integer, Asn1Time};
    use openssl::x509::{X509CrlBuilder, X509RevokedBuilder};

    const AT: i64 = 1_800_000_000;

    fn fresh(answer: Answer) -> Result<Fresh, SourceError> {
        Ok(Fresh {
            answer,
            until: AT + 60,
        })
    }

    #[test]
    fn mode_spellings() {
        for m in [Mode::Off, Mode::Crl, Mode::Ocsp, Mode::OcspCrl] {
            assert_eq!(Mode::parse(m.as_str()), Some(m));
        }
        assert_eq!(Mode::parse("crl+ocsp"), None);
        assert!(Mode::OcspCrl.ocsp() && Mode::OcspCrl.crl());
        assert!(!Mode::Off.ocsp() && !Mode::Off.crl());
        assert!(!Mode::Crl.ocsp() && !Mode::Ocsp.crl());
    }

    #[test]
    fn the_first_definite_answer_decides() {
        let o = Source::ocsp("http://ocsp.test/");
        let c = Source::crl_url("http://crl.test/ca.crl");
        let r = decide(
            Mode::OcspCrl,
            AT,
            vec![
                (
                    o.clone(),
                    Err(SourceError::Fetch("connection refused".into())),
                ),
                (c.clone(), fresh(Answer::Good)),
            ],
        );
        assert_eq!(r.status, Status::Good);
        assert_eq!(r.source, Some(c.clone()));
        assert_eq!(r.to_string(), "not revoked, per CRL http://crl.test/ca.crl");

        let revoked = Answer::Revoked {
            at: AT - 10,
            reason: Some("keyCompromise".into()),
        };
        let r = decide(
            Mode::OcspCrl,
            AT,
            vec![
                (o.clone(), fresh(revoked)),
                (c.clone(), fresh(Answer::Good)),
            ],
        );
        assert_eq!(r.status, Status::Revoked);
        assert_eq!(r.revoked_at, Some(AT - 10));
        let text = r.to_string();
        assert!(text.contains("keyCompromise") && text.contains("before the signing time"));
        assert!(text.ends_with("per OCSP http://ocsp.test/"), "{text}");
    }

    #[test]
    fn revoked_after_signing_is_not_revoked_before() {
        let later = Answer::Revoked {
            at: AT + 1,
            reason: None,
        };
        let r = decide(
            Mode::Ocsp,
            AT,
            vec![(Source::ocsp("http://o/").cached(true), fresh(later))],
        );
        assert_eq!(r.status, Status::RevokedAfterSigning);
        assert!(r.to_string().ends_with("(cached)"));
        let same = Answer::Revoked {
            at: AT,
            reason: None,
        };
        let r = decide(
            Mode::Ocsp,
            AT,
            vec![(Source::ocsp("http://o/"), fresh(same))],
        );
        assert_eq!(r.status, Status::Revoked, "revoked at the signing second");
    }

    #[test]
    fn no_answer_is_unavailable_and_no_source_is_not_checked() {
        let r = decide(
            Mode::OcspCrl,
            AT,
            vec![
                (Source::ocsp("http://o/"), fresh(Answer::Unknown)),
                (
                    Source::crl_file("/x.crl"),
                    Err(SourceError::CrlOutOfDate(AT - 60)),
                ),
            ],
        );
        assert_eq!(r.status, Status::Unavailable);
        let d = r.detail.unwrap();
        assert!(
            d.contains("unknown to the responder")
                && d.contains("CRL file /x.crl: CRL out of date (nextUpdate ")
        );
        assert_eq!(decide(Mode::Crl, AT, vec![]).status, Status::NotChecked);
        let off = decide(
            Mode::Off,
            AT,
            vec![(Source::ocsp("http://o/"), fresh(Answer::Good))],
        );
        assert_eq!(off.status, Status::NotChecked);
    }

    #[test]
    fn generalized_times_as_openssl_prints_them() {
        assert_eq!(generalized_time("Jan  1 00:00:00 1970 GMT"), Some(0));
        assert_eq!(
            generalized_time("Nov 13 15:39:27 2018 GMT"),
            Some(1_542_123_567)
        );
        assert_eq!(
            generalized_time("Nov 13 15:39:27.5 2018 GMT"),
            Some(1_542_123_567)
        );
        assert_eq!(generalized_time("garbage"), None);
        let t = openssl::asn1::Asn1GeneralizedTime::from_str("20181113153927Z").unwrap();
        assert_eq!(generalized_time(&t.to_string()), Some(1_542_123_567));
    }

    /// A CRL of `ca` listing `revoked` (certificate, revocation time).
    pub(crate) fn crl_of(ca: &CertKey, revoked: &[(&X509, i64)], last: i64, next: i64) -> X509Crl {
        let mut b = X509CrlBuilder::new().unwrap();
        b.set_issuer_name(ca.cert.subject_name()).unwrap();
        let aki = {
            let cb = openssl::x509::X509Builder::new().unwrap();
            openssl::x509::extension::AuthorityKeyIdentifier::new()
                .keyid(true)
                .build(&cb.x509v3_context(Some(&ca.cert), None))
                .unwrap()
        };
        b.append_extension(aki).unwrap();
        let n = openssl::x509::CrlNumber::new(openssl::bn::BigNum::from_u32(1).unwrap()).unwrap();
        b.append_extension(n.build().unwrap()).unwrap();
        b.set_last_update(&Asn1Time::from_unix(last as libc::time_t).unwrap())
            .unwrap();
        b.set_next_update(&Asn1Time::from_unix(next as libc::time_t).unwrap())
            .unwrap();
        for (c, at) in revoked {
            let mut r = X509RevokedBuilder::new().unwrap();
            let serial: Asn1Integer = c
                .serial_number()
                .to_bn()
                .unwrap()
                .to_asn1_integer()
                .unwrap();
            r.set_serial_number(&serial).unwrap();
            r.set_revocation_date(&Asn1Time::from_unix(*at as libc::time_t).unwrap())
                .unwrap();
            b.add_revoked(r.build()).unwrap();
        }
        b.sign(&ca.key, MessageDigest::sha256()).unwrap();
        b.build().unwrap()
    }

    #[test]
    fn crl_answers() {
        let ca = generate_ca("Test CA").unwrap();
        let good = generate_signing(&ca, "Alpha PEC", "pec.alpha.test").unwrap();
        let bad = generate_signing(&ca, "Beta PEC", "pec.beta.test").unwrap();
        let now = crate::pec::smime::tests::tests_now();
        let crl = crl_of(&ca, &[(&bad.cert, now - 100)], now - 200, now + 3600);
        let pem = crl.to_pem().unwrap();
        let crl = parse_crl(&pem).unwrap();
        assert!(parse_crl(&crl.to_der().unwrap()).is_ok());
        assert!(parse_crl(b"nonsense").is_err());

        let a = crl_answer(&crl, &good.cert, &ca.cert, now).unwrap();
        assert_eq!(a.answer, Answer::Good);
        assert_eq!(a.until, now + 3600);
        let a = crl_answer(&crl, &bad.cert, &ca.cert, now).unwrap();
        assert_eq!(
            a.answer,
            Answer::Revoked {
                at: now - 100,
                reason: None
            }
        );
        // Past nextUpdate: the revocation still holds, the good no longer.
        let later = now + 7200;
        assert!(crl_answer(&crl, &good.cert, &ca.cert, later)
            .unwrap_err()
            .to_string()
            .contains("out of date"));
        assert!(matches!(
            crl_answer(&crl, &bad.cert, &ca.cert, later).unwrap().answer,
            Answer::Revoked { .. }
        ));
        // Another CA's CRL, or one signed by the wrong key, says nothing.
        let other = generate_ca("Test CA").unwrap();
        let forged = crl_of(&other, &[], now - 200, now + 3600);
        assert!(!crl_is_from(&forged, &ca.cert), "same name, other key");
        assert!(matches!(
            crl_answer(&forged, &good.cert, &ca.cert, now),
            Err(SourceError::CrlNotFromIssuer)
        ));
    }

    /// The response `openssl ocsp -index` gives to our request for `cert`,
    /// signed by `responder` (a CA answering for itself, or not).
    fn openssl_ocsp(
        ca: &CertKey,
        cert: &X509,
        revoked: Option<&str>,
        responder: &CertKey,
    ) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let serial = cert.serial_number().to_bn().unwrap().to_hex_str().unwrap();
        let subject = cert
            .subject_name()
            .entries()
            .map(|e| {
                let k = e.object().nid().short_name().unwrap();
                format!("/{k}={}", e.data().to_string().unwrap())
            })
            .collect::<String>();
        let status = match revoked {
            Some(when) => format!("R\t391231235959Z\t{when},keyCompromise"),
            None => "V\t391231235959Z\t".to_string(),
        };
        std::fs::write(
            d.join("index.txt"),
            format!("{status}\t{serial}\tunknown\t{subject}\n"),
        )
        .unwrap();
        std::fs::write(d.join("ca.pem"), ca.cert_pem()).unwrap();
        std::fs::write(d.join("r.pem"), responder.cert_pem()).unwrap();
        std::fs::write(d.join("r.key"), responder.key_pem()).unwrap();
        std::fs::write(d.join("req.der"), ocsp_request(cert, &ca.cert).unwrap()).unwrap();
        let out = std::process::Command::new("openssl")
            .args([
                "ocsp",
                "-index",
                "index.txt",
                "-CA",
                "ca.pem",
                "-rsigner",
                "r.pem",
            ])
            .args(["-rkey", "r.key", "-ndays", "1", "-reqin", "req.der"])
            .args(["-respout", "resp.der"])
            .current_dir(d)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(d.join("resp.der")).unwrap()
    }

    #[test]
    fn ocsp_answers_from_the_openssl_responder() {
        let ca = generate_ca("Test CA").unwrap();
        let sc = generate_signing(&ca, "Alpha PEC", "pec.alpha.test").unwrap();
        let roots = {
            let mut b = openssl::x509::store::X509StoreBuilder::new().unwrap();
            b.add_cert(ca.cert.clone()).unwrap();
            b.build()
        };
        let now = crate::pec::smime::tests::tests_now();
        let good = openssl_ocsp(&ca, &sc.cert, None, &ca);
        let a = ocsp_answer(&good, &sc.cert, &ca.cert, &[], &roots, now).unwrap();
        assert_eq!(a.answer, Answer::Good);
        assert!(a.until > now + 3600, "nextUpdate a day away (-ndays 1)");

        let revoked = openssl_ocsp(&ca, &sc.cert, Some("250101000000Z"), &ca);
        let a = ocsp_answer(&revoked, &sc.cert, &ca.cert, &[], &roots, now).unwrap();
        assert_eq!(
            a.answer,
            Answer::Revoked {
                at: 1_735_689_600,
                reason: Some("keyCompromise".into())
            }
        );
        // A day later than its nextUpdate, the response is stale.
        let e = ocsp_answer(&good, &sc.cert, &ca.cert, &[], &roots, now + 3 * 86_400);
        assert!(matches!(e, Err(SourceError::Stale(_))), "{e:?}");
        assert!(e.unwrap_err().to_string().contains("stale"));
        // About another certificate: it does not name ours.
        let other = generate_signing(&ca, "Beta PEC", "pec.beta.test").unwrap();
        let e = ocsp_answer(&good, &other.cert, &ca.cert, &[], &roots, now).unwrap_err();
        assert!(matches!(e, SourceError::NotNamed), "{e}");
        assert!(e.to_string().contains("does not name"), "{e}");
        // Signed by a responder the issuer never authorised.
        let rogue = generate_ca("Rogue CA").unwrap();
        let forged = openssl_ocsp(&ca, &sc.cert, None, &rogue);
        let e = ocsp_answer(&forged, &sc.cert, &ca.cert, &[], &roots, now).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
        // Even one that is itself a trusted root (another provider's CA):
        // only the issuer, or a responder it delegated to, speaks for it.
        let both = {
            let mut b = openssl::x509::store::X509StoreBuilder::new().unwrap();
            b.add_cert(ca.cert.clone()).unwrap();
            b.add_cert(rogue.cert.clone()).unwrap();
            b.build()
        };
        let e = ocsp_answer(&forged, &sc.cert, &ca.cert, &[], &both, now).unwrap_err();
        assert!(matches!(e, SourceError::BadOcspSignature(_)), "{e}");
        assert!(matches!(
            ocsp_answer(b"junk", &sc.cert, &ca.cert, &[], &roots, now),
            Err(SourceError::NotOcsp(_))
        ));
    }

    #[test]
    fn issuer_and_sources_of_a_certificate() {
        let ca = generate_ca("Test CA").unwrap();
        let other = generate_ca("Other CA").unwrap();
        let sc = generate_signing(&ca, "Alpha PEC", "pec.alpha.test").unwrap();
        let found = find_issuer(&sc.cert, [other.cert.as_ref(), ca.cert.as_ref()]).unwrap();
        assert_eq!(found.to_der().unwrap(), ca.cert.to_der().unwrap());
        assert!(find_issuer(&sc.cert, [other.cert.as_ref()]).is_none());
        // The development certificates name no source: nothing to ask.
        assert!(crl_urls(&sc.cert).is_empty());
        assert!(ocsp_urls(&sc.cert).is_empty());
        assert!(!ocsp_request(&sc.cert, &ca.cert).unwrap().is_empty());
        assert!(is_http("HTTP://x") && !is_http("https://x") && !is_http("ldap://x"));
    }
}

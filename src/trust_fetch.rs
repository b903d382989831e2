//! Revocation sources fetched and cached (issue 13 §2): the I/O half of
//! [`crate::pec::revocation`].
//!
//! CRLs come from the `[trust] crl` files, then from the certificate's HTTP
//! distribution points; OCSP responses from the certificate's AIA
//! responders (HTTP POST, `application/ocsp-request`). Everything fetched is
//! kept in memory until it expires: a CRL until its nextUpdate, an OCSP
//! response until its nextUpdate (a few minutes when it has none). The
//! caches live as long as the checker: a restart or a reload that rebuilds
//! it asks again. A file CRL past its nextUpdate is read again, so a cron
//! job that replaces it is enough.
//!
//! The calls block (`ureq`): callers are the reception point's judging
//! (already on a blocking thread) and `pecd verify`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::x509::{X509Crl, X509Ref, X509};

use crate::http::HttpError;
use crate::pec::revocation::{
    self, crl_answer, crl_is_from, decide, find_issuer, ocsp_answer, Fresh, Mode, Policy,
    Revocation, RevocationCheck, Source, SourceError, StatusRequest,
};

/// Time allowed for one fetch, connecting included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A CRL larger than this is refused (the largest public CRLs are a few MB).
const MAX_CRL: u64 = 64 << 20;
/// An OCSP response larger than this is refused.
const MAX_OCSP: u64 = 1 << 20;
/// After a fetch fails, its URL is not asked again for this long: during an
/// outage each inbound message would otherwise wait for its own connection
/// attempt or timeout (up to [`FETCH_TIMEOUT`] on a blocking thread), and a
/// burst from one provider would occupy every judging thread.
const FAILURE_PAUSE: i64 = 30;
/// Entries per cache before it starts afresh.
const CACHE_MAX: usize = 4096;

/// A CRL file (`[trust] crl`, `pecd verify --crl`) that does not read or
/// parse.
#[derive(Debug)]
pub struct CrlFileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: CrlFileProblem,
}

/// Why a CRL file is not usable.
#[derive(Debug)]
pub enum CrlFileProblem {
    /// It cannot be read.
    Io(std::io::Error),
    /// It is not a CRL.
    Parse(SourceError),
}

impl std::fmt::Display for CrlFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            CrlFileProblem::Io(e) => write!(f, "{}: {e}", self.path.display()),
            CrlFileProblem::Parse(e) => write!(f, "{}: {e}", self.path.display()),
        }
    }
}

impl std::error::Error for CrlFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            CrlFileProblem::Io(e) => Some(e),
            CrlFileProblem::Parse(e) => Some(e),
        }
    }
}

/// Why `[trust]` makes no checker.
#[derive(Debug)]
pub enum SetupError {
    /// A `trust.crl` file does not read or parse.
    TrustCrl(CrlFileError),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::TrustCrl(e) => write!(f, "trust.crl: {e}"),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::TrustCrl(e) => Some(e),
        }
    }
}

/// Why a source was not fetched.
#[derive(Debug)]
enum FetchError {
    /// The exchange failed now.
    Http(HttpError),
    /// It failed moments ago (the error then) and is not asked again before
    /// `until`.
    Paused { error: String, until: i64 },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Http(e) => write!(f, "{e}"),
            FetchError::Paused { error, until } => write!(
                f,
                "{error} (failed moments ago: not asked again before {})",
                revocation::utc(*until)
            ),
        }
    }
}

impl From<FetchError> for SourceError {
    fn from(e: FetchError) -> SourceError {
        SourceError::Fetch(e.to_string())
    }
}

struct FileCrl {
    path: PathBuf,
    crl: Option<Arc<X509Crl>>,
    until: i64,
}

/// Checks signer certificates against CRLs and OCSP responders, with caches.
pub struct Checker {
    policy: Policy,
    files: Mutex<Vec<FileCrl>>,
    crls: Mutex<HashMap<String, (Arc<X509Crl>, i64)>>,
    ocsp: Mutex<HashMap<([u8; 20], String), Fresh>>,
    issuers: Mutex<HashMap<[u8; 20], X509>>,
    /// URL -> (not asked again before, the error), see [`FAILURE_PAUSE`].
    failed: Mutex<HashMap<String, (i64, String)>>,
    http: crate::http::Client,
}

impl Checker {
    /// A checker for `policy`, with the CRL files `crl_files` (each must read
    /// and parse now; later re-reads that fail keep the copy in hand).
    pub fn new(policy: Policy, crl_files: &[PathBuf]) -> Result<Checker, CrlFileError> {
        let mut files = Vec::new();
        for p in crl_files {
            let crl = read_crl(p)?;
            files.push(FileCrl {
                path: p.clone(),
                until: revocation::crl_until(&crl),
                crl: Some(Arc::new(crl)),
            });
        }
        Ok(Checker {
            policy,
            files: Mutex::new(files),
            crls: Mutex::default(),
            ocsp: Mutex::default(),
            issuers: Mutex::default(),
            failed: Mutex::default(),
            http: crate::http::Client::new(FETCH_TIMEOUT),
        })
    }

    /// The checker `[trust]` of `cfg` describes.
    pub fn for_config(cfg: &crate::config::Config) -> Result<Checker, SetupError> {
        let files: Vec<PathBuf> = cfg.trust.crl.iter().map(|p| cfg.resolve(p)).collect();
        Checker::new(
            Policy {
                mode: cfg.trust.revocation,
                soft_fail: cfg.trust.soft_fail,
            },
            &files,
        )
        .map_err(SetupError::TrustCrl)
    }

    fn post(&self, url: &str, body: &[u8], now: i64) -> Result<Vec<u8>, FetchError> {
        self.unless_failed(url, now, || {
            self.http
                .post(url, "application/ocsp-request", body, MAX_OCSP)
        })
    }

    fn get(&self, url: &str, now: i64) -> Result<Vec<u8>, FetchError> {
        self.unless_failed(url, now, || self.http.get(url, MAX_CRL))
    }

    /// `fetch` from `url`, unless it failed less than [`FAILURE_PAUSE`] ago.
    fn unless_failed(
        &self,
        url: &str,
        now: i64,
        fetch: impl FnOnce() -> Result<Vec<u8>, HttpError>,
    ) -> Result<Vec<u8>, FetchError> {
        if let Some((until, e)) = lock(&self.failed).get(url).filter(|(u, _)| *u > now) {
            return Err(FetchError::Paused {
                error: e.clone(),
                until: *until,
            });
        }
        let r = fetch();
        match &r {
            Ok(_) => {
                lock(&self.failed).remove(url);
            }
            Err(e) => bounded_insert(
                &mut lock(&self.failed),
                url.to_string(),
                (now + FAILURE_PAUSE, e.to_string()),
            ),
        }
        r.map_err(FetchError::Http)
    }

    /// The issuer of `req.signer` among the embedded certificates and the
    /// roots, remembered per signer.
    fn issuer_of(&self, req: &StatusRequest<'_>) -> Option<X509> {
        if let Some(i) = lock(&self.issuers).get(req.sha1) {
            return Some(i.clone());
        }
        let roots = req.roots.all_certificates();
        let candidates = req.embedded.iter().map(|c| c.as_ref()).chain(roots.iter());
        let issuer = find_issuer(req.signer, candidates)?;
        bounded_insert(&mut lock(&self.issuers), *req.sha1, issuer.clone());
        Some(issuer)
    }

    fn ask_ocsp(
        &self,
        url: &str,
        req: &StatusRequest<'_>,
        issuer: &X509Ref,
    ) -> (Source, Result<Fresh, SourceError>) {
        let key = (*req.sha1, url.to_string());
        if let Some(f) = lock(&self.ocsp).get(&key).filter(|f| f.until >= req.now) {
            return (Source::ocsp(url).cached(true), Ok(f.clone()));
        }
        let r = revocation::ocsp_request(req.signer, issuer)
            .and_then(|body| self.post(url, &body, req.now).map_err(SourceError::from))
            .and_then(|der| {
                ocsp_answer(&der, req.signer, issuer, req.embedded, req.roots, req.now)
            });
        if let Ok(f) = &r {
            bounded_insert(&mut lock(&self.ocsp), key, f.clone());
        }
        (Source::ocsp(url), r)
    }

    /// The file CRLs from `issuer`, each re-read once past its nextUpdate.
    fn file_crls(&self, issuer: &X509Ref, now: i64) -> Vec<(String, Arc<X509Crl>)> {
        let mut files = lock(&self.files);
        let mut out = Vec::new();
        for f in files.iter_mut() {
            if f.until < now {
                match read_crl(&f.path) {
                    Ok(crl) => {
                        f.until = revocation::crl_until(&crl);
                        f.crl = Some(Arc::new(crl));
                    }
                    Err(e) => {
                        tracing::warn!(file = %f.path.display(), error = %e, "trust.crl: cannot read again; the copy in hand stays")
                    }
                }
                // Until the file changes, one read a minute at most.
                f.until = f.until.max(now + 60);
            }
            if let Some(crl) = f.crl.as_ref().filter(|c| crl_is_from(c, issuer)) {
                out.push((f.path.display().to_string(), crl.clone()));
            }
        }
        out
    }

    fn ask_crl(
        &self,
        url: &str,
        req: &StatusRequest<'_>,
        issuer: &X509Ref,
    ) -> (Source, Result<Fresh, SourceError>) {
        let cached = {
            let crls = lock(&self.crls);
            crls.get(url)
                .filter(|(_, until)| *until >= req.now)
                .map(|(c, _)| c.clone())
        };
        if let Some(crl) = cached {
            let r = crl_answer(&crl, req.signer, issuer, req.now);
            return (Source::crl_url(url).cached(true), r);
        }
        let r = self
            .get(url, req.now)
            .map_err(SourceError::from)
            .and_then(|b| revocation::parse_crl(&b))
            .and_then(|crl| {
                let r = crl_answer(&crl, req.signer, issuer, req.now);
                if r.is_ok() {
                    let until = revocation::crl_until(&crl);
                    bounded_insert(
                        &mut lock(&self.crls),
                        url.to_string(),
                        (Arc::new(crl), until),
                    );
                }
                r
            });
        (Source::crl_url(url), r)
    }
}

impl RevocationCheck for Checker {
    fn policy(&self) -> Policy {
        self.policy
    }

    fn check(&self, req: &StatusRequest<'_>) -> Revocation {
        let mode = self.policy.mode;
        if mode == Mode::Off {
            return decide(mode, req.at, Vec::new());
        }
        let ocsp_urls = if mode.ocsp() {
            revocation::ocsp_urls(req.signer)
        } else {
            Vec::new()
        };
        let crl_urls = if mode.crl() {
            revocation::crl_urls(req.signer)
        } else {
            Vec::new()
        };
        let no_files = !mode.crl() || lock(&self.files).is_empty();
        // Development certificates name no source: nothing to ask, and no
        // issuer to look for on every message.
        if ocsp_urls.is_empty() && crl_urls.is_empty() && no_files {
            return decide(mode, req.at, Vec::new());
        }
        let Some(issuer) = self.issuer_of(req) else {
            return Revocation::not_checked("the issuer of the certificate is not at hand", req.at);
        };
        let mut tried = Vec::new();
        for url in ocsp_urls {
            let answer = self.ask_ocsp(&url, req, &issuer);
            let decisive = is_decisive(&answer.1);
            tried.push(answer);
            if decisive {
                return decide(mode, req.at, tried);
            }
        }
        if mode.crl() {
            for (path, crl) in self.file_crls(&issuer, req.now) {
                let answer = (
                    Source::crl_file(&path),
                    crl_answer(&crl, req.signer, &issuer, req.now),
                );
                let decisive = is_decisive(&answer.1);
                tried.push(answer);
                if decisive {
                    return decide(mode, req.at, tried);
                }
            }
            for url in crl_urls {
                let answer = self.ask_crl(&url, req, &issuer);
                let decisive = is_decisive(&answer.1);
                tried.push(answer);
                if decisive {
                    return decide(mode, req.at, tried);
                }
            }
        }
        decide(mode, req.at, tried)
    }
}

fn is_decisive(r: &Result<Fresh, SourceError>) -> bool {
    matches!(
        r,
        Ok(Fresh {
            answer: revocation::Answer::Good | revocation::Answer::Revoked { .. },
            ..
        })
    )
}

fn read_crl(p: &Path) -> Result<X509Crl, CrlFileError> {
    let bad = |reason| CrlFileError {
        path: p.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(p).map_err(|e| bad(CrlFileProblem::Io(e)))?;
    revocation::parse_crl(&bytes).map_err(|e| bad(CrlFileProblem::Parse(e)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, k: K, v: V) {
    if map.len() >= CACHE_MAX {
        map.clear();
    }
    map.insert(k, v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{generate_ca, generate_signing};
    use crate::pec::revocation::tests::crl_of;
    use crate::pec::revocation::Status;
    use crate::pec::smime::tests::tests_now;

    #[test]
    fn crl_files_answer_for_their_issuer_only() {
        let ca = generate_ca("Test CA").unwrap();
        let good = generate_signing(&ca, "Alpha PEC", "pec.alpha.test").unwrap();
        let bad = generate_signing(&ca, "Beta PEC", "pec.beta.test").unwrap();
        let other_ca = generate_ca("Other CA").unwrap();
        let stranger = generate_signing(&other_ca, "Gamma PEC", "pec.gamma.test").unwrap();
        let now = tests_now();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.crl");
        let crl = crl_of(&ca, &[(&bad.cert, now - 60)], now - 120, now + 3600);
        std::fs::write(&file, crl.to_der().unwrap()).unwrap();
        let junk = dir.path().join("junk.crl");
        std::fs::write(&junk, b"not a CRL").unwrap();
        let policy = Policy {
            mode: Mode::Crl,
            soft_fail: false,
        };
        let e = Checker::new(policy, &[file.clone(), junk.clone()])
            .err()
            .unwrap();
        assert_eq!(e.path, junk);
        assert!(matches!(e.reason, CrlFileProblem::Parse(_)), "{e}");
        assert!(e
            .to_string()
            .starts_with(&format!("{}: not a CRL", junk.display())));
        let checker = Checker::new(policy, std::slice::from_ref(&file)).unwrap();
        let roots = {
            let mut b = openssl::x509::store::X509StoreBuilder::new().unwrap();
            b.add_cert(ca.cert.clone()).unwrap();
            b.add_cert(other_ca.cert.clone()).unwrap();
            b.build()
        };
        let ask = |c: &crate::certs::CertKey, at: i64| {
            let sha1 = crate::pec::smime::cert_sha1(&c.cert).unwrap();
            checker.check(&StatusRequest {
                signer: &c.cert,
                sha1: &sha1,
                embedded: &[],
                roots: &roots,
                at,
                now,
            })
        };
        let r = ask(&good, now);
        assert_eq!(r.status, Status::Good, "{r}");
        assert_eq!(
            r.source.as_ref().unwrap().location,
            file.display().to_string()
        );
        assert!(r.source.as_ref().unwrap().file);
        assert_eq!(ask(&bad, now).status, Status::Revoked);
        assert_eq!(ask(&bad, now - 3600).status, Status::RevokedAfterSigning);
        // The file is another CA's: nothing speaks for this certificate.
        assert_eq!(ask(&stranger, now).status, Status::NotChecked);
        let off = Checker::new(
            Policy {
                mode: Mode::Off,
                soft_fail: false,
            },
            &[],
        )
        .unwrap();
        let sha1 = crate::pec::smime::cert_sha1(&bad.cert).unwrap();
        let r = off.check(&StatusRequest {
            signer: &bad.cert,
            sha1: &sha1,
            embedded: &[],
            roots: &roots,
            at: now,
            now,
        });
        assert_eq!(r.status, Status::NotChecked);
    }
}

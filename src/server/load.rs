//! Loading the trust material the configuration names: the provider
//! index, the CA roots and the signer (files or a PKCS#11 token).

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::pec::index::ProviderIndex;
use crate::pec::smime::{Signer, Trust};

/// Why the trust or signing material the configuration names does not load.
#[derive(Debug)]
pub enum LoadError {
    /// A file cannot be read: the file and why.
    Read(PathBuf, std::io::Error),
    /// The provider index does not parse: the file and why.
    Index(PathBuf, crate::pec::index::IndexError),
    /// `trust.ca` makes no trust store.
    TrustCa(crate::pec::smime::SmimeError),
    /// A `pkcs11:` key without `signing.pkcs11_module`.
    NoPkcs11Module,
    /// The token's PIN is not at hand.
    Pin(PinError),
    /// The token does not give the key.
    TokenKey(crate::sys::pkcs11::Pkcs11Error),
    /// The signing certificate and chain do not go with the token's key:
    /// the key's URI and why.
    TokenSigner(String, crate::pec::smime::SmimeError),
    /// The signing certificate, key and chain files make no signer.
    Signer(crate::pec::smime::SmimeError),
    /// [`load_signer_keyed`]: an error of the file-based signer, under
    /// `signing.certificate`.
    SigningCertificate(Box<LoadError>),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Read(p, e) => write!(f, "{}: {e}", p.display()),
            LoadError::Index(p, e) => write!(f, "{}: {}", p.display(), e.0),
            LoadError::TrustCa(e) => write!(f, "trust.ca: {e}"),
            LoadError::NoPkcs11Module => {
                f.write_str("signing.pkcs11_module: a pkcs11: key needs the token's module")
            }
            LoadError::Pin(e) => write!(f, "{e}"),
            LoadError::TokenKey(e) => write!(f, "signing.key: {e}"),
            LoadError::TokenSigner(uri, e) => write!(f, "signing: the token's key {uri}: {e}"),
            LoadError::Signer(e) => write!(f, "signing: {e}"),
            LoadError::SigningCertificate(e) => write!(f, "signing.certificate: {e}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Why the PKCS#11 token's PIN is not at hand.
#[derive(Debug)]
pub enum PinError {
    /// Neither `signing.pin_file` nor the environment variable.
    Missing,
    /// `signing.pin_file` cannot be read: the file and why.
    Unreadable(PathBuf, std::io::Error),
    /// `signing.pin_file` is readable by others: the file and its mode.
    Exposed(PathBuf, u32),
    /// `signing.pin_file`'s first line is empty.
    Empty(PathBuf),
}

impl std::fmt::Display for PinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinError::Missing => write!(
                f,
                "signing: the PKCS#11 token needs its PIN: set signing.pin_file or {} in the environment",
                crate::config::PIN_ENV
            ),
            PinError::Unreadable(p, e) => write!(f, "signing.pin_file {}: {e}", p.display()),
            PinError::Exposed(p, mode) => write!(
                f,
                "signing.pin_file {}: readable by others (mode {mode:o}): chmod 600 it",
                p.display()
            ),
            PinError::Empty(p) => write!(f, "signing.pin_file {}: empty", p.display()),
        }
    }
}

impl std::error::Error for PinError {}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| LoadError::Read(path.to_path_buf(), e))
}

/// Load the provider index named by `[trust] index`.
pub fn load_index(path: &Path) -> Result<ProviderIndex, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Read(path.to_path_buf(), e))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let is_ldif = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ldif"));
    let r = if is_ldif {
        ProviderIndex::from_ldif(&text)
    } else {
        ProviderIndex::from_toml(&text, &|rel: &str| read(&base.join(rel)))
    };
    r.map_err(|e| LoadError::Index(path.to_path_buf(), e))
}

/// The `[trust] ca` roots, parsed, and the PEM files they came from.
pub fn load_trust(cfg: &Config) -> Result<(Trust, Vec<Vec<u8>>), LoadError> {
    let mut pems = Vec::new();
    for p in &cfg.trust.ca {
        pems.push(read(&cfg.resolve(p))?);
    }
    let refs: Vec<&[u8]> = pems.iter().map(Vec::as_slice).collect();
    let store = crate::pec::smime::trust_store_from_pem(&refs).map_err(LoadError::TrustCa)?;
    Ok((store, pems))
}

/// The signing key and certificate chain the configuration names.
pub fn load_signer(cfg: &Config) -> Result<Signer, LoadError> {
    let cert = read(&cfg.resolve(&cfg.signing.certificate))?;
    let mut chain = Vec::new();
    for p in &cfg.signing.chain {
        chain.extend(read(&cfg.resolve(p))?);
    }
    if let Some(uri) = cfg.signing.pkcs11_uri() {
        let module = cfg
            .signing
            .pkcs11_module
            .as_ref()
            .map(|m| cfg.resolve(m))
            .ok_or(LoadError::NoPkcs11Module)?;
        let mut pin = pkcs11_pin(cfg).map_err(LoadError::Pin)?;
        let key = crate::sys::pkcs11::load_private_key(&module, uri, &pin);
        wipe(&mut pin);
        let key = key.map_err(LoadError::TokenKey)?;
        return Signer::with_key(&cert, key, &chain)
            .map_err(|e| LoadError::TokenSigner(uri.to_string(), e));
    }
    let key = read(&cfg.resolve(&cfg.signing.key))?;
    Signer::from_pem(&cert, &key, &chain).map_err(LoadError::Signer)
}

/// [`load_signer`], its errors under the config key they concern.
pub fn load_signer_keyed(cfg: &Config) -> Result<Signer, LoadError> {
    load_signer(cfg).map_err(|e| match cfg.signing.pkcs11_uri() {
        // The token's errors name their own key.
        Some(_) => e,
        None => LoadError::SigningCertificate(Box::new(e)),
    })
}

/// The token's PIN: the first line of `[signing] pin_file` (which only
/// pecd's user may read), else `$PECD_PKCS11_PIN`.
fn pkcs11_pin(cfg: &Config) -> Result<String, PinError> {
    use std::os::unix::fs::PermissionsExt;
    let Some(f) = &cfg.signing.pin_file else {
        return std::env::var(crate::config::PIN_ENV).map_err(|_| PinError::Missing);
    };
    let path = cfg.resolve(f);
    let meta = std::fs::metadata(&path).map_err(|e| PinError::Unreadable(path.clone(), e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(PinError::Exposed(path, meta.permissions().mode() & 0o777));
    }
    let mut text =
        std::fs::read_to_string(&path).map_err(|e| PinError::Unreadable(path.clone(), e))?;
    let pin = text.lines().next().unwrap_or("").to_string();
    wipe(&mut text);
    if pin.is_empty() {
        return Err(PinError::Empty(path));
    }
    Ok(pin)
}

/// Overwrite a secret before its memory goes back to the allocator.
fn wipe(s: &mut String) {
    // Zero bytes are valid UTF-8: no unsafe needed to overwrite in place.
    let zeros = "\0".repeat(s.len());
    s.replace_range(.., &zeros);
}

/// Problems with the trust material (certificates that do not load, index
/// errors): the loading `serve` does, without starting anything. A file
/// [`Config::validate`] already reports as missing is not loaded again, so
/// each problem is reported once.
pub fn check_trust(cfg: &Config) -> Vec<String> {
    let mut p = Vec::new();
    let missing = |f: &PathBuf| !cfg.resolve(f).exists();
    let token = cfg.signing.pkcs11_uri().is_some();
    let generate_pending = cfg.signing.generate_if_missing
        && !token
        && [
            &cfg.signing.certificate,
            &cfg.signing.key,
            &cfg.tls.certificate,
            &cfg.tls.key,
        ]
        .into_iter()
        .any(missing);
    if !generate_pending {
        let mut signing_files = vec![&cfg.signing.certificate];
        if !token {
            signing_files.push(&cfg.signing.key);
        }
        signing_files.extend(&cfg.signing.pkcs11_module);
        signing_files.extend(&cfg.signing.pin_file);
        if !signing_files
            .into_iter()
            .chain(&cfg.signing.chain)
            .any(missing)
        {
            if let Err(e) = load_signer_keyed(cfg) {
                p.push(e.to_string());
            }
        }
        if !missing(&cfg.tls.certificate) && !missing(&cfg.tls.key) {
            if let Err(e) = crate::tls::acceptor_for_config(
                &cfg.resolve(&cfg.tls.certificate),
                &cfg.resolve(&cfg.tls.key),
            ) {
                p.push(e.to_string());
            }
        }
        if !cfg.trust.ca.iter().any(missing) {
            if let Err(e) = load_trust(cfg) {
                p.push(e.to_string());
            }
        }
    }
    // CRL files that exist must parse (validate reports the missing ones).
    if !cfg.trust.crl.iter().any(missing) {
        if let Err(e) = crate::trust_fetch::Checker::for_config(cfg) {
            p.push(e.to_string());
        }
    }
    // The index does not depend on the certificates being generated.
    let idx = cfg.resolve(&cfg.trust.index);
    if idx.exists() {
        if let Err(e) = load_index(&idx) {
            p.push(format!("trust.index: {e}"));
        }
    }
    p
}

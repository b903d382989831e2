//! The key that seals second-factor (TOTP) secrets in the database
//! (`[web] totp_key_file`): AES-256-GCM, with the account's address as
//! associated data, so a copy of the database alone logs nobody in, and a
//! sealed secret moved to another account's row does not open.
//!
//! The key is 32 random bytes, hex, in a file of its own outside the
//! database, mode 0600; made on first need if missing (every node of a
//! cluster must be given the same file). Stored secrets read `v1:` and the
//! hex of nonce, ciphertext and tag; a bare hex secret is the form older
//! pecd versions stored, still read, and re-sealed at `serve` start.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};

const PREFIX: &str = "v1:";
const NONCE: usize = 12;
const TAG: usize = 16;

/// Why the key or a sealed secret could not be used.
#[derive(Debug)]
pub enum TotpKeyError {
    /// The key file could not be read or made.
    Io(PathBuf, std::io::Error),
    /// The key file is readable by other users.
    Insecure(PathBuf, u32),
    /// The key file does not hold 64 hex digits.
    Malformed(PathBuf),
    /// A stored secret is neither sealed nor plain hex.
    BadSecret,
    /// A sealed secret does not open with this key for this address.
    WrongKey,
    /// OpenSSL failed.
    Crypto(openssl::error::ErrorStack),
}

impl std::fmt::Display for TotpKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TotpKeyError::Io(p, e) => write!(f, "web.totp_key_file {}: {e}", p.display()),
            TotpKeyError::Insecure(p, mode) => write!(
                f,
                "web.totp_key_file {}: readable by others (mode {mode:o}): chmod 600 it",
                p.display()
            ),
            TotpKeyError::Malformed(p) => write!(
                f,
                "web.totp_key_file {}: not a key (64 hex digits expected)",
                p.display()
            ),
            TotpKeyError::BadSecret => f.write_str("stored second-factor secret is malformed"),
            TotpKeyError::WrongKey => f.write_str(
                "stored second-factor secret does not open with web.totp_key_file (another key?): enable the second factor again",
            ),
            TotpKeyError::Crypto(e) => write!(f, "AES-256-GCM: {e}"),
        }
    }
}

impl std::error::Error for TotpKeyError {}

impl From<openssl::error::ErrorStack> for TotpKeyError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        TotpKeyError::Crypto(e)
    }
}

/// The sealing key.
pub struct TotpKey([u8; 32]);

impl std::fmt::Debug for TotpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpKey(..)")
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl TotpKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(b: [u8; 32]) -> TotpKey {
        TotpKey(b)
    }

    /// Read the key at `path`, making a new one there if there is none.
    pub fn load_or_create(path: &Path) -> Result<TotpKey, TotpKeyError> {
        match Self::load(path) {
            Err(TotpKeyError::Io(_, e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Self::create(path)
            }
            r => r,
        }
    }

    /// Read the key at `path`.
    pub fn load(path: &Path) -> Result<TotpKey, TotpKeyError> {
        let io = |e| TotpKeyError::Io(path.to_path_buf(), e);
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TotpKeyError::Insecure(path.to_path_buf(), mode));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let bytes = hex_decode(text.trim()).ok_or(TotpKeyError::Malformed(path.to_path_buf()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| TotpKeyError::Malformed(path.to_path_buf()))?;
        Ok(TotpKey(key))
    }

    /// Make a new key at `path`: written whole under a temporary name, then
    /// linked into place, so a `serve` and a `user totp enable` racing to
    /// make it end up with the same key (the loser reads the winner's).
    fn create(path: &Path) -> Result<TotpKey, TotpKeyError> {
        let io = |e| TotpKeyError::Io(path.to_path_buf(), e);
        let mut key = [0u8; 32];
        openssl::rand::rand_bytes(&mut key)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let written = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(format!("{}\n", crate::pec::smime::hex_plain(&key)).as_bytes())?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    let _ = crate::store::spool::sync_dir(dir);
                }
                tracing::info!(file = %path.display(), "made a new key for second-factor secrets (web.totp_key_file)");
                Ok(TotpKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(io(e)),
        }
    }

    /// Seal `secret` for `address` (its canonical form) as stored.
    pub fn seal(&self, address: &str, secret: &[u8]) -> Result<String, TotpKeyError> {
        let mut nonce = [0u8; NONCE];
        openssl::rand::rand_bytes(&mut nonce)?;
        let mut tag = [0u8; TAG];
        let ct = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0,
            Some(&nonce),
            address.as_bytes(),
            secret,
            &mut tag,
        )?;
        let mut all = nonce.to_vec();
        all.extend_from_slice(&ct);
        all.extend_from_slice(&tag);
        Ok(format!("{PREFIX}{}", crate::pec::smime::hex_plain(&all)))
    }

    /// The secret stored as `stored` for `address`: sealed, or the plain hex
    /// of older versions.
    pub fn open(&self, address: &str, stored: &str) -> Result<Vec<u8>, TotpKeyError> {
        let Some(sealed) = stored.strip_prefix(PREFIX) else {
            return hex_decode(stored.trim()).ok_or(TotpKeyError::BadSecret);
        };
        let all = hex_decode(sealed).ok_or(TotpKeyError::BadSecret)?;
        if all.len() < NONCE + TAG {
            return Err(TotpKeyError::BadSecret);
        }
        let (nonce, rest) = all.split_at(NONCE);
        let (ct, tag) = rest.split_at(rest.len() - TAG);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0,
            Some(nonce),
            address.as_bytes(),
            ct,
            tag,
        )
        .map_err(|_| TotpKeyError::WrongKey)
    }

    /// Whether `stored` is already in the sealed form.
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_open_only_with_their_key_and_address() {
        let k = TotpKey::from_bytes([7; 32]);
        let s = k.seal("a@x", b"12345678901234567890").unwrap();
        assert!(TotpKey::is_sealed(&s));
        assert!(!s.contains(&crate::pec::smime::hex_plain(b"12345678901234567890")));
        assert_eq!(k.open("a@x", &s).unwrap(), b"12345678901234567890");
        assert_ne!(s, k.seal("a@x", b"12345678901234567890").unwrap());
        assert!(matches!(k.open("b@x", &s), Err(TotpKeyError::WrongKey)));
        let other = TotpKey::from_bytes([8; 32]);
        assert!(matches!(other.open("a@x", &s), Err(TotpKeyError::WrongKey)));
        // The plain hex older versions stored still reads.
        assert_eq!(k.open("a@x", "3132").unwrap(), b"12");
        assert!(matches!(
            k.open("a@x", "v1:zz"),
            Err(TotpKeyError::BadSecret)
        ));
    }

    #[test]
    fn the_key_file_is_made_private_once_and_refused_when_readable() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("totp.key");
        let k1 = TotpKey::load_or_create(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let k2 = TotpKey::load_or_create(&p).unwrap();
        assert_eq!(k1.0, k2.0);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no tmp left"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = TotpKey::load_or_create(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, "nothex\n").unwrap();
        assert!(matches!(TotpKey::load(&p), Err(TotpKeyError::Malformed(_))));
    }
}

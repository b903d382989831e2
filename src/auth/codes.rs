//! Random secrets a user is shown once and the server keeps only hashed:
//! app passwords (IMAP, POP3 and SMTP once the second factor is on) and the
//! second factor's recovery codes. Both carry 80 bits or more of entropy,
//! so a SHA-256 digest is enough to store them (no slow hash: guessing is
//! hopeless, and a login looks one up with one index probe instead of an
//! argon2 run per stored secret).

/// Characters of an app password (lower-case RFC 4648 base32: no 0/O, 1/l).
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Characters of an app password: 100 bits.
pub const APP_PASSWORD_CHARS: usize = 20;
/// Characters of a recovery code, without its dashes: 80 bits.
pub const RECOVERY_CHARS: usize = 16;
/// Recovery codes made at each enrolment.
pub const RECOVERY_CODES: usize = 10;

fn random_chars(n: usize) -> Result<String, openssl::error::ErrorStack> {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b)?;
    // 256 is a multiple of 32: every character is equally likely.
    Ok(b.iter()
        .map(|x| ALPHABET[(x & 31) as usize] as char)
        .collect())
}

/// A new app password, as the user types it.
pub fn new_app_password() -> Result<String, openssl::error::ErrorStack> {
    random_chars(APP_PASSWORD_CHARS)
}

/// A new recovery code, in groups of four (`abcd-efgh-ijkl-mnop`).
pub fn new_recovery_code() -> Result<String, openssl::error::ErrorStack> {
    let s = random_chars(RECOVERY_CHARS)?;
    let groups: Vec<&str> = (0..RECOVERY_CHARS)
        .step_by(4)
        .filter_map(|i| s.get(i..i + 4))
        .collect();
    Ok(groups.join("-"))
}

/// A fresh id for an app password: 12 hex digits, not a counter (ids say
/// nothing about how many there are).
pub fn new_id() -> Result<String, openssl::error::ErrorStack> {
    let mut b = [0u8; 6];
    openssl::rand::rand_bytes(&mut b)?;
    Ok(crate::pec::smime::hex_plain(&b))
}

/// The form a typed secret is compared in: lower case, without the spaces
/// and dashes people add when copying it by hand.
pub fn normalize(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The stored digest of a secret (after [`normalize`]).
pub fn digest(typed: &str) -> [u8; 32] {
    openssl::sha::sha256(normalize(typed).as_bytes())
}

/// Whether `typed` has the shape of a recovery code (and not of a
/// six-digit TOTP code).
pub fn looks_like_recovery_code(typed: &str) -> bool {
    let n = normalize(typed);
    n.len() == RECOVERY_CHARS && n.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_their_shape_and_compare_as_typed_by_hand() {
        let p = new_app_password().unwrap();
        assert_eq!(p.len(), APP_PASSWORD_CHARS);
        assert!(p.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(p, new_app_password().unwrap());
        let r = new_recovery_code().unwrap();
        assert_eq!(r.len(), RECOVERY_CHARS + 3);
        assert_eq!(r.matches('-').count(), 3);
        assert!(looks_like_recovery_code(&r));
        assert!(looks_like_recovery_code(
            &r.to_uppercase().replace('-', " ")
        ));
        assert!(!looks_like_recovery_code("123456"));
        assert_eq!(digest(&r), digest(&r.to_uppercase().replace('-', "  ")));
        assert_ne!(digest(&r), digest(&new_recovery_code().unwrap()));
        assert_eq!(new_id().unwrap().len(), 12);
    }
}

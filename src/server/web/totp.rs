//! RFC 6238 time-based one-time passwords (HMAC-SHA-1, 6 digits, 30 s), the
//! web login's optional second factor, on the OpenSSL HMAC.

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// Seconds per step.
pub const STEP: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;

/// RFC 4226 HOTP value of `counter` with `digits` digits.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> Option<u32> {
    let key = PKey::hmac(secret).ok()?;
    let mut s = Signer::new(MessageDigest::sha1(), &key).ok()?;
    s.update(&counter.to_be_bytes()).ok()?;
    let mac = s.sign_to_vec().ok()?;
    let off = (mac.last()? & 0x0f) as usize;
    let bin = u32::from_be_bytes([mac[off] & 0x7f, mac[off + 1], mac[off + 2], mac[off + 3]]);
    Some(bin % 10u32.pow(digits))
}

/// The code valid at Unix time `now`.
pub fn code_at(secret: &[u8], now: i64) -> Option<u32> {
    hotp(secret, (now.max(0) / STEP) as u64, DIGITS)
}

/// The time step whose code `code` is at `now`, one step of clock skew
/// either way (the latest if two match); `None` for a wrong code.
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = code.parse::<u32>().ok()?;
    [STEP, 0, -STEP]
        .iter()
        .map(|d| (now + d).max(0))
        .find(|t| code_at(secret, *t) == Some(n))
        .map(|t| t / STEP)
}

/// Whether `code` is right at `now`, one step of clock skew either way.
pub fn check(secret: &[u8], code: &str, now: i64) -> bool {
    matching_step(secret, code, now).is_some()
}

/// RFC 4648 base32 without padding (what authenticator apps read).
pub fn base32(data: &[u8]) -> String {
    const A: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            out.push(A[((buf >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(A[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A fresh 20-byte secret.
pub fn new_secret() -> Vec<u8> {
    let mut b = vec![0u8; 20];
    openssl::rand::rand_bytes(&mut b).expect("OpenSSL random generator");
    b
}

/// The `otpauth://` URI an authenticator app scans.
pub fn uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'@' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_test_vectors() {
        // RFC 6238 appendix B, SHA-1 rows (8 digits).
        let secret = b"12345678901234567890";
        for (t, want) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(hotp(secret, t / 30, 8), Some(want), "T={t}");
        }
        // And the 6-digit form the login uses.
        assert_eq!(code_at(secret, 59), Some(287082));
        assert!(check(secret, "287082", 59));
        assert!(check(secret, "287082", 59 + 30));
        assert!(!check(secret, "287082", 59 + 90));
        assert!(!check(secret, "28708", 59) && !check(secret, "abcdef", 59));
        // The step a code belongs to, so that it can be used only once.
        assert_eq!(matching_step(secret, "287082", 59), Some(1));
        assert_eq!(matching_step(secret, "287082", 59 + 30), Some(1));
        assert_eq!(matching_step(secret, "000000", 59), None);
    }

    #[test]
    fn base32_and_uri() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        let u = uri("PEC alpha.test", "a@alpha.test", b"12345678901234567890");
        assert_eq!(
            u,
            "otpauth://totp/PEC%20alpha.test:a@alpha.test?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=PEC%20alpha.test&algorithm=SHA1&digits=6&period=30"
        );
    }
}

//! Fresh identifiers: identificativi, Message-IDs and MIME boundaries.
//!
//! All of them are built from an [`IdSource`] token so that tests can pin
//! them ([`SequentialIds`]) and compare generated messages byte for byte.
//! The identificativo must be unique forever and is the correlation key
//! between providers (`pec-spec.md` §4); we keep it ASCII and at most 250
//! octets, in the OpenPEC style `pecd.<yyyymmddhhmmss>.<token>@<domain>`: the
//! local timestamp makes log greps easy, the random token makes it unique.

use std::sync::atomic::{AtomicU64, Ordering};

use super::clock::ItalianTime;

/// Longest identificativo we emit, in octets.
pub const MAX_ID_LEN: usize = 250;

/// Source of unique ASCII alphanumeric tokens.
pub trait IdSource: Send + Sync {
    /// A fresh token, `[A-Za-z0-9]+`.
    fn token(&self) -> String;
}

/// Random 20-character tokens from the openssl CSPRNG (~119 bits).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

const ALNUM: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl IdSource for RandomIds {
    fn token(&self) -> String {
        let mut out = String::with_capacity(20);
        let mut buf = [0u8; 32];
        while out.len() < 20 {
            if openssl::rand::rand_bytes(&mut buf).is_err() {
                // The CSPRNG failing is unrecoverable for uniqueness; a
                // provider must not emit duplicate identificativi.
                panic!("openssl RAND_bytes failed");
            }
            // Rejection sampling above 248 (= 4 * 62) keeps the draw unbiased.
            for &b in buf.iter().filter(|&&b| b < 248) {
                if out.len() == 20 {
                    break;
                }
                out.push(ALNUM[(b % 62) as usize] as char);
            }
        }
        out
    }
}

/// Deterministic tokens `T000001`, `T000002`, … (tests).
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl SequentialIds {
    /// A source whose first token is number `start + 1`.
    pub fn starting_at(start: u64) -> SequentialIds {
        SequentialIds(AtomicU64::new(start))
    }
}

impl IdSource for SequentialIds {
    fn token(&self) -> String {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        format!("T{n:06}")
    }
}

/// A new identificativo `pecd.<yyyymmddhhmmss>.<token>@<domain>` (no angle
/// brackets). Falls back to `<token>@<domain>` if that would exceed
/// [`MAX_ID_LEN`]; config validation must keep domains short enough for that.
pub fn identificativo(ids: &dyn IdSource, when: &ItalianTime, domain: &str) -> String {
    let token = ids.token();
    let id = format!("pecd.{}.{}@{}", when.compact(), token, domain);
    if id.len() <= MAX_ID_LEN {
        id
    } else {
        format!("{token}@{domain}")
    }
}

/// A new Message-ID for a provider-generated receipt, without angle brackets.
pub fn message_id(ids: &dyn IdSource, when: &ItalianTime, domain: &str) -> String {
    format!("pecd.{}.{}.r@{}", when.compact(), ids.token(), domain)
}

/// A new MIME boundary; the `=_` sequence can never occur in base64 or QP
/// output, so it cannot collide with the encoded parts we write.
pub fn boundary(ids: &dyn IdSource) -> String {
    format!("----=_pecd_{}", ids.token())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_alnum_and_distinct() {
        let a = RandomIds.token();
        let b = RandomIds.token();
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn sequential_and_formats() {
        let ids = SequentialIds::default();
        let t = ItalianTime::from_unix(1_542_123_567);
        assert_eq!(
            identificativo(&ids, &t, "pec.alpha.test"),
            "pecd.20181113163927.T000001@pec.alpha.test"
        );
        assert_eq!(
            message_id(&ids, &t, "pec.alpha.test"),
            "pecd.20181113163927.T000002.r@pec.alpha.test"
        );
        assert_eq!(boundary(&ids), "----=_pecd_T000003");
        let long = "d".repeat(230);
        let id = identificativo(&ids, &t, &long);
        assert!(id.len() <= MAX_ID_LEN);
        assert!(id.starts_with("T000004@"));
    }
}

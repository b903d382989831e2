//! The daily seal of the PEC log (DPR 68/2005 art. 10 c. 2: a daily time
//! stamp on the message logs): its text, the Italian day it covers, and the
//! check of its CMS signature. `docs/log-integrity.md` is the reference.
//!
//! The seal text is a few `key: value` lines in ASCII; it is what the
//! provider signs (`.p7s`) and what the TSA stamps (`.tsr`), so `openssl ts
//! -verify -data YYYY-MM-DD.seal` and `openssl cms -verify -content …`
//! check the files as they are.

use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::X509;

use super::clock::{civil_from_days, days_from_civil, ItalianTime};

/// First line of every seal (the format's name and version).
pub const MAGIC: &str = "pecd-log-seal 1";

/// A calendar date in Europe/Rome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day {
    /// Days since 1970-01-01.
    pub days: i64,
}

impl Day {
    /// The Italian day of a unix-millisecond instant.
    pub fn of_ms(ms: i64) -> Day {
        let t = ItalianTime::from_unix(ms.div_euclid(1000));
        Day {
            days: days_from_civil(t.year, t.month, t.day),
        }
    }

    /// Parse `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Day> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let y: i64 = s.get(0..4)?.parse().ok()?;
        let m: u32 = s.get(5..7)?.parse().ok()?;
        let d: u32 = s.get(8..10)?.parse().ok()?;
        if !(1..=12).contains(&m) || d == 0 || d > 31 {
            return None;
        }
        let day = Day {
            days: days_from_civil(y, m, d),
        };
        // 2026-02-31 normalises to another date: refuse it.
        (day.to_string() == s).then_some(day)
    }

    /// The next day.
    pub fn next(self) -> Day {
        Day {
            days: self.days + 1,
        }
    }

    /// Unix ms of local midnight starting this day (never in a DST gap:
    /// Italy changes at 02:00/03:00).
    pub fn start_ms(self) -> i64 {
        let guess = self.days * 86_400 - 3600;
        let t = ItalianTime::from_unix(guess);
        let secs = if t.hour == 0 && t.minute == 0 {
            guess
        } else {
            self.days * 86_400 - 7200
        };
        secs * 1000
    }

    /// Unix ms of the midnight that ends this day.
    pub fn end_ms(self) -> i64 {
        self.next().start_ms()
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = civil_from_days(self.days);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// What a seal states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealText {
    /// The provider's domain.
    pub provider: String,
    /// The day sealed.
    pub date: Day,
    /// First row covered.
    pub first_row: i64,
    /// Last row covered.
    pub last_row: i64,
    /// Rows covered.
    pub rows: i64,
    /// Chain hash before the first row.
    pub previous_hash: Vec<u8>,
    /// Chain hash of the last row.
    pub last_hash: Vec<u8>,
}

fn hex(b: &[u8]) -> String {
    super::x509::hex_plain(b)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl SealText {
    /// The text, LF line endings, ending in a newline.
    pub fn render(&self) -> String {
        format!(
            "{MAGIC}\nprovider: {}\ndate: {}\nzone: Europe/Rome\nfrom: {}\nto: {}\n\
             first-row: {}\nlast-row: {}\nrows: {}\nprevious-hash: {}\nlast-hash: {}\n",
            self.provider,
            self.date,
            super::clock::iso_utc(self.date.start_ms()),
            super::clock::iso_utc(self.date.end_ms()),
            self.first_row,
            self.last_row,
            self.rows,
            hex(&self.previous_hash),
            hex(&self.last_hash),
        )
    }

    /// Read a seal text back; None for anything [`SealText::render`] would
    /// not have written.
    pub fn parse(text: &[u8]) -> Option<SealText> {
        let text = std::str::from_utf8(text).ok()?;
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut get = |key: &str| -> Option<String> {
            let l = lines.next()?;
            l.strip_prefix(key)?.strip_prefix(": ").map(str::to_string)
        };
        let provider = get("provider")?;
        let date = Day::parse(&get("date")?)?;
        get("zone")?;
        get("from")?;
        get("to")?;
        let s = SealText {
            provider,
            date,
            first_row: get("first-row")?.parse().ok()?,
            last_row: get("last-row")?.parse().ok()?,
            rows: get("rows")?.parse().ok()?,
            previous_hash: unhex(&get("previous-hash")?)?,
            last_hash: unhex(&get("last-hash")?)?,
        };
        (s.render().as_bytes() == text.as_bytes()).then_some(s)
    }
}

/// Why a seal's signature is not taken.
#[derive(Debug, Clone)]
pub enum SealSignatureError {
    /// The signature is not DER PKCS#7.
    NotPkcs7(openssl::error::ErrorStack),
    /// It does not verify against the roots at that time.
    DoesNotVerify(openssl::error::ErrorStack),
    /// OpenSSL failed building the store.
    Openssl(openssl::error::ErrorStack),
}

impl std::fmt::Display for SealSignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealSignatureError::NotPkcs7(e) => write!(f, "signature: {e}"),
            SealSignatureError::DoesNotVerify(e) => {
                write!(f, "the signature does not verify: {e}")
            }
            SealSignatureError::Openssl(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SealSignatureError {}

impl From<openssl::error::ErrorStack> for SealSignatureError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        SealSignatureError::Openssl(e)
    }
}

/// Check a seal's detached signature (DER PKCS#7) over `seal` against
/// `roots`, the certificates valid at `at` (unix seconds: the time stamp's
/// time when there is one, so a seal outlives the key that signed it).
/// Returns the signer's subject.
pub fn verify_signature(
    seal: &[u8],
    signature: &[u8],
    roots: &[X509],
    at: Option<i64>,
) -> Result<String, SealSignatureError> {
    let p7 = Pkcs7::from_der(signature).map_err(SealSignatureError::NotPkcs7)?;
    let mut sb = X509StoreBuilder::new()?;
    for c in roots {
        sb.add_cert(c.clone())?;
    }
    if let Some(at) = at {
        let mut param = X509VerifyParam::new()?;
        param.set_time(at as _);
        sb.set_param(&param)?;
    }
    let store = sb.build();
    let none = Stack::<X509>::new()?;
    p7.verify(&none, &store, Some(seal), None, Pkcs7Flags::BINARY)
        .map_err(SealSignatureError::DoesNotVerify)?;
    let signer = p7
        .signers(&none, Pkcs7Flags::empty())
        .ok()
        .and_then(|s| {
            s.iter()
                .next()
                .map(|c| super::x509::name_to_string(c.subject_name()))
        })
        .unwrap_or_default();
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn italian_days_have_23_24_and_25_hours() {
        let d = Day::parse("2026-03-29").unwrap();
        assert_eq!(d.to_string(), "2026-03-29");
        assert_eq!(
            crate::pec::clock::iso_utc(d.start_ms()),
            "2026-03-28T23:00:00.000Z"
        );
        assert_eq!(d.end_ms() - d.start_ms(), 23 * 3_600_000);
        let d = Day::parse("2026-10-25").unwrap();
        assert_eq!(d.end_ms() - d.start_ms(), 25 * 3_600_000);
        let d = Day::parse("2026-07-01").unwrap();
        assert_eq!(
            crate::pec::clock::iso_utc(d.start_ms()),
            "2026-06-30T22:00:00.000Z"
        );
        assert_eq!(Day::of_ms(d.start_ms()), d);
        assert_eq!(Day::of_ms(d.start_ms() - 1).next(), d);
        for bad in ["2026-02-30", "2026-13-01", "26-01-01", "2026-1-01", ""] {
            assert!(Day::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn seal_text_round_trips_and_nothing_else_parses() {
        let s = SealText {
            provider: "pec.alpha.test".into(),
            date: Day::parse("2026-12-01").unwrap(),
            first_row: 1,
            last_row: 9,
            rows: 9,
            previous_hash: vec![0; 32],
            last_hash: vec![0xab; 32],
        };
        let text = s.render();
        assert_eq!(SealText::parse(text.as_bytes()), Some(s.clone()));
        assert!(text.contains("from: 2026-11-30T23:00:00.000Z\n"), "{text}");
        let edited = text.replace("from: 2026-11-30T23", "from: 2026-11-30T22");
        assert!(SealText::parse(edited.as_bytes()).is_none());
        assert!(SealText::parse(format!("{text}extra\n").as_bytes()).is_none());
        assert!(SealText::parse(b"\xff").is_none());
    }
}

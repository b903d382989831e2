//! The password policy: one rule for every place a password is set
//! (`pecd user add`, `pecd user passwd`, and any later password change).
//! At least [`MIN_CHARS`] characters, and not one of the common passwords
//! shipped in `common-passwords.txt` (compared case-insensitively).

use std::collections::HashSet;
use std::sync::OnceLock;

/// Fewest characters (Unicode scalar values) a password may have.
pub const MIN_CHARS: usize = 10;

const COMMON: &str = include_str!("common-passwords.txt");

/// Why a password is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeakPassword {
    /// Fewer than [`MIN_CHARS`] characters.
    TooShort {
        /// Its length in characters.
        chars: usize,
    },
    /// In the list of common passwords.
    Common,
}

impl std::fmt::Display for WeakPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeakPassword::TooShort { chars } => write!(
                f,
                "password too short: {chars} characters, at least {MIN_CHARS} are needed"
            ),
            WeakPassword::Common => f.write_str(
                "password too common: it is in the list of common passwords pecd refuses; choose another",
            ),
        }
    }
}

impl std::error::Error for WeakPassword {}

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Whether `password` may be set.
pub fn check(password: &str) -> Result<(), WeakPassword> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(WeakPassword::TooShort { chars });
    }
    if common().contains(password.to_lowercase().as_str()) {
        return Err(WeakPassword::Common);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_common_passwords_are_refused_with_the_reason() {
        assert_eq!(check("x"), Err(WeakPassword::TooShort { chars: 1 }));
        assert_eq!(check("ààààààààà"), Err(WeakPassword::TooShort { chars: 9 }));
        for common in ["1234567890", "QwertyUIOP", "Password123", "forzajuve2024"] {
            assert_eq!(check(common), Err(WeakPassword::Common), "{common}");
        }
        assert!(check("x").unwrap_err().to_string().contains("at least 10"));
        assert!(check("qwertyuiop")
            .unwrap_err()
            .to_string()
            .contains("common"));
        for fine in [
            "correct horse battery staple",
            "first password",
            "àèìòù àèìòù",
        ] {
            assert_eq!(check(fine), Ok(()), "{fine}");
        }
    }

    #[test]
    fn the_list_is_lower_case_and_long_enough_to_matter() {
        let set = common();
        assert!(set.len() > 3000, "{}", set.len());
        for e in set {
            assert_eq!(*e, e.to_lowercase(), "{e:?} would never match");
            assert!(e.chars().count() >= MIN_CHARS, "{e:?} is refused anyway");
        }
    }
}

//! Account credentials outside the login path itself: the rule every new
//! password must meet ([`policy`]) and the key that seals second-factor
//! secrets in the database ([`totp_key`]), and the secrets shown once and
//! kept hashed: app passwords and recovery codes ([`codes`]).

pub mod codes;
pub mod policy;
pub mod totp_key;

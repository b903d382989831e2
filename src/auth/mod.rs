//! Account credentials outside the login path itself: the rule every new
//! password must meet ([`policy`]) and the key that seals second-factor
//! secrets in the database ([`totp_key`]).

pub mod policy;
pub mod totp_key;

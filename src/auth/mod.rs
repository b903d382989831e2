//! Account credentials outside the login path itself: the rule every new
//! password must meet ([`policy`]).

pub mod policy;

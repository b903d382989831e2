//! pecd: a complete PEC provider.
pub mod certs;
pub mod imap;
pub mod pec;
pub mod throttle;
pub mod tls;

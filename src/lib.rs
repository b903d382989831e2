//! pecd: a complete PEC provider.
pub mod certs;
pub mod pec;
pub mod smtp;
pub mod tls;

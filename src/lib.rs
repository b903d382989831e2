//! pecd: a complete PEC provider.
pub mod certs;
pub mod config;
pub mod pec;
pub mod store;
pub mod tls;
pub mod admin;
pub mod cli;
pub mod relay;

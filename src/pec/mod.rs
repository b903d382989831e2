//! The pure PEC domain: no tokio, no sockets, no files, no SQLite, no system
//! clock. Everything that needs "now" or a fresh id takes it as a parameter, so
//! tests fix them and compare bytes.
pub mod access;
pub mod attachments;
pub mod classify;
pub mod clock;
pub mod consistency;
pub mod daticert;
pub mod delivery;
pub mod envelope;
pub mod headers;
pub mod ids;
pub mod index;
pub mod logseal;
pub mod mime;
pub mod notice;
pub mod receipt;
pub mod reception;
pub mod revocation;
pub mod smime;
pub mod timers;
pub mod trust;
pub mod tsa;
pub mod types;
pub mod verify;
pub mod x509;

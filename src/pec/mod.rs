//! The pure PEC domain: no tokio, no sockets, no files, no SQLite, no system
//! clock. Everything that needs "now" or a fresh id takes it as a parameter, so
//! tests fix them and compare bytes.
pub mod classify;
pub mod clock;
pub mod daticert;
pub mod headers;
pub mod ids;
pub mod index;
pub mod mime;
pub mod reception;
pub mod smime;
pub mod types;
pub mod verify;

//! The PEC decisions as pure functions: facts in (the message, the lookups
//! it needs, `now`), an outcome out — the messages to sign and a typed
//! [`batch::Batch`] of what to record. Nothing here does I/O: no store, no
//! sockets, no files, no tokio, no system clock (`tests/architecture.rs`
//! keeps it so). The server loads the facts, calls a flow, signs, and hands
//! the batch to `Store::commit`.

pub mod batch;

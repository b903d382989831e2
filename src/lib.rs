//! pecd: a complete PEC (Posta Elettronica Certificata) provider in one daemon.
//!
//! ```text
//! client --SMTP--> smtp + server::submission --flow::submit--> Store::commit (blob + queue + log, one txn) --250-->
//!   server::scheduler -> jobs::relay --> peer's smtp + server::inbound --> Store::commit --> jobs::judge --flow::receive-->
//!   jobs::deliver --flow::deliver--> Maildir + receipt --> back to the sender's provider --> sender's Maildir
//! ```
//!
//! `pec` is the pure domain (no I/O); `flow` the PEC decisions as data;
//! `smtp` and `imap` speak the protocols; `store` owns SQLite and the files;
//! `server` wires them into a provider; `relay` is the SMTP client side.
//!
//! Glossary (Italian → English): *gestore* provider; *punto di accesso* access
//! point; *punto di ricezione* reception point; *punto di consegna* delivery
//! point; *busta di trasporto* transport envelope; *busta di anomalia* anomaly
//! envelope; *ricevuta di accettazione* acceptance receipt; *avviso di non
//! accettazione* non-acceptance notice; *presa in carico* take-charge receipt;
//! *avvenuta consegna* delivery receipt (*completa* full, *breve* short,
//! *sintetica* synthetic); *mancata consegna* non-delivery; *preavviso* early
//! warning; *identificativo* the message's unique id; *daticert* the
//! certification data XML; *indice dei gestori* provider index.
pub mod accept;
pub mod antivirus;
pub mod auth;
pub mod certs;
pub mod cli;
pub mod cmd;
pub mod config;
#[doc(hidden)]
pub mod flow;
pub mod fuzzing;
#[cfg(test)]
pub(crate) mod golden;
pub mod http;
pub mod imap;
pub mod lab;
pub mod labpg;
pub mod layout;
pub mod live;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod objstore;
pub mod pec;
pub mod pop3;
pub mod proxy;
pub mod relay;
pub mod server;
pub mod smtp;
pub mod store;
pub mod sys;
pub mod throttle;
pub mod tls;
pub mod trust_fetch;

//! The few libc calls std has no safe form of, each in its own small module:
//! the crate denies `unsafe_code`, and only these modules allow it.

pub mod adjtimex;
pub mod hostname;
pub mod linkat;
pub mod mallopt;
pub mod pkcs11;
pub mod rusage;
pub mod termios;
pub mod thread_cpu;
pub mod umask;

//! The integration tests, one test binary: each `tests/<name>.rs` is the
//! module `<name>` here, so its tests are named `<name>::…` and one file runs
//! with `cargo test --test it <name>::`. One binary, not one per file: each
//! test binary links the whole `pecd` library statically, and relinking 36
//! of them after every change of the crate took four times the CPU of the
//! one and 5 GiB of disk (docs/performance.md, "Test suite build").
//!
//! Cargo.toml sets `autotests = false`: a new `tests/*.rs` runs only once it
//! is declared below (`every_test_file_is_a_module_of_it` fails until it is).

mod common;

mod account;
mod antivirus;
mod api_tokens;
mod architecture;
mod auth;
mod backup;
mod bench;
mod cli;
mod cluster_status;
mod cluster_throttle;
mod demo;
mod docs_commands;
mod durability;
mod hardening;
mod imap;
mod log_seal;
mod logs;
mod memory;
mod objstore;
mod operations;
mod ops;
mod pkcs11;
mod pop3;
mod proxy;
mod queue_cli;
mod quota;
mod reception;
mod refusals;
mod relay;
mod reload;
mod revocation;
mod samples;
mod sessions;
mod smoke;
mod store_pg;
mod submission;
mod timers;
mod verify_cli;
mod web_api;
mod web_browser;
mod web_limits;

/// Cargo no longer finds `tests/*.rs` by itself (`autotests = false`): a file
/// left out of the list above would never be compiled, its tests silently
/// never run.
#[test]
fn every_test_file_is_a_module_of_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let files: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("read tests/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .filter(|name| name != "it")
        .collect();
    let root = std::fs::read_to_string(dir.join("it.rs")).expect("read tests/it.rs");
    let declared: std::collections::BTreeSet<String> = root
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .map(str::to_string)
        .collect();
    let missing: Vec<_> = files.difference(&declared).collect();
    assert!(
        files.len() > 30 && missing.is_empty(),
        "tests/*.rs not declared in tests/it.rs (add `mod NAME;` there): {missing:?}"
    );
}

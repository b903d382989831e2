//! See `pecd::fuzzing::targets::proxy_header`: the checks live in the
//! library so that `cargo test` runs them too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pecd::fuzzing::targets::proxy_header(data));

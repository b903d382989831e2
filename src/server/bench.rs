//! `pecd bench` (being written).
pub fn run(_a: crate::cli::BenchArgs) -> crate::admin::AdminResult {
    Err("bench: not implemented yet".into())
}

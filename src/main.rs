//! Thin entry point: parse the command line, start tracing, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // glibc raises its mmap threshold after the first large free, so each
    // 19 MiB argon2 buffer and each large message then lands in a heap arena
    // and stays resident: measured, 20 concurrent logins kept ~400 MB.
    // A fixed threshold hands big blocks back to the OS when freed.
    // SAFETY: mallopt only tunes the allocator; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
    let cli = pecd::cli::Cli::parse();
    // The demo and the benchmark print their own report; the daemon's chatter
    // would drown it unless asked for with RUST_LOG.
    let default = match cli.command {
        pecd::cli::Command::Demo | pecd::cli::Command::Bench(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    pecd::admin::run(cli)
}

//! Thin entry point: parse the command line, start tracing, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before anything is created: every file and directory pecd makes (the
    // database, spool, Maildirs, quarantine, seals, keys) is its user's only.
    pecd::sys::umask::set(0o077);
    let cli = pecd::cli::Cli::parse();
    // The demo and the benchmark print their own report; the daemon's chatter
    // would drown it unless asked for with RUST_LOG.
    let default = match cli.command {
        pecd::cli::Command::Demo | pecd::cli::Command::Bench(_) => "warn",
        _ => "info",
    };
    // `serve` starts tracing itself once it has read `[log] format`.
    if !matches!(cli.command, pecd::cli::Command::Serve) {
        pecd::logging::init(pecd::config::LogFormat::Text, default);
    }
    pecd::cmd::run(cli)
}

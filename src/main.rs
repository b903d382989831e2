//! Thin entry point: parse the command line, start tracing, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
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

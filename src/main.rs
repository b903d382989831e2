//! Thin entry point: parse the command line, start tracing, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pecd::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    pecd::admin::run(cli)
}

//! Where the daemon's and the CLI's diagnostics go: stderr, as text or JSON.

use std::io::IsTerminal;

use crate::config::LogFormat;

/// Install the global subscriber; `default` is the filter when `RUST_LOG` is unset.
///
/// A second call is a no-op, so `serve` may set its configured format even
/// if something installed one first.
pub fn init(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Escape codes are noise in a file or journald; only a person at a
    // terminal benefits from colour.
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        // Fields at the top level so a collector can filter on
        // `identificativo` or `user` without digging into `fields`.
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

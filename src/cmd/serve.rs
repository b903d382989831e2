//! `pecd serve`: run the provider until a signal ends it.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::server::start;

/// Each line of a start-up error, prefixed with the configuration file it
/// is about (the operator may not know which one was picked).
fn naming_file(config: &Path, e: &str) -> String {
    let name = config.display().to_string();
    e.lines()
        .map(|l| {
            if l.starts_with(&name) {
                l.to_string()
            } else {
                format!("{name}: {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `pecd serve`.
pub fn serve_main(config: &Path) -> super::AdminResult {
    let cfg = super::load_config(config)?;
    crate::logging::init(cfg.log.format, "info");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Handlers before READY: a supervisor may signal us the moment it
        // hears it, and the default action of SIGTERM ends us uncleanly.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let running = start(cfg).await.map_err(|e| naming_file(config, &e))?;
        // Every listener is bound: systemd (Type=notify) may start what
        // depends on us.
        crate::notify::send("READY=1");
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                // The outcome is logged; a refused reload changes nothing.
                _ = hup.recv() => { let _ = running.reloader.reload(config).await; }
            }
        }
        tracing::info!("shutting down");
        // Read now: a reload may have changed it.
        let grace = {
            let cfg = running.ctx.cfg();
            cfg.duration(&cfg.queue.shutdown_grace, Duration::from_secs(30))
        };
        crate::notify::send("STOPPING=1");
        running.stop(grace).await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

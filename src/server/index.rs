//! The provider index watcher: `[trust] index` is loaded again when its
//! file changes, without a reload of the rest.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{load_index, Ctx};

/// Reload the index when its file changes (checked every `index_check_interval`).
/// Both are read again on each round: a reload may have changed them.
pub(super) async fn watch_index(ctx: Arc<Ctx>) {
    let index_path = |ctx: &Ctx| {
        let cfg = ctx.cfg();
        cfg.resolve(&cfg.trust.index)
    };
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut path = index_path(&ctx);
    let mut last = stamp(&path);
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let every = {
            let cfg = ctx.cfg();
            cfg.duration(&cfg.trust.index_check_interval, Duration::from_secs(2))
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let now_path = index_path(&ctx);
        if now_path != path {
            // The reload that named the new file has loaded it already.
            path = now_path;
            last = stamp(&path);
            continue;
        }
        let now = stamp(&path);
        if now != last {
            last = now;
            reload_index(&ctx);
        }
    }
}

/// Re-read the index file; on error keep the old one and say why.
pub fn reload_index(ctx: &Ctx) {
    let cfg = ctx.cfg();
    let path = cfg.resolve(&cfg.trust.index);
    match load_index(&path) {
        Ok(idx) => {
            let n = idx.providers.len();
            if let Ok(mut g) = ctx.index.write() {
                *g = Arc::new(idx);
            }
            tracing::info!(providers = n, "provider index reloaded");
        }
        Err(e) => {
            tracing::error!(error = %e, "provider index not reloaded; keeping the previous one")
        }
    }
}

//! The operator's listener, `[admin] listen`: `GET /metrics` (Prometheus
//! text exposition) and `GET /health` (200 or 503 with a JSON body naming
//! each part). Plain HTTP, meant for loopback or a monitoring network; the
//! users' web listener is another one.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::Ctx;

/// What `/health` looks at besides the store.
pub struct Watched {
    /// Each listener's name and its accept task: finished means down.
    pub listeners: Vec<(&'static str, AbortHandle)>,
}

struct App {
    ctx: Arc<Ctx>,
    watched: Watched,
}

/// Serve until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    watched: Watched,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(Arc::new(App { ctx, watched }));
    let local = listener.local_addr().ok();
    tracing::info!(?local, "admin listener up (/metrics, /health)");
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "admin listener failed");
    }
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let mut jobs: Vec<(String, i64)> = app
        .ctx
        .store
        .job_counts()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(state, n)| (state.as_str().to_string(), n))
        .collect();
    if let Ok(c) = crate::sys::adjtimex::read() {
        app.ctx.metrics.clock(c.synchronised, c.estimated_error_us);
    }
    let running = app.ctx.running.lock().map(|r| r.len()).unwrap_or(0);
    jobs.push(("running".into(), running as i64));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.ctx.metrics.render(&jobs),
    )
}

async fn health(State(app): State<Arc<App>>) -> impl IntoResponse {
    let mut failing = Vec::new();
    let store = match app.ctx.store.check_writable().await {
        Ok(()) => serde_json::json!("ok"),
        Err(e) => {
            failing.push("store".to_string());
            serde_json::json!(e)
        }
    };
    let mut listeners = serde_json::Map::new();
    for (name, task) in &app.watched.listeners {
        let up = !task.is_finished();
        if !up {
            failing.push(format!("listener {name}"));
        }
        listeners.insert(
            (*name).to_string(),
            serde_json::json!(if up { "up" } else { "down" }),
        );
    }
    // A drifting clock is a warning, not a failure: the provider still works,
    // but its receipts' times need the operator's attention.
    let mut warnings = Vec::new();
    let clock = match crate::sys::adjtimex::read() {
        Ok(c) => {
            let warning = crate::pec::clock::clock_warning(c.synchronised, c.estimated_error_us);
            warnings.extend(warning.clone());
            serde_json::json!({
                "synchronised": c.synchronised,
                "estimated_error_ms": c.estimated_error_us as f64 / 1000.0,
                "warning": warning,
            })
        }
        Err(e) => {
            let w = format!("the clock state cannot be read (adjtimex): {e}");
            warnings.push(w.clone());
            serde_json::json!({ "warning": w })
        }
    };
    let body = serde_json::json!({
        "status": if failing.is_empty() { "ok" } else { "failing" },
        "failing": failing,
        "warnings": warnings,
        "store": store,
        "listeners": listeners,
        "clock": clock,
    });
    let code = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

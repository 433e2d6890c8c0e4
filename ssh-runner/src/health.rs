//! The runner's `/healthz` (the process answers) and `/readyz` (it has a
//! broker connection), for orchestrators. Answers at once, whatever the
//! broker is doing.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::link::Link;

/// Binds `addr` and serves until `shutdown`.
pub(crate) async fn serve(
    addr: SocketAddr,
    link: Link,
    shutdown: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = ?listener.local_addr().ok(), "health endpoint listening");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(link);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::warn!(error = %err, "the health endpoint stopped");
        }
    }))
}

async fn readyz(State(link): State<Link>) -> (StatusCode, axum::Json<serde_json::Value>) {
    if link.current().is_some() {
        (
            StatusCode::OK,
            axum::Json(json!({"broker": "up", "down": []})),
        )
    } else {
        let body = json!({"broker": "down", "down": ["broker"]});
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body))
    }
}

//! Liveness and readiness, and the watcher that reconnects to RabbitMQ and
//! logs when Postgres or RabbitMQ go away and come back.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::broker::Broker;

const CHECK_EVERY: Duration = Duration::from_secs(2);
const DB_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

async fn db_up(db: &PgPool) -> bool {
    let ping = sqlx::query("SELECT 1").execute(db);
    matches!(tokio::time::timeout(DB_TIMEOUT, ping).await, Ok(Ok(_)))
}

pub(crate) async fn readyz(
    State(st): State<AppState>,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    let db = db_up(&st.db).await;
    let broker = tokio::time::timeout(DB_TIMEOUT, st.broker.check())
        .await
        .unwrap_or(false);
    let word = |up: bool| if up { "up" } else { "down" };
    let status = if db && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"database": word(db), "broker": word(broker)})),
    )
}

/// Every few seconds: checks both, reconnects the broker, logs changes.
pub(crate) async fn watch(db: PgPool, broker: Broker, shutdown: CancellationToken) {
    let mut db_was_up = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        broker.check().await;
        let up = db_up(&db).await;
        if up != db_was_up {
            if up {
                tracing::info!("Postgres is reachable again");
            } else {
                tracing::warn!("Postgres is unreachable");
            }
            db_was_up = up;
        }
    }
}

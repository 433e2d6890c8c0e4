//! Liveness and readiness, and the watcher that keeps the proxy's view of
//! Postgres current.
//!
//! The watcher probes the database every [`CHECK_EVERY`] (every
//! [`CHECK_WHILE_DOWN`] while it is down) and keeps a "known down" flag;
//! any request that meets a database outage sets it at once. While it is
//! set, API and WebSocket requests are answered `503 {code: "unavailable"}`
//! without touching the pool ([`fail_fast`]), instead of waiting for its
//! acquire timeout. `/readyz` reads the flags and the broker supervisors'
//! state: it never waits on either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shellway_common::api::health::Readiness;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, DatabaseUnavailable};
use crate::state::AppState;

const CHECK_EVERY: Duration = Duration::from_secs(1);
const CHECK_WHILE_DOWN: Duration = Duration::from_millis(250);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether Postgres is known to be down, shared by the watcher, the
/// fail-fast layer and `/readyz`.
#[derive(Clone, Default)]
pub(crate) struct DbHealth {
    inner: Arc<DbHealthInner>,
}

#[derive(Default)]
struct DbHealthInner {
    down: AtomicBool,
    suspect: Notify,
}

impl DbHealth {
    pub(crate) fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::Relaxed)
    }

    /// A request met a database outage: refuse the next ones at once, and
    /// have the watcher check now.
    pub(crate) fn suspect(&self) {
        self.inner.down.store(true, Ordering::Relaxed);
        self.inner.suspect.notify_one();
    }
}

#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, description = "The process is serving", content_type = "text/plain", body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses((status = 200, description = "Ready", body = Readiness), (status = 503, description = "Something it needs is down", body = Readiness)))]
pub(crate) async fn readyz(State(st): State<AppState>) -> (StatusCode, axum::Json<Readiness>) {
    let db = !st.db_health.is_down();
    let broker = st.broker.is_up();
    let recorder = st.recorder_broker.is_up();
    let word = |up: bool| if up { "up" } else { "down" }.to_owned();
    let down: Vec<String> = [
        ("database", db),
        ("broker", broker),
        ("recorder_broker", recorder),
    ]
    .into_iter()
    .filter(|(_, up)| !up)
    .map(|(name, _)| name.to_owned())
    .collect();
    let status = if down.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        database: word(db),
        broker: word(broker),
        recorder_broker: word(recorder),
        down,
    };
    (status, axum::Json(body))
}

/// Refuses API and WebSocket requests at once while the database is known
/// down; notes an outage a request ran into.
pub(crate) async fn fail_fast(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if st.db_health.is_down() {
        return ApiError::database_unavailable().into_response();
    }
    let resp = next.run(req).await;
    if resp.extensions().get::<DatabaseUnavailable>().is_some() {
        st.db_health.suspect();
    }
    resp
}

async fn db_up(db: &PgPool) -> bool {
    let ping = crate::store::ping(db);
    matches!(tokio::time::timeout(PROBE_TIMEOUT, ping).await, Ok(Ok(_)))
}

/// Probes Postgres until shutdown, keeping `health` current and logging
/// changes.
pub(crate) async fn watch(db: PgPool, health: DbHealth, shutdown: CancellationToken) {
    let mut was_up = true;
    loop {
        let up = db_up(&db).await;
        health.inner.down.store(!up, Ordering::Relaxed);
        if up != was_up {
            if up {
                tracing::info!("Postgres is reachable again");
            } else {
                tracing::warn!(
                    "Postgres is unreachable; API requests are refused until it is back"
                );
            }
            was_up = up;
        }
        let pause = if up { CHECK_EVERY } else { CHECK_WHILE_DOWN };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
            _ = health.inner.suspect.notified() => {}
        }
    }
}

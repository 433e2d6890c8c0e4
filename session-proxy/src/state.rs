//! What every handler and WebSocket shares: connections, settings and the
//! shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::bus::Broker;
use crate::client_addr::TrustedProxies;
use crate::fanout::Fanout;
use crate::origin::Origin;
use crate::passwords::Hasher;
use crate::service::shares::Sharing;

/// What the proxy knows once started, shared by every handler.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub request_ttl: Duration,
    pub cookie_secure: bool,
    pub sharing: Sharing,
    pub trusted_proxies: TrustedProxies,
    /// The origin browsers use, when configured (`SHELLWAY_PUBLIC_URL`).
    pub public_origin: Option<Origin>,
    pub token_max_expiry: Duration,
    pub session_idle_timeout: Duration,
    /// The runners' age recipients credentials are sealed to.
    pub vault: crate::service::credentials::Vault,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub db: PgPool,
    /// Whether Postgres is known down (requests then fail fast).
    pub db_health: crate::health::DbHealth,
    pub broker: Broker,
    /// The recorder's own connection (for `/readyz`).
    pub recorder_broker: Broker,
    pub fanout: Fanout,
    pub presence: crate::presence::Presence,
    /// What the proxy asks of a runner: host-key scans, vault re-seals.
    pub asks: crate::bus::RunnerAsks,
    pub inputs: crate::inputs::InputLog,
    pub hasher: Hasher,
    pub settings: Arc<Settings>,
    /// Jobs this proxy drives, and the news of every job's changes.
    pub jobs: crate::jobs::Jobs,
    /// Cancelled at shutdown; WebSockets end on it.
    pub shutdown: CancellationToken,
}

//! The reaper: no session stays `pending` or `connecting` past its request
//! TTL plus a heartbeat window. Such a session's request was taken by a
//! runner that stopped before it reported (a pending session nobody
//! rejects), or was never delivered; unless a live runner's heartbeat
//! lists it (it is still connecting), it ends `failed` with the reason.
//!
//! Every proxy runs the reaper; the conditional UPDATE lets exactly one of
//! them end each session and tell its viewers.

use std::time::Duration;

use shellway_common::{Control, ErrorKind, Event, SessionStatus};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{Broker, BrokerError};
use crate::liveness::{Liveness, MISSED};
use crate::store;

pub(crate) struct Reaper {
    pub(crate) db: PgPool,
    pub(crate) broker: Broker,
    pub(crate) liveness: Liveness,
    pub(crate) request_ttl: Duration,
    pub(crate) heartbeat: Duration,
}

#[derive(Debug, thiserror::Error)]
enum ReapError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl Reaper {
    /// How old a session may get before it must be open.
    fn window(&self) -> Duration {
        self.request_ttl + self.heartbeat * MISSED
    }

    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.heartbeat);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(err) = self.reap().await {
                tracing::warn!(error = %err, "reaping stuck sessions failed");
            }
        }
    }

    async fn reap(&self) -> Result<(), ReapError> {
        // Without a full view of the runners' heartbeats, a session that is
        // still connecting cannot be told from a stuck one.
        let Some(held) = self.liveness.held_sessions() else {
            return Ok(());
        };
        let held: Vec<Uuid> = held.into_iter().collect();
        let secs = self.window().as_secs_f64();
        let pending = format!(
            "no runner opened this session within {secs:.0} s (the runner that took it may have stopped)"
        );
        let connecting =
            format!("the session did not open within {secs:.0} s; its runner stopped answering");
        let reaped =
            store::sessions::reap_stuck(&self.db, secs, &held, &pending, &connecting).await?;
        for (session, message) in reaped {
            tracing::warn!(session_id = %session, reason = %message, "stuck session ended");
            self.tell(session, message).await?;
        }
        Ok(())
    }

    /// Tells the viewers, and a runner that might still hold the session.
    async fn tell(&self, session: Uuid, message: String) -> Result<(), ReapError> {
        let b = &self.broker;
        b.publish_event(session, &Event::error(ErrorKind::Runtime, message.clone()))
            .await?;
        let status = Event::Status {
            status: SessionStatus::Failed,
            runner: None,
            message: Some(message.clone()),
        };
        b.publish_event(session, &status).await?;
        let close = Control::Close {
            reason: message,
            by: None,
        };
        b.publish_control(session, &close, false).await?;
        Ok(())
    }
}

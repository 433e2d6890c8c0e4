//! Runner liveness: this proxy's own queue of runner heartbeats, and a check
//! each interval that turns the sessions of a silent runner `lost`.
//!
//! Several proxies may judge the same runner dead at once; the one whose
//! UPDATE changed the row publishes the error, so viewers hear it once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use shellway_common::{ErrorKind, Event, Heartbeat, SessionStatus};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::broker::{consume_private, Broker, BrokerError};
use crate::db;

/// Missed heartbeats after which a runner is dead.
const MISSED: u32 = 3;
const RETRY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct Liveness {
    db: PgPool,
    broker: Broker,
    proxy_id: String,
    interval: Duration,
    seen: Arc<Mutex<Seen>>,
}

/// Last heartbeat of each runner, and since when heartbeats flow to us: a
/// runner we never heard from counts as seen when listening began.
#[derive(Debug, Default)]
struct Seen {
    listening_since: Option<Instant>,
    runners: HashMap<String, Instant>,
}

impl Seen {
    /// Runners among `candidates` silent for at least `limit` at `now`.
    fn dead<'a>(&self, candidates: &'a [String], now: Instant, limit: Duration) -> Vec<&'a str> {
        let Some(since) = self.listening_since else {
            // Not hearing heartbeats ourselves proves nothing about runners.
            return Vec::new();
        };
        candidates
            .iter()
            .filter(|r| {
                let last = self
                    .runners
                    .get(r.as_str())
                    .copied()
                    .unwrap_or(since)
                    .max(since);
                now.saturating_duration_since(last) >= limit
            })
            .map(String::as_str)
            .collect()
    }
}

impl Liveness {
    pub(crate) fn new(db: PgPool, broker: Broker, proxy_id: String, interval: Duration) -> Self {
        Self {
            db,
            broker,
            proxy_id,
            interval,
            seen: Arc::new(Mutex::new(Seen::default())),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) async fn run(l: Liveness, shutdown: CancellationToken) {
    let listen = listen_forever(l.clone(), shutdown.clone());
    let judge = judge_forever(l, shutdown);
    tokio::join!(listen, judge);
}

async fn listen_forever(l: Liveness, shutdown: CancellationToken) {
    loop {
        let res = listen(&l, &shutdown).await;
        l.seen().listening_since = None;
        match res {
            Ok(()) => return,
            Err(err) => tracing::warn!(error = %err, "heartbeat listener interrupted; resuming"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn listen(l: &Liveness, shutdown: &CancellationToken) -> Result<(), BrokerError> {
    let t = l.broker.topology();
    let queue = t.heartbeat_queue(&l.proxy_id);
    let ch = l.broker.channel().await?;
    let mut consumer = consume_private(&ch, &queue, &t.runners_exchange(), "").await?;
    l.seen().listening_since = Some(Instant::now());
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            d = consumer.next() => d,
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(err)) => return Err(err.into()),
            None => return Err(BrokerError::NotConnected),
        };
        match serde_json::from_slice::<Heartbeat>(&delivery.data) {
            Ok(hb) => {
                l.seen().runners.insert(hb.runner, Instant::now());
            }
            Err(err) => tracing::warn!(error = %err, "skipping a malformed heartbeat"),
        }
    }
}

async fn judge_forever(l: Liveness, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(l.interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = judge(&l).await {
            tracing::warn!(error = %err, "runner liveness check failed");
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum JudgeError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

async fn judge(l: &Liveness) -> Result<(), JudgeError> {
    let runners: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT runner FROM sessions WHERE status IN ('connecting', 'open') AND runner IS NOT NULL",
    )
    .fetch_all(&l.db)
    .await?;
    if runners.is_empty() {
        return Ok(());
    }
    let dead: Vec<String> = {
        let seen = l.seen();
        seen.dead(&runners, Instant::now(), l.interval * MISSED)
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    for runner in dead {
        mark_lost(l, &runner).await?;
    }
    Ok(())
}

async fn mark_lost(l: &Liveness, runner: &str) -> Result<(), JudgeError> {
    let message = format!("the runner {runner} handling this session stopped responding");
    let lost: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE sessions SET status = 'lost', ended_at = now(), error_kind = COALESCE(error_kind, 'lost'), \
           error = COALESCE(error, $2) \
         WHERE runner = $1 AND status IN ('pending', 'connecting', 'open') RETURNING id",
    )
    .bind(runner)
    .bind(&message)
    .fetch_all(&l.db)
    .await?;
    if lost.is_empty() {
        return Ok(());
    }
    tracing::warn!(
        runner,
        sessions = lost.len(),
        "runner stopped responding; its sessions are lost"
    );
    sqlx::query("UPDATE runs SET status = 'lost', ended_at = now() WHERE session_id = ANY($1) AND status IN ('queued', 'running')")
        .bind(&lost)
        .execute(&l.db)
        .await?;
    for session in lost {
        db::audit(
            &l.db,
            None,
            "session.lost",
            &session.to_string(),
            json!({"runner": runner}),
        )
        .await;
        l.broker
            .publish_event(session, &Event::error(ErrorKind::Lost, message.clone()))
            .await?;
        let status = Event::Status {
            status: SessionStatus::Lost,
            runner: Some(runner.to_owned()),
            message: Some(message.clone()),
        };
        l.broker.publish_event(session, &status).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_is_dead_after_three_silent_intervals() {
        let start = Instant::now();
        let limit = Duration::from_secs(6);
        let mut seen = Seen::default();
        let all = vec!["a".to_owned(), "b".to_owned()];
        // Not listening: nobody is judged.
        assert!(seen
            .dead(&all, start + Duration::from_secs(60), limit)
            .is_empty());
        seen.listening_since = Some(start);
        seen.runners
            .insert("a".into(), start + Duration::from_secs(5));
        // "b" never heard from: counts as seen when listening began.
        assert_eq!(
            seen.dead(&all, start + Duration::from_secs(6), limit),
            vec!["b"]
        );
        assert_eq!(
            seen.dead(&all, start + Duration::from_secs(11), limit),
            vec!["a", "b"]
        );
        assert!(seen
            .dead(&all, start + Duration::from_secs(3), limit)
            .is_empty());
    }
}

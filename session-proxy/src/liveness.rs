//! Runner liveness: this proxy's own queue of runner heartbeats, and a check
//! each interval that
//! - turns the sessions of a silent runner `lost` — but only while this
//!   proxy itself hears the broker: a runner counts as silent when the
//!   proxy heard the broker (a heartbeat of anyone, or its connection's
//!   probe) three intervals after the runner's last heartbeat, and never
//!   sooner than three intervals after the proxy (re)started listening;
//! - compares what heartbeats list with the database: a live session that
//!   its runner's heartbeats stopped listing is `lost` (the runner no
//!   longer has it), and a session a runner still lists after it ended
//!   (declared lost while the runner was cut off) is told to close, so the
//!   runner stops it and the host's processes with it.
//!
//! Several proxies may judge the same session at once; the one whose
//! UPDATE changed the row publishes the error, so viewers hear it once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::message::Delivery;
use serde_json::json;
use shellway_common::{Control, ErrorKind, Event, Heartbeat, SessionStatus};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::consumer::{consume, Handler, Queue};
use crate::bus::{Broker, BrokerError};
use crate::store::{self, AuditAction};

/// Missed heartbeats after which a runner is dead.
pub(crate) const MISSED: u32 = 3;
/// How long a session may be missing from its runner's heartbeats before
/// it counts as gone, in intervals (more than `MISSED`: the recorder may
/// trail a session's last events by a moment).
const MISSING: u32 = 2 * MISSED;
/// How often an ended session a runner still holds is told to close.
const TELL_AGAIN: Duration = Duration::from_secs(10);
/// A runner not heard from for this long is forgotten.
const FORGET: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub(crate) struct Liveness {
    db: PgPool,
    broker: Broker,
    proxy_id: String,
    interval: Duration,
    seen: Arc<Mutex<Seen>>,
}

/// The latest heartbeat of one runner.
#[derive(Debug)]
struct Beat {
    at: Instant,
    sessions: HashSet<Uuid>,
}

/// What this proxy heard: the latest heartbeat of each runner, and since
/// when heartbeats flow to us (a runner we never heard from counts as seen
/// when listening began).
#[derive(Debug, Default)]
struct Seen {
    listening_since: Option<Instant>,
    /// Last time anything proved this proxy hears the broker.
    heard: Option<Instant>,
    runners: HashMap<String, Beat>,
    /// Live sessions their runner's heartbeats do not list, since when.
    missing: HashMap<Uuid, Instant>,
    /// Ended sessions a runner still lists, and when it was told to close.
    told: HashMap<Uuid, Instant>,
}

impl Seen {
    /// Runners among `candidates` silent for at least `limit`, judged at
    /// `now` with the broker last heard from at `heard`.
    fn dead<'a>(
        &self,
        candidates: &'a [String],
        heard: Option<Instant>,
        limit: Duration,
    ) -> Vec<&'a str> {
        let (Some(since), Some(heard)) = (self.listening_since, heard) else {
            // Not hearing heartbeats ourselves proves nothing about runners.
            return Vec::new();
        };
        candidates
            .iter()
            .filter(|r| {
                let last = self
                    .runners
                    .get(r.as_str())
                    .map_or(since, |b| b.at)
                    .max(since);
                heard.saturating_duration_since(last) >= limit
            })
            .map(String::as_str)
            .collect()
    }

    /// Sessions held by live runners (listed in a heartbeat received
    /// within `fresh`).
    fn held(&self, now: Instant, fresh: Duration) -> HashSet<Uuid> {
        self.runners
            .values()
            .filter(|b| now.saturating_duration_since(b.at) <= fresh)
            .flat_map(|b| b.sessions.iter().copied())
            .collect()
    }

    /// Of `live` (session, runner) pairs, those their runner's heartbeats
    /// have not listed for `limit`: from the first heartbeat without the
    /// session to the latest one. Only heartbeats count, so a proxy that
    /// hears nothing concludes nothing.
    fn gone(&mut self, live: &[(Uuid, String)], limit: Duration) -> Vec<(Uuid, String)> {
        let mut gone = Vec::new();
        let mut still = HashMap::new();
        for (session, runner) in live {
            let Some(beat) = self.runners.get(runner) else {
                continue;
            };
            if beat.sessions.contains(session) {
                continue;
            }
            let since = self.missing.get(session).copied().unwrap_or(beat.at);
            still.insert(*session, since);
            if beat.at.saturating_duration_since(since) >= limit {
                gone.push((*session, runner.clone()));
            }
        }
        self.missing = still;
        gone
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

    /// Sessions live runners hold right now, if this proxy has listened
    /// long enough to know (`None` otherwise).
    pub(crate) fn held_sessions(&self) -> Option<HashSet<Uuid>> {
        let limit = self.interval * MISSED;
        let now = Instant::now();
        let seen = self.seen();
        let since = seen.listening_since?;
        (now.saturating_duration_since(since) >= limit).then(|| seen.held(now, limit))
    }

    /// When this proxy last had proof it hears the broker.
    fn heard(&self) -> Option<Instant> {
        let probe = self.broker.heard_at();
        let beat = self.seen().heard;
        probe.max(beat)
    }
}

pub(crate) async fn run(l: Liveness, shutdown: CancellationToken) {
    let listen = listen_forever(l.clone(), shutdown.clone());
    let judge = judge_forever(l, shutdown);
    tokio::join!(listen, judge);
}

async fn listen_forever(l: Liveness, shutdown: CancellationToken) {
    let mut listener = Listener(l.clone());
    consume(
        &l.broker,
        "heartbeat listener",
        &mut listener,
        None,
        &shutdown,
    )
    .await;
    l.seen().listening_since = None;
}

/// This proxy's own queue of heartbeats.
struct Listener(Liveness);

impl Handler for Listener {
    type Error = BrokerError;

    fn queue(&self, broker: &Broker) -> Result<Queue, BrokerError> {
        let t = broker.topology();
        Ok(Queue::Private {
            name: t.heartbeat_queue(&broker.private_owner(&self.0.proxy_id)?),
            exchange: t.runners_exchange(),
            key: String::new(),
        })
    }

    fn started(&mut self, _queue: &Queue) {
        self.0.seen().listening_since = Some(Instant::now());
    }

    fn interrupted(&mut self) {
        self.0.seen().listening_since = None;
    }

    async fn handle(&mut self, deliveries: Vec<Delivery>) -> Result<(), BrokerError> {
        for delivery in deliveries {
            match serde_json::from_slice::<Heartbeat>(&delivery.data) {
                Ok(hb) => {
                    let now = Instant::now();
                    let mut seen = self.0.seen();
                    seen.heard = Some(now);
                    let beat = Beat {
                        at: now,
                        sessions: hb.sessions.into_iter().collect(),
                    };
                    seen.runners.insert(hb.runner, beat);
                }
                Err(err) => tracing::warn!(error = %err, "skipping a malformed heartbeat"),
            }
        }
        Ok(())
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
    let now = Instant::now();
    l.seen()
        .runners
        .retain(|_, b| now.saturating_duration_since(b.at) < FORGET);
    let live = store::sessions::live_with_runner(&l.db).await?;
    let mut runners: Vec<String> = live.iter().map(|(_, r)| r.clone()).collect();
    runners.sort();
    runners.dedup();
    let limit = l.interval * MISSED;
    let heard = l.heard();
    let dead: Vec<String> = l
        .seen()
        .dead(&runners, heard, limit)
        .into_iter()
        .map(str::to_owned)
        .collect();
    for runner in &dead {
        mark_lost(l, runner).await?;
    }
    let alive: Vec<(Uuid, String)> = live
        .into_iter()
        .filter(|(_, r)| !dead.contains(r))
        .collect();
    let gone = l.seen().gone(&alive, l.interval * MISSING);
    for (session, runner) in gone {
        let message = format!("the runner {runner} no longer holds this session");
        lose(l, &[session], &runner, &message).await?;
    }
    tell_ended_to_close(l, now).await
}

/// Sessions a runner lists that have ended (declared lost while the runner
/// was cut off, or failed by the reaper): tells their runner to close them.
async fn tell_ended_to_close(l: &Liveness, now: Instant) -> Result<(), JudgeError> {
    let listed: Vec<Uuid> = {
        let mut seen = l.seen();
        seen.told
            .retain(|_, at| now.saturating_duration_since(*at) < TELL_AGAIN);
        let held = seen.held(now, l.interval * 2);
        held.into_iter()
            .filter(|s| !seen.told.contains_key(s))
            .collect()
    };
    if listed.is_empty() {
        return Ok(());
    }
    let ended = store::sessions::ended_among(&l.db, &listed).await?;
    for (session, status) in ended {
        l.seen().told.insert(session, now);
        tracing::info!(session_id = %session, status, "a runner still holds an ended session; telling it to close");
        let close = Control::Close {
            reason: format!("the session is {status}"),
            by: None,
        };
        l.broker.publish_control(session, &close, false).await?;
    }
    Ok(())
}

async fn mark_lost(l: &Liveness, runner: &str) -> Result<(), JudgeError> {
    let message = format!("the runner {runner} handling this session stopped responding");
    let lost = store::sessions::live_on_runner(&l.db, runner).await?;
    if !lost.is_empty() {
        tracing::warn!(
            runner,
            sessions = lost.len(),
            "runner stopped responding; its sessions are lost"
        );
    }
    lose(l, &lost, runner, &message).await
}

/// Marks `sessions` lost (those still live), tells their viewers once, and
/// tells the runner to close them should it come back.
async fn lose(
    l: &Liveness,
    sessions: &[Uuid],
    runner: &str,
    message: &str,
) -> Result<(), JudgeError> {
    if sessions.is_empty() {
        return Ok(());
    }
    for &session in sessions {
        let change = store::sessions::Change {
            error_kind: Some("lost"),
            error: Some(message),
            ..Default::default()
        };
        let detail = json!({"runner": runner, "reason": message});
        let moved = store::sessions::set_status_audited(
            &l.db,
            session,
            SessionStatus::Lost,
            change,
            None,
            AuditAction::SessionLost,
            detail,
        )
        .await?;
        if !moved.applied() {
            continue;
        }
        tracing::warn!(session_id = %session, runner, reason = message, "session lost");
        l.broker
            .publish_event(session, &Event::error(ErrorKind::Lost, message))
            .await?;
        let status = Event::Status {
            status: SessionStatus::Lost,
            runner: Some(runner.to_owned()),
            message: Some(message.to_owned()),
        };
        l.broker.publish_event(session, &status).await?;
        let close = Control::Close {
            reason: message.to_owned(),
            by: None,
        };
        l.broker.publish_control(session, &close, false).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(at: Instant, sessions: &[Uuid]) -> Beat {
        Beat {
            at,
            sessions: sessions.iter().copied().collect(),
        }
    }

    #[test]
    fn a_runner_is_dead_after_three_silent_intervals() {
        let start = Instant::now();
        let limit = Duration::from_secs(6);
        let at = |s| Some(start + Duration::from_secs(s));
        let mut seen = Seen::default();
        let all = vec!["a".to_owned(), "b".to_owned()];
        // Not listening: nobody is judged.
        assert!(seen.dead(&all, at(60), limit).is_empty());
        seen.listening_since = Some(start);
        seen.runners
            .insert("a".into(), beat(start + Duration::from_secs(5), &[]));
        // "b" never heard from: counts as seen when listening began.
        assert_eq!(seen.dead(&all, at(6), limit), vec!["b"]);
        assert_eq!(seen.dead(&all, at(11), limit), vec!["a", "b"]);
        assert!(seen.dead(&all, at(3), limit).is_empty());
    }

    #[test]
    fn nobody_is_dead_while_the_proxy_itself_hears_nothing() {
        let start = Instant::now();
        let limit = Duration::from_secs(6);
        let mut seen = Seen {
            listening_since: Some(start),
            ..Default::default()
        };
        seen.runners
            .insert("a".into(), beat(start + Duration::from_secs(5), &[]));
        let all = vec!["a".to_owned()];
        // The broker was last heard just after the runner: however late it
        // is now, silence since then proves nothing.
        let heard = Some(start + Duration::from_secs(6));
        assert!(seen.dead(&all, heard, limit).is_empty());
        assert!(seen.dead(&all, None, limit).is_empty());
        // Heard three intervals after the runner's last beat: dead.
        assert_eq!(
            seen.dead(&all, Some(start + Duration::from_secs(11)), limit),
            vec!["a"]
        );
    }

    #[test]
    fn a_session_its_runner_stops_listing_is_gone_after_the_limit() {
        let start = Instant::now();
        let limit = Duration::from_secs(12);
        let at = |s| start + Duration::from_secs(s);
        let (kept, dropped, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut seen = Seen::default();
        let live = vec![
            (kept, "a".to_owned()),
            (dropped, "a".to_owned()),
            // A runner never heard from is judged by silence, not here.
            (other, "z".to_owned()),
        ];
        seen.runners.insert("a".into(), beat(at(0), &[kept]));
        assert!(seen.gone(&live, limit).is_empty());
        // However long the check runs, no newer heartbeat proves nothing.
        assert!(seen.gone(&live, limit).is_empty());
        seen.runners.insert("a".into(), beat(at(11), &[kept]));
        assert!(seen.gone(&live, limit).is_empty());
        seen.runners.insert("a".into(), beat(at(12), &[kept]));
        assert_eq!(seen.gone(&live, limit), vec![(dropped, "a".to_owned())]);
        // Listed again: no longer missing.
        seen.runners
            .insert("a".into(), beat(at(30), &[kept, dropped]));
        assert!(seen.gone(&live, limit).is_empty());
        assert!(seen.missing.is_empty());
    }
}

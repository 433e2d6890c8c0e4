//! Live output to this proxy's viewers: one queue per session per proxy
//! (`<p>.out.<session>.<proxy>`), created when the first local viewer of the
//! session attaches and deleted when the last one leaves, fanned out to the
//! viewers through a bounded broadcast. A viewer that falls behind loses
//! live messages (never memory) and resyncs from the recording or a
//! snapshot.
//!
//! When the broker goes away the feed tells its viewers (a `link` event,
//! `interrupted`), rebuilds its queue as soon as the broker is back, and
//! tells them again (`restored`): what was published meanwhile is in the
//! recording, and the runner publishes again what the broker lost.
//!
//! Each feed also reads its session's status from the database now and
//! then (one query per session and proxy, whatever the number of viewers,
//! never on a viewer's own loop): what the bus did not bring (a change from
//! before the feed was bound, or from while the broker was away) reaches
//! the viewers as a [`Report::Stored`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::QueueDeleteOptions;
use shellway_common::event::LinkState;
use shellway_common::topology::session_binding;
use shellway_common::Event;
use shellway_common::SessionStatus;
use sqlx::PgPool;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::broker::{consume_private, Broker, BrokerError, Report};

/// How long a viewer waits for its feed's queue to be bound.
const READY_WAIT: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_millis(250);
/// How often a feed reads its session's status: often while the session
/// opens, rarely once open.
const STATUS_POLL: Duration = Duration::from_secs(1);
const STATUS_POLL_OPEN: Duration = Duration::from_secs(10);
/// A status read that takes longer is skipped (the database is away).
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) use crate::store::sessions::{load_status, StoredStatus};

#[derive(Clone)]
pub(crate) struct Fanout {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Broker,
    db: PgPool,
    proxy_id: String,
    /// Messages buffered per viewer before it counts as lagging.
    viewer_buffer: usize,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    feeds: Mutex<HashMap<Uuid, Entry>>,
}

struct Entry {
    feed: Arc<Feed>,
    viewers: usize,
}

struct Feed {
    tx: broadcast::Sender<Arc<Report>>,
    /// Whether the queue is bound and consumed right now.
    ready: watch::Sender<bool>,
    /// Signalled when the last viewer leaves.
    idle: Notify,
}

/// A viewer's live stream; leaving drops the feed's viewer count.
pub(crate) struct Subscription {
    pub rx: broadcast::Receiver<Arc<Report>>,
    _guard: Guard,
}

struct Guard {
    inner: Arc<Inner>,
    session: Uuid,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut feeds = self.inner.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = feeds.get_mut(&self.session) {
            entry.viewers = entry.viewers.saturating_sub(1);
            if entry.viewers == 0 {
                entry.feed.idle.notify_one();
            }
        }
    }
}

enum Ended {
    Idle,
    Shutdown,
}

impl Fanout {
    pub(crate) fn new(
        broker: Broker,
        db: PgPool,
        proxy_id: String,
        viewer_buffer: usize,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                broker,
                db,
                proxy_id,
                viewer_buffer: viewer_buffer.max(1),
                tracker,
                shutdown,
                feeds: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Subscribes to the live stream of `session`. When this returns, every
    /// message published from now on reaches the subscription (unless the
    /// broker is down, in which case the viewer resyncs from the recording).
    pub(crate) async fn subscribe(&self, session: Uuid) -> Subscription {
        let (rx, mut ready, spawn) = {
            let mut feeds = self.inner.feeds.lock().unwrap_or_else(|e| e.into_inner());
            let mut spawn = None;
            let entry = feeds.entry(session).or_insert_with(|| {
                let feed = Arc::new(Feed {
                    tx: broadcast::channel(self.inner.viewer_buffer).0,
                    ready: watch::channel(false).0,
                    idle: Notify::new(),
                });
                spawn = Some(feed.clone());
                Entry { feed, viewers: 0 }
            });
            entry.viewers += 1;
            (
                entry.feed.tx.subscribe(),
                entry.feed.ready.subscribe(),
                spawn,
            )
        };
        if let Some(feed) = spawn {
            let inner = self.inner.clone();
            let span = tracing::debug_span!("live_feed", session_id = %session);
            self.inner
                .tracker
                .spawn(feed_task(inner, session, feed).instrument(span));
        }
        if tokio::time::timeout(READY_WAIT, ready.wait_for(|r| *r))
            .await
            .is_err()
        {
            tracing::warn!(session_id = %session, "live feed not ready; the viewer will resync from the recording");
        }
        Subscription {
            rx,
            _guard: Guard {
                inner: self.inner.clone(),
                session,
            },
        }
    }
}

async fn feed_task(inner: Arc<Inner>, session: Uuid, feed: Arc<Feed>) {
    let polling = inner.shutdown.child_token();
    let _stop_polling = polling.clone().drop_guard();
    inner
        .tracker
        .spawn(poll_status(inner.db.clone(), session, feed.tx.clone(), polling).in_current_span());
    let mut interrupted = false;
    loop {
        match serve_feed(&inner, session, &feed, &mut interrupted).await {
            Ok(Ended::Shutdown) => return,
            Ok(Ended::Idle) => {
                let mut feeds = inner.feeds.lock().unwrap_or_else(|e| e.into_inner());
                if feeds.get(&session).is_some_and(|e| e.viewers == 0) {
                    feeds.remove(&session);
                    return;
                }
            }
            Err(err) => {
                if feed.ready.send_replace(false) && !interrupted {
                    interrupted = true;
                    let _ = feed
                        .tx
                        .send(Arc::new(Report::Event(Event::link(LinkState::Interrupted))));
                }
                tracing::warn!(session_id = %session, error = %err, "live feed interrupted; rebuilding once the broker is back");
                tokio::select! {
                    _ = inner.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
                loop {
                    if is_idle(&inner, session, &feed) {
                        return;
                    }
                    tokio::select! {
                        _ = inner.shutdown.cancelled() => return,
                        _ = inner.broker.up() => break,
                        _ = feed.idle.notified() => {}
                    }
                }
            }
        }
    }
}

/// Removes the feed if nobody watches it any more; true if removed.
fn is_idle(inner: &Inner, session: Uuid, feed: &Feed) -> bool {
    let mut feeds = inner.feeds.lock().unwrap_or_else(|e| e.into_inner());
    if feeds.get(&session).is_some_and(|e| e.viewers == 0) {
        feed.ready.send_replace(false);
        feeds.remove(&session);
        return true;
    }
    false
}

/// Reads the session's status now and then and tells the viewers when it
/// changed, until `stop`.
async fn poll_status(
    db: PgPool,
    session: Uuid,
    tx: broadcast::Sender<Arc<Report>>,
    stop: CancellationToken,
) {
    let mut last: Option<StoredStatus> = None;
    loop {
        let every = match &last {
            Some(s) if s.status == SessionStatus::Open => STATUS_POLL_OPEN,
            _ => STATUS_POLL,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let read = tokio::time::timeout(STATUS_TIMEOUT, load_status(&db, session)).await;
        let stored = match read {
            Ok(Ok(Some(stored))) => stored,
            Ok(Ok(None)) => continue,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "cannot read the session status");
                continue;
            }
            Err(_) => continue,
        };
        if last.as_ref() != Some(&stored) {
            let _ = tx.send(Arc::new(Report::Stored(stored.clone())));
            if !stored.status.is_live() {
                return;
            }
            last = Some(stored);
        }
    }
}

async fn serve_feed(
    inner: &Inner,
    session: Uuid,
    feed: &Feed,
    interrupted: &mut bool,
) -> Result<Ended, BrokerError> {
    let t = inner.broker.topology();
    let queue = t.out_queue(session, &inner.broker.private_owner(&inner.proxy_id)?);
    let ch = inner.broker.channel().await?;
    // No acknowledgements: this queue is only this proxy's live copy (the
    // recorder has the durable one), so a message lost with the proxy is
    // replayed from the recording, and no ack frame per output message is
    // written on the echo path.
    let mut consumer =
        consume_private(&ch, &queue, &t.events_exchange(), &session_binding(session)).await?;
    feed.ready.send_replace(true);
    if std::mem::take(interrupted) {
        tracing::info!(session_id = %session, "live feed restored");
        let _ = feed
            .tx
            .send(Arc::new(Report::Event(Event::link(LinkState::Restored))));
    }
    tracing::debug!(session_id = %session, "live feed started");
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => {
                let _ = ch.close(200, "shutdown".into()).await;
                return Ok(Ended::Shutdown);
            }
            _ = feed.idle.notified() => {
                {
                    let feeds = inner.feeds.lock().unwrap_or_else(|e| e.into_inner());
                    if feeds.get(&session).is_none_or(|e| e.viewers != 0) {
                        continue;
                    }
                    feed.ready.send_replace(false);
                }
                let _ = ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
                let _ = ch.close(200, "no viewers".into()).await;
                tracing::debug!(session_id = %session, "live feed stopped");
                return Ok(Ended::Idle);
            }
            delivery = consumer.next() => {
                let delivery = match delivery {
                    Some(Ok(d)) => d,
                    Some(Err(err)) => return Err(err.into()),
                    None => return Err(BrokerError::NotConnected),
                };
                match Report::decode(&delivery.properties, delivery.data) {
                    // No viewer listening is fine: the recorder has it.
                    Ok(report) => { let _ = feed.tx.send(Arc::new(report)); }
                    Err(err) => tracing::warn!(session_id = %session, error = %err, "skipping a malformed message"),
                }
            }
        }
    }
}

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

use lapin::message::Delivery;
use shellway_common::browser::LinkState;
use shellway_common::topology::session_binding;
use shellway_common::SessionStatus;
use sqlx::PgPool;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::bus::consumer::{consume, Ended, Handler, Queue};
use crate::bus::{Broker, BrokerError, Report};

/// How long a viewer waits for its feed's queue to be bound.
const READY_WAIT: Duration = Duration::from_secs(5);
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
    let mut live = Live {
        inner: inner.clone(),
        session,
        feed,
        interrupted: false,
    };
    loop {
        let ended = consume(&inner.broker, "live feed", &mut live, None, &inner.shutdown).await;
        if ended == Ended::Shutdown {
            return;
        }
        // Nobody watched: gone, unless a viewer came back meanwhile.
        let mut feeds = inner.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if feeds.get(&session).is_some_and(|e| e.viewers == 0) {
            feeds.remove(&session);
            tracing::debug!(session_id = %session, "live feed stopped");
            return;
        }
    }
}

/// One session's feed as a consumer of this proxy's own queue for it.
struct Live {
    inner: Arc<Inner>,
    session: Uuid,
    feed: Arc<Feed>,
    /// Viewers were told the link is interrupted (and not yet restored).
    interrupted: bool,
}

impl Handler for Live {
    type Error = BrokerError;

    // No acknowledgements: this queue is only this proxy's live copy (the
    // recorder has the durable one), so a message lost with the proxy is
    // replayed from the recording, and no ack frame per output message is
    // written on the echo path.
    fn queue(&self, broker: &Broker) -> Result<Queue, BrokerError> {
        let t = broker.topology();
        let owner = broker.private_owner(&self.inner.proxy_id)?;
        Ok(Queue::Private {
            name: t.out_queue(self.session, &owner),
            exchange: t.events_exchange(),
            key: session_binding(self.session),
        })
    }

    fn started(&mut self, _queue: &Queue) {
        self.feed.ready.send_replace(true);
        if std::mem::take(&mut self.interrupted) {
            tracing::info!(session_id = %self.session, "live feed restored");
            let _ = self
                .feed
                .tx
                .send(Arc::new(Report::Link(LinkState::Restored)));
        }
        tracing::debug!(session_id = %self.session, "live feed started");
    }

    fn interrupted(&mut self) {
        if self.feed.ready.send_replace(false) && !self.interrupted {
            self.interrupted = true;
            let _ = self
                .feed
                .tx
                .send(Arc::new(Report::Link(LinkState::Interrupted)));
        }
    }

    /// The last viewer left: not ready any more (under the lock, so a
    /// viewer who comes now waits for the feed to start again).
    async fn done(&self) {
        loop {
            self.feed.idle.notified().await;
            let feeds = self.inner.feeds.lock().unwrap_or_else(|e| e.into_inner());
            if feeds.get(&self.session).is_none_or(|e| e.viewers == 0) {
                self.feed.ready.send_replace(false);
                return;
            }
        }
    }

    async fn handle(&mut self, deliveries: Vec<Delivery>) -> Result<(), BrokerError> {
        for delivery in deliveries {
            match Report::decode(&delivery.properties, delivery.data) {
                // No viewer listening is fine: the recorder has it.
                Ok(report) => {
                    let _ = self.feed.tx.send(Arc::new(report));
                }
                Err(err) => {
                    tracing::warn!(session_id = %self.session, error = %err, "skipping a malformed message")
                }
            }
        }
        Ok(())
    }
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

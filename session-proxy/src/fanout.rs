//! Live output to this proxy's viewers: one queue per session per proxy
//! (`<p>.out.<session>.<proxy>`), created when the first local viewer of the
//! session attaches and deleted when the last one leaves, fanned out to the
//! viewers through a bounded broadcast. A viewer that falls behind loses
//! live messages (never memory) and resyncs from the recording.
//!
//! When the broker goes away the feed tells its viewers (a `link` event,
//! `interrupted`), rebuilds its queue as soon as the broker is back, and
//! tells them again (`restored`): what was published meanwhile is in the
//! recording, and the runner publishes again what the broker lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::QueueDeleteOptions;
use shellway_common::event::LinkState;
use shellway_common::topology::session_binding;
use shellway_common::Event;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::broker::{consume_private, Broker, BrokerError, Report};

/// How long a viewer waits for its feed's queue to be bound.
const READY_WAIT: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub(crate) struct Fanout {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Broker,
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
        proxy_id: String,
        viewer_buffer: usize,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                broker,
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

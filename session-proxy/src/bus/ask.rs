//! What the proxy asks of a runner and waits for: host-key scans
//! (`POST /api/hosts/scan`; the proxy never dials a host itself) and vault
//! re-seals (`POST /api/credentials/rotate`; the proxy holds no identity).
//!
//! A request goes to the scans queue (its AMQP type telling which ask it
//! is) with this proxy's reply queue in `reply_to` and an id in
//! `correlation_id`; it expires unserved after [`TAKE_TIMEOUT`]. The runner
//! that takes it answers `taken` at once, then the outcome within the
//! ask's own bound. No `taken` in time means no runner is there to ask,
//! and no outcome in time means the runner went away: both are
//! [`AskError::NoRunner`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::message::Delivery;
use lapin::types::ShortString;
use lapin::BasicProperties;
use serde::de::DeserializeOwned;
use shellway_common::reseal::{ResealReply, ResealRequest, RESEAL_KIND, RESEAL_TIMEOUT};
use shellway_common::scan::{ScanReply, ScanRequest, SCAN_TAKE_TIMEOUT, SCAN_TIMEOUT};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::consumer::{consume, Handler, Queue};
use super::{Broker, BrokerError};

/// Time beyond the runner's own bound for its outcome to arrive.
const SLACK: Duration = Duration::from_secs(2);
/// How long to wait for some runner to take a request (it expires unserved
/// after the same time).
const TAKE_TIMEOUT: Duration = SCAN_TAKE_TIMEOUT;

#[derive(Debug, thiserror::Error)]
pub(crate) enum AskError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("no runner answered within {} s; try again shortly", .0.as_secs())]
    NoRunner(Duration),
}

#[derive(Clone)]
pub(crate) struct RunnerAsks {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Broker,
    proxy_id: String,
    /// The reply queue in use, while it is consumed.
    reply_to: Mutex<Option<String>>,
    /// Requests waiting for replies (raw), by correlation id.
    waiting: Mutex<HashMap<String, mpsc::Sender<Vec<u8>>>>,
}

/// Takes a finished (or abandoned) request off the waiting list.
struct Waiting<'a> {
    inner: &'a Inner,
    id: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(&self.inner.waiting).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RunnerAsks {
    pub(crate) fn new(broker: Broker, proxy_id: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                broker,
                proxy_id,
                reply_to: Mutex::new(None),
                waiting: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Consumes this proxy's reply queue until shutdown.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let broker = self.inner.broker.clone();
        let mut replies = Replies(self.inner);
        consume(&broker, "runner replies", &mut replies, None, &shutdown).await;
    }

    /// Asks a runner for the key of `hostname:port`: what it found (never
    /// `Taken`).
    pub(crate) async fn scan(&self, hostname: &str, port: u16) -> Result<ScanReply, AskError> {
        let request = ScanRequest {
            hostname: hostname.to_owned(),
            port,
        };
        self.ask(None, &request, SCAN_TIMEOUT).await
    }

    /// Asks a runner to open `request`'s credentials and seal them to its
    /// recipients: the outcome (never `Taken`).
    pub(crate) async fn reseal(&self, request: &ResealRequest) -> Result<ResealReply, AskError> {
        self.ask(Some(RESEAL_KIND), request, RESEAL_TIMEOUT).await
    }

    /// Publishes `request` (of AMQP type `kind`) to the runners and waits
    /// for its outcome: a runner must take it within [`TAKE_TIMEOUT`] and
    /// answer within `work` after that.
    async fn ask<R: DeserializeOwned>(
        &self,
        kind: Option<&str>,
        request: &impl serde::Serialize,
        work: Duration,
    ) -> Result<R, AskError> {
        let inner = &self.inner;
        let reply_to = lock(&inner.reply_to)
            .clone()
            .ok_or(BrokerError::NotConnected)?;
        let id = Uuid::new_v4().to_string();
        let (tx, mut rx) = mpsc::channel(2);
        lock(&inner.waiting).insert(id.clone(), tx);
        let _waiting = Waiting {
            inner,
            id: id.clone(),
        };
        let body = serde_json::to_vec(request).unwrap_or_default();
        let mut props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_reply_to(ShortString::from(reply_to))
            .with_correlation_id(ShortString::from(id))
            .with_expiration(ShortString::from(TAKE_TIMEOUT.as_millis().to_string()));
        if let Some(kind) = kind {
            props = props.with_type(ShortString::from(kind));
        }
        let queue = inner.broker.topology().scans();
        inner
            .broker
            .publish_confirmed("", &queue, &body, props)
            .await?;
        let mut wait = TAKE_TIMEOUT;
        loop {
            let Ok(Some(raw)) = tokio::time::timeout(wait, rx.recv()).await else {
                return Err(AskError::NoRunner(wait));
            };
            if is_taken(&raw) {
                tracing::debug!("a runner took the request");
                wait = work + SLACK;
                continue;
            }
            match serde_json::from_slice(&raw) {
                Ok(outcome) => return Ok(outcome),
                Err(err) => tracing::warn!(error = %err, "skipping a malformed reply"),
            }
        }
    }
}

/// Whether a reply is the runner's `taken` (every ask's first reply).
fn is_taken(raw: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Tag<'a> {
        #[serde(borrow)]
        reply: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<Tag>(raw).is_ok_and(|t| t.reply == "taken")
}

/// The reply queue's consumer: hands each reply to the scan waiting for it.
struct Replies(Arc<Inner>);

impl Handler for Replies {
    type Error = BrokerError;

    // The default exchange routes replies by the queue's name: no binding.
    fn queue(&self, broker: &Broker) -> Result<Queue, BrokerError> {
        let owner = broker.private_owner(&self.0.proxy_id)?;
        Ok(Queue::Private {
            name: broker.topology().scan_replies(&owner),
            exchange: String::new(),
            key: String::new(),
        })
    }

    fn started(&mut self, queue: &Queue) {
        if let Queue::Private { name, .. } = queue {
            *lock(&self.0.reply_to) = Some(name.clone());
        }
    }

    fn interrupted(&mut self) {
        lock(&self.0.reply_to).take();
    }

    async fn handle(&mut self, deliveries: Vec<Delivery>) -> Result<(), BrokerError> {
        for d in deliveries {
            let Some(id) = d.properties.correlation_id().as_ref() else {
                continue;
            };
            let Some(tx) = lock(&self.0.waiting).get(id.as_str()).cloned() else {
                // Its request gave up already.
                continue;
            };
            let _ = tx.try_send(d.data);
        }
        Ok(())
    }
}

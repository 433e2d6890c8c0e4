//! Host-key scans asked of a runner (`POST /api/hosts/scan`): the proxy
//! never dials a host itself.
//!
//! A request goes to the scans queue with this proxy's reply queue in
//! `reply_to` and an id in `correlation_id`; it expires unserved after
//! [`SCAN_TAKE_TIMEOUT`]. The runner that takes it answers `taken` at once,
//! then the outcome within [`SCAN_TIMEOUT`]. No `taken` in time means no
//! runner is there to ask, and no outcome in time means the runner went
//! away: both are [`ScanError::NoRunner`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::message::Delivery;
use lapin::types::ShortString;
use lapin::BasicProperties;
use shellway_common::scan::{ScanReply, ScanRequest, SCAN_TAKE_TIMEOUT, SCAN_TIMEOUT};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::consumer::{consume, Handler, Queue};
use super::{Broker, BrokerError};

/// Time beyond the runner's own bound for its outcome to arrive.
const SLACK: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("no runner answered the scan within {} s; try again shortly", .0.as_secs())]
    NoRunner(Duration),
}

#[derive(Clone)]
pub(crate) struct Scans {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Broker,
    proxy_id: String,
    /// The reply queue in use, while it is consumed.
    reply_to: Mutex<Option<String>>,
    /// Scans waiting for replies, by correlation id.
    waiting: Mutex<HashMap<String, mpsc::Sender<ScanReply>>>,
}

/// Takes a finished (or abandoned) scan off the waiting list.
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

impl Scans {
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
        consume(&broker, "scan replies", &mut replies, None, &shutdown).await;
    }

    /// Asks a runner for the key of `hostname:port`: what it found (never
    /// `Taken`).
    pub(crate) async fn scan(&self, hostname: &str, port: u16) -> Result<ScanReply, ScanError> {
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
        let request = ScanRequest {
            hostname: hostname.to_owned(),
            port,
        };
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_reply_to(ShortString::from(reply_to))
            .with_correlation_id(ShortString::from(id))
            .with_expiration(ShortString::from(SCAN_TAKE_TIMEOUT.as_millis().to_string()));
        let queue = inner.broker.topology().scans();
        inner
            .broker
            .publish_confirmed("", &queue, &body, props)
            .await?;
        let mut wait = SCAN_TAKE_TIMEOUT;
        loop {
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(ScanReply::Taken { runner })) => {
                    tracing::debug!(%runner, "a runner took the scan");
                    wait = SCAN_TIMEOUT + SLACK;
                }
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) | Err(_) => return Err(ScanError::NoRunner(wait)),
            }
        }
    }
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
                // Its scan gave up already.
                continue;
            };
            match serde_json::from_slice::<ScanReply>(&d.data) {
                Ok(reply) => {
                    let _ = tx.try_send(reply);
                }
                Err(err) => tracing::warn!(error = %err, "skipping a malformed scan reply"),
            }
        }
        Ok(())
    }
}

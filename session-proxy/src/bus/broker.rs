//! The proxy's side of RabbitMQ: one supervised connection and the publish
//! paths the proxy needs.
//!
//! A supervisor task ([`Broker::supervise`]) owns the connection: it
//! connects (a short capped retry, every attempt logged with its cause and
//! the address), declares the shared topology, then probes the connection
//! every [`PROBE_EVERY`]; a probe that fails or does not answer within
//! [`PROBE_TIMEOUT`], or an error lapin reports, makes it drop the
//! connection and build a new one. Nobody else connects: while the broker is
//! down, every operation fails at once with [`BrokerError::NotConnected`],
//! and every operation the API waits on has a timeout ([`OP_TIMEOUT`]) so a
//! wedged connection cannot hold a request.
//!
//! Two publishing channels: `confirmed` waits for the broker's confirm
//! (requests, controls, events the proxy emits), `fast` does not (keystrokes
//! and the controls a viewer sends between them, which must stay in order
//! with them). Long-lived consumers go through `consumer.rs`, which opens
//! their channels with [`Broker::channel`] and waits for [`Broker::up`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use shellway_common::amqp::{self, Backoff, DurableQueueOptions};
use shellway_common::topology::{KIND_CONTROL, KIND_INPUT};
use shellway_common::{Control, Event, SessionRequest, Topology};
use tokio::sync::{watch, Mutex, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the supervisor checks that the connection answers…
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// …and how long an answer may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for any broker operation a request waits on.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long closing a dead connection may take before it is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub(crate) enum BrokerError {
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused the message")]
    Nacked,
    #[error("not connected to RabbitMQ")]
    NotConnected,
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Clone)]
pub(crate) struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    name: String,
    topology: Topology,
    durable: DurableQueueOptions,
    conn: StdMutex<Option<Arc<Connection>>>,
    /// Generation of the connection in use; `None` while down.
    up: watch::Sender<Option<u64>>,
    /// Last time the broker was heard from (a probe answered).
    heard: StdMutex<Option<Instant>>,
    /// Wakes the supervisor to probe now (an operation timed out).
    suspect: Notify,
    confirmed: Mutex<Option<Channel>>,
    fast: Mutex<Option<Channel>>,
    /// Input messages carry `<prefix>-<n>` as their id, so a runner never
    /// handles one twice when the broker hands it out again.
    id_prefix: String,
    next_id: AtomicU64,
}

impl Broker {
    pub(crate) fn new(
        url: &str,
        name: &str,
        topology: Topology,
        durable: DurableQueueOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                name: name.to_owned(),
                topology,
                durable,
                conn: StdMutex::new(None),
                up: watch::channel(None).0,
                heard: StdMutex::new(None),
                suspect: Notify::new(),
                confirmed: Mutex::new(None),
                fast: Mutex::new(None),
                id_prefix: Uuid::new_v4().simple().to_string()[..12].to_owned(),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Whether a connection is up (as far as the supervisor knows).
    pub(crate) fn is_up(&self) -> bool {
        self.inner.up.borrow().is_some()
    }

    /// The generation of the connection in use, if one is up.
    pub(crate) fn generation(&self) -> Option<u64> {
        *self.inner.up.borrow()
    }

    /// The owner part of the name of a queue private to this proxy and to
    /// the connection in use (`<proxy>.<generation>`): a connection that
    /// died silently may hold its exclusive queues on the broker for a
    /// while, and a new one must not wait for that.
    pub(crate) fn private_owner(&self, proxy_id: &str) -> Result<String, BrokerError> {
        let generation = self.generation().ok_or(BrokerError::NotConnected)?;
        Ok(format!("{proxy_id}.{generation}"))
    }

    /// Waits until a connection is up; returns its generation.
    pub(crate) async fn up(&self) -> u64 {
        let mut rx = self.inner.up.subscribe();
        let generation = rx.wait_for(Option::is_some).await.map(|g| *g);
        match generation {
            Ok(Some(generation)) => generation,
            // The broker handle outlives every waiter.
            _ => std::future::pending().await,
        }
    }

    /// When the broker last answered this proxy.
    pub(crate) fn heard_at(&self) -> Option<Instant> {
        *self.inner.heard.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn heard_now(&self) {
        *self.inner.heard.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Keeps a connection up until `shutdown`: connects, watches, rebuilds.
    pub(crate) async fn supervise(self, shutdown: CancellationToken) {
        let mut generation = 0;
        loop {
            let Some(conn) = self.connect(&shutdown).await else {
                return;
            };
            generation += 1;
            let conn = Arc::new(conn);
            *self.inner.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
            self.heard_now();
            self.inner.up.send_replace(Some(generation));
            tracing::info!(connection = %self.inner.name, generation, "connected to RabbitMQ");
            let why = self.watch(&conn, &shutdown).await;
            self.inner.up.send_replace(None);
            self.inner
                .conn
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            self.inner.confirmed.lock().await.take();
            self.inner.fast.lock().await.take();
            let closing = conn.close(200, "rebuilding".into());
            let _ = tokio::time::timeout(CLOSE_WAIT, closing).await;
            match why {
                None => return,
                Some(why) => {
                    tracing::warn!(connection = %self.inner.name, cause = %why, "lost the connection to RabbitMQ; reconnecting")
                }
            }
        }
    }

    /// Connects and declares the shared topology, retrying until it works
    /// (`None`: shut down meanwhile).
    async fn connect(&self, shutdown: &CancellationToken) -> Option<Connection> {
        let mut backoff = Backoff::default();
        let address = amqp::redact(&self.inner.url);
        loop {
            let attempt = async {
                let conn = amqp::connect_once(&self.inner.url, &self.inner.name).await?;
                let declared = async {
                    let ch = conn.create_channel().await?;
                    amqp::declare_shared(&ch, &self.inner.topology, &self.inner.durable).await?;
                    ch.close(200, "declared".into()).await
                };
                match tokio::time::timeout(OP_TIMEOUT, declared).await {
                    Ok(Ok(())) => Ok(conn),
                    Ok(Err(err)) => Err(amqp::ConnectError::Amqp(err)),
                    Err(_) => Err(amqp::ConnectError::Timeout),
                }
            };
            let err = tokio::select! {
                _ = shutdown.cancelled() => return None,
                attempt = attempt => match attempt {
                    Ok(conn) => return Some(conn),
                    Err(err) => err,
                },
            };
            let pause = backoff.next_pause();
            tracing::warn!(connection = %self.inner.name, %address, error = %err, retry_in_ms = pause.as_millis() as u64, "RabbitMQ unavailable, retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Watches a connection until it must be replaced (`Some(why)`) or the
    /// proxy shuts down (`None`).
    async fn watch(&self, conn: &Connection, shutdown: &CancellationToken) -> Option<String> {
        let mut events = conn.events_listener();
        let mut probe = tokio::time::interval(PROBE_EVERY);
        let mut probe_channel: Option<Channel> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                event = events.next() => match event {
                    Some(lapin::Event::Error(err)) => return Some(err.to_string()),
                    Some(_) => continue,
                    None => return Some("the connection ended".into()),
                },
                _ = probe.tick() => {}
                _ = self.inner.suspect.notified() => {}
            }
            match tokio::time::timeout(PROBE_TIMEOUT, self.probe(conn, &mut probe_channel)).await {
                Ok(Ok(())) => self.heard_now(),
                Ok(Err(err)) => return Some(format!("probe failed: {err}")),
                Err(_) => {
                    return Some(format!(
                        "the connection did not answer a probe within {PROBE_TIMEOUT:?}"
                    ))
                }
            }
        }
    }

    /// One round trip: a passive declare of the requests queue.
    async fn probe(&self, conn: &Connection, ch: &mut Option<Channel>) -> lapin::Result<()> {
        let channel = match ch.as_ref().filter(|c| c.status().connected()) {
            Some(c) => c.clone(),
            None => {
                let c = conn.create_channel().await?;
                *ch = Some(c.clone());
                c
            }
        };
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        channel
            .queue_declare(
                self.inner.topology.requests().into(),
                passive,
                FieldTable::default(),
            )
            .await
            .map(drop)
    }

    /// Runs `op` within [`OP_TIMEOUT`]; a timeout makes the supervisor
    /// check the connection at once.
    async fn timed<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(OP_TIMEOUT, op).await {
            Ok(result) => result,
            Err(_) => {
                self.inner.suspect.notify_one();
                Err(BrokerError::Timeout(OP_TIMEOUT))
            }
        }
    }

    /// A new channel on the current connection; fails at once while the
    /// broker is down.
    pub(crate) async fn channel(&self) -> Result<Channel, BrokerError> {
        let conn = self
            .inner
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|c| c.status().connected())
            .ok_or(BrokerError::NotConnected)?;
        self.timed(async { Ok(conn.create_channel().await?) }).await
    }

    async fn cached(
        &self,
        slot: &Mutex<Option<Channel>>,
        confirm: bool,
    ) -> Result<Channel, BrokerError> {
        let mut slot = slot.lock().await;
        if let Some(ch) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(ch.clone());
        }
        let ch = self.channel().await?;
        if confirm {
            self.timed(async { Ok(ch.confirm_select(ConfirmSelectOptions::default()).await?) })
                .await?;
        }
        *slot = Some(ch.clone());
        Ok(ch)
    }

    /// Publishes and waits for the broker's confirm; retries once on a
    /// fresh channel if the first one was broken.
    pub(crate) async fn publish_confirmed(
        &self,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        let mut last = None;
        for _ in 0..2 {
            let ch = self.cached(&self.inner.confirmed, true).await?;
            let sent = self
                .timed(async {
                    let confirm = ch
                        .basic_publish(
                            exchange.into(),
                            key.into(),
                            BasicPublishOptions::default(),
                            body,
                            props.clone(),
                        )
                        .await?;
                    Ok(confirm.await?)
                })
                .await;
            match sent {
                Ok(Confirmation::Nack(_)) => return Err(BrokerError::Nacked),
                Ok(_) => return Ok(()),
                Err(e @ BrokerError::Timeout(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
            self.inner.confirmed.lock().await.take();
        }
        Err(last.unwrap_or(BrokerError::Nacked))
    }

    /// Publishes without waiting for a confirm (the keystroke path).
    async fn publish_fast(
        &self,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        let mut last = None;
        for _ in 0..2 {
            let ch = self.cached(&self.inner.fast, false).await?;
            let sent = self
                .timed(async {
                    ch.basic_publish(
                        exchange.into(),
                        key.into(),
                        BasicPublishOptions::default(),
                        body,
                        props.clone(),
                    )
                    .await?;
                    Ok(())
                })
                .await;
            match sent {
                Ok(()) => return Ok(()),
                Err(e @ BrokerError::Timeout(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
            self.inner.fast.lock().await.take();
        }
        Err(last.unwrap_or(BrokerError::NotConnected))
    }

    /// The next input message id.
    fn message_id(&self) -> ShortString {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        ShortString::from(format!("{}-{n}", self.inner.id_prefix))
    }

    /// Declares the session's input queue and binds it, once per session,
    /// before its request is published: nothing sent early is lost.
    pub(crate) async fn declare_session(&self, session: Uuid) -> Result<(), BrokerError> {
        let ch = self.cached(&self.inner.confirmed, true).await?;
        let t = &self.inner.topology;
        self.timed(async { Ok(amqp::declare_session_input(&ch, t, session).await?) })
            .await
    }

    /// Publishes a session request; it expires unserved after `ttl`.
    pub(crate) async fn publish_request(
        &self,
        req: &SessionRequest,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let body = serde_json::to_vec(req).unwrap_or_default();
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_expiration(ShortString::from(ttl.as_millis().to_string()));
        self.publish_confirmed("", &self.inner.topology.requests(), &body, props)
            .await
    }

    /// Tells every proxy (and the recorder) about an event of a session.
    pub(crate) async fn publish_event(
        &self,
        session: Uuid,
        event: &Event,
    ) -> Result<(), BrokerError> {
        let (key, body) = amqp::encode_event(session, event);
        let exchange = self.inner.topology.events_exchange();
        self.publish_confirmed(&exchange, &key, &body, amqp::event_properties())
            .await
    }

    /// A control message to the session's runner. `ordered` sends it on the
    /// keystroke channel so it stays in order with the viewer's typing.
    pub(crate) async fn publish_control(
        &self,
        session: Uuid,
        control: &Control,
        ordered: bool,
    ) -> Result<(), BrokerError> {
        let body = serde_json::to_vec(control).unwrap_or_default();
        let props = BasicProperties::default()
            .with_type(KIND_CONTROL.into())
            .with_content_type("application/json".into())
            .with_message_id(self.message_id());
        let exchange = self.inner.topology.input_exchange();
        let key = session.to_string();
        if ordered {
            self.publish_fast(&exchange, &key, &body, props).await
        } else {
            self.publish_confirmed(&exchange, &key, &body, props).await
        }
    }

    /// Keystrokes: raw bytes, no confirm round trip.
    pub(crate) async fn publish_input(
        &self,
        session: Uuid,
        data: &[u8],
        user: &str,
    ) -> Result<(), BrokerError> {
        let mut headers = FieldTable::default();
        headers.insert("user".into(), AMQPValue::LongString(LongString::from(user)));
        let props = BasicProperties::default()
            .with_type(KIND_INPUT.into())
            .with_headers(headers)
            .with_message_id(self.message_id());
        let exchange = self.inner.topology.input_exchange();
        self.publish_fast(&exchange, &session.to_string(), data, props)
            .await
    }
}

//! Connecting to RabbitMQ and declaring the shared topology.
//!
//! Both the proxy and the runners declare what they use (declarations are
//! idempotent), so they can start in any order.
//!
//! Nobody relies on lapin's own recovery (its back-off grows to tens of
//! seconds and it gives no say over what is replayed): each component
//! notices a dead connection itself, drops it and connects afresh with
//! [`connect`], a short capped retry that logs every failed attempt.

use std::str::FromStr;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use uuid::Uuid;

use crate::event::Event;
use crate::output::OutputMeta;
use crate::topology::{event_key, Topology, KIND_EVENT, KIND_OUTPUT};

/// Options of the durable queues that outlive one process.
#[derive(Debug, Clone, Default)]
pub struct DurableQueueOptions {
    /// Delete the durable queues after this long unused. `None` in
    /// production; tests set it so they leave nothing behind.
    pub expires: Option<Duration>,
}

/// First pause between two attempts to reach RabbitMQ…
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// …doubling up to this, so a broker that comes back is used within it.
pub const RETRY_MAX: Duration = Duration::from_secs(1);
/// Longest wait for one attempt (TCP connect and AMQP handshake): an
/// address that drops packets must not hold a retry loop for minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// AMQP heartbeat asked for when the URL names none (seconds): the broker
/// then drops a connection whose peer vanished within about three of them,
/// which frees the exclusive consumers it held.
pub const DEFAULT_HEARTBEAT_S: u16 = 10;

/// The pause before each retry: [`RETRY_FIRST`], doubling, at most
/// [`RETRY_MAX`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: RETRY_FIRST }
    }
}

impl Backoff {
    /// The pause to take now; the following one is longer, up to the cap.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(RETRY_MAX);
        pause
    }
}

/// `url` with its password replaced, for logs and health output.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Setting a password only fails on URLs that cannot have one.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable AMQP URL>".into(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid AMQP URL: {0}")]
    Url(String),
    #[error("{0}")]
    Amqp(#[from] lapin::Error),
    #[error("no answer within {} s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
}

/// One attempt to connect, within [`CONNECT_TIMEOUT`], without lapin's
/// automatic recovery.
pub async fn connect_once(url: &str, name: &str) -> Result<Connection, ConnectError> {
    let mut uri = AMQPUri::from_str(url).map_err(ConnectError::Url)?;
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(DEFAULT_HEARTBEAT_S);
    }
    // lapin's parser keeps only host *names*; an IP address would become
    // its default, `localhost`.
    if let Some(host) = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    {
        uri.authority.host = host.trim_matches(['[', ']']).to_owned();
    }
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, props)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(err.into()),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// Connects, retrying with [`Backoff`] until it succeeds (drop the future
/// to stop). Every failed attempt is logged with its cause and the address
/// (never the password).
pub async fn connect(url: &str, name: &str) -> Connection {
    let mut backoff = Backoff::default();
    let address = redact(url);
    loop {
        match connect_once(url, name).await {
            Ok(conn) => {
                tracing::info!(connection = name, %address, "connected to RabbitMQ");
                return conn;
            }
            Err(err) => {
                let pause = backoff.next_pause();
                tracing::warn!(connection = name, %address, error = %err, retry_in_ms = pause.as_millis() as u64, "RabbitMQ unavailable, retrying");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Unused input queues of ended sessions disappear after this long.
pub const INPUT_QUEUE_EXPIRES: Duration = Duration::from_secs(600);

/// Declares a session's input queue and binds it to the input exchange.
/// Durable, so a broker restart keeps it (and its binding): the session's
/// runner consumes it again after reconnecting, and what a proxy publishes
/// just after the restart waits there. Its messages are transient. The
/// proxy declares it before publishing the request; the runner declares it
/// again (same arguments) after a reconnect.
pub async fn declare_session_input(ch: &Channel, t: &Topology, session: Uuid) -> lapin::Result<()> {
    let mut args = FieldTable::default();
    args.insert(
        "x-expires".into(),
        AMQPValue::LongLongInt(INPUT_QUEUE_EXPIRES.as_millis() as i64),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let queue = t.input_queue(session);
    ch.queue_declare(queue.as_str().into(), durable, args)
        .await?;
    ch.queue_bind(
        queue.into(),
        t.input_exchange().into(),
        session.to_string().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

fn durable_args(opts: &DurableQueueOptions) -> FieldTable {
    let mut args = FieldTable::default();
    if let Some(expires) = opts.expires {
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(expires.as_millis() as i64),
        );
    }
    args
}

/// Declares the exchanges and the durable queues every component relies on.
pub async fn declare_shared(
    ch: &Channel,
    t: &Topology,
    opts: &DurableQueueOptions,
) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for (name, kind) in [
        (t.input_exchange(), ExchangeKind::Direct),
        (t.events_exchange(), ExchangeKind::Topic),
        (t.runners_exchange(), ExchangeKind::Fanout),
        (t.rejected_exchange(), ExchangeKind::Fanout),
    ] {
        ch.exchange_declare(name.into(), kind, durable, FieldTable::default())
            .await?;
    }
    let queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };

    // Requests that expire unserved are dead-lettered to `rejected`.
    let mut req_args = durable_args(opts);
    req_args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(t.rejected_exchange())),
    );
    ch.queue_declare(t.requests().into(), queue, req_args)
        .await?;

    ch.queue_declare(t.rejected().into(), queue, durable_args(opts))
        .await?;
    ch.queue_bind(
        t.rejected().into(),
        t.rejected_exchange().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;

    ch.queue_declare(t.scans().into(), queue, durable_args(opts))
        .await?;

    // One recorder at a time consumes, so statuses are applied in order;
    // another proxy takes over if it goes away.
    let mut rec_args = durable_args(opts);
    rec_args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    ch.queue_declare(t.record_queue().into(), queue, rec_args)
        .await?;
    ch.queue_bind(
        t.record_queue().into(),
        t.events_exchange().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// AMQP delivery mode of a message the broker writes to disk in durable
/// queues (the record queue), so a confirmed one survives a broker restart:
/// events, which are few.
pub const PERSISTENT: u8 = 2;

/// Properties of a JSON event message (persistent).
pub fn event_properties() -> BasicProperties {
    BasicProperties::default()
        .with_type(ShortString::from(KIND_EVENT))
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(PERSISTENT)
}

/// Properties of a raw output message. Transient: the runner keeps output
/// until the recorder has stored it, which costs far less than the broker
/// writing every message to disk (docs/reliability.md).
pub fn output_properties(meta: &OutputMeta) -> BasicProperties {
    BasicProperties::default()
        .with_type(ShortString::from(KIND_OUTPUT))
        .with_headers(meta.to_headers())
}

/// Routing key and JSON body of an event of `session`.
pub fn encode_event(session: uuid::Uuid, event: &Event) -> (String, Vec<u8>) {
    // Serialising our own enum cannot fail (no maps with non-string keys).
    let body = serde_json::to_vec(event).unwrap_or_default();
    (event_key(session, event.kind()), body)
}

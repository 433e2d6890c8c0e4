//! Connecting to RabbitMQ and declaring the shared topology.
//!
//! Both the proxy and the runners declare what they use (declarations are
//! idempotent), so they can start in any order.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

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

/// Connects, retrying with back-off until `give_up` has passed.
pub async fn connect(url: &str, name: &str, give_up: Duration) -> lapin::Result<Connection> {
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(name))
            .enable_auto_recover();
        match Connection::connect(url, props).await {
            Ok(conn) => {
                tracing::info!(connection = name, "connected to RabbitMQ");
                return Ok(conn);
            }
            Err(err) if started.elapsed() < give_up => {
                tracing::warn!(connection = name, error = %err, retry_in_ms = delay.as_millis() as u64, "RabbitMQ unavailable, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    }
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

/// Properties of a JSON event message.
pub fn event_properties() -> BasicProperties {
    BasicProperties::default()
        .with_type(ShortString::from(KIND_EVENT))
        .with_content_type(ShortString::from("application/json"))
}

/// Properties of a raw output message.
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

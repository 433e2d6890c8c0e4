//! The one reconnecting consumer every long-lived reader of the broker
//! uses (the recorder, runner heartbeats, rejected requests, live feeds,
//! scan replies).
//!
//! [`consume`] waits for the supervisor's connection, opens a channel,
//! declares and binds the queue if it is this proxy's own, consumes it and
//! hands what arrives to a [`Handler`]. When anything fails (the
//! connection, the channel, the handler) it tells the handler, logs the
//! cause, pauses ([`Backoff`], 250 ms doubling to 1 s, reset by a good
//! start) and starts again once the broker is up — until shutdown, or until
//! the handler says it is no longer needed ([`Handler::done`]).

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::Channel;
use shellway_common::amqp::Backoff;
use tokio_util::sync::CancellationToken;

use super::broker::{Broker, BrokerError};

/// What a consumer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Queue {
    /// A queue of the shared topology (declared by the supervisor), read
    /// with acknowledgements: the handler acks what it has dealt with.
    Shared { name: String, prefetch: u16 },
    /// This proxy's own copy of what is routed to `exchange` with `key`
    /// (no binding for `""`, the default exchange, which routes by the
    /// queue's name): an exclusive queue deleted with its connection, read
    /// without
    /// acknowledgements (for messages that only matter while the proxy
    /// lives: live output, heartbeats). Its name carries the connection's
    /// generation ([`Broker::private_owner`]), so it is asked for anew on
    /// every connection.
    Private {
        name: String,
        exchange: String,
        key: String,
    },
}

/// Deliveries handed over together: the first, then whatever else comes
/// within `linger`, up to `max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batching {
    pub max: usize,
    /// A batch is closed once its messages' bodies reach this many bytes.
    pub max_bytes: usize,
    pub linger: Duration,
}

/// What a consumer does with what it reads.
pub(crate) trait Handler: Send {
    type Error: std::fmt::Display + From<BrokerError> + Send;

    /// The queue to read on the connection now up.
    fn queue(&self, broker: &Broker) -> Result<Queue, BrokerError>;

    /// Handles one delivery, or a batch of them with [`Batching`].
    fn handle(
        &mut self,
        deliveries: Vec<Delivery>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// `queue` is consumed (again): from now on it gets what is routed.
    fn started(&mut self, _queue: &Queue) {}

    /// Consuming stopped on a failure; it starts again once it can.
    fn interrupted(&mut self) {}

    /// Resolves when the consumer is no longer needed; a private queue is
    /// then deleted. Never, unless a handler says otherwise.
    fn done(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// Why [`consume`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Shutdown,
    /// [`Handler::done`] resolved.
    Done,
}

enum Stop<E> {
    Ended(Ended),
    Failed(E),
}

/// Consumes with `handler` until shutdown or until it is done, across
/// every failure and reconnection; `what` names it in the logs.
pub(crate) async fn consume<H: Handler>(
    broker: &Broker,
    what: &str,
    handler: &mut H,
    batching: Option<Batching>,
    shutdown: &CancellationToken,
) -> Ended {
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ended::Shutdown,
            _ = handler.done() => return Ended::Done,
            _ = broker.up() => {}
        }
        let err = match session(broker, handler, batching, shutdown, &mut backoff).await {
            Stop::Ended(ended) => return ended,
            Stop::Failed(err) => err,
        };
        handler.interrupted();
        if shutdown.is_cancelled() {
            return Ended::Shutdown;
        }
        let pause = backoff.next_pause();
        tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "{what} interrupted; resuming once the broker is back");
        tokio::select! {
            _ = shutdown.cancelled() => return Ended::Shutdown,
            _ = handler.done() => return Ended::Done,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// One consumer on one channel, until it fails or ends.
async fn session<H: Handler>(
    broker: &Broker,
    handler: &mut H,
    batching: Option<Batching>,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> Stop<H::Error> {
    let opened = async {
        let queue = handler.queue(broker)?;
        let ch = broker.channel().await?;
        let consumer = subscribe(&ch, &queue).await?;
        Ok::<_, BrokerError>((queue, ch, consumer))
    };
    let (queue, ch, mut consumer) = match opened.await {
        Ok(opened) => opened,
        Err(err) => return Stop::Failed(err.into()),
    };
    *backoff = Backoff::default();
    handler.started(&queue);
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = ch.close(200, "shutdown".into()).await;
                return Stop::Ended(Ended::Shutdown);
            }
            _ = handler.done() => {
                if let Queue::Private { name, .. } = &queue {
                    let _ = ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await;
                }
                let _ = ch.close(200, "done".into()).await;
                return Stop::Ended(Ended::Done);
            }
            d = consumer.next() => d,
        };
        let first = match first {
            Some(Ok(d)) => d,
            Some(Err(err)) => return Stop::Failed(BrokerError::from(err).into()),
            None => return Stop::Failed(BrokerError::NotConnected.into()),
        };
        let mut deliveries = vec![first];
        if let Some(batching) = batching {
            gather(&mut consumer, &mut deliveries, batching).await;
        }
        if let Err(err) = handler.handle(deliveries).await {
            return Stop::Failed(err);
        }
    }
}

/// Adds to `batch` what arrives within the linger, up to the batch's size.
/// A failure ends the batch; it surfaces on the next read.
async fn gather(consumer: &mut lapin::Consumer, batch: &mut Vec<Delivery>, batching: Batching) {
    let until = tokio::time::Instant::now() + batching.linger;
    let mut bytes: usize = batch.iter().map(|d| d.data.len()).sum();
    while batch.len() < batching.max && bytes < batching.max_bytes {
        match tokio::time::timeout_at(until, consumer.next()).await {
            Ok(Some(Ok(d))) => {
                bytes += d.data.len();
                batch.push(d);
            }
            Ok(Some(Err(err))) => {
                tracing::debug!(error = %err, "consumer interrupted within a batch");
                return;
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Starts consuming `queue` on `ch`, declaring and binding it first if it
/// is this proxy's own.
async fn subscribe(ch: &Channel, queue: &Queue) -> Result<lapin::Consumer, BrokerError> {
    match queue {
        Queue::Shared { name, prefetch } => {
            ch.basic_qos(*prefetch, BasicQosOptions::default()).await?;
            let consumer = ch
                .basic_consume(
                    name.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok(consumer)
        }
        Queue::Private {
            name,
            exchange,
            key,
        } => {
            let opts = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            };
            ch.queue_declare(name.as_str().into(), opts, FieldTable::default())
                .await?;
            if !exchange.is_empty() {
                ch.queue_bind(
                    name.as_str().into(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            }
            let no_ack = BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            };
            let consumer = ch
                .basic_consume(
                    name.as_str().into(),
                    "".into(),
                    no_ack,
                    FieldTable::default(),
                )
                .await?;
            Ok(consumer)
        }
    }
}

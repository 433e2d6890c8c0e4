//! A session's input queue consumer and its life across broker
//! reconnects: batched acknowledgements, consuming the queue again on a
//! new connection, and the ids of input handled before a channel broke.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Consumer};
use shellway_common::amqp::{declare_session_input, Backoff};
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use crate::broker::Broker;
use crate::link::Link;

/// Input messages the broker may hand a session before it acknowledges them.
pub(crate) const INPUT_PREFETCH: u16 = 64;
/// Input is acknowledged in batches (`multiple`): after this many messages…
pub(crate) const ACK_EVERY: u16 = INPUT_PREFETCH / 2;
/// …or once input has been quiet this long. An ack per keystroke sent one
/// more frame through the broker just as the keystroke's echo came back.
const ACK_QUIET: Duration = Duration::from_millis(20);

/// Handled input messages not yet acknowledged: the latest one's acker
/// (and when it came) acknowledges them all.
#[derive(Default)]
pub(crate) struct Unacked {
    latest: Option<(lapin::Acker, tokio::time::Instant)>,
    pub(crate) count: u16,
    /// Their message ids: if the channel breaks before the ack, the broker
    /// hands them out again, and they must not be typed twice.
    ids: Vec<ShortString>,
}

impl Unacked {
    pub(crate) fn add(&mut self, delivery: Delivery) {
        self.latest = Some((delivery.acker, tokio::time::Instant::now()));
        self.count += 1;
        if let Some(id) = delivery.properties.message_id().clone() {
            self.ids.push(id);
        }
    }

    /// When the batch is due: `ACK_QUIET` after the last message.
    pub(crate) fn due(&self) -> Option<tokio::time::Instant> {
        self.latest.as_ref().map(|(_, at)| *at + ACK_QUIET)
    }

    pub(crate) async fn ack(&mut self) {
        if let Some((acker, _)) = self.latest.take() {
            if let Err(err) = acker.ack(BasicAckOptions { multiple: true }).await {
                tracing::debug!(error = %err, "cannot acknowledge input");
            }
        }
        self.count = 0;
        self.ids.clear();
    }

    /// The channel broke: nothing can be acknowledged any more; returns the
    /// ids of what was handled.
    pub(crate) fn lost(&mut self) -> Vec<ShortString> {
        self.latest = None;
        self.count = 0;
        std::mem::take(&mut self.ids)
    }
}

/// How to consume the session's input queue again on a new connection.
#[derive(Clone)]
pub(crate) struct Attach {
    pub(crate) link: Link,
    pub(crate) session: Uuid,
    pub(crate) topology: shellway_common::Topology,
    pub(crate) tag: String,
}

/// An input consumer on a new connection.
pub(crate) struct Attached {
    pub(crate) generation: u64,
    pub(crate) input: Channel,
    pub(crate) consumer: Consumer,
}

/// The attach work, on a task of its own (owned: dropped, it stops).
pub(crate) type Attaching = AbortOnDropHandle<Attached>;

impl Attach {
    /// Consumes the input queue again, on the current connection if it is
    /// still up, else on the next one; retries until it works (the old
    /// connection may still hold the exclusive consumer for a moment).
    pub(crate) async fn run(self, generation: u64) -> Attached {
        let mut backoff = Backoff::default();
        loop {
            let broker = match self.link.current() {
                Some(b) if b.generation() > generation || b.connection().status().connected() => b,
                _ => self.link.newer_than(generation).await,
            };
            match self.on(&broker).await {
                Ok((input, consumer)) => {
                    return Attached {
                        generation: broker.generation(),
                        input,
                        consumer,
                    }
                }
                Err(err) => {
                    let pause = backoff.next_pause();
                    tracing::info!(error = %err, retry_in_ms = pause.as_millis() as u64, "cannot consume the session input yet");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    async fn on(&self, broker: &Broker) -> lapin::Result<(Channel, Consumer)> {
        let channel = broker.input_channel().await?;
        // Declared again (same arguments as the proxy's): a broker that lost
        // its definitions gets the queue back.
        declare_session_input(&channel, &self.topology, self.session).await?;
        let queue = self.topology.input_queue(self.session);
        let exclusive = BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        };
        channel
            .basic_qos(INPUT_PREFETCH, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                self.tag.as_str().into(),
                exclusive,
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }
}

/// Why the input consumer stopped.
pub(crate) enum Detach {
    /// The consumer ended without an error.
    Cancelled,
    Failed(lapin::Error),
    /// Its connection was replaced (it may have died silently).
    Replaced,
}

impl From<Option<Result<Delivery, lapin::Error>>> for Detach {
    fn from(end: Option<Result<Delivery, lapin::Error>>) -> Self {
        match end {
            Some(Err(err)) => Self::Failed(err),
            _ => Self::Cancelled,
        }
    }
}

pub(crate) async fn next_delivery(
    consumer: &mut Option<Consumer>,
) -> Option<Result<Delivery, lapin::Error>> {
    match consumer {
        Some(consumer) => consumer.next().await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn attached(attaching: &mut Option<Attaching>) -> Option<Attached> {
    match attaching {
        Some(attaching) => attaching.await.ok(),
        None => std::future::pending().await,
    }
}

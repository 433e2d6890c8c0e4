//! Ordered, confirmed publishing of one session's events and output, that
//! outlives the broker connection.
//!
//! A session publishes everything through one AMQP channel (from a small
//! shared pool), so its messages stay in order. Every message is kept in
//! the session's *outbox* until the broker confirms it; messages are
//! persistent, so a confirmed one is on the broker's disk and survives a
//! broker restart. When the connection dies, what is still in the outbox is
//! published again, in order, on the next connection — duplicates are
//! harmless: the recorder stores each `(session, seq)` once and viewers
//! drop seqs they have. While the broker is away, output that follows
//! output of the same stream is merged into one message (nobody has seen
//! either), so an outage costs few messages.
//!
//! The outbox is bounded ([`MAX_MESSAGES`], [`MAX_BYTES`]). When it is
//! full, publishing waits — for the oldest confirm, or for the broker to
//! come back — which holds up whoever publishes: the SSH reader stops
//! reading, the SSH window fills and the program on the host blocks.
//! Confirms are pipelined: the keystroke echo never waits for one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Confirmation, PublisherConfirm};
use shellway_common::amqp::{encode_event, output_properties};
use shellway_common::topology::event_key;
use shellway_common::{Event, OutputMeta, Stream};
use uuid::Uuid;

use crate::broker::Broker;
use crate::link::Link;
use crate::output::COALESCE_LIMIT;

/// Most messages of one session awaiting their confirm.
pub(crate) const MAX_MESSAGES: usize = 256;
/// Most bytes of one session awaiting their confirm (or the broker).
pub(crate) const MAX_BYTES: usize = 4 * 1024 * 1024;

/// The publisher of one session, shared by its tasks behind a mutex: the
/// lock keeps sequence numbers and publish order the same.
pub(crate) type SharedPublisher = Arc<tokio::sync::Mutex<SessionPublisher>>;

pub(crate) struct SessionPublisher {
    link: Link,
    exchange: String,
    session: Uuid,
    /// Sequence number of the last output message.
    seq: u64,
    /// Messages not yet confirmed, oldest first. The first `sent` of them
    /// went out on connection `generation`; the rest wait to be sent.
    outbox: VecDeque<Held>,
    sent: usize,
    generation: u64,
    bytes: usize,
}

struct Held {
    key: String,
    body: Vec<u8>,
    /// Set for output: what it is, and so what it may be merged with.
    output: Option<OutputMeta>,
    props: BasicProperties,
    confirm: Option<PublisherConfirm>,
}

/// What a confirm said.
enum Settled {
    Done,
    /// The connection failed before the broker confirmed: send it again.
    Unconfirmed,
    Waiting,
}

impl Held {
    fn settle(&mut self) -> Settled {
        let Some(confirm) = self.confirm.as_mut() else {
            return Settled::Unconfirmed;
        };
        match confirm.now_or_never() {
            None => Settled::Waiting,
            Some(result) => {
                self.confirm = None;
                settled(result)
            }
        }
    }
}

fn settled(result: lapin::Result<Confirmation>) -> Settled {
    match result {
        Ok(Confirmation::Ack(_) | Confirmation::NotRequested) => Settled::Done,
        Ok(Confirmation::Nack(_)) => {
            tracing::error!("the broker refused a message (nack)");
            Settled::Done
        }
        Err(err) => {
            tracing::debug!(error = %err, "no confirm; the message will be sent again");
            Settled::Unconfirmed
        }
    }
}

impl SessionPublisher {
    pub(crate) fn new(link: Link, exchange: String, session: Uuid) -> Self {
        Self {
            link,
            exchange,
            session,
            seq: 0,
            outbox: VecDeque::new(),
            sent: 0,
            generation: 0,
            bytes: 0,
        }
    }

    pub(crate) fn shared(self) -> SharedPublisher {
        Arc::new(tokio::sync::Mutex::new(self))
    }

    pub(crate) async fn event(&mut self, event: &Event) {
        let (key, body) = encode_event(self.session, event);
        tracing::debug!(event = event.kind(), "publishing event");
        self.hold(Held {
            key,
            body,
            output: None,
            props: shellway_common::amqp::event_properties(),
            confirm: None,
        });
        self.pump().await;
    }

    /// Sequence number of the last output message published.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Publishes one output message with the next sequence number (or,
    /// while the broker is away, adds it to the unsent one before it).
    pub(crate) async fn output(&mut self, stream: Stream, run: Option<Uuid>, data: Vec<u8>) {
        let unsent = self.outbox.len() > self.sent;
        if let Some(last) = self.outbox.back_mut().filter(|_| unsent) {
            let same = last
                .output
                .is_some_and(|m| m.stream == stream && m.run == run);
            if same && last.body.len() + data.len() <= COALESCE_LIMIT {
                last.body.extend_from_slice(&data);
                self.bytes += data.len();
                return self.pump().await;
            }
        }
        self.seq += 1;
        let meta = OutputMeta {
            seq: self.seq,
            stream,
            run,
        };
        self.hold(Held {
            key: event_key(self.session, "output"),
            body: data,
            output: Some(meta),
            props: output_properties(&meta),
            confirm: None,
        });
        self.pump().await;
    }

    fn hold(&mut self, held: Held) {
        self.bytes += held.body.len();
        self.outbox.push_back(held);
    }

    fn is_full(&self) -> bool {
        self.outbox.len() >= MAX_MESSAGES || self.bytes >= MAX_BYTES
    }

    /// Settles confirms, sends what waits if the broker is there, and
    /// returns once there is room for another message.
    async fn pump(&mut self) {
        loop {
            self.settle();
            let broker = self.link.current();
            if let Some(broker) = &broker {
                self.send(broker).await;
            }
            if !self.is_full() {
                return;
            }
            self.wait(broker).await;
        }
    }

    /// Sends the session's unconfirmed messages again if the connection
    /// changed (called when a new one comes up, whether or not the session
    /// publishes anything).
    pub(crate) async fn resend(&mut self) {
        self.settle();
        if let Some(broker) = self.link.current() {
            self.send(&broker).await;
        }
    }

    /// Drops the confirmed messages at the front of the outbox.
    fn settle(&mut self) {
        while self.sent > 0 {
            let Some(front) = self.outbox.front_mut() else {
                break;
            };
            match front.settle() {
                Settled::Waiting => break,
                Settled::Done => {
                    self.bytes -= front.body.len();
                    self.outbox.pop_front();
                    self.sent -= 1;
                }
                Settled::Unconfirmed => {
                    // Its connection is gone: everything from here is sent
                    // again on the next one.
                    self.sent = 0;
                    self.generation = 0;
                }
            }
        }
    }

    /// Publishes the messages not yet sent on `broker`'s connection.
    async fn send(&mut self, broker: &Broker) {
        if self.generation != broker.generation() {
            self.drop_confirmed_on_old_connection();
            if !self.outbox.is_empty() {
                tracing::info!(
                    messages = self.outbox.len(),
                    bytes = self.bytes,
                    "publishing again what the broker had not confirmed"
                );
            }
            self.generation = broker.generation();
            self.sent = 0;
        }
        let channel = broker.publisher_for(self.session);
        while let Some(held) = self.outbox.get_mut(self.sent) {
            let published = channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    held.key.as_str().into(),
                    BasicPublishOptions::default(),
                    &held.body,
                    held.props.clone(),
                )
                .await;
            match published {
                Ok(confirm) => {
                    held.confirm = Some(confirm);
                    self.sent += 1;
                }
                Err(err) => {
                    // Kept: sent again once the runner has a new connection.
                    broker.fail(&err);
                    return;
                }
            }
        }
    }

    /// After a reconnect: messages whose confirm did arrive before the old
    /// connection died need not be sent again.
    fn drop_confirmed_on_old_connection(&mut self) {
        let mut bytes = 0;
        self.outbox.retain_mut(|held| {
            let keep = !matches!(held.settle(), Settled::Done);
            if !keep {
                bytes += held.body.len();
            }
            keep
        });
        self.bytes -= bytes;
    }

    /// Waits for room: the oldest confirm, or a new connection.
    async fn wait(&mut self, broker: Option<Broker>) {
        let generation = broker.as_ref().map_or(self.generation, Broker::generation);
        let link = self.link.clone();
        let newer = link.newer_than(generation);
        let front = self
            .outbox
            .front_mut()
            .filter(|_| self.sent > 0)
            .and_then(|held| held.confirm.as_mut());
        let Some(confirm) = front else {
            tracing::debug!(
                messages = self.outbox.len(),
                "outbox full; waiting for the broker"
            );
            newer.await;
            return;
        };
        let done = tokio::select! {
            result = confirm => Some(matches!(settled(result), Settled::Done)),
            _ = newer => None,
        };
        if let Some(done) = done {
            self.settle_front(done);
        }
    }

    /// Records the outcome of the front message's confirm, awaited by
    /// `wait`.
    fn settle_front(&mut self, done: bool) {
        if let Some(front) = self.outbox.front_mut() {
            front.confirm = None;
            if done {
                self.bytes -= front.body.len();
                self.outbox.pop_front();
                self.sent = self.sent.saturating_sub(1);
            } else {
                self.sent = 0;
                self.generation = 0;
            }
        }
    }

    /// Waits until every message is confirmed, up to `limit`.
    pub(crate) async fn flush(&mut self, limit: Duration) {
        let all = async {
            loop {
                self.settle();
                if self.outbox.is_empty() {
                    return;
                }
                let broker = self.link.current();
                if let Some(broker) = &broker {
                    self.send(broker).await;
                }
                self.wait(broker).await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                outstanding = self.outbox.len(),
                "gave up waiting for publisher confirms"
            );
        }
    }
}

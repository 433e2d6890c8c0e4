//! Ordered publishing of one session's events and output, that outlives
//! the broker connection: the session's *outbox*.
//!
//! A session publishes everything through one AMQP channel (from a small
//! shared pool), so its messages stay in order, with pipelined publisher
//! confirms (the keystroke echo never waits for one). Every message stays
//! in the outbox until it is safe:
//! - an event (persistent) once the broker confirms it: it is then on the
//!   broker's disk, in the durable record queue;
//! - output (transient: persisting every output message costs a quarter of
//!   the PTY throughput, see docs/reliability.md) once the recorder says it
//!   has stored it (`Control::Recorded`, on the session's input queue).
//!
//! When the connection dies, whatever is not safe is published again, in
//! order, on the next one. Duplicates are harmless: the recorder stores
//! each `(session, seq)` once and viewers drop seqs they have. While the
//! broker is away, output that follows unsent output of the same stream is
//! merged into it (nobody has seen either), so an outage costs few
//! messages.
//!
//! The outbox is bounded per session ([`MAX_MESSAGES`], [`MAX_BYTES`]) and
//! per runner (a [`Budget`] of output bytes shared by all sessions). When
//! it is full, output waits — for confirms, receipts or the broker's
//! return — without holding the lock (receipts must get in): the SSH
//! reader stops reading, the SSH window fills and the program on the host
//! blocks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Confirmation, PublisherConfirm};
use shellway_common::amqp::{encode_event, output_properties};
use shellway_common::topology::event_key;
use shellway_common::{Event, OutputMeta, Stream};
use tokio::sync::{MutexGuard, Notify, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::broker::Broker;
use crate::link::Link;
use crate::output::COALESCE_LIMIT;

/// Most messages of one session not yet safe.
pub(crate) const MAX_MESSAGES: usize = 16 * 1024;
/// Most output bytes of one session not yet recorded.
pub(crate) const MAX_BYTES: usize = 16 * 1024 * 1024;
/// While full, how often confirms are looked at again.
const RECHECK: Duration = Duration::from_millis(50);

/// Output bytes all sessions of a runner may hold unrecorded, counted in
/// KiB.
#[derive(Clone)]
pub(crate) struct Budget {
    kib: Arc<Semaphore>,
    total: usize,
}

impl Budget {
    pub(crate) fn new(bytes: usize) -> Self {
        let total = bytes.div_ceil(1024).max(1);
        Self {
            kib: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    async fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib = bytes.div_ceil(1024).clamp(1, self.total) as u32;
        self.kib.clone().acquire_many_owned(kib).await.ok()
    }
}

/// A session's outbox, shared by its tasks. The lock keeps sequence
/// numbers and publish order the same.
pub(crate) struct Outbox {
    publisher: tokio::sync::Mutex<SessionPublisher>,
    /// Signalled when messages leave the outbox.
    room: Notify,
    link: Link,
    budget: Budget,
}

pub(crate) type SharedPublisher = Arc<Outbox>;

pub(crate) struct SessionPublisher {
    link: Link,
    exchange: String,
    session: Uuid,
    /// Sequence number of the last output message.
    seq: u64,
    /// Messages not yet safe, oldest first. The first `sent` of them went
    /// out on connection `generation`; the rest wait to be sent.
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
    confirmed: bool,
    recorded: bool,
    /// This message's share of the runner's budget, given back with it.
    budget: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// Takes in the confirm if it has arrived.
    fn poll_confirm(&mut self) {
        let Some(confirm) = self.confirm.as_mut() else {
            return;
        };
        if let Some(result) = confirm.now_or_never() {
            self.confirm = None;
            self.confirmed = matches!(
                result,
                Ok(Confirmation::Ack(_) | Confirmation::NotRequested)
            );
            match result {
                Ok(Confirmation::Nack(_)) => tracing::error!("the broker refused a message (nack)"),
                Err(err) => {
                    tracing::debug!(error = %err, "no confirm; the message will be sent again")
                }
                Ok(_) => {}
            }
        }
    }

    /// Safe: the broker has an event, the recorder has output (and no
    /// confirm is still to come: it must be awaited, not dropped).
    fn is_done(&self) -> bool {
        self.confirm.is_none()
            && match self.output {
                Some(_) => self.recorded,
                None => self.confirmed,
            }
    }

    /// Must go out (again) on a new connection.
    fn needs_sending(&self) -> bool {
        match self.output {
            Some(_) => !self.recorded,
            None => !self.confirmed,
        }
    }
}

impl Outbox {
    pub(crate) fn new(link: Link, exchange: String, session: Uuid, budget: Budget) -> Arc<Self> {
        Arc::new(Self {
            publisher: tokio::sync::Mutex::new(SessionPublisher {
                link: link.clone(),
                exchange,
                session,
                seq: 0,
                outbox: VecDeque::new(),
                sent: 0,
                generation: 0,
                bytes: 0,
            }),
            room: Notify::new(),
            link,
            budget,
        })
    }

    pub(crate) async fn lock(&self) -> MutexGuard<'_, SessionPublisher> {
        self.publisher.lock().await
    }

    /// Locks once there is room for `bytes` more output, with the runner's
    /// budget for it taken.
    pub(crate) async fn lock_for_output(
        &self,
        bytes: usize,
    ) -> (
        MutexGuard<'_, SessionPublisher>,
        Option<OwnedSemaphorePermit>,
    ) {
        let budget = self.budget.take(bytes).await;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let mut p = self.publisher.lock().await;
            p.pump().await;
            if !p.is_full() {
                return (p, budget);
            }
            let generation = p.generation;
            drop(p);
            tokio::select! {
                () = room => {}
                _ = self.link.newer_than(generation) => {}
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    /// Publishes one output message (after waiting for room).
    pub(crate) async fn output(&self, stream: Stream, run: Option<Uuid>, data: Vec<u8>) {
        let (mut p, budget) = self.lock_for_output(data.len()).await;
        p.output(stream, run, data, budget).await;
    }

    /// The recorder stored these output seqs.
    pub(crate) async fn recorded(&self, ranges: &[[u64; 2]]) {
        let mut p = self.publisher.lock().await;
        p.recorded(ranges);
        drop(p);
        self.room.notify_waiters();
    }

    /// Publishes what the broker did not get before a reconnect.
    pub(crate) async fn resend(&self) {
        self.publisher.lock().await.pump().await;
        self.room.notify_waiters();
    }

    /// Waits until every message is safe, up to `limit`. Receipts must
    /// still be handled meanwhile (see `session.rs`).
    pub(crate) async fn flush(&self, limit: Duration) {
        let all = async {
            loop {
                let room = self.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                let mut p = self.publisher.lock().await;
                p.pump().await;
                if p.outbox.is_empty() {
                    return;
                }
                let generation = p.generation;
                drop(p);
                tokio::select! {
                    () = room => {}
                    _ = self.link.newer_than(generation) => {}
                    () = tokio::time::sleep(RECHECK) => {}
                }
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            let p = self.publisher.lock().await;
            tracing::warn!(
                outstanding = p.outbox.len(),
                bytes = p.bytes,
                "gave up waiting for the broker and the recorder; output they did not take is lost"
            );
        }
    }
}

impl SessionPublisher {
    pub(crate) async fn event(&mut self, event: &Event) {
        let (key, body) = encode_event(self.session, event);
        tracing::debug!(event = event.kind(), "publishing event");
        self.hold(Held {
            key,
            body,
            output: None,
            props: shellway_common::amqp::event_properties(),
            confirm: None,
            confirmed: false,
            recorded: false,
            budget: None,
        });
        self.pump().await;
    }

    /// Sequence number of the last output message published.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Publishes one output message with the next sequence number (or,
    /// while the broker is away, adds it to the unsent one before it).
    pub(crate) async fn output(
        &mut self,
        stream: Stream,
        run: Option<Uuid>,
        data: Vec<u8>,
        budget: Option<OwnedSemaphorePermit>,
    ) {
        let unsent = self.outbox.len() > self.sent;
        if let Some(last) = self.outbox.back_mut().filter(|_| unsent) {
            let same = last
                .output
                .is_some_and(|m| m.stream == stream && m.run == run);
            if same && last.body.len() + data.len() <= COALESCE_LIMIT {
                last.body.extend_from_slice(&data);
                self.bytes += data.len();
                match (&mut last.budget, budget) {
                    (Some(held), Some(more)) => held.merge(more),
                    (slot, more) => *slot = slot.take().or(more),
                }
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
            confirmed: false,
            recorded: false,
            budget,
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

    /// Marks the output the recorder stored.
    fn recorded(&mut self, ranges: &[[u64; 2]]) {
        for held in &mut self.outbox {
            if let Some(meta) = held.output {
                if ranges
                    .iter()
                    .any(|[from, to]| (*from..=*to).contains(&meta.seq))
                {
                    held.recorded = true;
                }
            }
        }
        self.settle();
    }

    /// Settles confirms, drops the safe messages at the front, and sends
    /// what waits if the broker is there.
    async fn pump(&mut self) {
        self.settle();
        if let Some(broker) = self.link.current() {
            self.send(&broker).await;
        }
    }

    /// Drops the safe messages at the front of the outbox.
    fn settle(&mut self) {
        for held in self.outbox.iter_mut().take(self.sent) {
            held.poll_confirm();
        }
        while self.outbox.front().is_some_and(Held::is_done) {
            if let Some(held) = self.outbox.pop_front() {
                self.bytes -= held.body.len();
                self.sent = self.sent.saturating_sub(1);
            }
        }
    }

    /// Publishes the messages not yet sent on `broker`'s connection.
    async fn send(&mut self, broker: &Broker) {
        if self.generation != broker.generation() {
            let again = self.outbox.iter().filter(|h| h.needs_sending()).count();
            if again > 0 {
                tracing::info!(
                    messages = again,
                    bytes = self.bytes,
                    "publishing again what the broker or the recorder did not take"
                );
            }
            self.generation = broker.generation();
            self.sent = 0;
        }
        let channel = broker.publisher_for(self.session);
        while let Some(held) = self.outbox.get_mut(self.sent) {
            // Safe already (recorded, or confirmed before the old
            // connection died)?
            held.poll_confirm();
            if !held.needs_sending() {
                self.sent += 1;
                continue;
            }
            held.confirm = None;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> (crate::link::LinkOwner, Arc<Outbox>) {
        // No broker: nothing is sent, everything stays in the outbox.
        let (owner, link) = crate::link::new();
        let budget = Budget::new(64 * 1024 * 1024);
        (owner, Outbox::new(link, "x".into(), Uuid::nil(), budget))
    }

    #[tokio::test]
    async fn output_merges_while_the_broker_is_away_and_leaves_once_recorded() {
        let (_owner, outbox) = outbox();
        let mut p = outbox.lock().await;
        p.output(Stream::Pty, None, b"a".to_vec(), None).await;
        p.output(Stream::Pty, None, b"b".to_vec(), None).await;
        assert_eq!((p.seq(), p.outbox.len()), (1, 1));
        assert_eq!(p.outbox[0].body, b"ab");
        // Another stream is another message.
        let run = Some(Uuid::now_v7());
        p.output(Stream::Stdout, run, b"c".to_vec(), None).await;
        assert_eq!((p.seq(), p.outbox.len()), (2, 2));
        p.event(&Event::error(shellway_common::ErrorKind::Runtime, "e"))
            .await;
        // Recorded output leaves; an unconfirmed event stays, and so does
        // whatever is behind it.
        p.recorded(&[[1, 1]]);
        assert_eq!(p.outbox.len(), 2);
        p.recorded(&[[2, 2]]);
        assert_eq!(p.outbox.len(), 1);
        assert!(p.outbox[0].output.is_none());
    }

    #[tokio::test]
    async fn a_full_outbox_holds_output_back_until_a_receipt_frees_room() {
        let (_owner, outbox) = outbox();
        let big = vec![b'x'; MAX_BYTES];
        outbox.output(Stream::Pty, None, big).await;
        let waiting = outbox.lock_for_output(1);
        tokio::pin!(waiting);
        let blocked = tokio::time::timeout(Duration::from_millis(200), &mut waiting).await;
        assert!(blocked.is_err(), "output went in past the bound");
        outbox.recorded(&[[1, 1]]).await;
        let freed = tokio::time::timeout(Duration::from_secs(2), waiting).await;
        assert!(freed.is_ok(), "the receipt did not free room");
    }
}

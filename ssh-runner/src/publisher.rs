//! Ordered, confirmed publishing of one session's events and output.
//!
//! A session publishes everything through one AMQP channel (from a small
//! shared pool), so its messages stay in order. Publisher confirms are
//! pipelined: up to [`CONFIRM_WINDOW`] may be outstanding; when the window
//! is full the oldest is awaited, which holds up whoever is publishing —
//! the SSH reader — and so pushes back on the host.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};
use shellway_common::amqp::{encode_event, output_properties};
use shellway_common::topology::event_key;
use shellway_common::{Event, OutputMeta, Stream};
use uuid::Uuid;

/// Most publishes of one session awaiting their confirm.
pub(crate) const CONFIRM_WINDOW: usize = 256;

/// How long a publish waits for the broker connection to recover.
const RECOVERY_WAIT: Duration = Duration::from_secs(30);

/// The publisher of one session, shared by its tasks behind a mutex: the
/// lock keeps sequence numbers and publish order the same.
pub(crate) type SharedPublisher = Arc<tokio::sync::Mutex<SessionPublisher>>;

pub(crate) struct SessionPublisher {
    channel: Channel,
    exchange: String,
    session: Uuid,
    /// Sequence number of the last output message.
    seq: u64,
    pending: VecDeque<PublisherConfirm>,
}

impl SessionPublisher {
    pub(crate) fn new(channel: Channel, exchange: String, session: Uuid) -> Self {
        Self {
            channel,
            exchange,
            session,
            seq: 0,
            pending: VecDeque::new(),
        }
    }

    pub(crate) fn shared(self) -> SharedPublisher {
        Arc::new(tokio::sync::Mutex::new(self))
    }

    pub(crate) async fn event(&mut self, event: &Event) {
        let (key, body) = encode_event(self.session, event);
        tracing::debug!(event = event.kind(), "publishing event");
        self.publish(key, &body, shellway_common::amqp::event_properties())
            .await;
    }

    /// Sequence number of the last output message published.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Publishes one output message with the next sequence number.
    pub(crate) async fn output(&mut self, stream: Stream, run: Option<Uuid>, data: &[u8]) {
        self.seq += 1;
        let meta = OutputMeta {
            seq: self.seq,
            stream,
            run,
        };
        let key = event_key(self.session, "output");
        self.publish(key, data, output_properties(&meta)).await;
    }

    async fn publish(&mut self, key: String, body: &[u8], props: BasicProperties) {
        self.reap_settled();
        let confirm = match self.try_publish(&key, body, props.clone()).await {
            Ok(confirm) => Some(confirm),
            Err(err) => {
                tracing::warn!(error = %err, "publish failed; waiting for the broker to recover");
                let recovered =
                    tokio::time::timeout(RECOVERY_WAIT, self.channel.wait_for_recovery(err)).await;
                match recovered {
                    Ok(Ok(())) => self.try_publish(&key, body, props).await.ok(),
                    _ => None,
                }
            }
        };
        match confirm {
            Some(confirm) => self.pending.push_back(confirm),
            None => tracing::error!(routing_key = %key, "message lost: the broker is unavailable"),
        }
        while self.pending.len() > CONFIRM_WINDOW {
            if let Some(oldest) = self.pending.pop_front() {
                settle(oldest.await);
            }
        }
    }

    async fn try_publish(
        &self,
        key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> lapin::Result<PublisherConfirm> {
        self.channel
            .basic_publish(
                self.exchange.as_str().into(),
                key.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
    }

    /// Drops the confirms that have already arrived, oldest first.
    fn reap_settled(&mut self) {
        while let Some(oldest) = self.pending.front_mut() {
            match oldest.now_or_never() {
                Some(result) => {
                    settle(result);
                    self.pending.pop_front();
                }
                None => break,
            }
        }
    }

    /// Waits for every outstanding confirm, up to `limit`.
    pub(crate) async fn flush(&mut self, limit: Duration) {
        let all = async {
            while let Some(oldest) = self.pending.pop_front() {
                settle(oldest.await);
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                outstanding = self.pending.len(),
                "gave up waiting for publisher confirms"
            );
            self.pending.clear();
        }
    }
}

fn settle(result: lapin::Result<Confirmation>) {
    match result {
        Ok(Confirmation::Ack(_) | Confirmation::NotRequested) => {}
        Ok(Confirmation::Nack(_)) => tracing::error!("the broker refused a message (nack)"),
        Err(err) => tracing::error!(error = %err, "a message may be lost: no confirm"),
    }
}

//! The runner's AMQP channels on one connection: the intake channel
//! (requests), a confirm-mode channel for heartbeats, a small pool of
//! confirm-mode channels for sessions' events and output, and one channel
//! per session input queue.
//!
//! A `Broker` is one connection's worth, numbered by `generation`: when the
//! connection dies the runner drops it and opens the next one, and every
//! session moves over (see `link.rs`).

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicQosOptions, ConfirmSelectOptions};
use lapin::{Channel, Connection};
use shellway_common::amqp::declare_shared;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Config;

/// Confirm-mode channels shared by all sessions for publishing.
const PUBLISH_CHANNELS: usize = 4;
/// How long closing a connection may take before it is just dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub(crate) struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connection,
    generation: u64,
    intake: Channel,
    heartbeat: Channel,
    publishers: Box<[Channel]>,
    /// Cancelled when anything using this connection finds it broken; the
    /// runner then replaces it.
    broken: CancellationToken,
}

impl Broker {
    pub(crate) async fn open(
        conn: Connection,
        config: &Config,
        generation: u64,
    ) -> Result<Self, (Connection, lapin::Error)> {
        match Self::channels(&conn, config).await {
            Ok((intake, heartbeat, publishers)) => Ok(Self {
                inner: Arc::new(Inner {
                    conn,
                    generation,
                    intake,
                    heartbeat,
                    publishers,
                    broken: CancellationToken::new(),
                }),
            }),
            Err(err) => Err((conn, err)),
        }
    }

    async fn channels(
        conn: &Connection,
        config: &Config,
    ) -> lapin::Result<(Channel, Channel, Box<[Channel]>)> {
        let intake = conn.create_channel().await?;
        declare_shared(&intake, &config.topology, &config.durable).await?;
        // One request at a time: a runner must never be handed more than it
        // has room for (see `intake`).
        intake.basic_qos(1, BasicQosOptions::default()).await?;
        let heartbeat = conn.create_channel().await?;
        heartbeat
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut publishers = Vec::with_capacity(PUBLISH_CHANNELS);
        for _ in 0..PUBLISH_CHANNELS {
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            publishers.push(ch);
        }
        Ok((intake, heartbeat, publishers.into()))
    }

    /// Which connection this is: 1 for the first, one more per reconnect.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.generation
    }

    pub(crate) fn intake(&self) -> &Channel {
        &self.inner.intake
    }

    /// The heartbeat channel (confirm mode: a heartbeat that is not
    /// confirmed in time shows the connection is dead).
    pub(crate) fn heartbeat(&self) -> &Channel {
        &self.inner.heartbeat
    }

    /// The publishing channel of a session: always the same one, so the
    /// session's messages keep their order.
    pub(crate) fn publisher_for(&self, session: Uuid) -> &Channel {
        let publishers = &self.inner.publishers;
        let i = (session.as_u128() % publishers.len() as u128) as usize;
        &publishers[i]
    }

    /// A channel of its own for a session's input consumer: a missing or
    /// locked queue closes that channel only, not every session's.
    pub(crate) async fn input_channel(&self) -> lapin::Result<Channel> {
        self.inner.conn.create_channel().await
    }

    /// Reports the connection broken (a channel died under a session, a
    /// publish failed): the runner replaces it.
    pub(crate) fn fail(&self, why: &dyn std::fmt::Display) {
        if !self.inner.broken.is_cancelled() {
            tracing::warn!(generation = self.generation(), error = %why, "broker connection broken");
            self.inner.broken.cancel();
        }
    }

    /// Resolves once the connection is reported broken.
    pub(crate) async fn broken(&self) {
        self.inner.broken.cancelled().await;
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.inner.conn
    }

    /// Closes the connection (politely if it still answers).
    pub(crate) async fn close(&self, why: &str) {
        self.inner.broken.cancel();
        let conn = &self.inner.conn;
        if conn.status().connected() {
            let closing = conn.close(200, why.into());
            if !matches!(tokio::time::timeout(CLOSE_WAIT, closing).await, Ok(Ok(()))) {
                tracing::debug!("the broker connection did not close cleanly");
            }
        }
    }
}

//! The runner's AMQP channels on one connection: the intake channel
//! (requests, heartbeats), a small pool of confirm-mode channels for
//! sessions' events and output, and one channel per session input queue.

use std::sync::Arc;

use lapin::options::{BasicQosOptions, ConfirmSelectOptions};
use lapin::{Channel, Connection};
use shellway_common::amqp::declare_shared;
use uuid::Uuid;

use crate::Config;

/// Confirm-mode channels shared by all sessions for publishing.
const PUBLISH_CHANNELS: usize = 4;

#[derive(Clone)]
pub(crate) struct Broker {
    conn: Arc<Connection>,
    intake: Channel,
    publishers: Arc<[Channel]>,
}

impl Broker {
    pub(crate) async fn open(conn: Arc<Connection>, config: &Config) -> lapin::Result<Self> {
        let intake = conn.create_channel().await?;
        declare_shared(&intake, &config.topology, &config.durable).await?;
        // One request at a time: a runner must never be handed more than it
        // has room for (see `intake`).
        intake.basic_qos(1, BasicQosOptions::default()).await?;
        let mut publishers = Vec::with_capacity(PUBLISH_CHANNELS);
        for _ in 0..PUBLISH_CHANNELS {
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            publishers.push(ch);
        }
        Ok(Self {
            conn,
            intake,
            publishers: publishers.into(),
        })
    }

    pub(crate) fn intake(&self) -> &Channel {
        &self.intake
    }

    /// The publishing channel of a session: always the same one, so the
    /// session's messages keep their order.
    pub(crate) fn publisher_for(&self, session: Uuid) -> Channel {
        let i = (session.as_u128() % self.publishers.len() as u128) as usize;
        self.publishers[i].clone()
    }

    /// A channel of its own for a session's input consumer: a missing or
    /// locked queue closes that channel only, not every session's.
    pub(crate) async fn input_channel(&self) -> lapin::Result<Channel> {
        self.conn.create_channel().await
    }
}

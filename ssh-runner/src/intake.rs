//! Taking session requests, within capacity.
//!
//! The requests consumer is only active while a capacity permit is free.
//! With prefetch 1 the broker hands us one request at a time; when taking
//! it uses the last permit, the consumer is cancelled *before* the request
//! is acknowledged, so the broker cannot hand us another. A full runner
//! takes nothing; it consumes again once a session ends.

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::Consumer;
use shellway_common::SessionRequest;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::link::Link;
use crate::publisher::Budget;
use crate::session::{self, SessionDeps};
use crate::slots::{Permit, Slots};
use crate::Config;

#[derive(Debug, thiserror::Error)]
pub(crate) enum IntakeError {
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    #[error("the broker cancelled the requests consumer")]
    ConsumerCancelled,
}

pub(crate) struct Intake<'a> {
    pub(crate) broker: &'a Broker,
    pub(crate) link: &'a Link,
    pub(crate) budget: &'a Budget,
    pub(crate) config: &'a Arc<Config>,
    pub(crate) slots: &'a Slots,
    pub(crate) sessions: &'a TaskTracker,
    pub(crate) shutdown: &'a CancellationToken,
}

impl Intake<'_> {
    /// Takes requests until shutdown (`Ok`) or until the connection fails
    /// (`Err`; the runner then connects again).
    pub(crate) async fn run(&self) -> Result<(), IntakeError> {
        let mut generation = 0u64;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                () = self.slots.wait_free() => {}
            }
            generation += 1;
            let tag = format!("{}.intake.{generation}", self.config.runner_id);
            let consumer = self
                .broker
                .intake()
                .basic_consume(
                    self.config.topology.requests().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            tracing::debug!(consumer = %tag, "taking session requests");
            self.consume(consumer, &tag).await?;
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Reads requests until the runner is full or shuts down; the consumer
    /// is cancelled when this returns `Ok`.
    async fn consume(&self, mut consumer: Consumer, tag: &str) -> Result<(), IntakeError> {
        loop {
            let delivery = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Ok(self.cancel(tag).await?),
                delivery = consumer.next() => delivery,
            };
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(err)) => return Err(err.into()),
                None => return Err(IntakeError::ConsumerCancelled),
            };
            let Some(permit) = self.slots.try_take() else {
                // Cannot happen with prefetch 1, but never hold more than
                // capacity: give the request back.
                self.cancel(tag).await?;
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                };
                delivery.acker.nack(requeue).await?;
                return Ok(());
            };
            let full = self.slots.is_full();
            if full {
                self.cancel(tag).await?;
            }
            delivery.acker.ack(BasicAckOptions::default()).await?;
            self.start(delivery, permit);
            if full {
                tracing::info!(
                    capacity = self.config.capacity,
                    "runner full; not taking requests"
                );
                return Ok(());
            }
        }
    }

    async fn cancel(&self, tag: &str) -> lapin::Result<()> {
        self.broker
            .intake()
            .basic_cancel(tag.into(), BasicCancelOptions::default())
            .await
    }

    fn start(&self, delivery: Delivery, permit: Permit) {
        let request: SessionRequest = match serde_json::from_slice(&delivery.data) {
            Ok(request) => request,
            Err(err) => {
                tracing::error!(error = %err, "malformed session request dropped");
                return;
            }
        };
        let slot = self.slots.hold(permit, request.session);
        let deps = SessionDeps {
            broker: self.broker.clone(),
            link: self.link.clone(),
            budget: self.budget.clone(),
            config: self.config.clone(),
            shutdown: self.shutdown.clone(),
            slot,
        };
        self.sessions.spawn(session::serve(request, deps));
    }
}

//! Heartbeats: every interval, who this runner is, its capacity and the
//! sessions it holds, on the runners fanout exchange. Proxies declare a
//! runner dead (and its sessions lost) after three silent intervals, and
//! compare the sessions listed with what the database says.
//!
//! Heartbeats are also the runner's watchdog of its broker connection:
//! each is published in confirm mode, and one that is not confirmed in
//! time means the connection is dead even if no error says so (a network
//! cut drops packets without a word); the runner then reconnects.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::BasicProperties;
use shellway_common::Heartbeat;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::slots::Slots;
use crate::Config;

/// Shortest time a heartbeat may take to be confirmed before the
/// connection counts as dead (three intervals when that is longer).
const CONFIRM_WITHIN: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub(crate) enum HeartbeatError {
    #[error("heartbeat not sent: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker did not confirm a heartbeat within {0:?}")]
    Unconfirmed(Duration),
}

/// Sends heartbeats until shutdown (`Ok`) or until the connection fails.
pub(crate) async fn run(
    broker: &Broker,
    config: &Config,
    slots: &Slots,
    shutdown: &CancellationToken,
) -> Result<(), HeartbeatError> {
    // The first tick is immediate: proxies hear from a runner as soon as
    // it is back.
    let mut tick = tokio::time::interval(config.heartbeat);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let exchange = config.topology.runners_exchange();
    let limit = CONFIRM_WITHIN.max(config.heartbeat * 3);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let beat = Heartbeat {
            runner: config.runner_id.clone(),
            capacity: config.capacity,
            sessions: slots.sessions(),
            interval_ms: config.heartbeat.as_millis() as u64,
        };
        let body = match serde_json::to_vec(&beat) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode a heartbeat");
                continue;
            }
        };
        let props =
            BasicProperties::default().with_content_type(ShortString::from("application/json"));
        let sent = async {
            broker
                .heartbeat()
                .basic_publish(
                    exchange.as_str().into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await?
                .await
        };
        match tokio::time::timeout(limit, sent).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => return Err(HeartbeatError::Unconfirmed(limit)),
        }
    }
}

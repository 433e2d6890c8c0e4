//! Heartbeats: every interval, who this runner is, its capacity and the
//! sessions it holds, on the runners fanout exchange. Proxies declare a
//! runner dead (and its sessions lost) after three silent intervals.

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::BasicProperties;
use shellway_common::Heartbeat;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::slots::Slots;
use crate::Config;

pub(crate) async fn run(
    broker: &Broker,
    config: &Config,
    slots: &Slots,
    shutdown: &CancellationToken,
) {
    let mut tick = tokio::time::interval(config.heartbeat);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let exchange = config.topology.runners_exchange();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
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
        // The intake channel is not in confirm mode: the "confirm" resolves
        // at once, and awaiting it keeps lapin from keeping it around.
        let sent = async {
            broker
                .intake()
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
        if let Err(err) = sent.await {
            tracing::warn!(error = %err, "heartbeat not sent");
        }
    }
}

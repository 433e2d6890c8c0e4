//! Host-key scans for the proxies (`POST /api/hosts/scan`): the runner is
//! what reaches hosts, so a proxy asks one over the broker.
//!
//! Runners compete for the scans queue, [`AT_ONCE`] at a time each (the
//! prefetch): a request is acknowledged once answered, so one a runner
//! dies with goes to another (a scan only reads a key; doing it twice is
//! harmless). Each request gets [`ScanReply::Taken`] at once, then its
//! outcome, on the proxy's reply queue (`reply_to`, `correlation_id`).
//! Replies are not confirmed: a proxy that hears nothing answers
//! `capacity` after its own timeout.

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use shellway_common::scan::{ScanReply, ScanRequest, SCAN_TIMEOUT};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::ssh::scan::{fetch_host_key, ScanError};
use crate::Config;

/// Scans one runner does at once.
const AT_ONCE: u16 = 4;

/// Serves scan requests until shutdown (`Ok`) or until the connection
/// fails (`Err`).
pub(crate) async fn serve(
    broker: &Broker,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let ch = broker.input_channel().await?;
    ch.basic_qos(AT_ONCE, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            config.topology.scans().into(),
            format!("{}.scans", config.runner_id).into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut scans = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            Some(done) = scans.join_next() => done.unwrap_or_else(|err| tracing::warn!(error = %err, "a scan task failed")),
            delivery = consumer.next() => match delivery {
                Some(Ok(d)) => {
                    scans.spawn(answer(ch.clone(), config.runner_id.clone(), d));
                }
                Some(Err(err)) => return Err(err.into()),
                None => anyhow::bail!("the broker cancelled the scans consumer"),
            },
        }
    }
}

/// Scans what `d` asks for and replies to its sender; then acknowledges.
async fn answer(ch: Channel, runner: String, d: Delivery) {
    let (Some(reply_to), Some(id)) = (
        d.properties.reply_to().clone(),
        d.properties.correlation_id().clone(),
    ) else {
        tracing::warn!("skipping a scan request without reply_to or correlation_id");
        d.acker.ack(BasicAckOptions::default()).await.ok();
        return;
    };
    let reply = |reply: ScanReply| {
        let ch = ch.clone();
        let (reply_to, id) = (reply_to.clone(), id.clone());
        async move {
            let body = serde_json::to_vec(&reply).unwrap_or_default();
            let props = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_correlation_id(id);
            let sent = ch
                .basic_publish(
                    "".into(),
                    reply_to.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await;
            if let Err(err) = sent {
                tracing::warn!(error = %err, "cannot send a scan reply");
            }
        }
    };
    match serde_json::from_slice::<ScanRequest>(&d.data) {
        Ok(req) => {
            reply(ScanReply::Taken { runner }).await;
            let outcome = fetch_host_key(&req.hostname, req.port, SCAN_TIMEOUT).await;
            tracing::info!(hostname = %req.hostname, port = req.port, found = outcome.is_ok(), "host key scan");
            reply(match outcome {
                Ok((key, fingerprint)) => ScanReply::Key { key, fingerprint },
                Err(err @ ScanError::NoSshServer(_)) => ScanReply::NoSshServer {
                    message: err.to_string(),
                },
                Err(err @ ScanError::Ssh { .. }) => ScanReply::SshError {
                    message: err.to_string(),
                },
            })
            .await;
        }
        Err(err) => tracing::warn!(error = %err, "skipping a malformed scan request"),
    }
    d.acker.ack(BasicAckOptions::default()).await.ok();
}

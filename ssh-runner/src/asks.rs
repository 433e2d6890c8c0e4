//! What proxies ask of a runner over the broker: host-key scans
//! (`POST /api/hosts/scan`; the runner is what reaches hosts) and vault
//! re-seals (`POST /api/credentials/rotate`; only runners hold the vault's
//! identities).
//!
//! Runners compete for the scans queue, [`AT_ONCE`] at a time each (the
//! prefetch): a request is acknowledged once answered, so one a runner
//! dies with goes to another (a scan only reads a key, a re-seal only
//! computes: doing either twice is harmless). Each request gets a `taken`
//! reply at once, then its outcome, on the proxy's reply queue
//! (`reply_to`, `correlation_id`). Replies are not confirmed: a proxy that
//! hears nothing answers `capacity` after its own timeout.

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use serde::Serialize;
use shellway_common::reseal::{ResealReply, ResealRequest, SealedItem, RESEAL_KIND};
use shellway_common::scan::{ScanReply, ScanRequest, SCAN_TIMEOUT};
use shellway_common::vault::{self, Identities};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::ssh::scan::{fetch_host_key, ScanError};
use crate::Config;

/// Requests one runner answers at once.
const AT_ONCE: u16 = 4;

/// Serves requests until shutdown (`Ok`) or until the connection fails
/// (`Err`).
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
    let mut asks = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            Some(done) = asks.join_next() => done.unwrap_or_else(|err| tracing::warn!(error = %err, "a request task failed")),
            delivery = consumer.next() => match delivery {
                Some(Ok(d)) => {
                    asks.spawn(answer(ch.clone(), config.runner_id.clone(), config.vault.clone(), d));
                }
                Some(Err(err)) => return Err(err.into()),
                None => anyhow::bail!("the broker cancelled the scans consumer"),
            },
        }
    }
}

/// Where a request's replies go.
struct ReplyTo {
    ch: Channel,
    queue: ShortString,
    id: ShortString,
}

impl ReplyTo {
    async fn send(&self, reply: &impl Serialize) {
        let body = serde_json::to_vec(reply).unwrap_or_default();
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_correlation_id(self.id.clone());
        let sent = self
            .ch
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await;
        if let Err(err) = sent {
            tracing::warn!(error = %err, "cannot send a reply to a proxy");
        }
    }
}

/// Answers what `d` asks (by its message type) to its sender; then
/// acknowledges.
async fn answer(ch: Channel, runner: String, vault: Identities, d: Delivery) {
    let (Some(queue), Some(id)) = (
        d.properties.reply_to().clone(),
        d.properties.correlation_id().clone(),
    ) else {
        tracing::warn!("skipping a request without reply_to or correlation_id");
        d.acker.ack(BasicAckOptions::default()).await.ok();
        return;
    };
    let to = ReplyTo { ch, queue, id };
    let kind = d.properties.kind().as_ref().map(ShortString::as_str);
    if kind == Some(RESEAL_KIND) {
        match serde_json::from_slice::<ResealRequest>(&d.data) {
            Ok(req) => {
                to.send(&ResealReply::Taken {
                    runner: runner.clone(),
                })
                .await;
                // Public-key crypto on up to a batch of credentials: off
                // the async threads.
                let reply = tokio::task::spawn_blocking(move || reseal(runner, &vault, req))
                    .await
                    .unwrap_or_else(|err| ResealReply::Refused {
                        runner: String::new(),
                        message: format!("the re-seal task failed: {err}"),
                    });
                to.send(&reply).await;
            }
            Err(err) => tracing::warn!(error = %err, "skipping a malformed re-seal request"),
        }
    } else {
        match serde_json::from_slice::<ScanRequest>(&d.data) {
            Ok(req) => {
                to.send(&ScanReply::Taken { runner }).await;
                to.send(&scan(&req).await).await;
            }
            Err(err) => tracing::warn!(error = %err, "skipping a malformed scan request"),
        }
    }
    d.acker.ack(BasicAckOptions::default()).await.ok();
}

async fn scan(req: &ScanRequest) -> ScanReply {
    let outcome = fetch_host_key(&req.hostname, req.port, SCAN_TIMEOUT).await;
    tracing::info!(hostname = %req.hostname, port = req.port, found = outcome.is_ok(), "host key scan");
    match outcome {
        Ok((key, fingerprint)) => ScanReply::Key { key, fingerprint },
        Err(err @ ScanError::NoSshServer(_)) => ScanReply::NoSshServer {
            message: err.to_string(),
        },
        Err(err @ ScanError::Ssh { .. }) => ScanReply::SshError {
            message: err.to_string(),
        },
    }
}

/// Opens every item and seals it to the recipients asked for — only to
/// recipients whose identity this runner holds: a re-seal must never move
/// the vault to a key the runners were not given. All or nothing.
fn reseal(runner: String, vault: &Identities, req: ResealRequest) -> ResealReply {
    let refuse = |message: String| {
        tracing::warn!(%message, "vault re-seal refused");
        ResealReply::Refused {
            runner: runner.clone(),
            message,
        }
    };
    if vault.is_empty() {
        return refuse(format!(
            "runner {runner} holds no vault identity (SHELLWAY_VAULT_IDENTITY_FILE)"
        ));
    }
    if req.recipients.is_empty() {
        return refuse("no recipient to seal to".into());
    }
    if let Some(foreign) = req.recipients.iter().find(|r| !vault.holds(r)) {
        return refuse(format!(
            "runner {runner} does not hold the identity of {foreign}; it re-seals only to \
             keys it can open (give the runners the new identity first)"
        ));
    }
    let to = match vault::parse_recipients(&req.recipients.join(",")) {
        Ok(to) => to,
        Err(err) => return refuse(err.to_string()),
    };
    let mut items = Vec::with_capacity(req.items.len());
    for item in &req.items {
        let moved = vault::from_base64(&item.ciphertext).and_then(|c| vault.reseal(&c, &to));
        match moved {
            Ok(c) => items.push(SealedItem {
                id: item.id,
                ciphertext: vault::to_base64(&c),
            }),
            Err(err) => return refuse(format!("cannot open credential {}: {err}", item.id)),
        }
    }
    tracing::info!(credentials = items.len(), "vault re-sealed");
    ResealReply::Resealed { runner, items }
}

//! The floor a broker puts under the echo path: one publish → deliver
//! round trip through RabbitMQ, measured with the same client library and
//! options as Shellway (no confirm, loopback), through a queue and through
//! RabbitMQ's direct reply-to (no queue process in between).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Consumer};

/// How a hop reaches its consumer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route {
    /// An exclusive auto-delete classic queue, as the live feed uses.
    Queue,
    /// `amq.rabbitmq.reply-to`: the broker hands the message from the
    /// publisher's channel straight to the consumer's.
    DirectReplyTo,
}

const NO_ACK: BasicConsumeOptions = BasicConsumeOptions {
    no_local: false,
    no_ack: true,
    exclusive: false,
    nowait: false,
};

/// Sorted one-way publish → delivery times of `n` small messages.
pub(crate) async fn round_trips(
    amqp_url: &str,
    n: usize,
    route: Route,
) -> anyhow::Result<Vec<Duration>> {
    let conn = shellway_common::amqp::connect_once(amqp_url, "bench broker hop").await?;
    let publish = conn.create_channel().await?;
    let consume = conn.create_channel().await?;
    let (key, mut consumer) = match route {
        Route::Queue => queue_consumer(&consume).await?,
        Route::DirectReplyTo => reply_to_consumer(&consume).await?,
    };
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let t = Instant::now();
        let _confirm = publish
            .basic_publish(
                "".into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default(),
            )
            .await?;
        next(&mut consumer).await?;
        if i >= 20 {
            times.push(t.elapsed());
        }
    }
    let _ = conn.close(200, "done".into()).await;
    times.sort();
    Ok(times)
}

async fn next(consumer: &mut Consumer) -> anyhow::Result<lapin::message::Delivery> {
    match tokio::time::timeout(Duration::from_secs(5), consumer.next()).await {
        Ok(Some(Ok(d))) => Ok(d),
        _ => anyhow::bail!("no delivery"),
    }
}

async fn queue_consumer(ch: &Channel) -> anyhow::Result<(String, Consumer)> {
    let queue = shellway_tests::unique("bench-hop-");
    let opts = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    ch.queue_declare(queue.as_str().into(), opts, FieldTable::default())
        .await?;
    let consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            NO_ACK,
            FieldTable::default(),
        )
        .await?;
    Ok((queue, consumer))
}

/// Consumes the channel's direct reply-to pseudo-queue and learns its
/// address the way a peer would: from the `reply_to` of a message the
/// channel sent.
async fn reply_to_consumer(ch: &Channel) -> anyhow::Result<(String, Consumer)> {
    const PSEUDO: &str = "amq.rabbitmq.reply-to";
    let consumer = ch
        .basic_consume(PSEUDO.into(), "".into(), NO_ACK, FieldTable::default())
        .await?;
    let (probe, mut probe_consumer) = queue_consumer(ch).await?;
    ch.basic_publish(
        "".into(),
        probe.as_str().into(),
        BasicPublishOptions::default(),
        b"",
        BasicProperties::default().with_reply_to(PSEUDO.into()),
    )
    .await?;
    let seen = next(&mut probe_consumer).await?;
    let address = seen
        .properties
        .reply_to()
        .as_ref()
        .map(|a| a.to_string())
        .ok_or_else(|| anyhow::anyhow!("the broker gave no reply-to address"))?;
    Ok((address, consumer))
}

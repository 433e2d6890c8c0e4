//! The floor a broker puts under the echo path: one publish → deliver
//! round trip through RabbitMQ, measured with the same client library and
//! options as Shellway (no confirm, auto-delete queue, loopback).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;

/// Sorted one-way publish → delivery times of `n` small messages.
pub async fn round_trips(amqp_url: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let conn =
        shellway_common::amqp::connect(amqp_url, "bench broker hop", Duration::from_secs(10))
            .await?;
    let publish = conn.create_channel().await?;
    let consume = conn.create_channel().await?;
    let queue = crate::unique("bench-hop-");
    let opts = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    consume
        .queue_declare(queue.as_str().into(), opts, FieldTable::default())
        .await?;
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut consumer = consume
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            no_ack,
            FieldTable::default(),
        )
        .await?;
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let t = Instant::now();
        let _confirm = publish
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default(),
            )
            .await?;
        match tokio::time::timeout(Duration::from_secs(5), consumer.next()).await {
            Ok(Some(Ok(_))) => {}
            _ => anyhow::bail!("no delivery"),
        }
        if i >= 20 {
            times.push(t.elapsed());
        }
    }
    let _ = conn.close(200, "done".into()).await;
    times.sort();
    Ok(times)
}

//! Requests no runner took in time come back through the rejected queue:
//! the session becomes `rejected` and its viewers get a capacity error.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use serde_json::json;
use shellway_common::{ErrorKind, Event, SessionRequest, SessionStatus};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::broker::{keep_consuming, Broker, BrokerError};
use crate::store::{self, AuditAction};

const RETRY: Duration = Duration::from_millis(250);

pub(crate) async fn run(db: PgPool, broker: Broker, ttl: Duration, shutdown: CancellationToken) {
    keep_consuming(&broker, "rejected-request consumer", &shutdown, || {
        consume(&db, &broker, ttl, &shutdown)
    })
    .await;
}

/// "waited 10 s", "waited 1.5 s".
fn waited(ttl: Duration) -> String {
    let ms = ttl.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ttl.as_secs_f64())
    }
}

async fn consume(
    db: &PgPool,
    broker: &Broker,
    ttl: Duration,
    shutdown: &CancellationToken,
) -> Result<(), BrokerError> {
    let ch = broker.channel().await?;
    ch.basic_qos(16, BasicQosOptions::default()).await?;
    let queue = broker.topology().rejected();
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            d = consumer.next() => d,
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(err)) => return Err(err.into()),
            None => return Err(BrokerError::NotConnected),
        };
        match handle(db, broker, ttl, &delivery).await {
            Ok(()) => {
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot mark a session rejected yet; retrying");
                delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RejectError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

async fn handle(
    db: &PgPool,
    broker: &Broker,
    ttl: Duration,
    d: &Delivery,
) -> Result<(), RejectError> {
    let req: SessionRequest = match serde_json::from_slice(&d.data) {
        Ok(r) => r,
        Err(err) => {
            tracing::warn!(error = %err, "skipping a malformed rejected request");
            return Ok(());
        }
    };
    let message = format!(
        "no runner available to open this session (waited {})",
        waited(ttl)
    );
    let change = store::sessions::Change {
        error_kind: Some("capacity"),
        error: Some(&message),
        ..Default::default()
    };
    let detail = json!({"host": req.host.name});
    let moved = store::sessions::set_status_audited(
        db,
        req.session,
        SessionStatus::Rejected,
        change,
        None,
        AuditAction::SessionRejected,
        detail,
    )
    .await?;
    if !moved.applied() {
        return Ok(());
    }
    tracing::warn!(session_id = %req.session, "no runner took the session");
    broker
        .publish_event(
            req.session,
            &Event::error(ErrorKind::Capacity, message.clone()),
        )
        .await?;
    let status = Event::Status {
        status: SessionStatus::Rejected,
        runner: None,
        message: Some(message),
    };
    broker.publish_event(req.session, &status).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_time_reads_naturally() {
        assert_eq!(waited(Duration::from_secs(10)), "10 s");
        assert_eq!(waited(Duration::from_millis(1500)), "1.5 s");
    }
}

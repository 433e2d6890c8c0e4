//! Requests no runner took in time come back through the rejected queue:
//! the session becomes `rejected` and its viewers get a capacity error.

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use serde_json::json;
use shellway_common::{ErrorKind, Event, SessionRequest, SessionStatus};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::bus::consumer::{consume, Handler, Queue};
use crate::bus::{Broker, BrokerError};
use crate::store::{self, AuditAction};

const RETRY: Duration = Duration::from_millis(250);

pub(crate) async fn run(db: PgPool, broker: Broker, ttl: Duration, shutdown: CancellationToken) {
    let mut watcher = Watcher {
        db,
        broker: broker.clone(),
        ttl,
    };
    consume(
        &broker,
        "rejected-request consumer",
        &mut watcher,
        None,
        &shutdown,
    )
    .await;
}

struct Watcher {
    db: PgPool,
    broker: Broker,
    ttl: Duration,
}

impl Handler for Watcher {
    type Error = BrokerError;

    fn queue(&self, broker: &Broker) -> Result<Queue, BrokerError> {
        Ok(Queue::Shared {
            name: broker.topology().rejected(),
            prefetch: 16,
        })
    }

    async fn handle(&mut self, deliveries: Vec<Delivery>) -> Result<(), BrokerError> {
        for delivery in deliveries {
            match handle(&self.db, &self.broker, self.ttl, &delivery).await {
                Ok(()) => {
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot mark a session rejected yet; retrying");
                    let requeue = BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    };
                    delivery.acker.nack(requeue).await?;
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
        Ok(())
    }
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

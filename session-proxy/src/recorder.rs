//! The recorder: persists everything runners report (output, statuses, runs,
//! host keys, errors) from the durable record queue into Postgres.
//!
//! Batches of messages go into one transaction and are acknowledged after it
//! commits; every write is idempotent, so a redelivery after a crash changes
//! nothing. After each commit the runners hear which output was stored
//! (`Control::Recorded`): they keep output until then. A malformed message is logged and acknowledged: it never blocks
//! the queue. While Postgres is down, nothing is acknowledged and the batch
//! is retried.

use std::collections::HashMap;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use serde_json::json;
use shellway_common::control::seq_ranges;
use shellway_common::topology::session_of_key;
use shellway_common::{Control, Event, OutputMeta, SessionStatus};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::consumer::{consume, Batching, Handler, Queue};
use crate::bus::{Broker, BrokerError, Report};
use crate::store::audit::{self, AuditAction};
use crate::store::pool as db;
use crate::store::{hosts, recordings, runs, sessions, Moved};

const PREFETCH: u16 = 500;
/// Output bytes of one batch (one transaction), well under what a runner
/// may hold unrecorded (16 MiB a session): the runner keeps publishing
/// while a batch commits and the broker already delivers the next one,
/// rather than every session stopping until a prefetch-sized batch is in.
const BATCH_BYTES: usize = 1 << 20;
/// How long a batch waits for more messages after its first.
const LINGER: Duration = Duration::from_millis(20);
const RETRY: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
enum RecorderError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("shutting down")]
    Shutdown,
}

/// One decoded message of the record queue.
#[derive(Debug, Clone)]
struct Item {
    session: Uuid,
    report: Report,
}

/// Records until `shutdown`; `max_bytes` caps each session's stored output.
pub(crate) async fn run(
    db: PgPool,
    broker: Broker,
    max_bytes: Option<u64>,
    shutdown: CancellationToken,
) {
    let mut recorder = Recorder {
        db,
        broker: broker.clone(),
        max_bytes,
        shutdown: shutdown.clone(),
    };
    // Gather what comes within LINGER: one transaction for a burst of
    // output, and no database write racing a keystroke's echo for the CPU
    // (viewers get output from the live feed, not from here).
    let batching = Batching {
        max: PREFETCH as usize,
        max_bytes: BATCH_BYTES,
        linger: LINGER,
    };
    consume(
        &broker,
        "recorder",
        &mut recorder,
        Some(batching),
        &shutdown,
    )
    .await;
}

struct Recorder {
    db: PgPool,
    broker: Broker,
    max_bytes: Option<u64>,
    shutdown: CancellationToken,
}

impl Handler for Recorder {
    type Error = RecorderError;

    fn queue(&self, broker: &Broker) -> Result<Queue, BrokerError> {
        Ok(Queue::Shared {
            name: broker.topology().record_queue(),
            prefetch: PREFETCH,
        })
    }

    fn started(&mut self, _queue: &Queue) {
        tracing::info!("recorder consuming");
    }

    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), RecorderError> {
        let Some(last) = batch.last().map(|d| d.acker.clone()) else {
            return Ok(());
        };
        let items: Vec<Item> = batch.into_iter().filter_map(decode).collect();
        store(&self.db, &items, self.max_bytes, &self.shutdown).await?;
        // Receipts before the ack: if they cannot go out, the batch comes
        // again (storing it again changes nothing) and so do they.
        send_receipts(&self.broker, &items).await?;
        last.ack(BasicAckOptions { multiple: true }).await?;
        Ok(())
    }
}

/// Tells each session's runner which of its output seqs are now stored
/// (one message per session per batch, without a confirm round trip):
/// the runner keeps output until then, to publish it again should the
/// broker lose it.
async fn send_receipts(broker: &Broker, items: &[Item]) -> Result<(), BrokerError> {
    let mut stored: HashMap<Uuid, Vec<u64>> = HashMap::new();
    for item in items {
        if let Report::Output { meta, .. } = &item.report {
            stored.entry(item.session).or_default().push(meta.seq);
        }
    }
    for (session, seqs) in stored {
        let receipt = Control::Recorded {
            seqs: seq_ranges(seqs),
        };
        broker.publish_control(session, &receipt, true).await?;
    }
    Ok(())
}

fn decode(d: Delivery) -> Option<Item> {
    let Some(session) = session_of_key(d.routing_key.as_str()) else {
        tracing::warn!(key = %d.routing_key, "skipping a message with no session in its routing key");
        return None;
    };
    match Report::decode(&d.properties, d.data) {
        Ok(report) => Some(Item { session, report }),
        Err(err) => {
            tracing::warn!(session_id = %session, error = %err, "skipping a malformed message");
            None
        }
    }
}

/// Commits `items`, retrying while the database is away. A batch the
/// database refuses is retried one message at a time, skipping the bad one.
async fn store(
    db: &PgPool,
    items: &[Item],
    max_bytes: Option<u64>,
    shutdown: &CancellationToken,
) -> Result<(), RecorderError> {
    match retrying(db, items, max_bytes, shutdown).await? {
        Ok(()) => return Ok(()),
        Err(err) if items.len() == 1 => {
            tracing::error!(session_id = %items[0].session, error = %err, "skipping a message the database refuses");
            return Ok(());
        }
        Err(err) => {
            tracing::warn!(error = %err, "a batch was refused; storing its messages one by one")
        }
    }
    for item in items {
        if let Err(err) = retrying(db, std::slice::from_ref(item), max_bytes, shutdown).await? {
            tracing::error!(session_id = %item.session, error = %err, "skipping a message the database refuses");
        }
    }
    Ok(())
}

/// Outer error: shutting down. Inner error: the database refused the batch.
async fn retrying(
    db: &PgPool,
    items: &[Item],
    max_bytes: Option<u64>,
    shutdown: &CancellationToken,
) -> Result<Result<(), sqlx::Error>, RecorderError> {
    let mut warned = false;
    loop {
        match store_batch(db, items, max_bytes).await {
            Err(err) if db::is_unavailable(&err) => {
                if !warned {
                    tracing::warn!(error = %err, "cannot record: database unavailable; retrying");
                    warned = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(RecorderError::Shutdown),
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
            other => {
                if warned {
                    tracing::info!("recording again");
                }
                return Ok(other);
            }
        }
    }
}

async fn store_batch(
    db: &PgPool,
    items: &[Item],
    max_bytes: Option<u64>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    let mut outputs: Vec<(Uuid, OutputMeta, &[u8])> = Vec::new();
    for item in items {
        match &item.report {
            Report::Output { meta, data } => outputs.push((item.session, *meta, data)),
            Report::Event(event) => {
                insert_outputs(&mut tx, &mut outputs, max_bytes).await?;
                apply_event(&mut tx, item.session, event).await?;
                recordings::record_event(&mut tx, item.session, event).await?;
            }
            // Made by a live feed for its viewers; never on the broker.
            Report::Stored(_) | Report::Link(_) => {}
        }
    }
    insert_outputs(&mut tx, &mut outputs, max_bytes).await?;
    tx.commit().await
}

async fn insert_outputs(
    conn: &mut PgConnection,
    outputs: &mut Vec<(Uuid, OutputMeta, &[u8])>,
    max_bytes: Option<u64>,
) -> Result<(), sqlx::Error> {
    if outputs.is_empty() {
        return Ok(());
    }
    if let Some(cap) = max_bytes {
        let keep = recordings::admit(&mut *conn, outputs, cap).await?;
        for (output, keep) in outputs.iter_mut().zip(keep) {
            if !keep {
                output.2 = &[];
            }
        }
    }
    recordings::insert_outputs(conn, outputs).await?;
    outputs.clear();
    Ok(())
}

async fn apply_event(
    conn: &mut PgConnection,
    session: Uuid,
    event: &Event,
) -> Result<(), sqlx::Error> {
    match event {
        Event::Status {
            status,
            runner,
            message,
        } => {
            let change = sessions::Change {
                runner: runner.as_deref(),
                error: message.as_deref(),
                ..Default::default()
            };
            let moved = sessions::set_status(conn, session, *status, change).await?;
            refused(session, &moved);
            Ok(())
        }
        Event::Closed { reason, by } => {
            let moved =
                sessions::set_status(conn, session, SessionStatus::Closed, Default::default())
                    .await?;
            refused(session, &moved);
            let who = by.as_deref().unwrap_or("runner");
            let detail = json!({"reason": reason, "by": who});
            audit::record(
                conn,
                None,
                AuditAction::SessionClosed,
                &session.to_string(),
                detail,
            )
            .await
        }
        Event::HostKey { key, fingerprint } => {
            hosts::pin_first_key(conn, session, key, fingerprint).await
        }
        Event::Started {
            run, kind, command, ..
        } => {
            let moved = runs::started(conn, session, *run, kind.as_str(), command).await?;
            refused(session, &moved);
            Ok(())
        }
        Event::Completed {
            run,
            status,
            exit_code,
            exit_signal,
            failed_step,
            duration_ms,
        } => {
            let completion = runs::Completion {
                status: *status,
                exit_code: *exit_code,
                exit_signal: exit_signal.as_deref(),
                failed_step: failed_step.map(|s| s as i32),
                duration_ms: *duration_ms as i64,
            };
            let moved = runs::completed(conn, session, *run, &completion).await?;
            refused(session, &moved);
            Ok(())
        }
        Event::Error { kind, message, run } => {
            let kind_name = serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
            let detail = json!({"type": kind, "message": message, "run": run});
            sessions::record_error(
                conn,
                session,
                kind_name.as_deref(),
                message,
                detail,
                run.is_none(),
            )
            .await
        }
        Event::Presence { viewers } => {
            let viewers = serde_json::to_value(viewers).unwrap_or_default();
            sessions::set_viewers(conn, session, &viewers).await
        }
        // The proxy wrote the run as `queued` when it sent it.
        Event::Resized { .. }
        | Event::Queued { .. }
        | Event::Snapshot { .. }
        | Event::Progress { .. }
        | Event::Canceling { .. }
        | Event::Revoked { .. } => Ok(()),
    }
}

/// A late or repeated report the state machine refused: nothing to store.
fn refused<S>(session: Uuid, moved: &Moved<S>) {
    if let Moved::Refused(illegal) = moved {
        tracing::debug!(session_id = %session, %illegal, "report refused by the state machine");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_trouble_is_transient_and_bad_data_is_not() {
        assert!(db::is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!db::is_unavailable(&sqlx::Error::RowNotFound));
    }
}

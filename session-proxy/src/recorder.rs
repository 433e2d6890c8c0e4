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
use crate::db;
use crate::recording::store;

const PREFETCH: u16 = 500;
/// How long a batch waits for more messages after its first.
const LINGER: Duration = Duration::from_millis(20);
const RETRY: Duration = Duration::from_millis(250);
/// Bytes of a run's output kept on the run as its tail.
const TAIL_BYTES: usize = 4096;

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
                store::record_event(&mut tx, item.session, event).await?;
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
        let keep = store::admit(&mut *conn, outputs, cap).await?;
        for (output, keep) in outputs.iter_mut().zip(keep) {
            if !keep {
                output.2 = &[];
            }
        }
    }
    let sessions: Vec<Uuid> = outputs.iter().map(|o| o.0).collect();
    let seqs: Vec<i64> = outputs.iter().map(|o| o.1.seq as i64).collect();
    let runs: Vec<Option<Uuid>> = outputs.iter().map(|o| o.1.run).collect();
    let streams: Vec<&str> = outputs.iter().map(|o| o.1.stream.as_str()).collect();
    let data: Vec<&[u8]> = outputs.iter().map(|o| o.2).collect();
    sqlx::query(
        "INSERT INTO output_chunks (session_id, seq, run_id, stream, data) \
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::bytea[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(sessions)
    .bind(seqs)
    .bind(runs)
    .bind(streams)
    .bind(data)
    .execute(&mut *conn)
    .await?;
    outputs.clear();
    Ok(())
}

async fn apply_event(
    conn: &mut PgConnection,
    session: Uuid,
    event: &Event,
) -> Result<(), sqlx::Error> {
    match event {
        Event::Status { status, runner, message } => set_status(conn, session, *status, runner.as_deref(), message.as_deref()).await,
        Event::Closed { reason, by } => {
            set_status(conn, session, SessionStatus::Closed, None, None).await?;
            let who = by.as_deref().unwrap_or("runner");
            db::audit(&mut *conn, None, "session.closed", &session.to_string(), json!({"reason": reason, "by": who})).await;
            Ok(())
        }
        Event::HostKey { key, fingerprint } => pin_host_key(conn, session, key, fingerprint).await,
        Event::Started { run, kind, command, .. } => {
            sqlx::query(
                "INSERT INTO runs (id, session_id, kind, command, status, started_at) \
                 VALUES ($1, $2, $3, $4, 'running', now()) \
                 ON CONFLICT (id) DO UPDATE SET status = 'running', started_at = COALESCE(runs.started_at, now()) \
                 WHERE runs.status = 'queued'",
            )
            .bind(run)
            .bind(session)
            .bind(kind.as_str())
            .bind(command)
            .execute(&mut *conn)
            .await
            .map(drop)
        }
        Event::Completed { run, status, exit_code, exit_signal, failed_step, duration_ms } => {
            let tail = output_tail(conn, session, *run).await?;
            sqlx::query(
                "INSERT INTO runs (id, session_id, kind, command, status, exit_code, exit_signal, failed_step, \
                   started_at, ended_at, duration_ms, output_tail) \
                 VALUES ($1, $2, 'command', '', $3, $4, $5, $6, now() - make_interval(secs => $7::double precision / 1000), now(), $7, $8) \
                 ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, exit_code = EXCLUDED.exit_code, \
                   exit_signal = EXCLUDED.exit_signal, failed_step = EXCLUDED.failed_step, \
                   started_at = COALESCE(runs.started_at, EXCLUDED.started_at), \
                   ended_at = COALESCE(runs.ended_at, EXCLUDED.ended_at), duration_ms = EXCLUDED.duration_ms, \
                   output_tail = EXCLUDED.output_tail",
            )
            .bind(run)
            .bind(session)
            .bind(status.as_str())
            .bind(exit_code)
            .bind(exit_signal)
            .bind(failed_step.map(|s| s as i32))
            .bind(*duration_ms as i64)
            .bind(tail)
            .execute(&mut *conn)
            .await
            .map(drop)
        }
        Event::Error { kind, message, run } => {
            if run.is_none() {
                let kind = serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned));
                sqlx::query("UPDATE sessions SET error_kind = COALESCE(error_kind, $2), error = COALESCE(error, $3) WHERE id = $1")
                    .bind(session)
                    .bind(kind)
                    .bind(message)
                    .execute(&mut *conn)
                    .await?;
            }
            let detail = json!({"type": kind, "message": message, "run": run});
            db::audit(&mut *conn, None, "session.error", &session.to_string(), detail).await;
            Ok(())
        }
        Event::Presence { viewers } => {
            // The live monitor's viewer column; an ended session has none.
            sqlx::query(
                "UPDATE sessions SET viewers = CASE WHEN status IN ('pending', 'connecting', 'open')                  THEN $2 ELSE '[]' END WHERE id = $1",
            )
            .bind(session)
            .bind(sqlx::types::Json(viewers))
            .execute(&mut *conn)
            .await
            .map(drop)
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

async fn set_status(
    conn: &mut PgConnection,
    session: Uuid,
    status: SessionStatus,
    runner: Option<&str>,
    message: Option<&str>,
) -> Result<(), sqlx::Error> {
    let done = !status.is_live();
    // A final status is final; and an open session does not go back.
    let changed = sqlx::query(
        "UPDATE sessions SET status = $2, runner = COALESCE($3, runner), \
           ended_at = CASE WHEN $4 THEN COALESCE(ended_at, now()) ELSE ended_at END, \
           error = CASE WHEN $4 THEN COALESCE(error, $5) ELSE error END \
         WHERE id = $1 AND status IN ('pending', 'connecting', 'open') \
           AND NOT (status = 'open' AND $2 IN ('pending', 'connecting')) \
           AND NOT (status = 'connecting' AND $2 = 'pending')",
    )
    .bind(session)
    .bind(status.as_str())
    .bind(runner)
    .bind(done)
    .bind(message)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if done && changed > 0 {
        let run_status = if status == SessionStatus::Lost {
            "lost"
        } else {
            "canceled"
        };
        let running: Vec<Option<Uuid>> = sqlx::query_scalar(
            "UPDATE runs SET status = $2, ended_at = now() WHERE session_id = $1 AND status IN ('queued', 'running') \
             RETURNING CASE WHEN started_at IS NOT NULL THEN id END",
        )
        .bind(session)
        .bind(run_status)
        .fetch_all(&mut *conn)
        .await?;
        let running: Vec<Uuid> = running.into_iter().flatten().collect();
        store::runs_cut_short(conn, session, &running, run_status).await?;
    }
    Ok(())
}

async fn pin_host_key(
    conn: &mut PgConnection,
    session: Uuid,
    key: &str,
    fingerprint: &str,
) -> Result<(), sqlx::Error> {
    let pinned: Option<(Uuid,)> = sqlx::query_as(
        "UPDATE hosts SET host_keys = ARRAY[$2], updated_at = now() \
         WHERE id = (SELECT host_id FROM sessions WHERE id = $1) \
           AND host_key_policy = 'tofu' AND cardinality(host_keys) = 0 RETURNING id",
    )
    .bind(session)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((host,)) = pinned {
        tracing::info!(host_id = %host, fingerprint, "pinned the host key on first use");
        let detail = json!({"fingerprint": fingerprint, "key": key, "session": session});
        db::audit(
            &mut *conn,
            None,
            "host.key_pinned",
            &host.to_string(),
            detail,
        )
        .await;
    }
    Ok(())
}

/// The last TAIL_BYTES of a run's stdout and stderr, as text.
async fn output_tail(
    conn: &mut PgConnection,
    session: Uuid,
    run: Uuid,
) -> Result<String, sqlx::Error> {
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
        "SELECT data FROM output_chunks WHERE session_id = $1 AND run_id = $2 ORDER BY seq DESC LIMIT 64",
    )
    .bind(session)
    .bind(run)
    .fetch_all(&mut *conn)
    .await?;
    Ok(tail_of(rows.into_iter().rev().map(|r| r.0)))
}

fn tail_of(chunks: impl Iterator<Item = Vec<u8>>) -> String {
    let all: Vec<u8> = chunks.flatten().collect();
    let start = all.len().saturating_sub(TAIL_BYTES);
    String::from_utf8_lossy(&all[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let chunks = vec![b"a".repeat(3000), b"b".repeat(3000)];
        let tail = tail_of(chunks.into_iter());
        assert_eq!(tail.len(), TAIL_BYTES);
        assert!(tail.ends_with(&"b".repeat(3000)));
        assert_eq!(tail_of(vec![b"err\n".to_vec()].into_iter()), "err\n");
    }

    #[test]
    fn connection_trouble_is_transient_and_bad_data_is_not() {
        assert!(db::is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!db::is_unavailable(&sqlx::Error::RowNotFound));
    }
}

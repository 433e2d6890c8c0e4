//! Deleting expired recordings (the retention sweep's statements), in
//! small batches, each deletion audited in the transaction that marks it.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::audit::{self, AuditAction};

/// Sessions one sweep looks at; the next sweep takes the rest.
const SESSIONS_PER_SWEEP: i64 = 100;
/// Rows one delete statement removes.
const ROWS_PER_DELETE: i64 = 2000;

/// Deletes the recordings of sessions that ended before `keep` ago;
/// returns how many were deleted.
pub(crate) async fn sweep(
    db: &PgPool,
    keep: Duration,
    shutdown: &CancellationToken,
) -> Result<usize, sqlx::Error> {
    let expired: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM sessions WHERE recording_deleted_at IS NULL \
           AND ended_at < now() - make_interval(secs => $1) ORDER BY ended_at LIMIT $2",
    )
    .bind(keep.as_secs_f64())
    .bind(SESSIONS_PER_SWEEP)
    .fetch_all(db)
    .await?;
    let mut deleted = 0;
    for session in expired {
        if shutdown.is_cancelled() {
            break;
        }
        if delete(db, session, keep, shutdown).await? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Deletes one session's recording batch by batch; false if interrupted
/// (the next sweep finishes it).
async fn delete(
    db: &PgPool,
    session: Uuid,
    keep: Duration,
    shutdown: &CancellationToken,
) -> Result<bool, sqlx::Error> {
    let mut chunks = 0i64;
    let mut stored_bytes = 0i64;
    loop {
        let (rows, bytes): (i64, Option<i64>) = sqlx::query_as(
            "WITH gone AS (DELETE FROM output_chunks WHERE session_id = $1 AND seq IN \
               (SELECT seq FROM output_chunks WHERE session_id = $1 ORDER BY seq LIMIT $2) \
               RETURNING pg_column_size(data) AS size) \
             SELECT count(*), sum(size)::bigint FROM gone",
        )
        .bind(session)
        .bind(ROWS_PER_DELETE)
        .fetch_one(db)
        .await?;
        chunks += rows;
        stored_bytes += bytes.unwrap_or(0);
        if shutdown.is_cancelled() {
            return Ok(false);
        }
        if rows < ROWS_PER_DELETE {
            break;
        }
    }
    loop {
        let rows = sqlx::query(
            "DELETE FROM recording_events WHERE id IN \
               (SELECT id FROM recording_events WHERE session_id = $1 LIMIT $2)",
        )
        .bind(session)
        .bind(ROWS_PER_DELETE)
        .execute(db)
        .await?
        .rows_affected();
        if shutdown.is_cancelled() {
            return Ok(false);
        }
        if rows < ROWS_PER_DELETE as u64 {
            break;
        }
    }
    let mut tx = db.begin().await?;
    let marked = sqlx::query(
        "UPDATE sessions SET recording_deleted_at = now() \
         WHERE id = $1 AND recording_deleted_at IS NULL",
    )
    .bind(session)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if marked > 0 {
        let days = keep.as_secs_f64() / 86_400.0;
        let detail = json!({
            "reason": "retention",
            "retention_days": days,
            "chunks": chunks,
            "stored_bytes": stored_bytes,
        });
        let target = session.to_string();
        audit::record(
            &mut tx,
            None,
            AuditAction::RecordingDeleted,
            &target,
            detail,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(marked > 0)
}

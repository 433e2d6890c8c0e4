//! Runs: written `queued` when the proxy sends one (or `running` when a
//! runner reports one the proxy did not write), then moved only through
//! the run state machine.

use chrono::{DateTime, Utc};
use serde_json::json;
use shellway_common::RunStatus;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::audit::{self, AuditAction, Who};
use super::{lifecycle, Moved};

/// Bytes of a run's output kept on the run as its tail.
const TAIL_BYTES: usize = 4096;

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RunRow {
    pub id: Uuid,
    pub session_id: Uuid,
    pub kind: String,
    pub command: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    pub failed_step: Option<i32>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub output_tail: Option<String>,
}

/// The runs of `sessions`, oldest first.
pub(crate) async fn of_sessions(
    db: &PgPool,
    sessions: &[Uuid],
) -> Result<Vec<RunRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, session_id, kind, command, status, exit_code, exit_signal, failed_step, \
         started_at, ended_at, duration_ms, output_tail FROM runs \
         WHERE session_id = ANY($1) ORDER BY created_at, id",
    )
    .bind(sessions)
    .fetch_all(db)
    .await
}

/// A run the proxy is about to send.
pub(crate) struct NewRun<'a> {
    pub id: Uuid,
    pub session: Uuid,
    pub kind: &'a str,
    pub label: &'a str,
    pub by: Who<'a>,
}

/// Writes the run `queued`, with its `run.start` audit line, if its
/// session is live; `false` if it is not.
pub(crate) async fn queue(db: &PgPool, r: &NewRun<'_>) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO runs (id, session_id, kind, command, status, created_by) \
         SELECT $1, $2, $3, $4, 'queued', $5 FROM sessions WHERE id = $2 AND status = ANY($6)",
    )
    .bind(r.id)
    .bind(r.session)
    .bind(r.kind)
    .bind(r.label)
    .bind(r.by.map(|b| b.0))
    .bind(lifecycle::live_sessions())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        return Ok(false);
    }
    let detail = json!({"session": r.session, "command": r.label});
    audit::record(
        &mut tx,
        r.by,
        AuditAction::RunStart,
        &r.id.to_string(),
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// The run's status under a row lock.
async fn lock(conn: &mut PgConnection, run: Uuid) -> Result<Option<RunStatus>, sqlx::Error> {
    let s: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1 FOR UPDATE")
        .bind(run)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(s.map(|s| RunStatus::parse(&s).unwrap_or(RunStatus::Error)))
}

/// Moves a run to `to` (no more than that) if the state machine allows it.
pub(crate) async fn set_status(
    conn: &mut PgConnection,
    run: Uuid,
    to: RunStatus,
) -> Result<Moved<RunStatus>, sqlx::Error> {
    let Some(from) = lock(conn, run).await? else {
        return Ok(Moved::Missing);
    };
    if let Err(illegal) = lifecycle::run(from, to) {
        return Ok(Moved::Refused(illegal));
    }
    sqlx::query(
        "UPDATE runs SET status = $2, \
           started_at = CASE WHEN $2 = 'running' THEN COALESCE(started_at, now()) ELSE started_at END, \
           ended_at = CASE WHEN $2 = 'running' THEN ended_at ELSE COALESCE(ended_at, now()) END \
         WHERE id = $1",
    )
    .bind(run)
    .bind(to.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(Moved::From(from))
}

/// A run the proxy wrote but could not send: `error`.
pub(crate) async fn unsent(db: &PgPool, run: Uuid) -> Result<Moved<RunStatus>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let moved = set_status(&mut tx, run, RunStatus::Error).await?;
    tx.commit().await?;
    Ok(moved)
}

/// A runner started a run: `running` (written so if the proxy had not).
pub(crate) async fn started(
    conn: &mut PgConnection,
    session: Uuid,
    run: Uuid,
    kind: &str,
    command: &str,
) -> Result<Moved<RunStatus>, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO runs (id, session_id, kind, command, status, started_at) \
         VALUES ($1, $2, $3, $4, 'running', now()) ON CONFLICT (id) DO NOTHING",
    )
    .bind(run)
    .bind(session)
    .bind(kind)
    .bind(command)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Moved::From(RunStatus::Queued));
    }
    set_status(conn, run, RunStatus::Running).await
}

/// How a run ended, as its runner reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion<'a> {
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<&'a str>,
    pub failed_step: Option<i32>,
    pub duration_ms: i64,
}

/// A runner finished a run: its ending, exit and output tail, unless the
/// run has ended already (lost, or canceled with its session).
pub(crate) async fn completed(
    conn: &mut PgConnection,
    session: Uuid,
    run: Uuid,
    c: &Completion<'_>,
) -> Result<Moved<RunStatus>, sqlx::Error> {
    sqlx::query(
        "INSERT INTO runs (id, session_id, kind, command, status, started_at) \
         VALUES ($1, $2, 'command', '', 'running', now() - make_interval(secs => $3::double precision / 1000)) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(run)
    .bind(session)
    .bind(c.duration_ms)
    .execute(&mut *conn)
    .await?;
    let moved = set_status(conn, run, c.status).await?;
    if moved.applied() {
        let tail = output_tail(conn, session, run).await?;
        sqlx::query(
            "UPDATE runs SET exit_code = $2, exit_signal = $3, failed_step = $4, duration_ms = $5, \
               output_tail = $6, \
               started_at = COALESCE(started_at, now() - make_interval(secs => $5::double precision / 1000)) \
             WHERE id = $1",
        )
        .bind(run)
        .bind(c.exit_code)
        .bind(c.exit_signal)
        .bind(c.failed_step)
        .bind(c.duration_ms)
        .bind(tail)
        .execute(&mut *conn)
        .await?;
        super::jobs::notify_session(conn, session).await?;
    }
    Ok(moved)
}

/// Ends the unfinished runs of a session that ended, as `to`; returns
/// those that had started.
pub(crate) async fn end_with_session(
    conn: &mut PgConnection,
    session: Uuid,
    to: RunStatus,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let open: Vec<(Uuid, String, bool)> = sqlx::query_as(
        "SELECT id, status, started_at IS NOT NULL FROM runs \
         WHERE session_id = $1 AND status = ANY($2) ORDER BY id FOR UPDATE",
    )
    .bind(session)
    .bind(lifecycle::unfinished_runs())
    .fetch_all(&mut *conn)
    .await?;
    let mut started = Vec::new();
    for (run, _, was_started) in open {
        if set_status(conn, run, to).await?.applied() && was_started {
            started.push(run);
        }
    }
    Ok(started)
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
}

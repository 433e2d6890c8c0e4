//! Sessions: created `pending`, then moved only through
//! [`set_status`], which applies the session state machine under a row
//! lock and ends the session's runs with it.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use shellway_common::api::sessions::ViewerInfo;
use shellway_common::{RunStatus, SessionStatus};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::audit::{self, AuditAction, Who};
use super::{lifecycle, recordings, runs, Moved};

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub id: Uuid,
    pub host_id: Option<Uuid>,
    pub host_name: Option<String>,
    pub owner_id: Uuid,
    pub owner: String,
    pub status: String,
    pub runner: Option<String>,
    pub cols: i32,
    pub rows: i32,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub viewers: sqlx::types::Json<Vec<ViewerInfo>>,
    pub account: Option<String>,
    pub shell: bool,
}

impl SessionRow {
    pub(crate) fn status(&self) -> SessionStatus {
        SessionStatus::parse(&self.status).unwrap_or(SessionStatus::Failed)
    }
}

/// The viewers column only means something while the session is live.
static SELECT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT s.id, s.host_id, h.name AS host_name, s.owner_id, u.username AS owner, \
         s.status, s.runner, s.cols, s.rows, s.error_kind, s.error, s.created_at, s.ended_at, \
         s.account, s.shell, \
         CASE WHEN s.status IN ({}) THEN s.viewers ELSE '[]' END AS viewers \
         FROM sessions s JOIN users u ON u.id = s.owner_id LEFT JOIN hosts h ON h.id = s.host_id",
        super::sql_list(&lifecycle::live_sessions())
    )
});

pub(crate) async fn get(db: &PgPool, id: Uuid) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{} WHERE s.id = $1", *SELECT)))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// `GET /api/sessions` filters, combined with AND.
#[derive(Debug, Default)]
pub(crate) struct Filter<'a> {
    pub statuses: Vec<String>,
    /// Only sessions this user owns (`None`: everybody's).
    pub owned_by: Option<Uuid>,
    pub host: Option<Uuid>,
    pub owner_name: Option<&'a str>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// A LIKE pattern over the commands of the session's runs.
    pub command_like: Option<String>,
    /// The page after this session.
    pub before: Option<Uuid>,
    pub limit: i64,
}

pub(crate) async fn list(db: &PgPool, f: &Filter<'_>) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{} WHERE s.job_id IS NULL AND s.status = ANY($1) AND ($2::uuid IS NULL OR s.owner_id = $2) \
         AND ($3::uuid IS NULL OR s.host_id = $3) \
         AND ($4::text IS NULL OR u.username = $4) \
         AND ($5::timestamptz IS NULL OR s.created_at >= $5) \
         AND ($6::timestamptz IS NULL OR s.created_at < $6) \
         AND ($7::text IS NULL OR EXISTS (SELECT 1 FROM runs r \
              WHERE r.session_id = s.id AND r.command ILIKE $7)) \
         AND ($8::uuid IS NULL OR (s.created_at, s.id) < \
              (SELECT c.created_at, c.id FROM sessions c WHERE c.id = $8)) \
         ORDER BY s.created_at DESC, s.id DESC LIMIT $9",
        *SELECT
    )))
    .bind(&f.statuses)
    .bind(f.owned_by)
    .bind(f.host)
    .bind(f.owner_name)
    .bind(f.from)
    .bind(f.to)
    .bind(&f.command_like)
    .bind(f.before)
    .bind(f.limit)
    .fetch_all(db)
    .await
}

/// A new session as `POST /api/sessions` asks for it.
pub(crate) struct NewSession<'a> {
    pub id: Uuid,
    pub host: Uuid,
    pub host_name: &'a str,
    pub account: &'a str,
    pub owner: Who<'a>,
    pub cols: u16,
    pub rows: u16,
    pub shell: bool,
    /// The job this session is a host of.
    pub job: Option<Uuid>,
}

/// Writes a `pending` session and its `session.open` audit line.
pub(crate) async fn create(db: &PgPool, s: &NewSession<'_>) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO sessions (id, host_id, owner_id, status, cols, rows, shell, account, job_id) \
         VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8)",
    )
    .bind(s.id)
    .bind(s.host)
    .bind(s.owner.map(|o| o.0))
    .bind(i32::from(s.cols))
    .bind(i32::from(s.rows))
    .bind(s.shell)
    .bind(s.account)
    .bind(s.job)
    .execute(&mut *tx)
    .await?;
    let detail = json!({"host": s.host_name, "account": s.account});
    audit::record(
        &mut tx,
        s.owner,
        AuditAction::SessionOpen,
        &s.id.to_string(),
        detail,
    )
    .await?;
    tx.commit().await
}

/// What a status change also sets: who runs the session, and on an
/// ending, why (kept if the session already has a reason).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Change<'a> {
    pub runner: Option<&'a str>,
    pub error_kind: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// Moves session `id` to `to` if the state machine allows it from the
/// status it has now (read under a row lock, on `conn`'s transaction).
/// An ending also ends the session's unfinished runs (`lost` with a lost
/// session, `canceled` otherwise).
pub(crate) async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    to: SessionStatus,
    change: Change<'_>,
) -> Result<Moved<SessionStatus>, sqlx::Error> {
    let from: Option<String> =
        sqlx::query_scalar("SELECT status FROM sessions WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(from) = from else {
        return Ok(Moved::Missing);
    };
    let from = SessionStatus::parse(&from).unwrap_or(SessionStatus::Failed);
    if let Err(illegal) = lifecycle::session(from, to) {
        return Ok(Moved::Refused(illegal));
    }
    let ended = !to.is_live();
    sqlx::query(
        "UPDATE sessions SET status = $2, runner = COALESCE($3, runner), \
           ended_at = CASE WHEN $4 THEN COALESCE(ended_at, now()) ELSE ended_at END, \
           error_kind = CASE WHEN $4 THEN COALESCE(error_kind, $5) ELSE error_kind END, \
           error = CASE WHEN $4 THEN COALESCE(error, $6) ELSE error END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(to.as_str())
    .bind(change.runner)
    .bind(ended)
    .bind(change.error_kind)
    .bind(change.error)
    .execute(&mut *conn)
    .await?;
    if ended {
        let run_status = if to == SessionStatus::Lost {
            RunStatus::Lost
        } else {
            RunStatus::Canceled
        };
        let started = runs::end_with_session(conn, id, run_status).await?;
        super::jobs::notify_session(conn, id).await?;
        recordings::runs_cut_short(conn, id, &started, run_status.as_str()).await?;
    }
    Ok(Moved::From(from))
}

/// `set_status` and its audit line in one transaction.
pub(crate) async fn set_status_audited(
    db: &PgPool,
    id: Uuid,
    to: SessionStatus,
    change: Change<'_>,
    who: Who<'_>,
    action: AuditAction,
    detail: Value,
) -> Result<Moved<SessionStatus>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let moved = set_status(&mut tx, id, to, change).await?;
    if moved.applied() {
        audit::record(&mut tx, who, action, &id.to_string(), detail).await?;
        tx.commit().await?;
    }
    Ok(moved)
}

/// Ends a session on a user's request: closed here if no runner has taken
/// it yet (`true`), else left to its runner; audited either way.
pub(crate) async fn end_by(db: &PgPool, id: Uuid, who: Who<'_>) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM sessions WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let closed_here = if status.as_deref() == Some(SessionStatus::Pending.as_str()) {
        let moved = set_status(&mut tx, id, SessionStatus::Closed, Change::default()).await?;
        moved.applied()
    } else {
        false
    };
    audit::record(
        &mut tx,
        who,
        AuditAction::SessionEnd,
        &id.to_string(),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(closed_here)
}

/// The reaper's sweep: sessions still `pending` or `connecting` after
/// `older_than_secs` that no runner lists (`held`) end `failed`, each
/// with the message for the status it was stuck in. Returns them and
/// their message.
pub(crate) async fn reap_stuck(
    db: &PgPool,
    older_than_secs: f64,
    held: &[Uuid],
    pending_message: &str,
    connecting_message: &str,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let stuck: Vec<String> = [SessionStatus::Pending, SessionStatus::Connecting]
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    let mut tx = db.begin().await?;
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, status FROM sessions WHERE status = ANY($1) \
           AND created_at < now() - make_interval(secs => $2) AND NOT (id = ANY($3)) \
         FOR UPDATE SKIP LOCKED",
    )
    .bind(&stuck)
    .bind(older_than_secs)
    .bind(held)
    .fetch_all(&mut *tx)
    .await?;
    let mut reaped = Vec::new();
    for (id, status) in rows {
        let message = if status == SessionStatus::Pending.as_str() {
            pending_message
        } else {
            connecting_message
        };
        let change = Change {
            error_kind: Some("runtime"),
            error: Some(message),
            ..Change::default()
        };
        if set_status(&mut tx, id, SessionStatus::Failed, change)
            .await?
            .applied()
        {
            let error: Option<String> =
                sqlx::query_scalar("SELECT error FROM sessions WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            let message = error.unwrap_or_else(|| message.to_owned());
            let detail = json!({"reason": message});
            audit::record(
                &mut tx,
                None,
                AuditAction::SessionFailed,
                &id.to_string(),
                detail,
            )
            .await?;
            reaped.push((id, message));
        }
    }
    tx.commit().await?;
    Ok(reaped)
}

/// Live sessions a runner was reported as running.
pub(crate) async fn live_on_runner(db: &PgPool, runner: &str) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM sessions WHERE runner = $1 AND status = ANY($2)")
        .bind(runner)
        .bind(lifecycle::live_sessions())
        .fetch_all(db)
        .await
}

/// Live sessions a runner has taken, with that runner.
pub(crate) async fn live_with_runner(db: &PgPool) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, runner FROM sessions WHERE status = ANY($1) AND runner IS NOT NULL")
        .bind(lifecycle::live_sessions())
        .fetch_all(db)
        .await
}

/// Live sessions of one owner (at most `limit`).
pub(crate) async fn live_of_owner(
    db: &PgPool,
    owner: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM sessions WHERE owner_id = $1 AND status = ANY($2) LIMIT $3")
        .bind(owner)
        .bind(lifecycle::live_sessions())
        .bind(limit)
        .fetch_all(db)
        .await
}

/// Of `ids`, those that have ended, with their status.
pub(crate) async fn ended_among(
    db: &PgPool,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, status FROM sessions WHERE id = ANY($1) AND NOT (status = ANY($2))")
        .bind(ids)
        .bind(lifecycle::live_sessions())
        .fetch_all(db)
        .await
}

/// A runner's session-wide error: kept as the session's reason unless it
/// has one, and audited.
pub(crate) async fn record_error(
    conn: &mut PgConnection,
    id: Uuid,
    kind: Option<&str>,
    message: &str,
    detail: Value,
    on_session: bool,
) -> Result<(), sqlx::Error> {
    if on_session {
        sqlx::query(
            "UPDATE sessions SET error_kind = COALESCE(error_kind, $2), \
             error = COALESCE(error, $3) WHERE id = $1",
        )
        .bind(id)
        .bind(kind)
        .bind(message)
        .execute(&mut *conn)
        .await?;
    }
    audit::record(
        conn,
        None,
        AuditAction::SessionError,
        &id.to_string(),
        detail,
    )
    .await
}

/// The live monitor's viewer list; an ended session has none.
pub(crate) async fn set_viewers(
    conn: &mut PgConnection,
    id: Uuid,
    viewers: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sessions SET viewers = CASE WHEN status = ANY($3) THEN $2 ELSE '[]' END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(sqlx::types::Json(viewers))
    .bind(lifecycle::live_sessions())
    .execute(conn)
    .await
    .map(drop)
}

/// A session's status as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredStatus {
    pub status: SessionStatus,
    pub runner: Option<String>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
}

type StatusTuple = (String, Option<String>, Option<String>, Option<String>);

/// Reads a session's status; `None` if there is no such session.
pub(crate) async fn load_status(
    db: &PgPool,
    session: Uuid,
) -> Result<Option<StoredStatus>, sqlx::Error> {
    let row: Option<StatusTuple> =
        sqlx::query_as("SELECT status, runner, error_kind, error FROM sessions WHERE id = $1")
            .bind(session)
            .fetch_optional(db)
            .await?;
    Ok(row.map(|(status, runner, error_kind, error)| StoredStatus {
        status: SessionStatus::parse(&status).unwrap_or(SessionStatus::Failed),
        runner,
        error_kind,
        error,
    }))
}

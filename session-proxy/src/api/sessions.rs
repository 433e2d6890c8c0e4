//! Sessions: open (request a runner), list, detail with runs, end.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use shellway_common::{Control, Event, PtySize, SessionRequest, SessionStatus};
use uuid::Uuid;

use super::{hosts, AppState, Json, Query};
use crate::auth::AuthUser;
use crate::db;
use crate::error::ApiError;

/// Statuses a session can still change from.
pub(crate) const LIVE: [&str; 3] = ["pending", "connecting", "open"];

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
    pub viewers: sqlx::types::Json<Value>,
}

const SELECT: &str =
    "SELECT s.id, s.host_id, h.name AS host_name, s.owner_id, u.username AS owner, \
     s.status, s.runner, s.cols, s.rows, s.error_kind, s.error, s.created_at, s.ended_at, \
     CASE WHEN s.status IN ('pending', 'connecting', 'open') THEN s.viewers ELSE '[]' END AS viewers \
     FROM sessions s JOIN users u ON u.id = s.owner_id LEFT JOIN hosts h ON h.id = s.host_id";

impl SessionRow {
    pub(crate) fn status(&self) -> SessionStatus {
        SessionStatus::parse(&self.status).unwrap_or(SessionStatus::Failed)
    }

    fn to_json(&self, runs: Vec<Value>) -> Value {
        json!({
            "id": self.id,
            "host_id": self.host_id,
            "host_name": self.host_name,
            "owner": self.owner,
            "status": self.status,
            "runner": self.runner,
            "cols": self.cols,
            "rows": self.rows,
            "error": self.error,
            "error_type": self.error_kind,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "ws_path": ws_path(self.id),
            "viewers": self.viewers.0,
            "runs": runs,
        })
    }
}

fn ws_path(id: Uuid) -> String {
    format!("/ws/sessions/{id}")
}

/// The session, if `user` may see and act on it (owner or admin).
pub(crate) async fn load(
    db: &sqlx::PgPool,
    id: Uuid,
    user: &AuthUser,
) -> Result<SessionRow, ApiError> {
    let row: Option<SessionRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE s.id = $1")))
            .bind(id)
            .fetch_optional(db)
            .await?;
    row.filter(|s| user.is_admin || s.owner_id == user.id)
        .ok_or_else(|| ApiError::not_found("session"))
}

#[derive(Deserialize)]
pub(crate) struct Open {
    host_id: Uuid,
    cols: Option<u16>,
    rows: Option<u16>,
    shell: Option<bool>,
}

fn pty_size(cols: Option<u16>, rows: Option<u16>) -> Result<PtySize, ApiError> {
    let d = PtySize::default();
    let size = PtySize {
        cols: cols.unwrap_or(d.cols),
        rows: rows.unwrap_or(d.rows),
    };
    if !(1..=1000).contains(&size.cols) {
        return Err(ApiError::invalid("cols", "cols must be between 1 and 1000"));
    }
    if !(1..=1000).contains(&size.rows) {
        return Err(ApiError::invalid("rows", "rows must be between 1 and 1000"));
    }
    Ok(size)
}

pub(crate) async fn open(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<Open>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let pty = pty_size(body.cols, body.rows)?;
    let host = hosts::fetch(&st.db, body.host_id)
        .await
        .map_err(|e| match e.code {
            "not_found" => ApiError::invalid("host_id", "no such host"),
            _ => e,
        })?;
    let target = host.target()?;
    if !st.broker.is_up() {
        // Refused before anything is written: no session to clean up.
        return Err(crate::bus::BrokerError::NotConnected.into());
    }
    let id = Uuid::now_v7();
    let shell = body.shell.unwrap_or(true);
    sqlx::query(
        "INSERT INTO sessions (id, host_id, owner_id, status, cols, rows, shell) \
         VALUES ($1, $2, $3, 'pending', $4, $5, $6)",
    )
    .bind(id)
    .bind(host.id)
    .bind(user.id)
    .bind(i32::from(pty.cols))
    .bind(i32::from(pty.rows))
    .bind(shell)
    .execute(&st.db)
    .await?;
    let req = SessionRequest {
        session: id,
        owner: user.username.clone(),
        host: target,
        pty,
        shell,
        requested_at: Utc::now(),
        idle_timeout_s: Some(st.settings.session_idle_timeout.as_secs()),
    };
    let sent = async {
        st.broker.declare_session(id).await?;
        st.broker
            .publish_request(&req, st.settings.request_ttl)
            .await
    }
    .await;
    if let Err(err) = sent {
        sqlx::query(
            "UPDATE sessions SET status = 'failed', ended_at = now(), error_kind = 'runtime', \
             error = 'the message broker was unavailable' WHERE id = $1",
        )
        .bind(id)
        .execute(&st.db)
        .await?;
        return Err(err.into());
    }
    tracing::info!(session_id = %id, host = %host.name, user = %user.username, "session requested");
    db::audit(
        &st.db,
        user.audit_id(),
        "session.open",
        &id.to_string(),
        json!({"host": host.name}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"id": id, "ws_path": ws_path(id)})),
    ))
}

/// Sessions in one page of the list, by default and at most.
const PAGE_DEFAULT: u32 = 50;
const PAGE_MAX: u32 = 200;
/// Longest search text.
const MAX_SEARCH: usize = 200;

/// `GET /api/sessions` filters; all optional, combined with AND.
#[derive(Deserialize)]
pub(crate) struct ListQuery {
    /// `live`, `finished`, `all` or one status.
    status: Option<String>,
    /// Only the caller's own sessions (what an admin's console lists).
    mine: Option<bool>,
    host: Option<Uuid>,
    /// Owner's username (admins; others only ever see their own).
    owner: Option<String>,
    /// Started at or after / before (RFC 3339).
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// Text searched in the commands of the session's runs.
    q: Option<String>,
    limit: Option<u32>,
    /// The page after this session (the last one of the previous page).
    before: Option<Uuid>,
}

fn bad_query(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

fn statuses(status: Option<&str>) -> Result<Vec<String>, ApiError> {
    let all = SessionStatus::ALL.iter();
    let list = match status {
        None | Some("") | Some("all") => all.map(|s| s.as_str().to_owned()).collect(),
        Some("live") => LIVE.iter().map(|s| (*s).to_owned()).collect(),
        Some("finished") => all
            .filter(|s| !s.is_live())
            .map(|s| s.as_str().to_owned())
            .collect(),
        Some(s) => vec![SessionStatus::parse(s)
            .ok_or_else(|| bad_query("status must be live, finished, all or a session status"))?
            .as_str()
            .to_owned()],
    };
    Ok(list)
}

/// `text` as a case-insensitive LIKE pattern matching it anywhere.
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let statuses = statuses(q.status.as_deref())?;
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(bad_query(format!("limit must be between 1 and {PAGE_MAX}")));
    }
    let search = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if search.is_some_and(|t| t.len() > MAX_SEARCH) {
        return Err(bad_query(format!(
            "q is longer than {MAX_SEARCH} characters"
        )));
    }
    let owner = q.owner.as_deref().map(str::trim).filter(|o| !o.is_empty());
    let rows: Vec<SessionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE s.status = ANY($1) AND ($2 OR s.owner_id = $3) \
         AND (NOT $4 OR s.owner_id = $3) \
         AND ($5::uuid IS NULL OR s.host_id = $5) \
         AND ($6::text IS NULL OR u.username = $6) \
         AND ($7::timestamptz IS NULL OR s.created_at >= $7) \
         AND ($8::timestamptz IS NULL OR s.created_at < $8) \
         AND ($9::text IS NULL OR EXISTS (SELECT 1 FROM runs r \
              WHERE r.session_id = s.id AND r.command ILIKE $9)) \
         AND ($10::uuid IS NULL OR (s.created_at, s.id) < \
              (SELECT c.created_at, c.id FROM sessions c WHERE c.id = $10)) \
         ORDER BY s.created_at DESC, s.id DESC LIMIT $11"
    )))
    .bind(&statuses)
    .bind(user.is_admin)
    .bind(user.id)
    .bind(q.mine.unwrap_or(false))
    .bind(q.host)
    .bind(owner)
    .bind(q.from)
    .bind(q.to)
    .bind(search.map(contains_pattern))
    .bind(q.before)
    .bind(i64::from(limit))
    .fetch_all(&st.db)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut runs = super::runs::of_sessions(&st.db, &ids).await?;
    let list = rows
        .iter()
        .map(|r| r.to_json(runs.remove(&r.id).unwrap_or_default()))
        .collect();
    Ok(axum::Json(Value::Array(list)))
}

pub(crate) async fn detail(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, ApiError> {
    let row = load(&st.db, id, &user).await?;
    let mut runs = super::runs::of_sessions(&st.db, &[id]).await?;
    Ok(axum::Json(
        row.to_json(runs.remove(&id).unwrap_or_default()),
    ))
}

pub(crate) async fn end(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let row = load(&st.db, id, &user).await?;
    if !row.status().is_live() {
        return Err(ApiError::conflict(
            "session_ended",
            format!("the session is already {}", row.status),
        ));
    }
    end_session(&st, id, &user).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"id": id}))))
}

/// Ends a session on behalf of `user`: the runner is told to close it; a
/// session no runner has taken yet is closed right here.
pub(crate) async fn end_session(st: &AppState, id: Uuid, user: &AuthUser) -> Result<(), ApiError> {
    let reason = format!("ended by {}", user.username);
    let close = Control::Close {
        reason: reason.clone(),
        by: Some(user.username.clone()),
    };
    st.broker.publish_control(id, &close, false).await?;
    let closed_here = sqlx::query(
        "UPDATE sessions SET status = 'closed', ended_at = now() WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(&st.db)
    .await?
    .rows_affected()
        == 1;
    if closed_here {
        st.broker
            .publish_event(
                id,
                &Event::Closed {
                    reason,
                    by: Some(user.username.clone()),
                },
            )
            .await?;
        let status = Event::Status {
            status: SessionStatus::Closed,
            runner: None,
            message: None,
        };
        st.broker.publish_event(id, &status).await?;
    }
    db::audit(
        &st.db,
        user.audit_id(),
        "session.end",
        &id.to_string(),
        json!({}),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_matched_literally() {
        assert_eq!(contains_pattern("df -h"), "%df -h%");
        assert_eq!(contains_pattern("100%_a\\b"), "%100\\%\\_a\\\\b%");
    }

    #[test]
    fn status_filters_name_their_statuses() {
        let finished = statuses(Some("finished")).unwrap_or_default();
        assert!(finished.contains(&"closed".to_owned()) && !finished.contains(&"open".to_owned()));
        assert_eq!(statuses(Some("live")).unwrap_or_default().len(), 3);
        assert_eq!(statuses(Some("lost")).unwrap_or_default(), vec!["lost"]);
        assert!(statuses(Some("sleeping")).is_err());
    }
}

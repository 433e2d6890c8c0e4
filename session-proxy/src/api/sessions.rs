//! Sessions: open (request a runner), list, detail with runs, end.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use shellway_common::SessionStatus;
use uuid::Uuid;

use super::{AppState, Json, Query};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::{sessions, Action};
use crate::store::{self, sessions::SessionRow};

/// A session as the API shows it.
fn session_json(row: &SessionRow, runs: Vec<Value>) -> Value {
    json!({
        "id": row.id,
        "host_id": row.host_id,
        "host_name": row.host_name,
        "owner": row.owner,
        "status": row.status,
        "runner": row.runner,
        "cols": row.cols,
        "rows": row.rows,
        "error": row.error,
        "error_type": row.error_kind,
        "created_at": row.created_at,
        "ended_at": row.ended_at,
        "ws_path": ws_path(row.id),
        "viewers": row.viewers.0,
        "runs": runs,
    })
}

fn ws_path(id: Uuid) -> String {
    format!("/ws/sessions/{id}")
}

#[derive(Deserialize)]
pub(crate) struct Open {
    host_id: Uuid,
    cols: Option<u16>,
    rows: Option<u16>,
    shell: Option<bool>,
}

pub(crate) async fn open(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<Open>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let req = sessions::OpenRequest {
        host_id: body.host_id,
        cols: body.cols,
        rows: body.rows,
        shell: body.shell,
    };
    let id = sessions::open(&st, &user, req).await?;
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
        Some("live") => all
            .filter(|s| s.is_live())
            .map(|s| s.as_str().to_owned())
            .collect(),
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
    let filter = store::sessions::Filter {
        statuses,
        owned_by: None,
        host: q.host,
        owner_name: owner,
        from: q.from,
        to: q.to,
        command_like: search.map(contains_pattern),
        before: q.before,
        limit: i64::from(limit),
    };
    let rows = sessions::list(&st, &user, q.mine.unwrap_or(false), filter).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut runs = super::runs::of_sessions(&st, &ids).await?;
    let list = rows
        .iter()
        .map(|r| session_json(r, runs.remove(&r.id).unwrap_or_default()))
        .collect();
    Ok(axum::Json(Value::Array(list)))
}

pub(crate) async fn detail(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, ApiError> {
    let row = sessions::load(&st, id, &user, Action::View).await?;
    let mut runs = super::runs::of_sessions(&st, &[id]).await?;
    Ok(axum::Json(session_json(
        &row,
        runs.remove(&id).unwrap_or_default(),
    )))
}

pub(crate) async fn end(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    sessions::end(&st, id, &user).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"id": id}))))
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

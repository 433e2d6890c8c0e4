//! Sessions: open (request a runner), list, detail with runs, end.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use shellway_common::api::runs::Run;
use shellway_common::api::sessions::{
    EndingSession, OpenSession, OpenedSession, Session, SessionFilter,
};
use shellway_common::SessionStatus;
use uuid::Uuid;

use super::{AppState, Json, Query};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::{sessions, Action};
use crate::store::{self, sessions::SessionRow};

/// A session as the API shows it.
fn to_dto(row: &SessionRow, runs: Vec<Run>) -> Session {
    Session {
        id: row.id,
        host_id: row.host_id,
        host_name: row.host_name.clone(),
        account: row.account.clone(),
        owner: row.owner.clone(),
        status: row.status.clone(),
        runner: row.runner.clone(),
        cols: row.cols,
        rows: row.rows,
        error: row.error.clone(),
        error_type: row.error_kind.clone(),
        created_at: row.created_at,
        ended_at: row.ended_at,
        ws_path: ws_path(row.id),
        viewers: row.viewers.0.clone(),
        runs,
    }
}

fn ws_path(id: Uuid) -> String {
    format!("/ws/sessions/{id}")
}

#[utoipa::path(post, operation_id = "open_session", path = "/api/sessions", tag = "sessions", request_body = OpenSession, responses((status = 201, description = "Requested: attach a WebSocket to `ws_path`", body = OpenedSession)))]
pub(crate) async fn open(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<OpenSession>,
) -> Result<(StatusCode, axum::Json<OpenedSession>), ApiError> {
    let id = sessions::open(&st, &user, body).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(OpenedSession {
            id,
            ws_path: ws_path(id),
        }),
    ))
}

/// Sessions in one page of the list, by default and at most.
const PAGE_DEFAULT: u32 = 50;
const PAGE_MAX: u32 = 200;
/// Longest search text.
const MAX_SEARCH: usize = 200;

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

#[utoipa::path(get, operation_id = "list_sessions", path = "/api/sessions", tag = "sessions", params(SessionFilter), responses((status = 200, description = "Sessions the caller may see, newest first", body = Vec<Session>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Query(q): Query<SessionFilter>,
) -> Result<axum::Json<Vec<Session>>, ApiError> {
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
        .map(|r| to_dto(r, runs.remove(&r.id).unwrap_or_default()))
        .collect();
    Ok(axum::Json(list))
}

#[utoipa::path(get, operation_id = "get_session", path = "/api/sessions/{id}", tag = "sessions", params(("id" = Uuid, Path)), responses((status = 200, description = "The session and its runs", body = Session)))]
pub(crate) async fn detail(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Session>, ApiError> {
    let row = sessions::load(&st, id, &user, Action::View).await?;
    let mut runs = super::runs::of_sessions(&st, &[id]).await?;
    Ok(axum::Json(to_dto(
        &row,
        runs.remove(&id).unwrap_or_default(),
    )))
}

#[utoipa::path(delete, operation_id = "end_session", path = "/api/sessions/{id}", tag = "sessions", params(("id" = Uuid, Path)), responses((status = 202, description = "The runner was told to end it", body = EndingSession)))]
pub(crate) async fn end(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, axum::Json<EndingSession>), ApiError> {
    sessions::end(&st, id, &user).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(EndingSession { id })))
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

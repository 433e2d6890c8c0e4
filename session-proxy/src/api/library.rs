//! Saved tasks (`/api/tasks`: a named command) and batch scripts
//! (`/api/scripts`: one step a line). Everyone signed in reads and runs
//! them; administrators write them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;
use shellway_common::api::library::{Saved as SavedItem, Script, ScriptBody, Task, TaskBody};
use shellway_common::script;
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::db;
use crate::error::ApiError;

const MAX_NAME: usize = 100;
const MAX_TEXT: usize = 64 * 1024;

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            format!("name must be 1-{MAX_NAME} printable characters"),
        ));
    }
    Ok(name.to_owned())
}

fn check_text(field: &'static str, text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::invalid(field, format!("{field} is required")));
    }
    if text.len() > MAX_TEXT || text.contains('\0') {
        return Err(ApiError::invalid(
            field,
            format!("{field} is too long or contains a NUL byte"),
        ));
    }
    Ok(())
}

/// The name, or every error of the name and the text at once.
fn both(name: Result<String, ApiError>, text: Result<(), ApiError>) -> Result<String, ApiError> {
    match (name, text) {
        (Ok(name), Ok(())) => Ok(name),
        (name, text) => {
            let errors = [name.err(), text.err()].into_iter().flatten().collect();
            Err(ApiError::all(errors).unwrap_or_else(|| ApiError::invalid("body", "invalid")))
        }
    }
}

fn duplicate(e: sqlx::Error, what: &str, name: &str) -> ApiError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            ApiError::conflict("duplicate", format!("a {what} named {name:?} exists"))
        }
        _ => e.into(),
    }
}

type TaskRow = (Uuid, String, String, String, String);

fn task_dto((id, name, label, command, description): TaskRow) -> Task {
    Task {
        id,
        name,
        label,
        command,
        description,
    }
}

#[utoipa::path(get, path = "/api/tasks", tag = "library", responses((status = 200, description = "Saved tasks, by name", body = Vec<Task>)))]
pub(crate) async fn list_tasks(
    State(st): State<AppState>,
    _user: AuthUser,
) -> Result<axum::Json<Vec<Task>>, ApiError> {
    let rows: Vec<TaskRow> =
        sqlx::query_as("SELECT id, name, label, command, description FROM tasks ORDER BY name")
            .fetch_all(&st.db)
            .await?;
    Ok(axum::Json(rows.into_iter().map(task_dto).collect()))
}

#[utoipa::path(get, path = "/api/tasks/{id}", tag = "library", params(("id" = Uuid, Path)), responses((status = 200, description = "The task", body = Task)))]
pub(crate) async fn get_task(
    State(st): State<AppState>,
    _user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Task>, ApiError> {
    let row: Option<TaskRow> =
        sqlx::query_as("SELECT id, name, label, command, description FROM tasks WHERE id = $1")
            .bind(id)
            .fetch_optional(&st.db)
            .await?;
    row.map(|r| axum::Json(task_dto(r)))
        .ok_or_else(|| ApiError::not_found("task"))
}

pub(crate) async fn save_task(
    st: &AppState,
    user: &AuthUser,
    id: Option<Uuid>,
    body: TaskBody,
) -> Result<SavedItem, ApiError> {
    user.require_admin()?;
    let name = both(check_name(&body.name), check_text("command", &body.command))?;
    let id = id.unwrap_or_else(Uuid::now_v7);
    let changed = sqlx::query(
        "INSERT INTO tasks (id, name, label, command, description, created_by) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO UPDATE SET name = $2, label = $3, command = $4, description = $5, updated_at = now()",
    )
    .bind(id)
    .bind(&name)
    .bind(body.label.trim())
    .bind(body.command.trim())
    .bind(body.description.trim())
    .bind(user.id)
    .execute(&st.db)
    .await
    .map_err(|e| duplicate(e, "task", &name))?;
    let _ = changed;
    db::audit(
        &st.db,
        user.audit_id(),
        "task.save",
        &id.to_string(),
        json!({"name": name}),
    )
    .await;
    Ok(SavedItem { id, name })
}

#[utoipa::path(post, path = "/api/tasks", tag = "library", request_body = TaskBody, responses((status = 201, description = "Saved (administrators)", body = SavedItem)))]
pub(crate) async fn create_task(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<TaskBody>,
) -> Result<(StatusCode, axum::Json<SavedItem>), ApiError> {
    let saved = save_task(&st, &user, None, body).await?;
    Ok((StatusCode::CREATED, axum::Json(saved)))
}

#[utoipa::path(put, path = "/api/tasks/{id}", tag = "library", params(("id" = Uuid, Path)), request_body = TaskBody, responses((status = 200, description = "Saved (administrators)", body = SavedItem)))]
pub(crate) async fn update_task(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<TaskBody>,
) -> Result<axum::Json<SavedItem>, ApiError> {
    exists(&st, "tasks", id, "task").await?;
    Ok(axum::Json(save_task(&st, &user, Some(id), body).await?))
}

#[utoipa::path(delete, path = "/api/tasks/{id}", tag = "library", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted (administrators)")))]
pub(crate) async fn delete_task(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    remove(&st, &user, "tasks", id, "task").await
}

type ScriptRow = (Uuid, String, String, String);

fn script_dto((id, name, description, body): ScriptRow) -> Script {
    let steps = script::parse_script(&body).map(|s| s.len()).unwrap_or(0);
    Script {
        id,
        name,
        description,
        body,
        steps,
    }
}

#[utoipa::path(get, path = "/api/scripts", tag = "library", responses((status = 200, description = "Saved scripts, by name", body = Vec<Script>)))]
pub(crate) async fn list_scripts(
    State(st): State<AppState>,
    _user: AuthUser,
) -> Result<axum::Json<Vec<Script>>, ApiError> {
    let rows: Vec<ScriptRow> =
        sqlx::query_as("SELECT id, name, description, body FROM scripts ORDER BY name")
            .fetch_all(&st.db)
            .await?;
    Ok(axum::Json(rows.into_iter().map(script_dto).collect()))
}

#[utoipa::path(get, path = "/api/scripts/{id}", tag = "library", params(("id" = Uuid, Path)), responses((status = 200, description = "The script", body = Script)))]
pub(crate) async fn get_script(
    State(st): State<AppState>,
    _user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Script>, ApiError> {
    let row: Option<ScriptRow> =
        sqlx::query_as("SELECT id, name, description, body FROM scripts WHERE id = $1")
            .bind(id)
            .fetch_optional(&st.db)
            .await?;
    row.map(|r| axum::Json(script_dto(r)))
        .ok_or_else(|| ApiError::not_found("script"))
}

async fn save_script(
    st: &AppState,
    user: &AuthUser,
    id: Option<Uuid>,
    body: ScriptBody,
) -> Result<SavedItem, ApiError> {
    user.require_admin()?;
    let text = check_text("body", &body.body).and_then(|()| {
        script::parse_script(&body.body)
            .map(drop)
            .map_err(|e| ApiError::invalid("body", e.to_string()))
    });
    let name = both(check_name(&body.name), text)?;
    let id = id.unwrap_or_else(Uuid::now_v7);
    sqlx::query(
        "INSERT INTO scripts (id, name, description, body, created_by) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET name = $2, description = $3, body = $4, updated_at = now()",
    )
    .bind(id)
    .bind(&name)
    .bind(body.description.trim())
    .bind(&body.body)
    .bind(user.id)
    .execute(&st.db)
    .await
    .map_err(|e| duplicate(e, "script", &name))?;
    db::audit(
        &st.db,
        user.audit_id(),
        "script.save",
        &id.to_string(),
        json!({"name": name}),
    )
    .await;
    Ok(SavedItem { id, name })
}

#[utoipa::path(post, path = "/api/scripts", tag = "library", request_body = ScriptBody, responses((status = 201, description = "Saved (administrators)", body = SavedItem)))]
pub(crate) async fn create_script(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<ScriptBody>,
) -> Result<(StatusCode, axum::Json<SavedItem>), ApiError> {
    let saved = save_script(&st, &user, None, body).await?;
    Ok((StatusCode::CREATED, axum::Json(saved)))
}

#[utoipa::path(put, path = "/api/scripts/{id}", tag = "library", params(("id" = Uuid, Path)), request_body = ScriptBody, responses((status = 200, description = "Saved (administrators)", body = SavedItem)))]
pub(crate) async fn update_script(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<ScriptBody>,
) -> Result<axum::Json<SavedItem>, ApiError> {
    exists(&st, "scripts", id, "script").await?;
    Ok(axum::Json(save_script(&st, &user, Some(id), body).await?))
}

#[utoipa::path(delete, path = "/api/scripts/{id}", tag = "library", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted (administrators)")))]
pub(crate) async fn delete_script(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    remove(&st, &user, "scripts", id, "script").await
}

/// `table` is one of our two table names, never user input.
async fn exists(st: &AppState, table: &'static str, id: Uuid, what: &str) -> Result<(), ApiError> {
    let sql = format!("SELECT count(*) FROM {table} WHERE id = $1");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&st.db)
        .await?;
    if n == 0 {
        return Err(ApiError::not_found(what));
    }
    Ok(())
}

async fn remove(
    st: &AppState,
    user: &AuthUser,
    table: &'static str,
    id: Uuid,
    what: &str,
) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    let sql = format!("DELETE FROM {table} WHERE id = $1");
    let gone = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .execute(&st.db)
        .await?
        .rows_affected();
    if gone == 0 {
        return Err(ApiError::not_found(what));
    }
    db::audit(
        &st.db,
        user.audit_id(),
        &format!("{what}.delete"),
        &id.to_string(),
        json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// What a run request names from the library: (kind is task?, label, text).
pub(crate) enum Saved {
    Task { name: String, command: String },
    Script { name: String, body: String },
}

pub(crate) async fn task_by(
    db: &sqlx::PgPool,
    id: Option<Uuid>,
    name: Option<&str>,
) -> Result<Saved, ApiError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT name, command FROM tasks WHERE id = $1 OR ($1 IS NULL AND name = $2)",
    )
    .bind(id)
    .bind(name)
    .fetch_optional(db)
    .await?;
    let (name, command) = row.ok_or_else(|| ApiError::invalid("task", "no such saved task"))?;
    Ok(Saved::Task { name, command })
}

pub(crate) async fn script_by(db: &sqlx::PgPool, id: Uuid) -> Result<Saved, ApiError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT name, body FROM scripts WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    let (name, body) = row.ok_or_else(|| ApiError::invalid("script_id", "no such saved script"))?;
    Ok(Saved::Script { name, body })
}

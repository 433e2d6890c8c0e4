//! Saved tasks (`/api/tasks`: a named command) and batch scripts
//! (`/api/scripts`: one step a line). Everyone signed in reads and runs
//! them; administrators write them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use shellway_common::api::library::{Saved as SavedItem, Script, ScriptBody, Task, TaskBody};
use shellway_common::script;
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::{authorize, Action, Resource};
use crate::store::library::{self, Kind, SaveError, ScriptRow, TaskRow};

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

fn duplicate(e: SaveError, what: &str, name: &str) -> ApiError {
    match e {
        SaveError::Duplicate => {
            ApiError::conflict("duplicate", format!("a {what} named {name:?} exists"))
        }
        SaveError::Db(e) => e.into(),
    }
}

fn may_manage(user: &AuthUser) -> Result<(), ApiError> {
    Ok(authorize(&user.actor(), Action::Manage, Resource::Library)?)
}

fn may_read(user: &AuthUser) -> Result<(), ApiError> {
    Ok(authorize(&user.actor(), Action::Read, Resource::Library)?)
}

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
    user: AuthUser,
) -> Result<axum::Json<Vec<Task>>, ApiError> {
    may_read(&user)?;
    let rows = library::tasks(&st.db).await?;
    Ok(axum::Json(rows.into_iter().map(task_dto).collect()))
}

#[utoipa::path(get, path = "/api/tasks/{id}", tag = "library", params(("id" = Uuid, Path)), responses((status = 200, description = "The task", body = Task)))]
pub(crate) async fn get_task(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Task>, ApiError> {
    may_read(&user)?;
    let row = library::task(&st.db, id).await?;
    row.map(|r| axum::Json(task_dto(r)))
        .ok_or_else(|| ApiError::not_found("task"))
}

pub(crate) async fn save_task(
    st: &AppState,
    user: &AuthUser,
    id: Option<Uuid>,
    body: TaskBody,
) -> Result<SavedItem, ApiError> {
    may_manage(user)?;
    let name = both(check_name(&body.name), check_text("command", &body.command))?;
    let id = id.unwrap_or_else(Uuid::now_v7);
    let fields = library::TaskFields {
        name: &name,
        label: body.label.trim(),
        command: body.command.trim(),
        description: body.description.trim(),
    };
    library::save_task(&st.db, id, &fields, user.audit_id())
        .await
        .map_err(|e| duplicate(e, "task", &name))?;
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
    exists(&st, Kind::Task, id).await?;
    Ok(axum::Json(save_task(&st, &user, Some(id), body).await?))
}

#[utoipa::path(delete, path = "/api/tasks/{id}", tag = "library", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted (administrators)")))]
pub(crate) async fn delete_task(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    remove(&st, &user, Kind::Task, id).await
}

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
    user: AuthUser,
) -> Result<axum::Json<Vec<Script>>, ApiError> {
    may_read(&user)?;
    let rows = library::scripts(&st.db).await?;
    Ok(axum::Json(rows.into_iter().map(script_dto).collect()))
}

#[utoipa::path(get, path = "/api/scripts/{id}", tag = "library", params(("id" = Uuid, Path)), responses((status = 200, description = "The script", body = Script)))]
pub(crate) async fn get_script(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Script>, ApiError> {
    may_read(&user)?;
    let row = library::script(&st.db, id).await?;
    row.map(|r| axum::Json(script_dto(r)))
        .ok_or_else(|| ApiError::not_found("script"))
}

async fn save_script(
    st: &AppState,
    user: &AuthUser,
    id: Option<Uuid>,
    body: ScriptBody,
) -> Result<SavedItem, ApiError> {
    may_manage(user)?;
    let text = check_text("body", &body.body).and_then(|()| {
        script::parse_script(&body.body)
            .map(drop)
            .map_err(|e| ApiError::invalid("body", e.to_string()))
    });
    let name = both(check_name(&body.name), text)?;
    let id = id.unwrap_or_else(Uuid::now_v7);
    let description = body.description.trim();
    library::save_script(&st.db, id, &name, description, &body.body, user.audit_id())
        .await
        .map_err(|e| duplicate(e, "script", &name))?;
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
    exists(&st, Kind::Script, id).await?;
    Ok(axum::Json(save_script(&st, &user, Some(id), body).await?))
}

#[utoipa::path(delete, path = "/api/scripts/{id}", tag = "library", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted (administrators)")))]
pub(crate) async fn delete_script(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    remove(&st, &user, Kind::Script, id).await
}

async fn exists(st: &AppState, kind: Kind, id: Uuid) -> Result<(), ApiError> {
    if !library::exists(&st.db, kind, id).await? {
        return Err(ApiError::not_found(kind.name()));
    }
    Ok(())
}

async fn remove(
    st: &AppState,
    user: &AuthUser,
    kind: Kind,
    id: Uuid,
) -> Result<StatusCode, ApiError> {
    may_manage(user)?;
    if !library::delete(&st.db, kind, id, user.audit_id()).await? {
        return Err(ApiError::not_found(kind.name()));
    }
    Ok(StatusCode::NO_CONTENT)
}

//! Saved tasks (`/api/tasks`: a named command) and batch scripts
//! (`/api/scripts`: one step a line). Everyone signed in reads and runs
//! them; administrators write them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use shellway_common::script;
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::{authorize, Action, Resource};
use crate::store::library::{self, Kind, SaveError, ScriptRow, TaskRow};

const MAX_NAME: usize = 100;
const MAX_TEXT: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskBody {
    name: String,
    #[serde(default)]
    label: String,
    command: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScriptBody {
    name: String,
    #[serde(default)]
    description: String,
    body: String,
}

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

fn task_json((id, name, label, command, description): TaskRow) -> Value {
    json!({"id": id, "name": name, "label": label, "command": command, "description": description})
}

pub(crate) async fn list_tasks(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Value>, ApiError> {
    may_read(&user)?;
    let rows = library::tasks(&st.db).await?;
    Ok(axum::Json(Value::Array(
        rows.into_iter().map(task_json).collect(),
    )))
}

pub(crate) async fn get_task(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, ApiError> {
    may_read(&user)?;
    let row = library::task(&st.db, id).await?;
    row.map(|r| axum::Json(task_json(r)))
        .ok_or_else(|| ApiError::not_found("task"))
}

pub(crate) async fn save_task(
    st: &AppState,
    user: &AuthUser,
    id: Option<Uuid>,
    body: TaskBody,
) -> Result<Value, ApiError> {
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
    Ok(json!({"id": id, "name": name}))
}

pub(crate) async fn create_task(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<TaskBody>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let saved = save_task(&st, &user, None, body).await?;
    Ok((StatusCode::CREATED, axum::Json(saved)))
}

pub(crate) async fn update_task(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<TaskBody>,
) -> Result<axum::Json<Value>, ApiError> {
    exists(&st, Kind::Task, id).await?;
    Ok(axum::Json(save_task(&st, &user, Some(id), body).await?))
}

pub(crate) async fn delete_task(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    remove(&st, &user, Kind::Task, id).await
}

fn script_json((id, name, description, body): ScriptRow) -> Value {
    let steps = script::parse_script(&body).map(|s| s.len()).unwrap_or(0);
    json!({"id": id, "name": name, "description": description, "body": body, "steps": steps})
}

pub(crate) async fn list_scripts(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Value>, ApiError> {
    may_read(&user)?;
    let rows = library::scripts(&st.db).await?;
    Ok(axum::Json(Value::Array(
        rows.into_iter().map(script_json).collect(),
    )))
}

pub(crate) async fn get_script(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, ApiError> {
    may_read(&user)?;
    let row = library::script(&st.db, id).await?;
    row.map(|r| axum::Json(script_json(r)))
        .ok_or_else(|| ApiError::not_found("script"))
}

async fn save_script(
    st: &AppState,
    user: &AuthUser,
    id: Option<Uuid>,
    body: ScriptBody,
) -> Result<Value, ApiError> {
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
    Ok(json!({"id": id, "name": name}))
}

pub(crate) async fn create_script(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<ScriptBody>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let saved = save_script(&st, &user, None, body).await?;
    Ok((StatusCode::CREATED, axum::Json(saved)))
}

pub(crate) async fn update_script(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<ScriptBody>,
) -> Result<axum::Json<Value>, ApiError> {
    exists(&st, Kind::Script, id).await?;
    Ok(axum::Json(save_script(&st, &user, Some(id), body).await?))
}

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

//! Saved tasks (`/api/tasks`) and batch scripts (`/api/scripts`); the
//! rules are in `service::library`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use shellway_common::api::library::{Saved as SavedItem, Script, ScriptBody, Task, TaskBody};
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::library::{self, Kind};

#[utoipa::path(get, path = "/api/tasks", tag = "library", responses((status = 200, description = "Saved tasks, by name", body = Vec<Task>)))]
pub(crate) async fn list_tasks(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<Task>>, ApiError> {
    Ok(axum::Json(library::tasks(&st, &user).await?))
}

#[utoipa::path(get, path = "/api/tasks/{id}", tag = "library", params(("id" = Uuid, Path)), responses((status = 200, description = "The task", body = Task)))]
pub(crate) async fn get_task(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Task>, ApiError> {
    Ok(axum::Json(library::task(&st, &user, id).await?))
}

#[utoipa::path(post, path = "/api/tasks", tag = "library", request_body = TaskBody, responses((status = 201, description = "Saved (administrators)", body = SavedItem)))]
pub(crate) async fn create_task(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<TaskBody>,
) -> Result<(StatusCode, axum::Json<SavedItem>), ApiError> {
    let saved = library::save_task(&st, &user, None, body).await?;
    Ok((StatusCode::CREATED, axum::Json(saved)))
}

#[utoipa::path(put, path = "/api/tasks/{id}", tag = "library", params(("id" = Uuid, Path)), request_body = TaskBody, responses((status = 200, description = "Saved (administrators)", body = SavedItem)))]
pub(crate) async fn update_task(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<TaskBody>,
) -> Result<axum::Json<SavedItem>, ApiError> {
    Ok(axum::Json(
        library::save_task(&st, &user, Some(id), body).await?,
    ))
}

#[utoipa::path(delete, path = "/api/tasks/{id}", tag = "library", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted (administrators)")))]
pub(crate) async fn delete_task(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    library::delete(&st, &user, Kind::Task, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/scripts", tag = "library", responses((status = 200, description = "Saved scripts, by name", body = Vec<Script>)))]
pub(crate) async fn list_scripts(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<Script>>, ApiError> {
    Ok(axum::Json(library::scripts(&st, &user).await?))
}

#[utoipa::path(get, path = "/api/scripts/{id}", tag = "library", params(("id" = Uuid, Path)), responses((status = 200, description = "The script", body = Script)))]
pub(crate) async fn get_script(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Script>, ApiError> {
    Ok(axum::Json(library::script(&st, &user, id).await?))
}

#[utoipa::path(post, path = "/api/scripts", tag = "library", request_body = ScriptBody, responses((status = 201, description = "Saved (administrators)", body = SavedItem)))]
pub(crate) async fn create_script(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<ScriptBody>,
) -> Result<(StatusCode, axum::Json<SavedItem>), ApiError> {
    let saved = library::save_script(&st, &user, None, body).await?;
    Ok((StatusCode::CREATED, axum::Json(saved)))
}

#[utoipa::path(put, path = "/api/scripts/{id}", tag = "library", params(("id" = Uuid, Path)), request_body = ScriptBody, responses((status = 200, description = "Saved (administrators)", body = SavedItem)))]
pub(crate) async fn update_script(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<ScriptBody>,
) -> Result<axum::Json<SavedItem>, ApiError> {
    Ok(axum::Json(
        library::save_script(&st, &user, Some(id), body).await?,
    ))
}

#[utoipa::path(delete, path = "/api/scripts/{id}", tag = "library", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted (administrators)")))]
pub(crate) async fn delete_script(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    library::delete(&st, &user, Kind::Script, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

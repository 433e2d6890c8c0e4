//! People, for administrators (the rules are in `service::users`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use shellway_common::api::users::{CreatedUser, NewUser, User, UserChange};
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::users;

#[utoipa::path(post, operation_id = "create_user", path = "/api/users", tag = "users", request_body = NewUser, responses((status = 201, description = "Created (administrators)", body = CreatedUser)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, axum::Json<CreatedUser>), ApiError> {
    let created = users::create(&st, &user, body).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

#[utoipa::path(get, operation_id = "list_users", path = "/api/users", tag = "users", responses((status = 200, description = "Every user, by name (administrators)", body = Vec<User>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<User>>, ApiError> {
    Ok(axum::Json(users::list(&st, &user).await?))
}

#[utoipa::path(put, operation_id = "update_user", path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = UserChange, responses((status = 200, description = "Changed (administrators)", body = User)))]
pub(crate) async fn update(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<UserChange>,
) -> Result<axum::Json<User>, ApiError> {
    Ok(axum::Json(users::update(&st, &user, id, body).await?))
}

#[utoipa::path(delete, operation_id = "delete_user", path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted (administrators)")))]
pub(crate) async fn remove(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    users::remove(&st, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

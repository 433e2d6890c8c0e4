//! Saved host groups, the names jobs target (`targets.group`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use shellway_common::api::jobs::{HostGroup, HostGroupBody};
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::host_groups;

#[utoipa::path(get, operation_id = "list_host_groups", path = "/api/host-groups", tag = "jobs", responses((status = 200, description = "Host groups by name (with the hosts the caller may see)", body = Vec<HostGroup>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<HostGroup>>, ApiError> {
    Ok(axum::Json(host_groups::list(&st, &user).await?))
}

#[utoipa::path(post, operation_id = "create_host_group", path = "/api/host-groups", tag = "jobs", request_body = HostGroupBody, responses((status = 201, description = "Saved (administrators)", body = HostGroup)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<HostGroupBody>,
) -> Result<(StatusCode, axum::Json<HostGroup>), ApiError> {
    let group = host_groups::create(&st, &user, body).await?;
    Ok((StatusCode::CREATED, axum::Json(group)))
}

#[utoipa::path(delete, operation_id = "delete_host_group", path = "/api/host-groups/{id}", tag = "jobs", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted (administrators)")))]
pub(crate) async fn remove(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    host_groups::delete(&st, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

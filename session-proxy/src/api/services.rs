//! Service panels (`/api/services`); the rules are in `service::services`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use std::time::Duration;

use shellway_common::api::services::{
    LogsQuery, Service, ServiceActionRequest, ServiceActionResult, ServiceActionStarted,
    ServiceLogs, ServiceSpec, ServiceStatus, StatusQuery,
};
use uuid::Uuid;

use super::{AppState, Json, Query};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::services::{self, actions, panel};

#[utoipa::path(get, operation_id = "list_services", path = "/api/services", tag = "services",
    responses((status = 200, description = "Services on hosts the caller may see, by name", body = Vec<Service>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<Service>>, ApiError> {
    Ok(axum::Json(services::list(&st, &user).await?))
}

#[utoipa::path(post, operation_id = "create_service", path = "/api/services", tag = "services", request_body = ServiceSpec,
    responses((status = 201, description = "Registered (administrators); with its sudoers lines", body = Service)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Json(spec): Json<ServiceSpec>,
) -> Result<(StatusCode, axum::Json<Service>), ApiError> {
    let saved = services::save(&st, &user, None, spec).await?;
    Ok((StatusCode::CREATED, axum::Json(saved)))
}

#[utoipa::path(get, operation_id = "get_service", path = "/api/services/{id}", tag = "services", params(("id" = Uuid, Path)),
    responses((status = 200, description = "The service, its hosts and its sudoers lines", body = Service)))]
pub(crate) async fn get_one(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Service>, ApiError> {
    Ok(axum::Json(services::get(&st, &user, id).await?))
}

#[utoipa::path(put, operation_id = "update_service", path = "/api/services/{id}", tag = "services", params(("id" = Uuid, Path)), request_body = ServiceSpec,
    responses((status = 200, description = "Saved (administrators)", body = Service)))]
pub(crate) async fn update(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(spec): Json<ServiceSpec>,
) -> Result<axum::Json<Service>, ApiError> {
    Ok(axum::Json(
        services::save(&st, &user, Some(id), spec).await?,
    ))
}

#[utoipa::path(delete, operation_id = "delete_service", path = "/api/services/{id}", tag = "services", params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted (administrators)")))]
pub(crate) async fn remove(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    services::delete(&st, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, operation_id = "service_status", path = "/api/services/{id}/status", tag = "services",
    params(("id" = Uuid, Path), StatusQuery),
    responses((status = 200, description = "A status dot per host the caller may act on: one `systemctl show` per host for all its units", body = ServiceStatus)))]
pub(crate) async fn status(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<StatusQuery>,
) -> Result<axum::Json<ServiceStatus>, ApiError> {
    let max_age = Duration::from_secs(u64::from(q.max_age.unwrap_or(0).min(3600)));
    Ok(axum::Json(panel::status(&st, &user, id, max_age).await?))
}

#[utoipa::path(get, operation_id = "service_logs", path = "/api/services/{id}/logs", tag = "services",
    params(("id" = Uuid, Path), LogsQuery),
    responses((status = 200, description = "The last lines of the unit's journal on one host", body = ServiceLogs)))]
pub(crate) async fn logs(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<LogsQuery>,
) -> Result<axum::Json<ServiceLogs>, ApiError> {
    Ok(axum::Json(
        panel::logs(&st, &user, id, q.host, q.lines).await?,
    ))
}

#[utoipa::path(post, operation_id = "service_action", path = "/api/services/{id}/actions", tag = "services",
    params(("id" = Uuid, Path)), request_body = ServiceActionRequest,
    responses((status = 202, description = "Started as a job (kind `service`), one exec run per host", body = ServiceActionStarted)))]
pub(crate) async fn act(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<ServiceActionRequest>,
) -> Result<(StatusCode, axum::Json<ServiceActionStarted>), ApiError> {
    let started = actions::start(&st, &user, id, req).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(started)))
}

#[utoipa::path(get, operation_id = "service_action_result", path = "/api/services/{id}/actions/{job_id}", tag = "services",
    params(("id" = Uuid, Path), ("job_id" = Uuid, Path)),
    responses((status = 200, description = "Each host's result, with why it failed", body = ServiceActionResult)))]
pub(crate) async fn action_result(
    State(st): State<AppState>,
    user: AuthUser,
    Path((id, job_id)): Path<(Uuid, Uuid)>,
) -> Result<axum::Json<ServiceActionResult>, ApiError> {
    Ok(axum::Json(actions::result(&st, &user, id, job_id).await?))
}

//! Sign-in protection, for admins: which usernames and client addresses
//! are being throttled, and clearing one (a locked-out colleague).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use shellway_common::api::throttles::Throttle;

use super::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::throttles;

/// `GET /api/login-throttles`: keys with at least the threshold of
/// failures in the window, most recent first.
#[utoipa::path(get, operation_id = "list_login_throttles", path = "/api/login-throttles", tag = "users", responses((status = 200, description = "Throttled keys, most recent first (administrators)", body = Vec<Throttle>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<Throttle>>, ApiError> {
    Ok(axum::Json(throttles::list(&st, &user).await?))
}

/// `DELETE /api/login-throttles/{kind}/{key}`.
#[utoipa::path(delete, operation_id = "clear_login_throttle", path = "/api/login-throttles/{kind}/{key}", tag = "users", params(("kind" = String, Path, description = "`username` or `address`"), ("key" = String, Path)), responses((status = 204, description = "Cleared (administrators)")))]
pub(crate) async fn clear(
    State(st): State<AppState>,
    user: AuthUser,
    Path((kind, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    throttles::clear(&st, &user, &kind, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Sign-in protection, for admins: which usernames and client addresses
//! are being throttled, and clearing one (a locked-out colleague).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use shellway_common::api::throttles::Throttle;

use super::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::{authorize, Action, Resource};
use crate::store::throttles::{self as throttle, Kind};

const MAX_LISTED: i64 = 200;

/// `GET /api/login-throttles`: keys with at least the threshold of
/// failures in the window, most recent first.
#[utoipa::path(get, operation_id = "list_login_throttles", path = "/api/login-throttles", tag = "users", responses((status = 200, description = "Throttled keys, most recent first (administrators)", body = Vec<Throttle>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<Throttle>>, ApiError> {
    authorize(&user.actor(), Action::Read, Resource::LoginThrottles)?;
    let rows = throttle::list(&st.db, MAX_LISTED).await?;
    Ok(axum::Json(rows))
}

/// `DELETE /api/login-throttles/{kind}/{key}`.
#[utoipa::path(delete, operation_id = "clear_login_throttle", path = "/api/login-throttles/{kind}/{key}", tag = "users", params(("kind" = String, Path, description = "`username` or `address`"), ("key" = String, Path)), responses((status = 204, description = "Cleared (administrators)")))]
pub(crate) async fn clear(
    State(st): State<AppState>,
    user: AuthUser,
    Path((kind, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    authorize(&user.actor(), Action::Manage, Resource::LoginThrottles)?;
    let kind = Kind::parse(&kind).ok_or_else(|| ApiError::not_found("throttle"))?;
    if !throttle::clear(&st.db, kind, &key, user.audit_id()).await? {
        return Err(ApiError::not_found("throttle"));
    }
    Ok(StatusCode::NO_CONTENT)
}

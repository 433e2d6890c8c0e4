//! Sign-in protection, for admins: which usernames and client addresses
//! are being throttled, and clearing one (a locked-out colleague).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::AppState;
use crate::auth::AuthUser;
use crate::db;
use crate::error::ApiError;
use crate::throttle::{self, Kind};

const MAX_LISTED: i64 = 200;

/// `GET /api/login-throttles`: keys with at least the threshold of
/// failures in the window, most recent first.
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Value>, ApiError> {
    user.require_admin()?;
    let rows = throttle::list(&st.db, MAX_LISTED).await?;
    Ok(axum::Json(json!(rows)))
}

/// `DELETE /api/login-throttles/{kind}/{key}`.
pub(crate) async fn clear(
    State(st): State<AppState>,
    user: AuthUser,
    Path((kind, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    let kind = Kind::parse(&kind).ok_or_else(|| ApiError::not_found("throttle"))?;
    if !throttle::clear(&st.db, kind, &key).await? {
        return Err(ApiError::not_found("throttle"));
    }
    db::audit(
        &st.db,
        user.audit_id(),
        "login.throttle_cleared",
        &key,
        json!({"kind": kind.as_str()}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

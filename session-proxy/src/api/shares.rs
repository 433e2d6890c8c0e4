//! Share links over HTTP: make, list and revoke them; describe one for
//! the join page (`service::shares` does the work).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::shares;

#[derive(Deserialize)]
pub(crate) struct CreateShare {
    mode: Option<String>,
    /// Seconds.
    expires_in: Option<u64>,
}

pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<CreateShare>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let link = shares::create(&st, id, &user, body.mode.as_deref(), body.expires_in).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": link.id,
            "token": link.token,
            "url": shares::join_path(&link.token),
            "ws_path": format!("/ws/join/{}", link.token),
            "mode": shares::mode_str(link.mode),
            "expires_at": link.expires_at,
        })),
    ))
}

pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, ApiError> {
    let (rows, live) = shares::list(&st, id, &user).await?;
    let now = Utc::now();
    let shares: Vec<Value> = rows
        .into_iter()
        .map(|(id, mode, by, created_at, expires_at, revoked_at)| {
            json!({
                "id": id,
                "mode": mode,
                "created_by": by,
                "created_at": created_at,
                "expires_at": expires_at,
                "revoked_at": revoked_at,
                "active": live && revoked_at.is_none() && expires_at > now,
            })
        })
        .collect();
    Ok(axum::Json(Value::Array(shares)))
}

/// `DELETE /api/shares/{id or token}`: the session's owner, the link's
/// creator or an admin revokes a link.
pub(crate) async fn revoke(
    State(st): State<AppState>,
    user: AuthUser,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    shares::revoke(&st, &key, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/join/{token}`: what a link opens, for the join page.
pub(crate) async fn describe(
    State(st): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Path(token): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let share = shares::resolve(&st, &token).await?;
    if user.is_err() && !shares::anonymous_may_join(&st, &share) {
        return Err(ApiError::unauthenticated());
    }
    let (host, owner) = shares::describe(&st, &share).await?;
    Ok(axum::Json(json!({
        "mode": shares::mode_str(share.mode),
        "host_name": host,
        "owner": owner,
        "expires_at": share.expires_at,
        "ws_path": format!("/ws/join/{token}"),
    })))
}

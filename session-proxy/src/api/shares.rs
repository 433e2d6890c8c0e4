//! Share links over HTTP: make, list and revoke them; describe one for
//! the join page (`service::shares` does the work).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use shellway_common::api::shares::{CreateShare, CreatedShare, JoinInfo, ShareInfo};
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::shares;

#[utoipa::path(post, operation_id = "create_share", path = "/api/sessions/{id}/shares", tag = "shares", params(("id" = Uuid, Path)), request_body = CreateShare, responses((status = 201, description = "The link, its token shown once", body = CreatedShare)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<CreateShare>,
) -> Result<(StatusCode, axum::Json<CreatedShare>), ApiError> {
    let link = shares::create(&st, id, &user, body.mode.as_deref(), body.expires_in).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedShare {
            id: link.id,
            url: shares::join_path(&link.token),
            ws_path: format!("/ws/join/{}", link.token),
            token: link.token,
            mode: shares::mode_str(link.mode).to_owned(),
            expires_at: link.expires_at,
        }),
    ))
}

#[utoipa::path(get, operation_id = "list_shares", path = "/api/sessions/{id}/shares", tag = "shares", params(("id" = Uuid, Path)), responses((status = 200, description = "The session's links, newest first", body = Vec<ShareInfo>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<ShareInfo>>, ApiError> {
    let (rows, live) = shares::list(&st, id, &user).await?;
    let now = Utc::now();
    let shares = rows
        .into_iter()
        .map(
            |(id, mode, created_by, created_at, expires_at, revoked_at)| ShareInfo {
                id,
                mode,
                created_by,
                created_at,
                expires_at,
                revoked_at,
                active: live && revoked_at.is_none() && expires_at > now,
            },
        )
        .collect();
    Ok(axum::Json(shares))
}

/// `DELETE /api/shares/{id or token}`: the session's owner, the link's
/// creator or an admin revokes a link.
#[utoipa::path(delete, operation_id = "revoke_share", path = "/api/shares/{key}", tag = "shares", params(("key" = String, Path, description = "The link's id or token")), responses((status = 204, description = "Revoked; its viewers are disconnected")))]
pub(crate) async fn revoke(
    State(st): State<AppState>,
    user: AuthUser,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    shares::revoke(&st, &key, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/join/{token}`: what a link opens, for the join page.
#[utoipa::path(get, operation_id = "describe_share", path = "/api/join/{token}", tag = "shares", security((), ("cookie" = []), ("bearer" = [])), params(("token" = String, Path)), responses((status = 200, description = "What the link opens", body = JoinInfo)))]
pub(crate) async fn describe(
    State(st): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Path(token): Path<String>,
) -> Result<axum::Json<JoinInfo>, ApiError> {
    let share = shares::resolve(&st, &token).await?;
    if user.is_err() && !shares::anonymous_may_join(&st, &share) {
        return Err(ApiError::unauthenticated());
    }
    let (host, owner) = shares::describe(&st, &share).await?;
    Ok(axum::Json(JoinInfo {
        mode: shares::mode_str(share.mode).to_owned(),
        host_name: host,
        owner,
        expires_at: share.expires_at,
        ws_path: format!("/ws/join/{token}"),
    }))
}

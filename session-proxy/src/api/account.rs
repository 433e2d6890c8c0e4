//! One's own account: changing one's password.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use shellway_common::api::account::PasswordChange;

use super::{AppState, Json};
use crate::auth::{self, AuthUser, Credential};
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::service::accounts;

/// `POST /api/me/password`: the current password proves it is you (a
/// wrong one counts as a failed sign-in); every other cookie session of
/// yours ends, so a stolen cookie dies with the old password.
#[utoipa::path(post, operation_id = "change_password", path = "/api/me/password", tag = "account", request_body = PasswordChange, responses((status = 204, description = "Changed; the caller's other cookie sessions end")))]
pub(crate) async fn change_password(
    State(st): State<AppState>,
    user: AuthUser,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Json(body): Json<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let keep = match (&user.credential, auth::session_cookie(&headers)) {
        (Credential::Cookie { .. }, Some(cookie)) => auth::token_hash(cookie),
        _ => Vec::new(),
    };
    let PasswordChange {
        current_password,
        new_password,
    } = body;
    accounts::change_password(&st, &user, addr, current_password, new_password, &keep).await?;
    Ok(StatusCode::NO_CONTENT)
}

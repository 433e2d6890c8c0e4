//! One's own account: changing one's password.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use shellway_common::api::account::PasswordChange;

use super::login::{hashing_error, too_many_attempts};
use super::{AppState, Json};
use crate::auth::{self, AuthUser, Credential};
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::passwords;
use crate::store::throttles::{self as throttle, Attempt};
use crate::store::{self, audit, AuditAction};

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
    passwords::check_new(&user.username, &body.new_password)
        .map_err(|why| ApiError::invalid("new_password", why))?;
    let keys = throttle::keys(&user.username, addr);
    if let Some(secs) = throttle::blocked_for(&st.db, &keys).await? {
        return Err(too_many_attempts(secs));
    }
    let admitted = st.hasher.admit().await.map_err(hashing_error)?;
    if let Attempt::Blocked(secs) = throttle::count_attempt(&st.db, &keys).await? {
        return Err(too_many_attempts(secs));
    }
    let stored = store::users::password_hash(&st.db, user.id).await?;
    if !admitted.verify(stored, body.current_password).await {
        let action = AuditAction::UserPasswordFailed;
        audit::record_alone(&st.db, user.audit_id(), action, &user.username, json!({})).await?;
        return Err(ApiError {
            field: Some("current_password".into()),
            ..ApiError::forbidden("the current password is wrong")
        });
    }
    throttle::succeeded(&st.db, &keys).await?;
    let hash = st
        .hasher
        .hash(body.new_password)
        .await
        .map_err(hashing_error)?;
    let keep = match (&user.credential, auth::session_cookie(&headers)) {
        (Credential::Cookie { .. }, Some(cookie)) => auth::token_hash(cookie),
        _ => Vec::new(),
    };
    store::users::change_own_password(&st.db, (user.id, &user.username), &hash, &keep).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Cookie sessions for people: login, logout, who am I.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use shellway_common::api::login::{LoginRequest, LoginResponse, Me, UserSummary};
use uuid::Uuid;

use super::AppState;
use crate::auth::{self, AuthUser, Credential};
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::service::{accounts, Role};

/// Largest sign-in request body (a long passphrase, JSON-escaped, fits).
const LOGIN_BODY_MAX: usize = 8 * 1024;
/// How long a client may take to send it.
const LOGIN_BODY_TIME: Duration = Duration::from_secs(10);

fn user_summary(id: Uuid, username: &str, role: Role) -> UserSummary {
    UserSummary {
        id,
        username: username.to_owned(),
        is_admin: role == Role::Admin,
        role: role.as_str().to_owned(),
    }
}

/// The sign-in body, bounded in size and in time.
async fn read_login(body: Body) -> Result<LoginRequest, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "a sign-in request has at most {} KiB",
                LOGIN_BODY_MAX / 1024
            ),
        )
    };
    let bytes = tokio::time::timeout(LOGIN_BODY_TIME, axum::body::to_bytes(body, LOGIN_BODY_MAX))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the sign-in request was not sent in time",
            )
        })?
        .map_err(|_| too_large())?;
    Ok(axum::Json::<LoginRequest>::from_bytes(&bytes)?.0)
}

#[utoipa::path(post, operation_id = "login", path = "/api/login", tag = "account", security(()), request_body = LoginRequest, responses((status = 200, description = "Signed in; sets the `shellway_session` cookie", body = LoginResponse)))]
pub(crate) async fn login(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_login(body).await?;
    let signed = accounts::sign_in(&st, &body.username, body.password, addr).await?;
    let body = LoginResponse {
        user: user_summary(signed.id, &signed.username, signed.role),
        csrf_token: signed.csrf_token,
    };
    let cookie = auth::login_cookie(&signed.cookie_token, st.settings.cookie_secure);
    Ok(([(SET_COOKIE, cookie)], axum::Json(body)).into_response())
}

#[utoipa::path(post, operation_id = "logout", path = "/api/logout", tag = "account", responses((status = 204, description = "Signed out; the cookie is cleared")))]
pub(crate) async fn logout(
    State(st): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let hash = auth::session_cookie(&headers).map(auth::token_hash);
    accounts::sign_out(&st, &user, hash.as_deref()).await?;
    let cookie = auth::logout_cookie(st.settings.cookie_secure);
    Ok(([(SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response())
}

#[utoipa::path(get, operation_id = "me", path = "/api/me", tag = "account", responses((status = 200, description = "Who is calling", body = Me)))]
pub(crate) async fn me(user: AuthUser) -> axum::Json<Me> {
    let csrf_token = match user.credential {
        Credential::Cookie { csrf_token } => Some(csrf_token),
        _ => None,
    };
    axum::Json(Me {
        user: user_summary(user.id, &user.username, user.role),
        csrf_token,
    })
}

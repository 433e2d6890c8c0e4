//! Cookie sessions for people: login, logout, who am I.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shellway_common::api::login::{LoginRequest, LoginResponse, Me, UserSummary};
use uuid::Uuid;

use super::AppState;
use crate::auth::{self, AuthUser, Credential};
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::passwords::{self, HashError, Hasher};
use crate::service::Role;
use crate::store::pool as db;
use crate::store::throttles::{self as throttle, Attempt};
use crate::store::{self, audit, AuditAction};

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

pub(crate) fn too_many_attempts(secs: u64) -> ApiError {
    ApiError::retry_later(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many failed sign-ins; try again in {secs} s"),
        secs,
    )
}

/// A password check refused for want of a hashing thread, or failed.
pub(crate) fn hashing_error(err: HashError) -> ApiError {
    match err {
        HashError::Busy => ApiError::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the server is checking many passwords at once; try again in a moment",
            1,
        ),
        other => ApiError::internal(&other),
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong username or password",
    )
}

#[utoipa::path(post, operation_id = "login", path = "/api/login", tag = "account", security(()), request_body = LoginRequest, responses((status = 200, description = "Signed in; sets the `shellway_session` cookie", body = LoginResponse)))]
pub(crate) async fn login(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_login(body).await?;
    let keys = throttle::keys(&body.username, addr);
    // Blocked keys are refused before waiting for a hashing thread.
    if let Some(secs) = throttle::blocked_for(&st.db, &keys).await? {
        return Err(too_many_attempts(secs));
    }
    let admitted = st.hasher.admit().await.map_err(hashing_error)?;
    let blocking = match throttle::count_attempt(&st.db, &keys).await? {
        Attempt::Blocked(secs) => return Err(too_many_attempts(secs)),
        Attempt::Counted(blocking) => blocking,
    };
    let row = store::users::for_login(&st.db, &body.username).await?;
    let stored = row.as_ref().map(|r| r.2.clone());
    let ok = admitted.verify(stored, body.password).await;
    let Some((id, username, _, role, disabled_at)) = row.filter(|_| ok) else {
        let tried = db::untrusted_text(&body.username);
        let address = addr.map(|a| a.to_string());
        let detail = json!({"address": address});
        audit::record_alone(&st.db, None, AuditAction::LoginFailed, &tried, detail).await?;
        for (key, failures, until) in blocking {
            let detail = json!({"kind": key.kind.as_str(), "failures": failures, "until": until});
            audit::record_alone(&st.db, None, AuditAction::LoginThrottled, &key.key, detail)
                .await?;
        }
        return Err(invalid_credentials());
    };
    throttle::succeeded(&st.db, &keys).await?;
    if disabled_at.is_some() {
        let who = Some((id, username.as_str()));
        audit::record_alone(
            &st.db,
            who,
            AuditAction::LoginDisabled,
            &username,
            json!({}),
        )
        .await?;
        return Err(ApiError::forbidden(
            "this account is disabled; ask an administrator",
        ));
    }
    let (token, hash) = auth::new_secret("");
    let csrf = hex::encode(rand::random::<[u8; 32]>());
    let address = addr.map(|a| a.to_string());
    let detail = json!({"address": address});
    let hours = auth::LOGIN_HOURS as i32;
    store::users::sign_in(&st.db, (id, &username), &hash, &csrf, hours, detail).await?;
    let body = LoginResponse {
        user: user_summary(id, &username, Role::parse(&role).unwrap_or(Role::User)),
        csrf_token: csrf,
    };
    let cookie = auth::login_cookie(&token, st.settings.cookie_secure);
    Ok(([(SET_COOKIE, cookie)], axum::Json(body)).into_response())
}

#[utoipa::path(post, operation_id = "logout", path = "/api/logout", tag = "account", responses((status = 204, description = "Signed out; the cookie is cleared")))]
pub(crate) async fn logout(
    State(st): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let hash = auth::session_cookie(&headers).map(auth::token_hash);
    store::users::sign_out(&st.db, (user.id, &user.username), hash.as_deref()).await?;
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

/// Creates `username` as an administrator unless the user exists already
/// (then nothing changes and the password is not looked at). Returns
/// whether it was created.
pub(crate) async fn ensure_admin(
    db: &sqlx::PgPool,
    hasher: &Hasher,
    username: &str,
    password: &str,
) -> anyhow::Result<bool> {
    if store::users::exists(db, username).await? {
        return Ok(false);
    }
    passwords::check_new(username, password)
        .map_err(|why| anyhow::anyhow!("the administrator's password is refused: {why}"))?;
    let hash = hasher.hash(password.to_owned()).await?;
    let id = Uuid::now_v7();
    let action = AuditAction::UserCreateAdmin;
    Ok(store::users::create(db, id, username, &hash, "admin", None, action).await?)
}

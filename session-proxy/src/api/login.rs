//! Cookie sessions for people: login, logout, who am I.

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::{self, AuthUser, Credential};
use crate::db;
use crate::error::ApiError;

#[derive(Deserialize)]
pub(crate) struct Login {
    username: String,
    password: String,
}

pub(crate) fn user_json(id: Uuid, username: &str, is_admin: bool) -> Value {
    json!({"id": id, "username": username, "is_admin": is_admin})
}

pub(crate) async fn login(
    State(st): State<AppState>,
    Json(body): Json<Login>,
) -> Result<Response, ApiError> {
    let row: Option<(Uuid, String, bool)> =
        sqlx::query_as("SELECT id, password_hash, is_admin FROM users WHERE username = $1")
            .bind(&body.username)
            .fetch_optional(&st.db)
            .await?;
    let stored = row.as_ref().map(|r| r.1.clone());
    let ok = auth::verify_password(stored, body.password).await;
    let Some((id, _, is_admin)) = row.filter(|_| ok) else {
        db::audit(&st.db, None, "login.failed", &body.username, json!({})).await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong username or password",
        ));
    };
    let (token, hash) = auth::new_secret("");
    let csrf = hex::encode(rand::random::<[u8; 32]>());
    sqlx::query(
        "INSERT INTO web_sessions (token_hash, user_id, csrf_token, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(hours => $4))",
    )
    .bind(hash)
    .bind(id)
    .bind(&csrf)
    .bind(auth::LOGIN_HOURS as i32)
    .execute(&st.db)
    .await?;
    db::audit(
        &st.db,
        Some((id, &body.username)),
        "login",
        &body.username,
        json!({}),
    )
    .await;
    let body = json!({"user": user_json(id, &body.username, is_admin), "csrf_token": csrf});
    let cookie = auth::login_cookie(&token, st.settings.cookie_secure);
    Ok(([(SET_COOKIE, cookie)], axum::Json(body)).into_response())
}

pub(crate) async fn logout(
    State(st): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(cookie) = auth::session_cookie(&headers) {
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
            .bind(auth::token_hash(cookie))
            .execute(&st.db)
            .await?;
    }
    db::audit(&st.db, user.audit_id(), "logout", &user.username, json!({})).await;
    let cookie = auth::logout_cookie(st.settings.cookie_secure);
    Ok(([(SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response())
}

pub(crate) async fn me(user: AuthUser) -> axum::Json<Value> {
    let mut body = json!({"user": user_json(user.id, &user.username, user.is_admin)});
    if let Credential::Cookie { csrf_token } = &user.credential {
        body["csrf_token"] = json!(csrf_token);
    }
    axum::Json(body)
}

/// Creates `username` as an administrator unless the user exists already.
/// Returns whether it was created.
pub(crate) async fn ensure_admin(
    db: &sqlx::PgPool,
    username: &str,
    password: &str,
) -> anyhow::Result<bool> {
    let hash = auth::hash_password(password.to_owned()).await?;
    let res = sqlx::query(
        "INSERT INTO users (id, username, password_hash, is_admin) VALUES ($1, $2, $3, true) \
         ON CONFLICT (username) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(username)
    .bind(hash)
    .execute(db)
    .await?;
    let created = res.rows_affected() == 1;
    if created {
        db::audit(db, None, "user.create_admin", username, json!({})).await;
    }
    Ok(created)
}

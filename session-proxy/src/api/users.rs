//! People: an admin creates accounts (there is no self sign-up) and lists
//! them. Passwords are stored as argon2 hashes and never returned.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::{self, AuthUser};
use crate::db;
use crate::error::ApiError;

const MIN_PASSWORD: usize = 8;

#[derive(Deserialize)]
pub(crate) struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    is_admin: bool,
}

fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    user.require_admin()?;
    if !valid_username(&body.username) {
        return Err(ApiError::invalid(
            "username",
            "username must be 1-64 letters, digits, '.', '_', '-' or '@'",
        ));
    }
    if body.password.chars().count() < MIN_PASSWORD {
        return Err(ApiError::invalid(
            "password",
            format!("password must be at least {MIN_PASSWORD} characters"),
        ));
    }
    let hash = auth::hash_password(body.password)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let id = Uuid::now_v7();
    let created = sqlx::query(
        "INSERT INTO users (id, username, password_hash, is_admin) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (username) DO NOTHING",
    )
    .bind(id)
    .bind(&body.username)
    .bind(hash)
    .bind(body.is_admin)
    .execute(&st.db)
    .await?
    .rows_affected()
        == 1;
    if !created {
        return Err(ApiError::conflict(
            "duplicate",
            format!("a user named {:?} already exists", body.username),
        ));
    }
    db::audit(
        &st.db,
        user.audit_id(),
        "user.create",
        &body.username,
        json!({"is_admin": body.is_admin}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"id": id, "username": body.username, "is_admin": body.is_admin})),
    ))
}

pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Value>, ApiError> {
    user.require_admin()?;
    let rows: Vec<(Uuid, String, bool, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, username, is_admin, created_at FROM users ORDER BY username")
            .fetch_all(&st.db)
            .await?;
    let users = rows
        .into_iter()
        .map(|(id, username, is_admin, created_at)| {
            json!({"id": id, "username": username, "is_admin": is_admin, "created_at": created_at})
        })
        .collect();
    Ok(axum::Json(Value::Array(users)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_plain() {
        assert!(valid_username("alice.smith@ops"));
        assert!(!valid_username(""));
        assert!(!valid_username("bob; rm -rf /"));
        assert!(!valid_username(&"x".repeat(65)));
    }
}

//! People: an admin creates accounts (there is no self sign-up), lists
//! them, disables, enables and deletes them. Passwords are stored as argon2
//! hashes and never returned.
//!
//! Disabling a user ends their cookie sessions, API tokens and live SSH
//! sessions at once. Deleting one does the same and keeps the row (their
//! sessions, recordings and audit lines still name them); the name can be
//! given to someone new.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::json;
use shellway_common::api::users::{CreatedUser, NewUser, User, UserChange};
use uuid::Uuid;

use super::login::hashing_error;
use super::sessions::{end_session, LIVE};
use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::db;
use crate::error::ApiError;
use crate::passwords;

/// Most users listed.
const MAX_LISTED: i64 = 10_000;

fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

#[utoipa::path(post, operation_id = "create_user", path = "/api/users", tag = "users", request_body = NewUser, responses((status = 201, description = "Created (administrators)", body = CreatedUser)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, axum::Json<CreatedUser>), ApiError> {
    user.require_admin()?;
    if !valid_username(&body.username) {
        return Err(ApiError::invalid(
            "username",
            "username must be 1-64 letters, digits, '.', '_', '-' or '@'",
        ));
    }
    passwords::check_new(&body.username, &body.password)
        .map_err(|why| ApiError::invalid("password", why))?;
    let hash = st.hasher.hash(body.password).await.map_err(hashing_error)?;
    let id = Uuid::now_v7();
    let created = sqlx::query(
        "INSERT INTO users (id, username, password_hash, is_admin) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (username) WHERE deleted_at IS NULL DO NOTHING",
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
        axum::Json(CreatedUser {
            id,
            username: body.username,
            is_admin: body.is_admin,
            disabled: false,
        }),
    ))
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    username: String,
    is_admin: bool,
    created_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
}

impl UserRow {
    fn to_dto(&self) -> User {
        User {
            id: self.id,
            username: self.username.clone(),
            is_admin: self.is_admin,
            created_at: self.created_at,
            disabled: self.disabled_at.is_some(),
            disabled_at: self.disabled_at,
        }
    }
}

const SELECT: &str =
    "SELECT id, username, is_admin, created_at, disabled_at FROM users WHERE deleted_at IS NULL";

#[utoipa::path(get, operation_id = "list_users", path = "/api/users", tag = "users", responses((status = 200, description = "Every user, by name (administrators)", body = Vec<User>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<User>>, ApiError> {
    user.require_admin()?;
    let rows: Vec<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} ORDER BY username LIMIT $1"
    )))
    .bind(MAX_LISTED)
    .fetch_all(&st.db)
    .await?;
    Ok(axum::Json(rows.iter().map(UserRow::to_dto).collect()))
}

async fn fetch(db: &sqlx::PgPool, id: Uuid) -> Result<UserRow, ApiError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} AND id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))
}

fn not_yourself() -> ApiError {
    ApiError::conflict(
        "yourself",
        "you cannot disable, delete or demote yourself; another administrator can",
    )
}

#[utoipa::path(put, operation_id = "update_user", path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = UserChange, responses((status = 200, description = "Changed (administrators)", body = User)))]
pub(crate) async fn update(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<UserChange>,
) -> Result<axum::Json<User>, ApiError> {
    user.require_admin()?;
    let target = fetch(&st.db, id).await?;
    if id == user.id && (body.disabled == Some(true) || body.is_admin == Some(false)) {
        return Err(not_yourself());
    }
    let hash = match body.password {
        Some(pw) => {
            passwords::check_new(&target.username, &pw)
                .map_err(|why| ApiError::invalid("password", why))?;
            Some(st.hasher.hash(pw).await.map_err(hashing_error)?)
        }
        None => None,
    };
    let mut tx = st.db.begin().await?;
    if let Some(disabled) = body.disabled {
        sqlx::query(
            "UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(disabled)
        .execute(&mut *tx)
        .await?;
        if disabled {
            revoke_credentials(&mut tx, id).await?;
        }
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        db::audit(
            &mut *tx,
            user.audit_id(),
            action,
            &target.username,
            json!({}),
        )
        .await;
    }
    if let Some(is_admin) = body.is_admin {
        sqlx::query("UPDATE users SET is_admin = $2 WHERE id = $1")
            .bind(id)
            .bind(is_admin)
            .execute(&mut *tx)
            .await?;
        let detail = json!({"is_admin": is_admin});
        db::audit(
            &mut *tx,
            user.audit_id(),
            "user.update",
            &target.username,
            detail,
        )
        .await;
    }
    if let Some(hash) = hash {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        db::audit(
            &mut *tx,
            user.audit_id(),
            "user.password_reset",
            &target.username,
            json!({}),
        )
        .await;
    }
    tx.commit().await?;
    if body.disabled == Some(true) {
        end_live_sessions(&st, id, &user).await?;
    }
    Ok(axum::Json(fetch(&st.db, id).await?.to_dto()))
}

#[utoipa::path(delete, operation_id = "delete_user", path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted (administrators)")))]
pub(crate) async fn remove(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    let target = fetch(&st.db, id).await?;
    if id == user.id {
        return Err(not_yourself());
    }
    let mut tx = st.db.begin().await?;
    sqlx::query(
        "UPDATE users SET deleted_at = now(), disabled_at = coalesce(disabled_at, now()), \
         password_hash = '' WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    revoke_credentials(&mut tx, id).await?;
    db::audit(
        &mut *tx,
        user.audit_id(),
        "user.delete",
        &target.username,
        json!({}),
    )
    .await;
    tx.commit().await?;
    end_live_sessions(&st, id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every cookie session and API token of `id` stops working.
async fn revoke_credentials(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: Uuid,
) -> Result<(), ApiError> {
    for sql in [
        "DELETE FROM web_sessions WHERE user_id = $1",
        "DELETE FROM api_tokens WHERE user_id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Ends the live SSH sessions `owner` opened, on behalf of `admin`.
async fn end_live_sessions(st: &AppState, owner: Uuid, admin: &AuthUser) -> Result<(), ApiError> {
    let live: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM sessions WHERE owner_id = $1 AND status = ANY($2) LIMIT $3",
    )
    .bind(owner)
    .bind(&LIVE[..])
    .bind(MAX_LISTED)
    .fetch_all(&st.db)
    .await?;
    for id in live {
        end_session(st, id, admin).await?;
    }
    Ok(())
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

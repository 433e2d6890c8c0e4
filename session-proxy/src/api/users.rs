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
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::login::hashing_error;
use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::passwords;
use crate::service::{authorize, sessions, Action, Resource};
use crate::store::users::UserRow;
use crate::store::{self, AuditAction};

/// Most users listed.
const MAX_LISTED: i64 = 10_000;

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

fn may_manage(user: &AuthUser) -> Result<(), ApiError> {
    Ok(authorize(&user.actor(), Action::Manage, Resource::Users)?)
}

pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    may_manage(&user)?;
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
    let created = store::users::create(
        &st.db,
        id,
        &body.username,
        &hash,
        body.is_admin,
        user.audit_id(),
        AuditAction::UserCreate,
    )
    .await?;
    if !created {
        return Err(ApiError::conflict(
            "duplicate",
            format!("a user named {:?} already exists", body.username),
        ));
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(
            json!({"id": id, "username": body.username, "is_admin": body.is_admin, "disabled": false}),
        ),
    ))
}

fn user_json(u: &UserRow) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "is_admin": u.is_admin,
        "created_at": u.created_at,
        "disabled": u.disabled_at.is_some(),
        "disabled_at": u.disabled_at,
    })
}

pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Value>, ApiError> {
    may_manage(&user)?;
    let rows = store::users::list(&st.db, MAX_LISTED).await?;
    Ok(axum::Json(rows.iter().map(user_json).collect()))
}

async fn fetch(db: &sqlx::PgPool, id: Uuid) -> Result<UserRow, ApiError> {
    store::users::get(db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Change {
    disabled: Option<bool>,
    is_admin: Option<bool>,
    /// A new password set by the admin (the user's cookie sessions end).
    password: Option<String>,
}

fn not_yourself() -> ApiError {
    ApiError::conflict(
        "yourself",
        "you cannot disable, delete or demote yourself; another administrator can",
    )
}

pub(crate) async fn update(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<Change>,
) -> Result<axum::Json<Value>, ApiError> {
    may_manage(&user)?;
    let target = fetch(&st.db, id).await?;
    if id == user.id && (body.disabled == Some(true) || body.is_admin == Some(false)) {
        return Err(not_yourself());
    }
    let password_hash = match body.password {
        Some(pw) => {
            passwords::check_new(&target.username, &pw)
                .map_err(|why| ApiError::invalid("password", why))?;
            Some(st.hasher.hash(pw).await.map_err(hashing_error)?)
        }
        None => None,
    };
    let change = store::users::Change {
        disabled: body.disabled,
        is_admin: body.is_admin,
        password_hash,
    };
    store::users::change(&st.db, id, &target.username, &change, user.audit_id()).await?;
    if body.disabled == Some(true) {
        sessions::end_all_of(&st, id, &user, MAX_LISTED).await?;
    }
    Ok(axum::Json(user_json(&fetch(&st.db, id).await?)))
}

pub(crate) async fn remove(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    may_manage(&user)?;
    let target = fetch(&st.db, id).await?;
    if id == user.id {
        return Err(not_yourself());
    }
    store::users::delete(&st.db, id, &target.username, user.audit_id()).await?;
    sessions::end_all_of(&st, id, &user, MAX_LISTED).await?;
    Ok(StatusCode::NO_CONTENT)
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

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
use shellway_common::api::users::{CreatedUser, NewUser, User, UserChange};
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::passwords;
use crate::service::{access, authorize, sessions, Action, Resource, Role, ServiceError};
use crate::store::users::UserRow;
use crate::store::{self, AuditAction};

/// Most users listed.
const MAX_LISTED: i64 = 10_000;

fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

fn parse_role(role: &str) -> Result<Role, ApiError> {
    Role::parse(role)
        .ok_or_else(|| ApiError::invalid("role", "role must be admin, auditor or user"))
}

fn may_manage(user: &AuthUser) -> Result<(), ApiError> {
    Ok(authorize(&user.actor(), Action::Manage, Resource::Users)?)
}

#[utoipa::path(post, operation_id = "create_user", path = "/api/users", tag = "users", request_body = NewUser, responses((status = 201, description = "Created (administrators)", body = CreatedUser)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, axum::Json<CreatedUser>), ApiError> {
    may_manage(&user)?;
    if !valid_username(&body.username) {
        return Err(ApiError::invalid(
            "username",
            "username must be 1-64 letters, digits, '.', '_', '-' or '@'",
        ));
    }
    passwords::check_new(&body.username, &body.password)
        .map_err(|why| ApiError::invalid("password", why))?;
    let role = match body.role.as_deref() {
        Some(r) => parse_role(r)?,
        None if body.is_admin => Role::Admin,
        None => Role::User,
    };
    let hash = st
        .hasher
        .hash(body.password)
        .await
        .map_err(ServiceError::from)?;
    let id = Uuid::now_v7();
    let created = store::users::create(
        &st.db,
        id,
        &body.username,
        &hash,
        role.as_str(),
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
        axum::Json(CreatedUser {
            id,
            username: body.username,
            is_admin: role == Role::Admin,
            role: role.as_str().to_owned(),
            disabled: false,
        }),
    ))
}

impl UserRow {
    fn to_dto(&self) -> User {
        User {
            id: self.id,
            username: self.username.clone(),
            is_admin: self.role == "admin",
            role: self.role.clone(),
            created_at: self.created_at,
            disabled: self.disabled_at.is_some(),
            disabled_at: self.disabled_at,
            groups: self.groups.clone(),
        }
    }
}

#[utoipa::path(get, operation_id = "list_users", path = "/api/users", tag = "users", responses((status = 200, description = "Every user, by name (administrators)", body = Vec<User>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<User>>, ApiError> {
    may_manage(&user)?;
    let rows = store::users::list(&st.db, MAX_LISTED).await?;
    Ok(axum::Json(rows.iter().map(UserRow::to_dto).collect()))
}

async fn fetch(db: &sqlx::PgPool, id: Uuid) -> Result<UserRow, ApiError> {
    store::users::get(db, id)
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
    may_manage(&user)?;
    let target = fetch(&st.db, id).await?;
    let role = match (body.role.as_deref(), body.is_admin) {
        (Some(r), _) => Some(parse_role(r)?),
        (None, Some(true)) => Some(Role::Admin),
        (None, Some(false)) => Some(Role::User),
        (None, None) => None,
    };
    if id == user.id && (body.disabled == Some(true) || role.is_some_and(|r| r != Role::Admin)) {
        return Err(not_yourself());
    }
    if let Some(groups) = &body.groups {
        if let Some(unknown) = store::access::unknown_groups(&st.db, groups).await?.first() {
            return Err(ApiError::invalid(
                "groups",
                format!("no group with id {unknown}"),
            ));
        }
    }
    let password_hash = match body.password {
        Some(pw) => {
            passwords::check_new(&target.username, &pw)
                .map_err(|why| ApiError::invalid("password", why))?;
            Some(st.hasher.hash(pw).await.map_err(ServiceError::from)?)
        }
        None => None,
    };
    let change = store::users::Change {
        disabled: body.disabled,
        role: role.map(|r| r.as_str().to_owned()),
        groups: body.groups.clone(),
        password_hash,
    };
    store::users::change(&st.db, id, &target.username, &change, user.audit_id()).await?;
    if body.disabled == Some(true) {
        sessions::end_all_of(&st, id, &user, MAX_LISTED).await?;
    }
    if role.is_some() || body.groups.is_some() {
        access::enforce_now(&st).await;
    }
    Ok(axum::Json(fetch(&st.db, id).await?.to_dto()))
}

#[utoipa::path(delete, operation_id = "delete_user", path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted (administrators)")))]
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

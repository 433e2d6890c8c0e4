//! People: an admin creates accounts (there is no self sign-up), lists
//! them, changes their role, groups and password, disables, enables and
//! deletes them. Passwords are stored as argon2 hashes and never returned.
//!
//! Disabling a user ends their cookie sessions, API tokens and live SSH
//! sessions at once. Deleting one does the same and keeps the row (their
//! sessions, recordings and audit lines still name them); the name can be
//! given to someone new.

use shellway_common::api::users::{CreatedUser, NewUser, User, UserChange};
use uuid::Uuid;

use super::{access, authorize, sessions, Action, Resource, Role, ServiceError};
use crate::auth::AuthUser;
use crate::passwords;
use crate::state::AppState;
use crate::store::users::UserRow;
use crate::store::{self, AuditAction};

/// Most users listed.
const MAX_LISTED: i64 = 10_000;

pub(crate) fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

fn parse_role(role: &str) -> Result<Role, ServiceError> {
    Role::parse(role)
        .ok_or_else(|| ServiceError::invalid("role", "role must be admin, auditor or user"))
}

fn may_manage(user: &AuthUser) -> Result<(), ServiceError> {
    Ok(authorize(&user.actor(), Action::Manage, Resource::Users)?)
}

fn to_dto(row: &UserRow) -> User {
    User {
        id: row.id,
        username: row.username.clone(),
        is_admin: row.role == "admin",
        role: row.role.clone(),
        created_at: row.created_at,
        disabled: row.disabled_at.is_some(),
        disabled_at: row.disabled_at,
        groups: row.groups.clone(),
    }
}

pub(crate) async fn create(
    st: &AppState,
    user: &AuthUser,
    body: NewUser,
) -> Result<CreatedUser, ServiceError> {
    may_manage(user)?;
    if !valid_username(&body.username) {
        return Err(ServiceError::invalid(
            "username",
            "username must be 1-64 letters, digits, '.', '_', '-' or '@'",
        ));
    }
    passwords::check_new(&body.username, &body.password)
        .map_err(|why| ServiceError::invalid("password", why))?;
    let role = match body.role.as_deref() {
        Some(r) => parse_role(r)?,
        None if body.is_admin => Role::Admin,
        None => Role::User,
    };
    let hash = st.hasher.hash(body.password).await?;
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
        return Err(ServiceError::conflict(
            "duplicate",
            format!("a user named {:?} already exists", body.username),
        ));
    }
    Ok(CreatedUser {
        id,
        username: body.username,
        is_admin: role == Role::Admin,
        role: role.as_str().to_owned(),
        disabled: false,
    })
}

pub(crate) async fn list(st: &AppState, user: &AuthUser) -> Result<Vec<User>, ServiceError> {
    may_manage(user)?;
    let rows = store::users::list(&st.db, MAX_LISTED).await?;
    Ok(rows.iter().map(to_dto).collect())
}

async fn fetch(st: &AppState, id: Uuid) -> Result<UserRow, ServiceError> {
    store::users::get(&st.db, id)
        .await?
        .ok_or(ServiceError::NotFound("user"))
}

fn not_yourself() -> ServiceError {
    ServiceError::conflict(
        "yourself",
        "you cannot disable, delete or demote yourself; another administrator can",
    )
}

/// Changes a user; disabling ends their sessions, and a new role or new
/// groups re-check everyone's live sessions against the grants.
pub(crate) async fn update(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    body: UserChange,
) -> Result<User, ServiceError> {
    may_manage(user)?;
    let target = fetch(st, id).await?;
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
            return Err(ServiceError::invalid(
                "groups",
                format!("no group with id {unknown}"),
            ));
        }
    }
    let password_hash = match body.password {
        Some(pw) => {
            passwords::check_new(&target.username, &pw)
                .map_err(|why| ServiceError::invalid("password", why))?;
            Some(st.hasher.hash(pw).await?)
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
        sessions::end_all_of(st, id, user, MAX_LISTED).await?;
    }
    if role.is_some() || body.groups.is_some() {
        access::enforce_now(st).await;
    }
    Ok(to_dto(&fetch(st, id).await?))
}

/// Deletes a user (the row stays, marked) and ends their sessions.
pub(crate) async fn remove(st: &AppState, user: &AuthUser, id: Uuid) -> Result<(), ServiceError> {
    may_manage(user)?;
    let target = fetch(st, id).await?;
    if id == user.id {
        return Err(not_yourself());
    }
    store::users::delete(&st.db, id, &target.username, user.audit_id()).await?;
    sessions::end_all_of(st, id, user, MAX_LISTED).await?;
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

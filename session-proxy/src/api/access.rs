//! The access model's API: groups, grants, and what the caller may reach.
//! Administrators manage groups and grants; everyone reads their own
//! access.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use shellway_common::api::access::{
    Grant, GrantSpec, GrantSubject, GrantTarget, Group, GroupSpec, MyAccess, MyAccount, MyHost,
};
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::access::{self, NewGrant};
use crate::store::access::{GrantRow, GroupRow};

fn group_dto(g: GroupRow) -> Group {
    Group {
        id: g.id,
        name: g.name,
        members: g.members,
        created_at: g.created_at,
    }
}

#[utoipa::path(get, operation_id = "list_groups", path = "/api/groups", tag = "access", responses((status = 200, description = "Every group, by name (administrators)", body = Vec<Group>)))]
pub(crate) async fn list_groups(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<Group>>, ApiError> {
    let rows = access::groups(&st, &user).await?;
    Ok(axum::Json(rows.into_iter().map(group_dto).collect()))
}

#[utoipa::path(post, operation_id = "create_group", path = "/api/groups", tag = "access", request_body = GroupSpec, responses((status = 201, description = "Created (administrators)", body = Group)))]
pub(crate) async fn create_group(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<GroupSpec>,
) -> Result<(StatusCode, axum::Json<Group>), ApiError> {
    let row = access::save_group(&st, &user, None, &body.name, &body.members).await?;
    Ok((StatusCode::CREATED, axum::Json(group_dto(row))))
}

#[utoipa::path(put, operation_id = "update_group", path = "/api/groups/{id}", tag = "access", params(("id" = Uuid, Path)), request_body = GroupSpec, responses((status = 200, description = "Replaced (administrators); members who left lose the sessions the group's grants allowed", body = Group)))]
pub(crate) async fn update_group(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<GroupSpec>,
) -> Result<axum::Json<Group>, ApiError> {
    let row = access::save_group(&st, &user, Some(id), &body.name, &body.members).await?;
    Ok(axum::Json(group_dto(row)))
}

#[utoipa::path(delete, operation_id = "delete_group", path = "/api/groups/{id}", tag = "access", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted with its grants (administrators)")))]
pub(crate) async fn delete_group(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    access::delete_group(&st, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn grant_dto(g: GrantRow) -> Grant {
    let now = Utc::now();
    let subject = match (g.user_id, g.group_id) {
        (Some(u), _) => GrantSubject::User(u),
        (None, Some(gr)) => GrantSubject::Group(gr),
        (None, None) => GrantSubject::User(Uuid::nil()),
    };
    let target = match (g.host_id, g.labels) {
        (Some(h), _) => GrantTarget::Host(h),
        (None, Some(l)) => GrantTarget::Labels(l.0),
        (None, None) => GrantTarget::Host(Uuid::nil()),
    };
    Grant {
        id: g.id,
        subject,
        target,
        account: g.account,
        actions: g.actions,
        active: g.not_before.is_none_or(|t| t <= now) && g.not_after.is_none_or(|t| now < t),
        not_before: g.not_before,
        not_after: g.not_after,
        created_at: g.created_at,
    }
}

#[utoipa::path(get, operation_id = "list_grants", path = "/api/grants", tag = "access", responses((status = 200, description = "Every grant, oldest first (administrators)", body = Vec<Grant>)))]
pub(crate) async fn list_grants(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<Grant>>, ApiError> {
    let rows = access::grants(&st, &user).await?;
    Ok(axum::Json(rows.into_iter().map(grant_dto).collect()))
}

#[utoipa::path(post, operation_id = "create_grant", path = "/api/grants", tag = "access", request_body = GrantSpec, responses((status = 201, description = "Granted (administrators); 422 names the field at fault", body = Grant)))]
pub(crate) async fn create_grant(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<GrantSpec>,
) -> Result<(StatusCode, axum::Json<Grant>), ApiError> {
    let (user_id, group) = match body.subject {
        GrantSubject::User(u) => (Some(u), None),
        GrantSubject::Group(g) => (None, Some(g)),
    };
    let (host, labels) = match body.target {
        GrantTarget::Host(h) => (Some(h), None),
        GrantTarget::Labels(l) => (None, Some(l)),
    };
    let new = NewGrant {
        user: user_id,
        group,
        host,
        labels,
        account: body.account,
        actions: body.actions,
        not_before: body.not_before,
        not_after: body.not_after,
    };
    let row = access::create_grant(&st, &user, new).await?;
    Ok((StatusCode::CREATED, axum::Json(grant_dto(row))))
}

#[utoipa::path(delete, operation_id = "delete_grant", path = "/api/grants/{id}", tag = "access", params(("id" = Uuid, Path)), responses((status = 204, description = "Revoked (administrators); the live sessions that needed it end with `access revoked`")))]
pub(crate) async fn delete_grant(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    access::delete_grant(&st, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, operation_id = "my_access", path = "/api/me/access", tag = "account", responses((status = 200, description = "The hosts, accounts and actions the caller may use now", body = MyAccess)))]
pub(crate) async fn mine(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<MyAccess>, ApiError> {
    let hosts = access::mine(&st, &user).await?;
    let hosts = hosts
        .into_iter()
        .map(|(h, accounts)| MyHost {
            host_id: h.id,
            name: h.name,
            hostname: h.hostname,
            port: h.port,
            labels: h.labels.0,
            accounts: accounts
                .into_iter()
                .map(|(login, actions)| MyAccount {
                    login,
                    actions: actions.iter().map(|a| a.as_str().to_owned()).collect(),
                })
                .collect(),
        })
        .collect();
    Ok(axum::Json(MyAccess {
        role: user.role.as_str().to_owned(),
        hosts,
    }))
}

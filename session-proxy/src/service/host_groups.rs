//! Saved host groups: a name for explicit hosts and/or a label selector,
//! that jobs target (`targets.group`). Administrators write them; everyone
//! signed in lists them, seeing only the hosts they may see.

use shellway_common::api::jobs::{HostGroup, HostGroupBody};
use uuid::Uuid;

use super::access::{self, Access};
use super::{authorize, Action, Resource, ServiceError};
use crate::auth::AuthUser;
use crate::state::AppState;
use crate::store;

/// Most hosts named in a group.
const MAX_HOSTS: usize = super::jobs::MAX_HOSTS;

pub(crate) async fn list(st: &AppState, user: &AuthUser) -> Result<Vec<HostGroup>, ServiceError> {
    let access = Access::load(st, user).await?;
    let visible: std::collections::HashSet<Uuid> = store::hosts::list(&st.db)
        .await?
        .into_iter()
        .filter(|h| access.sees(h))
        .map(|h| h.id)
        .collect();
    Ok(store::host_groups::host_groups(&st.db)
        .await?
        .into_iter()
        .map(|g| HostGroup {
            id: g.id,
            name: g.name,
            host_ids: g
                .host_ids
                .into_iter()
                .filter(|h| visible.contains(h))
                .collect(),
            labels: g.labels.map(|l| l.0),
            created_at: g.created_at,
        })
        .collect())
}

pub(crate) async fn create(
    st: &AppState,
    user: &AuthUser,
    body: HostGroupBody,
) -> Result<HostGroup, ServiceError> {
    authorize(&user.actor(), Action::Manage, Resource::Hosts)?;
    let name = body.name.trim();
    let name_ok = (1..=64).contains(&name.len()) && !name.chars().any(char::is_control);
    if !name_ok {
        return Err(ServiceError::invalid(
            "name",
            "name is 1-64 printable characters",
        ));
    }
    if body.host_ids.len() > MAX_HOSTS {
        return Err(ServiceError::invalid(
            "host_ids",
            format!("at most {MAX_HOSTS} hosts"),
        ));
    }
    let known: std::collections::HashSet<Uuid> = store::hosts::list(&st.db)
        .await?
        .into_iter()
        .map(|h| h.id)
        .collect();
    if let Some(unknown) = body.host_ids.iter().find(|h| !known.contains(h)) {
        return Err(ServiceError::invalid(
            "host_ids",
            format!("no host with id {unknown}"),
        ));
    }
    if let Some(labels) = &body.labels {
        if let Some(problem) = access::labels_problem(labels) {
            return Err(ServiceError::invalid("labels", problem));
        }
    }
    if body.host_ids.is_empty() && body.labels.as_ref().is_none_or(|l| l.is_empty()) {
        return Err(ServiceError::invalid(
            "host_ids",
            "name hosts and/or labels",
        ));
    }
    let mut ids = body.host_ids.clone();
    ids.dedup();
    let row = store::host_groups::create_host_group(
        &st.db,
        Uuid::now_v7(),
        name,
        &ids,
        body.labels.as_ref(),
        user.audit_id(),
    )
    .await?
    .ok_or_else(|| {
        ServiceError::conflict("duplicate_name", "a host group with this name exists")
    })?;
    Ok(HostGroup {
        id: row.id,
        name: row.name,
        host_ids: row.host_ids,
        labels: row.labels.map(|l| l.0),
        created_at: row.created_at,
    })
}

pub(crate) async fn delete(st: &AppState, user: &AuthUser, id: Uuid) -> Result<(), ServiceError> {
    authorize(&user.actor(), Action::Manage, Resource::Hosts)?;
    if !store::host_groups::delete_host_group(&st.db, id, user.audit_id()).await? {
        return Err(ServiceError::NotFound("host group"));
    }
    Ok(())
}

//! Hosts: everyone signed in may read them; administrators change them.

use serde_json::Value;
use shellway_common::{AuthMethod, HostKeyPolicy, HostTarget};
use uuid::Uuid;

use super::{authorize, credentials, Action, Resource, ServiceError};
use crate::auth::AuthUser;
use crate::state::AppState;
use crate::store;
use crate::store::hosts::{HostFields, HostRow, HostWriteError};
use shellway_common::vault::CredentialKind;

/// What a runner needs to reach this host, or why it cannot. A stored
/// credential travels sealed: only a runner can open it.
pub(crate) async fn target(st: &AppState, h: &HostRow) -> Result<HostTarget, ServiceError> {
    let unusable = || {
        ServiceError::conflict(
            "host_unusable",
            "this host's settings are not usable; edit the host",
        )
    };
    let auth = match (h.auth_method.as_str(), &h.key_path, h.credential_id) {
        ("key_path", Some(path), _) => AuthMethod::KeyPath { path: path.clone() },
        ("agent", _, _) => AuthMethod::Agent,
        ("stored_key" | "password", _, Some(credential)) => {
            credentials::sealed_auth(st, credential).await?
        }
        _ => return Err(unusable()),
    };
    Ok(HostTarget {
        name: h.name.clone(),
        hostname: h.hostname.clone(),
        port: u16::try_from(h.port).map_err(|_| unusable())?,
        username: h.username.clone(),
        auth,
        host_key_policy: h
            .host_key_policy
            .parse::<HostKeyPolicy>()
            .map_err(|_| unusable())?,
        host_keys: h.host_keys.clone(),
    })
}

pub(crate) async fn list(st: &AppState, user: &AuthUser) -> Result<Vec<HostRow>, ServiceError> {
    authorize(&user.actor(), Action::Read, Resource::Hosts)?;
    Ok(store::hosts::list(&st.db).await?)
}

pub(crate) async fn get(st: &AppState, user: &AuthUser, id: Uuid) -> Result<HostRow, ServiceError> {
    authorize(&user.actor(), Action::Read, Resource::Hosts)?;
    store::hosts::get(&st.db, id)
        .await?
        .ok_or(ServiceError::NotFound("host"))
}

/// May `user` change hosts? Asked before the request is even parsed.
pub(crate) fn may_manage(user: &AuthUser) -> Result<(), ServiceError> {
    Ok(authorize(&user.actor(), Action::Manage, Resource::Hosts)?)
}

/// Creates (`id: None`) or changes a host; the audit line carries `detail`
/// of the row written.
pub(crate) async fn save(
    st: &AppState,
    user: &AuthUser,
    id: Option<Uuid>,
    fields: &HostFields<'_>,
    detail: impl FnOnce(&HostRow) -> Value,
) -> Result<HostRow, ServiceError> {
    may_manage(user)?;
    check_credential(st, fields).await?;
    match store::hosts::save(&st.db, id, fields, user.audit_id(), detail).await {
        Ok(Some(row)) => Ok(row),
        Ok(None) => Err(ServiceError::NotFound("host")),
        Err(HostWriteError::DuplicateName) => Err(ServiceError::conflict(
            "duplicate_name",
            "a host with this name exists already",
        )),
        Err(HostWriteError::Db(err)) => Err(err.into()),
    }
}

/// A host that logs in with a stored credential names one that exists
/// and is of the kind its method needs.
async fn check_credential(st: &AppState, fields: &HostFields<'_>) -> Result<(), ServiceError> {
    let wanted = match fields.auth_method {
        "stored_key" => CredentialKind::PrivateKey,
        "password" => CredentialKind::Password,
        _ => return Ok(()),
    };
    let Some(id) = fields.credential_id else {
        return Err(ServiceError::invalid(
            "credential_id",
            "credential_id is required with auth_method stored_key or password",
        ));
    };
    match credentials::kind_of(st, id).await? {
        None => Err(ServiceError::invalid("credential_id", "no such credential")),
        Some(kind) if kind != wanted => Err(ServiceError::invalid(
            "credential_id",
            format!(
                "the credential is a {}, and auth_method {} needs a {}",
                kind.as_str(),
                fields.auth_method,
                wanted.as_str()
            ),
        )),
        Some(_) => Ok(()),
    }
}

pub(crate) async fn delete(st: &AppState, user: &AuthUser, id: Uuid) -> Result<(), ServiceError> {
    may_manage(user)?;
    if store::hosts::delete(&st.db, id, user.audit_id()).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound("host"))
    }
}

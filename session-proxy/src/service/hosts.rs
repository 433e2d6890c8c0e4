//! Hosts: everyone signed in may read them; administrators change them.

use serde_json::Value;
use shellway_common::{AuthMethod, HostKeyPolicy, HostTarget};
use uuid::Uuid;

use super::access::Access;
use super::{authorize, Action, Resource, ServiceError};
use crate::auth::AuthUser;
use crate::state::AppState;
use crate::store;
use crate::store::access::{AccountFields, AccountRow, AccountWriteError};
use crate::store::hosts::{HostFields, HostRow, HostWriteError};

/// What a runner needs to reach this host as `account`, or why it cannot.
pub(crate) fn target(h: &HostRow, account: &AccountRow) -> Result<HostTarget, ServiceError> {
    let unusable = || {
        ServiceError::conflict(
            "host_unusable",
            "this host's settings are not usable; edit the host",
        )
    };
    let auth =
        match (account.auth_method.as_str(), &account.key_path) {
            ("key_path", Some(path)) => AuthMethod::KeyPath { path: path.clone() },
            ("agent", _) => AuthMethod::Agent,
            // The credential vault is not part of this build yet.
            ("stored_key" | "password", _) => return Err(ServiceError::conflict(
                "credentials_unavailable",
                "stored credentials are not available yet; use an account with key_path or agent",
            )),
            _ => return Err(unusable()),
        };
    Ok(HostTarget {
        name: h.name.clone(),
        hostname: h.hostname.clone(),
        port: u16::try_from(h.port).map_err(|_| unusable())?,
        username: account.login.clone(),
        auth,
        host_key_policy: h
            .host_key_policy
            .parse::<HostKeyPolicy>()
            .map_err(|_| unusable())?,
        host_keys: h.host_keys.clone(),
    })
}

/// The hosts `user` may see: every host for administrators and
/// auditors, those their grants reach for others.
pub(crate) async fn list(st: &AppState, user: &AuthUser) -> Result<Vec<HostRow>, ServiceError> {
    authorize(&user.actor(), Action::Read, Resource::Hosts)?;
    let access = Access::load(st, user).await?;
    let mut rows = store::hosts::list(&st.db).await?;
    rows.retain(|h| access.sees(h));
    Ok(rows)
}

/// A host `user` may see (others are not found).
pub(crate) async fn get(st: &AppState, user: &AuthUser, id: Uuid) -> Result<HostRow, ServiceError> {
    let access = Access::load(st, user).await?;
    get_with(st, &access, id).await
}

pub(crate) async fn get_with(
    st: &AppState,
    access: &Access,
    id: Uuid,
) -> Result<HostRow, ServiceError> {
    let host = store::hosts::get(&st.db, id)
        .await?
        .ok_or(ServiceError::NotFound("host"))?;
    access.check(&host, None, Action::Read)?;
    Ok(host)
}

/// The accounts of a host `user` may see: all of them for administrators
/// and auditors, those a grant reaches for others.
pub(crate) async fn accounts(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> Result<(HostRow, Vec<AccountRow>, Access), ServiceError> {
    let access = Access::load(st, user).await?;
    let host = get_with(st, &access, id).await?;
    let mut rows = store::access::accounts(&st.db, id).await?;
    rows.retain(|a| access.check(&host, Some(&a.login), Action::Read).is_ok());
    Ok((host, rows, access))
}

pub(crate) async fn add_account(
    st: &AppState,
    user: &AuthUser,
    host: Uuid,
    fields: &AccountFields<'_>,
) -> Result<AccountRow, ServiceError> {
    may_manage(user)?;
    store::hosts::get(&st.db, host)
        .await?
        .ok_or(ServiceError::NotFound("host"))?;
    store::access::add_account(&st.db, host, fields, user.audit_id())
        .await
        .map_err(account_error)
}

pub(crate) async fn delete_account(
    st: &AppState,
    user: &AuthUser,
    host: Uuid,
    id: Uuid,
) -> Result<(), ServiceError> {
    may_manage(user)?;
    store::access::delete_account(&st.db, host, id, user.audit_id())
        .await
        .map_err(account_error)?
        .ok_or(ServiceError::NotFound("account"))?;
    super::access::enforce_now(st).await;
    Ok(())
}

fn account_error(err: AccountWriteError) -> ServiceError {
    match err {
        AccountWriteError::DuplicateLogin => {
            ServiceError::invalid("login", "this host has an account with this login already")
        }
        AccountWriteError::LastAccount => ServiceError::conflict(
            "last_account",
            "a host keeps at least one account; add another first",
        ),
        AccountWriteError::Db(err) => err.into(),
    }
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

pub(crate) async fn delete(st: &AppState, user: &AuthUser, id: Uuid) -> Result<(), ServiceError> {
    may_manage(user)?;
    if store::hosts::delete(&st.db, id, user.audit_id()).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound("host"))
    }
}

//! Hosts: everyone signed in may read them; administrators change them.

use serde_json::{json, Value};
use shellway_common::scan::ScanReply;
use shellway_common::{AuthMethod, HostKeyPolicy, HostTarget};
use uuid::Uuid;

use super::access::Access;
use super::{authorize, credentials, Action, Resource, ServiceError};
use crate::auth::AuthUser;
use crate::bus::AskError;
use crate::state::AppState;
use crate::store;
use crate::store::access::{AccountFields, AccountRow, AccountWriteError};
use crate::store::audit::{self, AuditAction};
use crate::store::hosts::{HostFields, HostRow, HostWriteError};
use shellway_common::vault::CredentialKind;

/// What a runner needs to reach this host as `account`, or why it cannot.
/// A stored credential travels sealed: only a runner can open it.
pub(crate) async fn target(
    st: &AppState,
    h: &HostRow,
    account: &AccountRow,
) -> Result<HostTarget, ServiceError> {
    let unusable = || {
        ServiceError::conflict(
            "host_unusable",
            "this host's settings are not usable; edit the host",
        )
    };
    let auth = match (
        account.auth_method.as_str(),
        &account.key_path,
        account.credential_id,
    ) {
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
    check_credential(st, fields.auth_method, fields.credential_id).await?;
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
    check_credential(st, fields.auth_method, fields.credential_id).await?;
    match store::hosts::save(&st.db, id, fields, user.audit_id(), detail).await {
        Ok(Some(row)) => {
            if id.is_some() {
                // New labels or a new first account may end sessions that
                // a label grant or the old account allowed.
                super::access::enforce_now(st).await;
            }
            Ok(row)
        }
        Ok(None) => Err(ServiceError::NotFound("host")),
        Err(HostWriteError::DuplicateName) => Err(ServiceError::conflict(
            "duplicate_name",
            "a host with this name exists already",
        )),
        Err(HostWriteError::Db(err)) => Err(err.into()),
    }
}

/// An account that logs in with a stored credential names one that exists
/// and is of the kind its method needs.
async fn check_credential(
    st: &AppState,
    auth_method: &str,
    credential_id: Option<Uuid>,
) -> Result<(), ServiceError> {
    let wanted = match auth_method {
        "stored_key" => CredentialKind::PrivateKey,
        "password" => CredentialKind::Password,
        _ => return Ok(()),
    };
    let Some(id) = credential_id else {
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
                auth_method,
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

/// May `user` scan `hostname:port` for its key? A refusal is audited, and
/// is "not found" unless the caller may see a host at that address.
pub(crate) async fn may_scan(
    st: &AppState,
    user: &AuthUser,
    hostname: &str,
    port: u16,
) -> Result<(), ServiceError> {
    let Err(err) = may_manage(user) else {
        return Ok(());
    };
    let known = list(st, user)
        .await?
        .iter()
        .any(|h| h.hostname == hostname && h.port == i32::from(port));
    let (err, outcome) = if known {
        (err, "forbidden")
    } else {
        (ServiceError::NotFound("host"), "hidden")
    };
    let target: String = hostname
        .chars()
        .filter(|c| !c.is_control())
        .take(255)
        .collect();
    let detail = json!({"outcome": outcome});
    audit::record_alone(
        &st.db,
        user.audit_id(),
        AuditAction::HostScan,
        &target,
        detail,
    )
    .await?;
    Err(err)
}

/// A host's key and fingerprint, as a runner finds it (the proxy never
/// dials hosts). Every scan is audited with its outcome.
pub(crate) async fn scan(
    st: &AppState,
    user: &AuthUser,
    hostname: &str,
    port: u16,
) -> Result<(String, String), ServiceError> {
    let result = st.asks.scan(hostname, port).await;
    let detail = match &result {
        Ok(ScanReply::Key { fingerprint, .. }) => {
            json!({"outcome": "key", "fingerprint": fingerprint})
        }
        Ok(ScanReply::NoSshServer { .. }) => json!({"outcome": "no_ssh_server"}),
        Ok(ScanReply::SshError { message }) => json!({"outcome": "ssh_error", "message": message}),
        Ok(ScanReply::Taken { .. }) | Err(AskError::NoRunner(_)) => {
            json!({"outcome": "no_runner"})
        }
        Err(AskError::Broker(_)) => json!({"outcome": "broker_unavailable"}),
    };
    let target = format!("{hostname}:{port}");
    audit::record_alone(
        &st.db,
        user.audit_id(),
        AuditAction::HostScan,
        &target,
        detail,
    )
    .await?;
    match result {
        Ok(ScanReply::Key { key, fingerprint }) => Ok((key, fingerprint)),
        Ok(ScanReply::NoSshServer { message } | ScanReply::SshError { message }) => {
            Err(ServiceError::NotSsh(message))
        }
        Ok(ScanReply::Taken { .. }) => {
            Err(ServiceError::Internal("a scan ended at `taken`".into()))
        }
        Err(err @ AskError::NoRunner(_)) => Err(ServiceError::NoCapacity(err.to_string())),
        Err(AskError::Broker(err)) => Err(err.into()),
    }
}

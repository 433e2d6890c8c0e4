//! Host CRUD. Everyone signed in may read hosts; administrators change them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use shellway_common::api::access::{AccountSpec, HostAccount};
use shellway_common::api::errors::ErrorBody;
use shellway_common::api::hosts::{Host, HostSpec, ScanRequest, ScanResult};
use shellway_common::api::Sent;
use uuid::Uuid;

use super::host_input::{self, HostInput};
use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::hosts;
use crate::store::access::{AccountFields, AccountRow};
use crate::store::hosts::{HostFields, HostRow};

/// A host as the API shows it.
fn to_dto(h: &HostRow) -> Host {
    Host {
        id: h.id,
        name: h.name.clone(),
        hostname: h.hostname.clone(),
        port: h.port,
        username: h.username.clone(),
        auth_method: h.auth_method.clone(),
        host_key_policy: h.host_key_policy.clone(),
        host_keys: h.host_keys.clone(),
        labels: h.labels.0.clone(),
        created_at: h.created_at,
        key_path: h.key_path.clone(),
        credential_id: h.credential_id,
    }
}

/// The host as the audit log keeps it: as the API shows it.
fn audit_detail(h: &HostRow) -> Value {
    serde_json::to_value(to_dto(h)).unwrap_or_default()
}

fn fields(h: &HostInput) -> HostFields<'_> {
    HostFields {
        name: &h.name,
        hostname: &h.hostname,
        port: h.port,
        username: &h.username,
        auth_method: h.auth_method.as_str(),
        key_path: h.key_path.as_deref(),
        credential_id: h.credential_id,
        host_key_policy: h.host_key_policy.as_str(),
        host_keys: &h.host_keys,
        labels: &h.labels,
    }
}

#[utoipa::path(get, operation_id = "list_hosts", path = "/api/hosts", tag = "hosts", responses((status = 200, description = "Every host, by name", body = Vec<Host>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<Host>>, ApiError> {
    let rows = hosts::list(&st, &user).await?;
    Ok(axum::Json(rows.iter().map(to_dto).collect()))
}

#[utoipa::path(get, operation_id = "get_host", path = "/api/hosts/{id}", tag = "hosts", params(("id" = Uuid, Path)), responses((status = 200, description = "The host", body = Host)))]
pub(crate) async fn get_one(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Host>, ApiError> {
    Ok(axum::Json(to_dto(&hosts::get(&st, &user, id).await?)))
}

#[utoipa::path(post, operation_id = "create_host", path = "/api/hosts", tag = "hosts", request_body = HostSpec, responses((status = 201, description = "Created (administrators)", body = Host)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<HostSpec>,
) -> Result<(StatusCode, axum::Json<Host>), ApiError> {
    hosts::may_manage(&user)?;
    let h = host_input::parse(body)?;
    let row = hosts::save(&st, &user, None, &fields(&h), audit_detail).await?;
    Ok((StatusCode::CREATED, axum::Json(to_dto(&row))))
}

#[utoipa::path(put, operation_id = "update_host", path = "/api/hosts/{id}", tag = "hosts", params(("id" = Uuid, Path)), request_body = HostSpec, responses((status = 200, description = "Replaced (administrators)", body = Host)))]
pub(crate) async fn update(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<HostSpec>,
) -> Result<axum::Json<Host>, ApiError> {
    hosts::may_manage(&user)?;
    let h = host_input::parse(body)?;
    let row = hosts::save(&st, &user, Some(id), &fields(&h), audit_detail).await?;
    Ok(axum::Json(to_dto(&row)))
}

#[utoipa::path(delete, operation_id = "delete_host", path = "/api/hosts/{id}", tag = "hosts", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted (administrators)")))]
pub(crate) async fn remove(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    hosts::delete(&st, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/hosts/scan {hostname, port}`: the host's key and fingerprint,
/// for an administrator to compare with the server's own and pin. A runner
/// connects (the proxy never dials hosts; no authentication happens).
/// Whatever stops a peer that does not speak SSH gets one message, so the
/// scan maps no ports; every scan is audited.
#[utoipa::path(post, operation_id = "scan_host_key", path = "/api/hosts/scan", tag = "hosts", request_body = ScanRequest, responses((status = 200, description = "The key the host presented (administrators)", body = ScanResult), (status = 502, description = "The peer is no SSH server or the SSH handshake failed: `ssh`", body = ErrorBody), (status = 503, description = "No runner answered the scan in time (`capacity`), or the broker is unavailable (`broker_unavailable`)", body = ErrorBody)))]
pub(crate) async fn scan(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<ScanRequest>,
) -> Result<axum::Json<ScanResult>, ApiError> {
    let hostname = match &body.hostname {
        Sent::Value(h) => h.trim().to_owned(),
        Sent::Missing | Sent::WrongType => String::new(),
    };
    // Refused before the input is judged (a refusal names no field).
    let port_asked = host_input::parse_port(&body.port).unwrap_or(22);
    hosts::may_scan(&st, &user, &hostname, port_asked).await?;
    host_input::check_hostname(&hostname)?;
    let port = host_input::parse_port(&body.port)?;
    let (key, fingerprint) = hosts::scan(&st, &user, &hostname, port).await?;
    Ok(axum::Json(ScanResult { key, fingerprint }))
}

fn account_dto(a: &AccountRow) -> HostAccount {
    HostAccount {
        id: a.id,
        host_id: a.host_id,
        login: a.login.clone(),
        auth_method: a.auth_method.clone(),
        credential_id: a.credential_id,
        key_path: a.key_path.clone(),
        created_at: a.created_at,
    }
}

#[utoipa::path(get, operation_id = "list_host_accounts", path = "/api/hosts/{id}/accounts", tag = "hosts", params(("id" = Uuid, Path)), responses((status = 200, description = "The host's accounts the caller may see, first account first", body = Vec<HostAccount>)))]
pub(crate) async fn accounts(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<HostAccount>>, ApiError> {
    let (_, rows, _) = hosts::accounts(&st, &user, id).await?;
    Ok(axum::Json(rows.iter().map(account_dto).collect()))
}

#[utoipa::path(post, operation_id = "create_host_account", path = "/api/hosts/{id}/accounts", tag = "hosts", params(("id" = Uuid, Path)), request_body = AccountSpec, responses((status = 201, description = "Added (administrators)", body = HostAccount)))]
pub(crate) async fn add_account(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<AccountSpec>,
) -> Result<(StatusCode, axum::Json<HostAccount>), ApiError> {
    hosts::may_manage(&user)?;
    if !crate::service::access::login_ok(&body.login) {
        return Err(ApiError::invalid(
            "login",
            "login must be 1 to 32 characters of A-Z, a-z, 0-9, '.', '_' or '-', not starting with '.' or '-'",
        ));
    }
    let (credential_id, key_path) = match body.auth_method.as_str() {
        "stored_key" | "password" => {
            let id = body.credential_id.ok_or_else(|| {
                ApiError::invalid(
                    "credential_id",
                    "credential_id is required with stored_key and password",
                )
            })?;
            (Some(id), None)
        }
        "key_path" => {
            let path = body.key_path.clone().ok_or_else(|| {
                ApiError::invalid("key_path", "key_path is required with auth_method key_path")
            })?;
            super::host_input::check_key_path(&path)?;
            (None, Some(path))
        }
        "agent" => (None, None),
        other => {
            return Err(ApiError::invalid(
                "auth_method",
                format!(
                    "unknown auth_method {other:?} (use stored_key, password, key_path or agent)"
                ),
            ))
        }
    };
    let fields = AccountFields {
        login: &body.login,
        auth_method: &body.auth_method,
        credential_id,
        key_path: key_path.as_deref(),
    };
    let row = hosts::add_account(&st, &user, id, &fields).await?;
    Ok((StatusCode::CREATED, axum::Json(account_dto(&row))))
}

#[utoipa::path(delete, operation_id = "delete_host_account", path = "/api/hosts/{id}/accounts/{account_id}", tag = "hosts", params(("id" = Uuid, Path), ("account_id" = Uuid, Path)), responses((status = 204, description = "Removed (administrators); a host keeps at least one account (409 `last_account`)")))]
pub(crate) async fn remove_account(
    State(st): State<AppState>,
    user: AuthUser,
    Path((id, account)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    hosts::delete_account(&st, &user, id, account).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Host CRUD. Everyone signed in may read hosts; administrators change them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{json, Value};
use shellway_common::scan::ScanReply;
use uuid::Uuid;

use super::host_input::{self, HostInput};
use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::bus::ScanError;
use crate::error::ApiError;
use crate::service::hosts;
use crate::store::audit::{self, AuditAction};
use crate::store::hosts::{HostFields, HostRow};

/// A host as the API shows it.
fn host_json(h: &HostRow) -> Value {
    let mut v = json!({
        "id": h.id,
        "name": h.name,
        "hostname": h.hostname,
        "port": h.port,
        "username": h.username,
        "auth_method": h.auth_method,
        "host_key_policy": h.host_key_policy,
        "host_keys": h.host_keys,
        "created_at": h.created_at,
    });
    if let Some(path) = &h.key_path {
        v["key_path"] = json!(path);
    }
    v
}

fn fields(h: &HostInput) -> HostFields<'_> {
    HostFields {
        name: &h.name,
        hostname: &h.hostname,
        port: h.port,
        username: &h.username,
        auth_method: h.auth_method.as_str(),
        key_path: h.key_path.as_deref(),
        host_key_policy: h.host_key_policy.as_str(),
        host_keys: &h.host_keys,
    }
}

pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Value>, ApiError> {
    let rows = hosts::list(&st, &user).await?;
    Ok(axum::Json(Value::Array(
        rows.iter().map(host_json).collect(),
    )))
}

pub(crate) async fn get_one(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(host_json(&hosts::get(&st, &user, id).await?)))
}

pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<Value>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    hosts::may_manage(&user)?;
    let h = host_input::parse(&body)?;
    let row = hosts::save(&st, &user, None, &fields(&h), host_json).await?;
    Ok((StatusCode::CREATED, axum::Json(host_json(&row))))
}

pub(crate) async fn update(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<Value>,
) -> Result<axum::Json<Value>, ApiError> {
    hosts::may_manage(&user)?;
    let h = host_input::parse(&body)?;
    let row = hosts::save(&st, &user, Some(id), &fields(&h), host_json).await?;
    Ok(axum::Json(host_json(&row)))
}

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
pub(crate) async fn scan(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<serde_json::Value>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let hostname = body
        .get("hostname")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .trim()
        .to_owned();
    if let Err(err) = hosts::may_manage(&user) {
        let target: String = hostname
            .chars()
            .filter(|c| !c.is_control())
            .take(255)
            .collect();
        let detail = json!({"outcome": "forbidden"});
        audit::record_alone(
            &st.db,
            user.audit_id(),
            AuditAction::HostScan,
            &target,
            detail,
        )
        .await?;
        return Err(err.into());
    }
    super::host_input::check_hostname(&hostname)?;
    let port = super::host_input::parse_port(body.get("port"))?;
    let result = st.scans.scan(&hostname, port).await;
    let detail = match &result {
        Ok(ScanReply::Key { fingerprint, .. }) => {
            json!({"outcome": "key", "fingerprint": fingerprint})
        }
        Ok(ScanReply::NoSshServer { .. }) => json!({"outcome": "no_ssh_server"}),
        Ok(ScanReply::SshError { message }) => json!({"outcome": "ssh_error", "message": message}),
        Ok(ScanReply::Taken { .. }) | Err(ScanError::NoRunner(_)) => {
            json!({"outcome": "no_runner"})
        }
        Err(ScanError::Broker(_)) => json!({"outcome": "broker_unavailable"}),
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
        Ok(ScanReply::Key { key, fingerprint }) => {
            Ok(axum::Json(json!({"key": key, "fingerprint": fingerprint})))
        }
        Ok(ScanReply::NoSshServer { message } | ScanReply::SshError { message }) => {
            Err(ApiError::new(StatusCode::BAD_GATEWAY, "ssh", message))
        }
        Ok(ScanReply::Taken { .. }) => Err(ApiError::internal(&"a scan ended at `taken`")),
        Err(err @ ScanError::NoRunner(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "capacity",
            err.to_string(),
        )),
        Err(ScanError::Broker(err)) => Err(err.into()),
    }
}

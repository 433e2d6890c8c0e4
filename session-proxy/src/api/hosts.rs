//! Host CRUD. Everyone signed in may read hosts; administrators change them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use shellway_common::scan::ScanReply;
use shellway_common::{AuthMethod, HostKeyPolicy, HostTarget};
use uuid::Uuid;

use super::host_input;
use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::bus::ScanError;
use crate::db;
use crate::error::ApiError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct HostRow {
    pub id: Uuid,
    pub name: String,
    pub hostname: String,
    pub port: i32,
    pub username: String,
    pub auth_method: String,
    pub key_path: Option<String>,
    pub host_key_policy: String,
    pub host_keys: Vec<String>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, hostname, port, username, auth_method, key_path, \
                       host_key_policy, host_keys, created_at";

impl HostRow {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "hostname": self.hostname,
            "port": self.port,
            "username": self.username,
            "auth_method": self.auth_method,
            "host_key_policy": self.host_key_policy,
            "host_keys": self.host_keys,
            "created_at": self.created_at,
        });
        if let Some(path) = &self.key_path {
            v["key_path"] = json!(path);
        }
        v
    }

    /// What a runner needs to reach this host, or why it cannot.
    pub(crate) fn target(&self) -> Result<HostTarget, ApiError> {
        let unusable = || {
            ApiError::conflict(
                "host_unusable",
                "this host's settings are not usable; edit the host",
            )
        };
        let auth = match (self.auth_method.as_str(), &self.key_path) {
            ("key_path", Some(path)) => AuthMethod::KeyPath { path: path.clone() },
            ("agent", _) => AuthMethod::Agent,
            _ => return Err(unusable()),
        };
        Ok(HostTarget {
            name: self.name.clone(),
            hostname: self.hostname.clone(),
            port: u16::try_from(self.port).map_err(|_| unusable())?,
            username: self.username.clone(),
            auth,
            host_key_policy: self
                .host_key_policy
                .parse::<HostKeyPolicy>()
                .map_err(|_| unusable())?,
            host_keys: self.host_keys.clone(),
        })
    }
}

pub(crate) async fn fetch(db: &sqlx::PgPool, id: Uuid) -> Result<HostRow, ApiError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM hosts WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| ApiError::not_found("host"))
}

pub(crate) async fn list(
    State(st): State<AppState>,
    _user: AuthUser,
) -> Result<axum::Json<Value>, ApiError> {
    let rows: Vec<HostRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM hosts ORDER BY name"
    )))
    .fetch_all(&st.db)
    .await?;
    Ok(axum::Json(Value::Array(
        rows.iter().map(HostRow::to_json).collect(),
    )))
}

pub(crate) async fn get_one(
    State(st): State<AppState>,
    _user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(fetch(&st.db, id).await?.to_json()))
}

fn duplicate_name(err: sqlx::Error) -> ApiError {
    match &err {
        sqlx::Error::Database(e) if e.is_unique_violation() => {
            ApiError::conflict("duplicate_name", "a host with this name exists already")
        }
        _ => ApiError::from(err),
    }
}

pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<Value>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    user.require_admin()?;
    let h = host_input::parse(&body)?;
    let row: HostRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO hosts (id, name, hostname, port, username, auth_method, key_path, host_key_policy, host_keys) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(&h.name)
    .bind(&h.hostname)
    .bind(i32::from(h.port))
    .bind(&h.username)
    .bind(h.auth_method.as_str())
    .bind(&h.key_path)
    .bind(h.host_key_policy.as_str())
    .bind(&h.host_keys)
    .fetch_one(&st.db)
    .await
    .map_err(duplicate_name)?;
    db::audit(
        &st.db,
        user.audit_id(),
        "host.create",
        &row.id.to_string(),
        row.to_json(),
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(row.to_json())))
}

pub(crate) async fn update(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<Value>,
) -> Result<axum::Json<Value>, ApiError> {
    user.require_admin()?;
    let h = host_input::parse(&body)?;
    let row: HostRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE hosts SET name = $2, hostname = $3, port = $4, username = $5, auth_method = $6, \
         key_path = $7, host_key_policy = $8, host_keys = $9, updated_at = now() \
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(&h.name)
    .bind(&h.hostname)
    .bind(i32::from(h.port))
    .bind(&h.username)
    .bind(h.auth_method.as_str())
    .bind(&h.key_path)
    .bind(h.host_key_policy.as_str())
    .bind(&h.host_keys)
    .fetch_optional(&st.db)
    .await
    .map_err(duplicate_name)?
    .ok_or_else(|| ApiError::not_found("host"))?;
    db::audit(
        &st.db,
        user.audit_id(),
        "host.update",
        &id.to_string(),
        row.to_json(),
    )
    .await;
    Ok(axum::Json(row.to_json()))
}

pub(crate) async fn remove(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    let res = sqlx::query("DELETE FROM hosts WHERE id = $1")
        .bind(id)
        .execute(&st.db)
        .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found("host"));
    }
    db::audit(
        &st.db,
        user.audit_id(),
        "host.delete",
        &id.to_string(),
        json!({}),
    )
    .await;
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
    if let Err(err) = user.require_admin() {
        let target: String = hostname
            .chars()
            .filter(|c| !c.is_control())
            .take(255)
            .collect();
        let detail = json!({"outcome": "forbidden"});
        db::audit(&st.db, user.audit_id(), "host.scan", &target, detail).await;
        return Err(err);
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
    db::audit(&st.db, user.audit_id(), "host.scan", &target, detail).await;
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

//! Service panels and the last status seen of their units.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use super::audit::{self, AuditAction, Who};
use super::hosts::Labels;

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ServiceRow {
    pub id: Uuid,
    pub name: String,
    pub unit: String,
    pub host_ids: Vec<Uuid>,
    pub labels: Json<Labels>,
    pub account: Option<String>,
    pub actions: Vec<String>,
    pub use_sudo: bool,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, unit, host_ids, labels, account, actions, use_sudo, created_by, \
                       created_at, updated_at";

/// A service as written (checked by `service::services`).
pub(crate) struct ServiceFields<'a> {
    pub name: &'a str,
    pub unit: &'a str,
    pub host_ids: &'a [Uuid],
    pub labels: &'a Labels,
    pub account: Option<&'a str>,
    pub actions: &'a [String],
    pub use_sudo: bool,
}

/// Why a service could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SaveError {
    #[error("the name is taken")]
    Duplicate,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub(crate) async fn list(db: &PgPool) -> Result<Vec<ServiceRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM services ORDER BY name"
    )))
    .fetch_all(db)
    .await
}

pub(crate) async fn get(db: &PgPool, id: Uuid) -> Result<Option<ServiceRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM services WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Creates or changes a service with its audit line; `false` when `id`
/// names none and `create` is not set.
pub(crate) async fn save(
    db: &PgPool,
    id: Uuid,
    create: bool,
    s: &ServiceFields<'_>,
    who: Who<'_>,
) -> Result<bool, SaveError> {
    let mut tx = db.begin().await?;
    let sql = if create {
        "INSERT INTO services (id, name, unit, host_ids, labels, account, actions, use_sudo, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    } else {
        "UPDATE services SET name = $2, unit = $3, host_ids = $4, labels = $5, account = $6, \
         actions = $7, use_sudo = $8, updated_at = now() WHERE id = $1"
    };
    let mut query = sqlx::query(sql)
        .bind(id)
        .bind(s.name)
        .bind(s.unit)
        .bind(s.host_ids)
        .bind(Json(s.labels))
        .bind(s.account)
        .bind(s.actions)
        .bind(s.use_sudo);
    if create {
        query = query.bind(who.map(|w| w.0));
    }
    let written = query
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => SaveError::Duplicate,
            _ => SaveError::Db(e),
        })?
        .rows_affected();
    if written == 0 {
        return Ok(false);
    }
    if !create {
        // The unit or its hosts may have changed: old dots would mislead.
        sqlx::query("DELETE FROM service_status WHERE service_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    let detail =
        json!({"name": s.name, "unit": s.unit, "actions": s.actions, "use_sudo": s.use_sudo});
    audit::record(
        &mut tx,
        who,
        AuditAction::ServiceSave,
        &id.to_string(),
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Deletes a service; `false` if there was none.
pub(crate) async fn delete(db: &PgPool, id: Uuid, who: Who<'_>) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let gone = sqlx::query("DELETE FROM services WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if gone == 0 {
        return Ok(false);
    }
    audit::record(
        &mut tx,
        who,
        AuditAction::ServiceDelete,
        &id.to_string(),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Records that `who` asked for `action` on a service's hosts (the job it
/// became is audited by the jobs).
pub(crate) async fn audit_action(
    db: &PgPool,
    who: Who<'_>,
    service: Uuid,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    audit::record_alone(
        db,
        who,
        AuditAction::ServiceAction,
        &service.to_string(),
        detail,
    )
    .await
}

/// The last status of a unit on a host.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct StatusRow {
    pub service_id: Uuid,
    pub host_id: Uuid,
    pub state: String,
    pub active_state: Option<String>,
    pub sub_state: Option<String>,
    pub unit_file_state: Option<String>,
    pub main_pid: Option<i32>,
    pub since: Option<String>,
    pub error: Option<String>,
    pub checked_at: DateTime<Utc>,
}

pub(crate) async fn statuses(db: &PgPool, service: Uuid) -> Result<Vec<StatusRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT service_id, host_id, state, active_state, sub_state, unit_file_state, main_pid, \
         since, error, checked_at FROM service_status WHERE service_id = $1",
    )
    .bind(service)
    .fetch_all(db)
    .await
}

/// Writes polled statuses (a service deleted meanwhile is skipped).
pub(crate) async fn put_statuses(db: &PgPool, rows: &[StatusRow]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    for r in rows {
        sqlx::query(
            "INSERT INTO service_status (service_id, host_id, state, active_state, sub_state, \
             unit_file_state, main_pid, since, error, checked_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
             WHERE EXISTS (SELECT 1 FROM services WHERE id = $1) \
               AND EXISTS (SELECT 1 FROM hosts WHERE id = $2) \
             ON CONFLICT (service_id, host_id) DO UPDATE SET state = $3, active_state = $4, \
             sub_state = $5, unit_file_state = $6, main_pid = $7, since = $8, error = $9, checked_at = $10",
        )
        .bind(r.service_id)
        .bind(r.host_id)
        .bind(&r.state)
        .bind(&r.active_state)
        .bind(&r.sub_state)
        .bind(&r.unit_file_state)
        .bind(r.main_pid)
        .bind(&r.since)
        .bind(&r.error)
        .bind(r.checked_at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

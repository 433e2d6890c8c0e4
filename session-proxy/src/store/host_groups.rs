//! Saved host groups: a name for explicit hosts and/or a label selector.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::audit::{self, AuditAction, Who};

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct HostGroupRow {
    pub id: Uuid,
    pub name: String,
    pub host_ids: Vec<Uuid>,
    pub labels: Option<sqlx::types::Json<std::collections::BTreeMap<String, String>>>,
    pub created_at: DateTime<Utc>,
}

pub(crate) async fn host_groups(db: &PgPool) -> Result<Vec<HostGroupRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, host_ids, labels, created_at FROM host_groups ORDER BY name")
        .fetch_all(db)
        .await
}

pub(crate) async fn host_group(
    db: &PgPool,
    name: &str,
) -> Result<Option<HostGroupRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, host_ids, labels, created_at FROM host_groups WHERE name = $1")
        .bind(name)
        .fetch_optional(db)
        .await
}

/// Saves a new host group; `None` when the name is taken.
pub(crate) async fn create_host_group(
    db: &PgPool,
    id: Uuid,
    name: &str,
    host_ids: &[Uuid],
    labels: Option<&std::collections::BTreeMap<String, String>>,
    who: Who<'_>,
) -> Result<Option<HostGroupRow>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let row: Option<HostGroupRow> = sqlx::query_as(
        "INSERT INTO host_groups (id, name, host_ids, labels, created_by) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO NOTHING RETURNING id, name, host_ids, labels, created_at",
    )
    .bind(id)
    .bind(name)
    .bind(host_ids)
    .bind(labels.map(sqlx::types::Json))
    .bind(who.map(|w| w.0))
    .fetch_optional(&mut *tx)
    .await?;
    if row.is_some() {
        let detail = json!({"name": name, "hosts": host_ids.len(), "labels": labels});
        audit::record(
            &mut tx,
            who,
            AuditAction::HostGroupSave,
            &id.to_string(),
            detail,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(row)
}

pub(crate) async fn delete_host_group(
    db: &PgPool,
    id: Uuid,
    who: Who<'_>,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let gone = sqlx::query("DELETE FROM host_groups WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if gone {
        audit::record(
            &mut tx,
            who,
            AuditAction::HostGroupDelete,
            &id.to_string(),
            json!({}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(gone)
}

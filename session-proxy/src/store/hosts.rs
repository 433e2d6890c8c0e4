//! Hosts: the SSH targets, and their pinned keys.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::audit::{self, AuditAction, Who};

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct HostRow {
    pub id: Uuid,
    pub name: String,
    pub hostname: String,
    pub port: i32,
    pub username: String,
    pub auth_method: String,
    pub key_path: Option<String>,
    pub credential_id: Option<Uuid>,
    pub host_key_policy: String,
    pub host_keys: Vec<String>,
    pub labels: Json<Labels>,
    pub created_at: DateTime<Utc>,
}

pub(crate) type Labels = std::collections::BTreeMap<String, String>;

const COLUMNS: &str = "id, name, hostname, port, username, auth_method, key_path, \
                       credential_id, host_key_policy, host_keys, labels, created_at";

/// A host's settings as written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostFields<'a> {
    pub name: &'a str,
    pub hostname: &'a str,
    pub port: u16,
    pub username: &'a str,
    pub auth_method: &'a str,
    pub key_path: Option<&'a str>,
    pub credential_id: Option<Uuid>,
    pub host_key_policy: &'a str,
    pub host_keys: &'a [String],
    pub labels: &'a Labels,
}

/// Why a host could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostWriteError {
    #[error("a host with this name exists already")]
    DuplicateName,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn duplicate_name(err: sqlx::Error) -> HostWriteError {
    match &err {
        sqlx::Error::Database(e) if e.is_unique_violation() => HostWriteError::DuplicateName,
        _ => HostWriteError::Db(err),
    }
}

pub(crate) async fn get(db: &PgPool, id: Uuid) -> Result<Option<HostRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM hosts WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

pub(crate) async fn list(db: &PgPool) -> Result<Vec<HostRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM hosts ORDER BY name"
    )))
    .fetch_all(db)
    .await
}

/// Writes a new host (`id: None`) or changes one, with its audit line
/// (`detail` from the row written); `None` if there is no such host.
pub(crate) async fn save(
    db: &PgPool,
    id: Option<Uuid>,
    h: &HostFields<'_>,
    who: Who<'_>,
    detail: impl FnOnce(&HostRow) -> Value,
) -> Result<Option<HostRow>, HostWriteError> {
    let mut tx = db.begin().await?;
    let (sql, id, action) = match id {
        None => (
            format!(
                "INSERT INTO hosts (id, name, hostname, port, username, auth_method, key_path, \
                 host_key_policy, host_keys, labels, credential_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 RETURNING {COLUMNS}"
            ),
            Uuid::now_v7(),
            AuditAction::HostCreate,
        ),
        Some(id) => (
            format!(
                "UPDATE hosts SET name = $2, hostname = $3, port = $4, username = $5, \
                 auth_method = $6, key_path = $7, host_key_policy = $8, host_keys = $9, \
                 labels = $10, credential_id = $11, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
            ),
            id,
            AuditAction::HostUpdate,
        ),
    };
    let row: Option<HostRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(h.name)
        .bind(h.hostname)
        .bind(i32::from(h.port))
        .bind(h.username)
        .bind(h.auth_method)
        .bind(h.key_path)
        .bind(h.host_key_policy)
        .bind(h.host_keys)
        .bind(Json(h.labels))
        .bind(h.credential_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(duplicate_name)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let first = super::access::AccountFields {
        login: h.username,
        auth_method: h.auth_method,
        credential_id: h.credential_id,
        key_path: h.key_path,
    };
    super::access::set_first_account(&mut tx, row.id, &first).await?;
    audit::record(&mut tx, who, action, &row.id.to_string(), detail(&row)).await?;
    tx.commit().await?;
    Ok(Some(row))
}

/// Deletes a host; `false` if there was none.
pub(crate) async fn delete(db: &PgPool, id: Uuid, who: Who<'_>) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let gone = sqlx::query("DELETE FROM hosts WHERE id = $1")
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
        AuditAction::HostDelete,
        &id.to_string(),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// The first key a `tofu` host showed (reported by a session's runner) is
/// pinned, if none is yet.
pub(crate) async fn pin_first_key(
    conn: &mut PgConnection,
    session: Uuid,
    key: &str,
    fingerprint: &str,
) -> Result<(), sqlx::Error> {
    let pinned: Option<(Uuid,)> = sqlx::query_as(
        "UPDATE hosts SET host_keys = ARRAY[$2], updated_at = now() \
         WHERE id = (SELECT host_id FROM sessions WHERE id = $1) \
           AND host_key_policy = 'tofu' AND cardinality(host_keys) = 0 RETURNING id",
    )
    .bind(session)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((host,)) = pinned {
        tracing::info!(host_id = %host, fingerprint, "pinned the host key on first use");
        let detail = json!({"fingerprint": fingerprint, "key": key, "session": session});
        audit::record(
            conn,
            None,
            AuditAction::HostKeyPinned,
            &host.to_string(),
            detail,
        )
        .await?;
    }
    Ok(())
}

/// The hosts named by id, and those carrying all of `labels` (when any).
pub(crate) async fn selected(
    db: &PgPool,
    ids: &[Uuid],
    labels: &Labels,
) -> Result<Vec<HostRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM hosts \
         WHERE id = ANY($1) OR ($2 <> '{{}}'::jsonb AND labels @> $2) ORDER BY name"
    )))
    .bind(ids)
    .bind(Json(labels))
    .fetch_all(db)
    .await
}

//! The task and script library.

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use shellway_common::api::library::TaskParam;
use sqlx::types::Json;

use super::audit::{self, AuditAction, Who};

/// Which library table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Task,
    Script,
}

impl Kind {
    /// One of our two table names, never user input.
    fn table(self) -> &'static str {
        match self {
            Self::Task => "tasks",
            Self::Script => "scripts",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::Script => "script",
        }
    }
}

/// Why an item could not be saved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SaveError {
    #[error("the name is taken")]
    Duplicate,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn duplicate(err: sqlx::Error) -> SaveError {
    match &err {
        sqlx::Error::Database(d) if d.is_unique_violation() => SaveError::Duplicate,
        _ => SaveError::Db(err),
    }
}

/// Id, name, label, command, description, parameters.
pub(crate) type TaskRow = (Uuid, String, String, String, String, Json<Vec<TaskParam>>);
/// Id, name, description, body.
pub(crate) type ScriptRow = (Uuid, String, String, String);

pub(crate) async fn tasks(db: &PgPool) -> Result<Vec<TaskRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, label, command, description, params FROM tasks ORDER BY name")
        .fetch_all(db)
        .await
}

pub(crate) async fn task(db: &PgPool, id: Uuid) -> Result<Option<TaskRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, label, command, description, params FROM tasks WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

pub(crate) async fn scripts(db: &PgPool) -> Result<Vec<ScriptRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, description, body FROM scripts ORDER BY name")
        .fetch_all(db)
        .await
}

pub(crate) async fn script(db: &PgPool, id: Uuid) -> Result<Option<ScriptRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, description, body FROM scripts WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// A task's name, command and parameters, by id or else by name.
pub(crate) async fn task_command(
    db: &PgPool,
    id: Option<Uuid>,
    name: Option<&str>,
) -> Result<Option<(String, String, Json<Vec<TaskParam>>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, command, params FROM tasks WHERE id = $1 OR ($1 IS NULL AND name = $2)",
    )
    .bind(id)
    .bind(name)
    .fetch_optional(db)
    .await
}

/// A script's name and body.
pub(crate) async fn script_body(
    db: &PgPool,
    id: Uuid,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT name, body FROM scripts WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// A task as saved.
pub(crate) struct TaskFields<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub command: &'a str,
    pub description: &'a str,
    pub params: &'a [TaskParam],
}

pub(crate) async fn save_task(
    db: &PgPool,
    id: Uuid,
    t: &TaskFields<'_>,
    who: Who<'_>,
) -> Result<(), SaveError> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO tasks (id, name, label, command, description, created_by, params) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET name = $2, label = $3, command = $4, description = $5, \
           params = $7, updated_at = now()",
    )
    .bind(id)
    .bind(t.name)
    .bind(t.label)
    .bind(t.command)
    .bind(t.description)
    .bind(who.map(|w| w.0))
    .bind(Json(t.params))
    .execute(&mut *tx)
    .await
    .map_err(duplicate)?;
    let detail = json!({"name": t.name});
    audit::record(&mut tx, who, AuditAction::TaskSave, &id.to_string(), detail).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn save_script(
    db: &PgPool,
    id: Uuid,
    name: &str,
    description: &str,
    body: &str,
    who: Who<'_>,
) -> Result<(), SaveError> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO scripts (id, name, description, body, created_by) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET name = $2, description = $3, body = $4, updated_at = now()",
    )
    .bind(id)
    .bind(name)
    .bind(description)
    .bind(body)
    .bind(who.map(|w| w.0))
    .execute(&mut *tx)
    .await
    .map_err(duplicate)?;
    let detail = json!({"name": name});
    audit::record(
        &mut tx,
        who,
        AuditAction::ScriptSave,
        &id.to_string(),
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn exists(db: &PgPool, kind: Kind, id: Uuid) -> Result<bool, sqlx::Error> {
    let sql = format!("SELECT count(*) FROM {} WHERE id = $1", kind.table());
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(db)
        .await?;
    Ok(n > 0)
}

/// Deletes an item; `false` if there was none.
pub(crate) async fn delete(
    db: &PgPool,
    kind: Kind,
    id: Uuid,
    who: Who<'_>,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let sql = format!("DELETE FROM {} WHERE id = $1", kind.table());
    let gone = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if gone == 0 {
        return Ok(false);
    }
    let action = match kind {
        Kind::Task => AuditAction::TaskDelete,
        Kind::Script => AuditAction::ScriptDelete,
    };
    audit::record(&mut tx, who, action, &id.to_string(), json!({})).await?;
    tx.commit().await?;
    Ok(true)
}

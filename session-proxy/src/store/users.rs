//! Users, their sign-in sessions (`web_sessions`), and what a request's
//! credential says about who is calling.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::audit::{self, AuditAction, Who};

/// Id, name, role: who a credential belongs to.
pub(crate) type Caller = (Uuid, String, String);

/// The live user behind an API token (its last use noted).
pub(crate) async fn by_token(db: &PgPool, hash: &[u8]) -> Result<Option<Caller>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE api_tokens t SET last_used_at = now() FROM users u \
         WHERE t.token_hash = $1 AND u.id = t.user_id AND t.expires_at > now() \
         AND u.disabled_at IS NULL AND u.deleted_at IS NULL \
         RETURNING u.id, u.username, u.role",
    )
    .bind(hash)
    .fetch_optional(db)
    .await
}

/// The live user behind a login cookie, and its CSRF token.
pub(crate) async fn by_cookie(
    db: &PgPool,
    hash: &[u8],
) -> Result<Option<(Uuid, String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id, u.username, u.role, w.csrf_token FROM web_sessions w \
         JOIN users u ON u.id = w.user_id WHERE w.token_hash = $1 AND w.expires_at > now() \
         AND u.disabled_at IS NULL AND u.deleted_at IS NULL",
    )
    .bind(hash)
    .fetch_optional(db)
    .await
}

/// Id, name, password hash, role, disabled since.
pub(crate) type LoginRow = (Uuid, String, String, String, Option<DateTime<Utc>>);

pub(crate) async fn for_login(
    db: &PgPool,
    username: &str,
) -> Result<Option<LoginRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, username, password_hash, role, disabled_at FROM users \
         WHERE username = $1 AND deleted_at IS NULL",
    )
    .bind(username)
    .fetch_optional(db)
    .await
}

/// The role of a live (not disabled, not deleted) user.
pub(crate) async fn role_of(db: &PgPool, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT role FROM users WHERE id = $1 AND disabled_at IS NULL AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

pub(crate) async fn password_hash(db: &PgPool, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// A sign-in: the cookie's session, and its audit line.
pub(crate) async fn sign_in(
    db: &PgPool,
    who: (Uuid, &str),
    token_hash: &[u8],
    csrf: &str,
    hours: i32,
    detail: Value,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO web_sessions (token_hash, user_id, csrf_token, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(hours => $4))",
    )
    .bind(token_hash)
    .bind(who.0)
    .bind(csrf)
    .bind(hours)
    .execute(&mut *tx)
    .await?;
    audit::record(&mut tx, Some(who), AuditAction::Login, who.1, detail).await?;
    tx.commit().await
}

/// A sign-out: the cookie's session (if any) goes, audited.
pub(crate) async fn sign_out(
    db: &PgPool,
    who: (Uuid, &str),
    token_hash: Option<&[u8]>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    if let Some(hash) = token_hash {
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
            .bind(hash)
            .execute(&mut *tx)
            .await?;
    }
    audit::record(&mut tx, Some(who), AuditAction::Logout, who.1, json!({})).await?;
    tx.commit().await
}

/// A user changes their own password; their other sign-ins end (all but
/// the one whose token hash is `keep`).
pub(crate) async fn change_own_password(
    db: &PgPool,
    who: (Uuid, &str),
    hash: &str,
    keep: &[u8],
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(who.0)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
    let ended = sqlx::query("DELETE FROM web_sessions WHERE user_id = $1 AND token_hash <> $2")
        .bind(who.0)
        .bind(keep)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let detail = json!({"ended_sessions": ended});
    audit::record(&mut tx, Some(who), AuditAction::UserPassword, who.1, detail).await?;
    tx.commit().await
}

/// Creates a user with its audit line; `false` if the name is taken.
pub(crate) async fn create(
    db: &PgPool,
    id: Uuid,
    username: &str,
    hash: &str,
    role: &str,
    who: Who<'_>,
    action: AuditAction,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let created = sqlx::query(
        "INSERT INTO users (id, username, password_hash, role, is_admin) \
         VALUES ($1, $2, $3, $4, $4 = 'admin') \
         ON CONFLICT (username) WHERE deleted_at IS NULL DO NOTHING",
    )
    .bind(id)
    .bind(username)
    .bind(hash)
    .bind(role)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !created {
        return Ok(false);
    }
    let detail = match action {
        AuditAction::UserCreate => json!({"after": {"role": role}}),
        _ => json!({}),
    };
    audit::record(&mut tx, who, action, username, detail).await?;
    tx.commit().await?;
    Ok(true)
}

pub(crate) async fn exists(db: &PgPool, username: &str) -> Result<bool, sqlx::Error> {
    let id: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM users WHERE username = $1 AND deleted_at IS NULL")
            .bind(username)
            .fetch_optional(db)
            .await?;
    Ok(id.is_some())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Ids of the groups they belong to.
    pub groups: Vec<Uuid>,
}

const SELECT: &str = "SELECT id, username, role, created_at, disabled_at, \
     ARRAY(SELECT group_id FROM group_members m WHERE m.user_id = users.id ORDER BY group_id) \
     AS groups FROM users WHERE deleted_at IS NULL";

pub(crate) async fn list(db: &PgPool, limit: i64) -> Result<Vec<UserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} ORDER BY username LIMIT $1"
    )))
    .bind(limit)
    .fetch_all(db)
    .await
}

pub(crate) async fn get(db: &PgPool, id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} AND id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// What an administrator changes about a user.
#[derive(Debug, Default)]
pub(crate) struct Change {
    pub disabled: Option<bool>,
    pub role: Option<String>,
    pub groups: Option<Vec<Uuid>>,
    pub password_hash: Option<String>,
}

/// Applies `c` to user `id` (named `name`) in one transaction, each part
/// with its audit line. Disabling signs the user out everywhere.
pub(crate) async fn change(
    db: &PgPool,
    id: Uuid,
    name: &str,
    c: &Change,
    who: Who<'_>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    if let Some(disabled) = c.disabled {
        sqlx::query(
            "UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(disabled)
        .execute(&mut *tx)
        .await?;
        if disabled {
            revoke_credentials(&mut tx, id).await?;
        }
        let action = if disabled {
            AuditAction::UserDisable
        } else {
            AuditAction::UserEnable
        };
        audit::record(&mut tx, who, action, name, json!({})).await?;
    }
    if let Some(role) = &c.role {
        let before: String = sqlx::query_scalar("SELECT role FROM users WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("UPDATE users SET role = $2, is_admin = ($2 = 'admin') WHERE id = $1")
            .bind(id)
            .bind(role)
            .execute(&mut *tx)
            .await?;
        let detail = json!({"before": {"role": before}, "after": {"role": role}});
        audit::record(&mut tx, who, AuditAction::UserUpdate, name, detail).await?;
    }
    if let Some(groups) = &c.groups {
        let before: Vec<Uuid> =
            sqlx::query_scalar("DELETE FROM group_members WHERE user_id = $1 RETURNING group_id")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id) \
             SELECT DISTINCT g, $1 FROM unnest($2::uuid[]) g",
        )
        .bind(id)
        .bind(groups)
        .execute(&mut *tx)
        .await?;
        let detail = json!({"before": {"groups": before}, "after": {"groups": groups}});
        audit::record(&mut tx, who, AuditAction::UserGroups, name, detail).await?;
    }
    if let Some(hash) = &c.password_hash {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            who,
            AuditAction::UserPasswordReset,
            name,
            json!({}),
        )
        .await?;
    }
    tx.commit().await
}

/// Deletes a user (the row stays, nameless to sign-ins) and their
/// credentials.
pub(crate) async fn delete(
    db: &PgPool,
    id: Uuid,
    name: &str,
    who: Who<'_>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE users SET deleted_at = now(), disabled_at = coalesce(disabled_at, now()), \
         password_hash = '' WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    revoke_credentials(&mut tx, id).await?;
    audit::record(&mut tx, who, AuditAction::UserDelete, name, json!({})).await?;
    tx.commit().await
}

async fn revoke_credentials(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    // Their live sessions are ended by whoever disabled them (the access
    // re-check leaves these alone).
    sqlx::query(
        "UPDATE sessions SET access_revoked_at = coalesce(access_revoked_at, now()) \
         WHERE owner_id = $1 AND status = ANY($2)",
    )
    .bind(id)
    .bind(super::lifecycle::live_sessions())
    .execute(&mut *conn)
    .await?;
    for sql in [
        "DELETE FROM web_sessions WHERE user_id = $1",
        "DELETE FROM api_tokens WHERE user_id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    }
    Ok(())
}

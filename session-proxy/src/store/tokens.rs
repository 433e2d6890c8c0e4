//! API tokens. Only a token's hash is stored.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::audit::{self, AuditAction, Who};

/// The scopes of the token with this hash.
pub(crate) async fn scopes(db: &PgPool, hash: &[u8]) -> Result<Option<Vec<String>>, sqlx::Error> {
    sqlx::query_scalar("SELECT scopes FROM api_tokens WHERE token_hash = $1")
        .bind(hash)
        .fetch_optional(db)
        .await
}

/// Forgets a user's tokens that expired more than `days` ago, then counts
/// the live ones.
pub(crate) async fn live_count(
    db: &PgPool,
    user: Uuid,
    keep_expired_days: i32,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "DELETE FROM api_tokens WHERE user_id = $1 \
         AND expires_at < now() - make_interval(days => $2)",
    )
    .bind(user)
    .bind(keep_expired_days)
    .execute(db)
    .await?;
    sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE user_id = $1 AND expires_at > now()")
        .bind(user)
        .fetch_one(db)
        .await
}

/// A new token.
pub(crate) struct NewToken<'a> {
    pub id: Uuid,
    pub user: (Uuid, &'a str),
    pub hash: &'a [u8],
    pub name: &'a str,
    pub scopes: &'a [String],
    pub expires_in_secs: f64,
}

/// Writes the token with its audit line; returns when it expires.
pub(crate) async fn create(db: &PgPool, t: &NewToken<'_>) -> Result<DateTime<Utc>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let expires_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO api_tokens (id, user_id, token_hash, name, scopes, expires_at) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING expires_at",
    )
    .bind(t.id)
    .bind(t.user.0)
    .bind(t.hash)
    .bind(t.name)
    .bind(t.scopes)
    .bind(t.expires_in_secs)
    .fetch_one(&mut *tx)
    .await?;
    let detail = json!({"name": t.name, "scopes": t.scopes, "expires_at": expires_at});
    audit::record(
        &mut tx,
        Some(t.user),
        AuditAction::TokenCreate,
        &t.id.to_string(),
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(expires_at)
}

/// Id, name, scopes, created, last used, expires.
pub(crate) type TokenRow = (
    Uuid,
    String,
    Vec<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

pub(crate) async fn of_user(
    db: &PgPool,
    user: Uuid,
    limit: i64,
) -> Result<Vec<TokenRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, scopes, created_at, last_used_at, expires_at FROM api_tokens \
         WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2",
    )
    .bind(user)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub(crate) async fn owner(db: &PgPool, id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM api_tokens WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Deletes a token with its audit line; `false` if it was gone.
pub(crate) async fn revoke(db: &PgPool, id: Uuid, who: Who<'_>) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let owner: Option<Uuid> =
        sqlx::query_scalar("DELETE FROM api_tokens WHERE id = $1 RETURNING user_id")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(owner) = owner else {
        return Ok(false);
    };
    let detail: Value = json!({"owner": owner});
    audit::record(
        &mut tx,
        who,
        AuditAction::TokenRevoke,
        &id.to_string(),
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

//! Share links. Only a token's SHA-256 is stored.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::audit::{self, AuditAction, Who};

/// A new link on a session.
pub(crate) struct NewShare<'a> {
    pub id: Uuid,
    pub session: Uuid,
    pub token_hash: &'a [u8],
    pub mode: &'a str,
    pub by: Who<'a>,
    pub expires_in_secs: f64,
}

/// Writes the link with its audit line; returns when it expires. Its
/// viewers start after the output recorded so far.
pub(crate) async fn create(db: &PgPool, s: &NewShare<'_>) -> Result<DateTime<Utc>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let expires_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO shares (id, session_id, token_hash, mode, created_by, expires_at, start_seq) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), \
         (SELECT coalesce(max(seq), 0) FROM output_chunks WHERE session_id = $2)) \
         RETURNING expires_at",
    )
    .bind(s.id)
    .bind(s.session)
    .bind(s.token_hash)
    .bind(s.mode)
    .bind(s.by.map(|b| b.0))
    .bind(s.expires_in_secs)
    .fetch_one(&mut *tx)
    .await?;
    let detail = json!({"share": s.id, "mode": s.mode, "expires_at": expires_at});
    let target = s.session.to_string();
    audit::record(&mut tx, s.by, AuditAction::ShareCreate, &target, detail).await?;
    tx.commit().await?;
    Ok(expires_at)
}

/// Share id, mode, creator's name, created, expires, revoked.
pub(crate) type ShareListRow = (
    Uuid,
    String,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

pub(crate) async fn of_session(
    db: &PgPool,
    session: Uuid,
) -> Result<Vec<ShareListRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id, s.mode, u.username, s.created_at, s.expires_at, s.revoked_at \
         FROM shares s LEFT JOIN users u ON u.id = s.created_by \
         WHERE s.session_id = $1 ORDER BY s.created_at DESC",
    )
    .bind(session)
    .fetch_all(db)
    .await
}

/// A link as its revocation needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ShareOwners {
    pub id: Uuid,
    pub session_id: Uuid,
    pub created_by: Option<Uuid>,
    pub owner_id: Uuid,
}

/// The link with this id or token hash.
pub(crate) async fn find(
    db: &PgPool,
    id: Option<Uuid>,
    token_hash: &[u8],
) -> Result<Option<ShareOwners>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sh.id, sh.session_id, sh.created_by, s.owner_id \
         FROM shares sh JOIN sessions s ON s.id = sh.session_id \
         WHERE sh.id = $1 OR sh.token_hash = $2",
    )
    .bind(id)
    .bind(token_hash)
    .fetch_optional(db)
    .await
}

/// Revokes a link (once; a second revocation changes nothing but is
/// audited, as it disconnects anyone still on it).
pub(crate) async fn revoke(
    db: &PgPool,
    share: Uuid,
    session: Uuid,
    who: Who<'_>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE shares SET revoked_at = now(), revoked_by = $2 WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(share)
    .bind(who.map(|w| w.0))
    .execute(&mut *tx)
    .await?;
    let detail = json!({"share": share});
    audit::record(
        &mut tx,
        who,
        AuditAction::ShareRevoke,
        &session.to_string(),
        detail,
    )
    .await?;
    tx.commit().await
}

/// A link as a joiner's token finds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ShareByToken {
    pub id: Uuid,
    pub session_id: Uuid,
    pub mode: String,
    pub expires_at: DateTime<Utc>,
    pub expired: bool,
    pub revoked: bool,
    pub session_status: String,
    pub start_seq: i64,
}

pub(crate) async fn by_token(
    db: &PgPool,
    token_hash: &[u8],
) -> Result<Option<ShareByToken>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sh.id, sh.session_id, sh.mode, sh.expires_at, sh.expires_at <= now() AS expired, \
         sh.revoked_at IS NOT NULL AS revoked, s.status AS session_status, sh.start_seq \
         FROM shares sh JOIN sessions s ON s.id = sh.session_id WHERE sh.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db)
    .await
}

/// The shared session's host name and owner, for the join page.
pub(crate) async fn describe(
    db: &PgPool,
    session: Uuid,
) -> Result<(Option<String>, String), sqlx::Error> {
    sqlx::query_as(
        "SELECT h.name, u.username FROM sessions s JOIN users u ON u.id = s.owner_id \
         LEFT JOIN hosts h ON h.id = s.host_id WHERE s.id = $1",
    )
    .bind(session)
    .fetch_one(db)
    .await
}

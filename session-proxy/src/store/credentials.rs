//! The credential vault's rows: sealed (age) ciphertext and what may be
//! shown of it. Nothing here ever sees plaintext.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::audit::{self, AuditAction, Who};

/// A credential as listed: never its ciphertext.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct CredentialRow {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub fingerprint: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The accounts (`login@host`) that log in with it.
    pub used_by: Vec<String>,
    /// The `age1…` recipient(s) it is sealed to, comma-separated.
    pub recipient: String,
}

const COLUMNS: &str = "c.id, c.name, c.kind, c.fingerprint, c.created_at, c.recipient, \
     ARRAY(SELECT a.login || '@' || h.name FROM host_accounts a JOIN hosts h ON h.id = a.host_id \
     WHERE a.credential_id = c.id ORDER BY 1) AS used_by";

/// A credential as written.
pub(crate) struct NewCredential<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub ciphertext: &'a [u8],
    pub fingerprint: Option<&'a str>,
    pub recipient: &'a str,
}

/// Why a credential could not be written or deleted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialWriteError {
    #[error("a credential with this name exists already")]
    DuplicateName,
    #[error("the credential is in use")]
    InUse,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Most credentials listed (as for groups and grants).
const MAX_LISTED: i64 = 10_000;

pub(crate) async fn list(db: &PgPool) -> Result<Vec<CredentialRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM credentials c ORDER BY c.name LIMIT {MAX_LISTED}"
    )))
    .fetch_all(db)
    .await
}

/// How many credentials are stored.
pub(crate) async fn count(db: &PgPool) -> Result<usize, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM credentials")
        .fetch_one(db)
        .await?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// The kind and ciphertext of a credential, to hand to a runner.
pub(crate) async fn sealed(
    db: &PgPool,
    id: Uuid,
) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT kind, ciphertext FROM credentials WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Writes a credential with its audit line (`detail` from the row).
pub(crate) async fn create(
    db: &PgPool,
    c: &NewCredential<'_>,
    who: Who<'_>,
    detail: impl FnOnce(&CredentialRow) -> Value,
) -> Result<CredentialRow, CredentialWriteError> {
    let mut tx = db.begin().await?;
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO credentials (id, name, kind, ciphertext, fingerprint, recipient, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(c.name)
    .bind(c.kind)
    .bind(c.ciphertext)
    .bind(c.fingerprint)
    .bind(c.recipient)
    .bind(who.map(|w| w.0))
    .execute(&mut *tx)
    .await;
    if let Err(err) = inserted {
        return Err(match &err {
            sqlx::Error::Database(e) if e.is_unique_violation() => {
                CredentialWriteError::DuplicateName
            }
            _ => err.into(),
        });
    }
    let row: CredentialRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM credentials c WHERE c.id = $1"
    )))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        who,
        AuditAction::CredentialCreate,
        &id.to_string(),
        detail(&row),
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Deletes a credential no host uses; `Ok(false)` if there was none.
pub(crate) async fn delete(
    db: &PgPool,
    id: Uuid,
    who: Who<'_>,
    detail: impl FnOnce(&CredentialRow) -> Value,
) -> Result<bool, CredentialWriteError> {
    let mut tx = db.begin().await?;
    let row: Option<CredentialRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM credentials c WHERE c.id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let deleted = sqlx::query("DELETE FROM credentials WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await;
    if let Err(err) = deleted {
        return Err(match &err {
            sqlx::Error::Database(e) if e.is_foreign_key_violation() => CredentialWriteError::InUse,
            _ => err.into(),
        });
    }
    audit::record(
        &mut tx,
        who,
        AuditAction::CredentialDelete,
        &id.to_string(),
        detail(&row),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Every credential's id and ciphertext, locked for a rotation in `conn`'s
/// transaction.
pub(crate) async fn lock_all(conn: &mut PgConnection) -> Result<Vec<(Uuid, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT id, ciphertext FROM credentials ORDER BY id FOR UPDATE")
        .fetch_all(conn)
        .await
}

/// Up to `limit` credentials not sealed to exactly `recipient`, by id,
/// after `after` (keyset pages): id and ciphertext.
pub(crate) async fn sealed_elsewhere(
    db: &PgPool,
    recipient: &str,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(Uuid, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, ciphertext FROM credentials WHERE recipient <> $1 \
         AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(recipient)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Replaces a credential's ciphertext if it is still `old` (a rotation
/// that read it earlier, without holding a lock across the runner's
/// work). Whether it was replaced.
pub(crate) async fn reseal_if_unchanged(
    conn: &mut PgConnection,
    id: Uuid,
    old: &[u8],
    new: &[u8],
    recipient: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE credentials SET ciphertext = $3, recipient = $4 WHERE id = $1 AND ciphertext = $2",
    )
    .bind(id)
    .bind(old)
    .bind(new)
    .bind(recipient)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces a credential's ciphertext (a rotation), in `conn`'s transaction.
pub(crate) async fn reseal(
    conn: &mut PgConnection,
    id: Uuid,
    ciphertext: &[u8],
    recipient: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE credentials SET ciphertext = $2, recipient = $3 WHERE id = $1")
        .bind(id)
        .bind(ciphertext)
        .bind(recipient)
        .execute(conn)
        .await
        .map(drop)
}

/// Records a rotation, in its transaction.
pub(crate) async fn record_rotation(
    conn: &mut PgConnection,
    who: Who<'_>,
    detail: Value,
) -> Result<(), sqlx::Error> {
    audit::record(
        conn,
        who,
        AuditAction::CredentialRotate,
        "credentials",
        detail,
    )
    .await
}

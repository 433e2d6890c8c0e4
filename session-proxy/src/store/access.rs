//! Who may reach what: groups and their members, host accounts, grants,
//! and the live sessions whose access is re-checked.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::audit::{self, AuditAction, Who};

// ---- groups ----

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub(crate) struct GroupRow {
    pub id: Uuid,
    pub name: String,
    pub members: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
}

const GROUP_SELECT: &str = "SELECT g.id, g.name, g.created_at, \
     ARRAY(SELECT m.user_id FROM group_members m JOIN users u ON u.id = m.user_id \
           WHERE m.group_id = g.id AND u.deleted_at IS NULL ORDER BY m.user_id) AS members \
     FROM groups g";

pub(crate) async fn groups(db: &PgPool) -> Result<Vec<GroupRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{GROUP_SELECT} ORDER BY g.name LIMIT 10000"
    )))
    .fetch_all(db)
    .await
}

pub(crate) async fn group(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<GroupRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{GROUP_SELECT} WHERE g.id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Of `ids`, those that are no live user.
pub(crate) async fn unknown_users(db: &PgPool, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT i FROM unnest($1::uuid[]) i \
         WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = i AND u.deleted_at IS NULL)",
    )
    .bind(ids)
    .fetch_all(db)
    .await
}

/// Of `ids`, those that are no group.
pub(crate) async fn unknown_groups(db: &PgPool, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT i FROM unnest($1::uuid[]) i \
         WHERE NOT EXISTS (SELECT 1 FROM groups g WHERE g.id = i)",
    )
    .bind(ids)
    .fetch_all(db)
    .await
}

/// Why a group could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GroupWriteError {
    #[error("a group with this name exists already")]
    DuplicateName,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn duplicate(err: sqlx::Error) -> GroupWriteError {
    match &err {
        sqlx::Error::Database(e) if e.is_unique_violation() => GroupWriteError::DuplicateName,
        _ => GroupWriteError::Db(err),
    }
}

/// Creates (`id: None`) or replaces a group and its members, audited with
/// before and after; `None` if there is no such group.
pub(crate) async fn save_group(
    db: &PgPool,
    id: Option<Uuid>,
    name: &str,
    members: &[Uuid],
    who: Who<'_>,
) -> Result<Option<GroupRow>, GroupWriteError> {
    let mut tx = db.begin().await?;
    let (id, before, action) = match id {
        None => {
            let id = Uuid::now_v7();
            sqlx::query("INSERT INTO groups (id, name) VALUES ($1, $2)")
                .bind(id)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(duplicate)?;
            (id, Value::Null, AuditAction::GroupCreate)
        }
        Some(id) => {
            let Some(before) = group(&mut tx, id).await? else {
                return Ok(None);
            };
            sqlx::query("UPDATE groups SET name = $2 WHERE id = $1")
                .bind(id)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(duplicate)?;
            sqlx::query("DELETE FROM group_members WHERE group_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            (id, json!(before), AuditAction::GroupUpdate)
        }
    };
    sqlx::query(
        "INSERT INTO group_members (group_id, user_id) SELECT DISTINCT $1, m FROM unnest($2::uuid[]) m",
    )
    .bind(id)
    .bind(members)
    .execute(&mut *tx)
    .await?;
    let after = group(&mut tx, id).await?;
    let detail = json!({"before": before, "after": after});
    audit::record(&mut tx, who, action, &id.to_string(), detail).await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes a group (its grants go with it); `false` if there was none.
pub(crate) async fn delete_group(db: &PgPool, id: Uuid, who: Who<'_>) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some(before) = group(&mut tx, id).await? else {
        return Ok(false);
    };
    sqlx::query("DELETE FROM groups WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let detail = json!({"before": before});
    audit::record(
        &mut tx,
        who,
        AuditAction::GroupDelete,
        &id.to_string(),
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

// ---- host accounts ----

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub(crate) struct AccountRow {
    pub id: Uuid,
    pub host_id: Uuid,
    pub login: String,
    pub auth_method: String,
    pub credential_id: Option<Uuid>,
    pub key_path: Option<String>,
    pub created_at: DateTime<Utc>,
}

const ACCOUNT_COLUMNS: &str =
    "id, host_id, login, auth_method, credential_id, key_path, created_at";

/// A host's accounts, oldest (the first) first.
pub(crate) async fn accounts(db: &PgPool, host: Uuid) -> Result<Vec<AccountRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ACCOUNT_COLUMNS} FROM host_accounts WHERE host_id = $1 ORDER BY created_at, id"
    )))
    .bind(host)
    .fetch_all(db)
    .await
}

/// The accounts of many hosts.
pub(crate) async fn accounts_of(
    db: &PgPool,
    hosts: &[Uuid],
) -> Result<Vec<AccountRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ACCOUNT_COLUMNS} FROM host_accounts WHERE host_id = ANY($1) \
         ORDER BY host_id, created_at, id"
    )))
    .bind(hosts)
    .fetch_all(db)
    .await
}

/// An account as written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AccountFields<'a> {
    pub login: &'a str,
    pub auth_method: &'a str,
    pub credential_id: Option<Uuid>,
    pub key_path: Option<&'a str>,
}

/// Why an account could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccountWriteError {
    #[error("this host has an account with this login already")]
    DuplicateLogin,
    #[error("a host keeps at least one account")]
    LastAccount,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn duplicate_login(err: sqlx::Error) -> AccountWriteError {
    match &err {
        sqlx::Error::Database(e) if e.is_unique_violation() => AccountWriteError::DuplicateLogin,
        _ => AccountWriteError::Db(err),
    }
}

/// Makes the host's own columns (its `username`, `auth_method`,
/// `key_path`, `credential_id`, as the hosts API shows them) those of its
/// first account.
pub(crate) async fn sync_first_account(
    conn: &mut PgConnection,
    host: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE hosts h SET username = a.login, auth_method = a.auth_method, \
         key_path = a.key_path, credential_id = a.credential_id, updated_at = now() \
         FROM (SELECT login, auth_method, key_path, credential_id FROM host_accounts \
               WHERE host_id = $1 \
               ORDER BY created_at, id LIMIT 1) a WHERE h.id = $1",
    )
    .bind(host)
    .execute(conn)
    .await
    .map(drop)
}

/// The host's first account becomes `a` (created if it has none): how
/// the hosts API's `username`/`auth_method`/`key_path` are written.
pub(crate) async fn set_first_account(
    conn: &mut PgConnection,
    host: Uuid,
    a: &AccountFields<'_>,
) -> Result<(), sqlx::Error> {
    let first: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM host_accounts WHERE host_id = $1 ORDER BY created_at, id LIMIT 1",
    )
    .bind(host)
    .fetch_optional(&mut *conn)
    .await?;
    match first {
        Some(id) => {
            // Another account with the new login gives way to the first.
            sqlx::query("DELETE FROM host_accounts WHERE host_id = $1 AND login = $2 AND id <> $3")
                .bind(host)
                .bind(a.login)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE host_accounts SET login = $2, auth_method = $3, credential_id = $4, \
                 key_path = $5 WHERE id = $1",
            )
            .bind(id)
            .bind(a.login)
            .bind(a.auth_method)
            .bind(a.credential_id)
            .bind(a.key_path)
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query(
                "INSERT INTO host_accounts (id, host_id, login, auth_method, credential_id, key_path) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(Uuid::now_v7())
            .bind(host)
            .bind(a.login)
            .bind(a.auth_method)
            .bind(a.credential_id)
            .bind(a.key_path)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Adds an account to a host, audited.
pub(crate) async fn add_account(
    db: &PgPool,
    host: Uuid,
    a: &AccountFields<'_>,
    who: Who<'_>,
) -> Result<AccountRow, AccountWriteError> {
    let mut tx = db.begin().await?;
    let row: AccountRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO host_accounts (id, host_id, login, auth_method, credential_id, key_path) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ACCOUNT_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(host)
    .bind(a.login)
    .bind(a.auth_method)
    .bind(a.credential_id)
    .bind(a.key_path)
    .fetch_one(&mut *tx)
    .await
    .map_err(duplicate_login)?;
    sync_first_account(&mut tx, host).await?;
    let detail = json!({"host": host, "after": row});
    audit::record(
        &mut tx,
        who,
        AuditAction::AccountCreate,
        &row.id.to_string(),
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Removes an account of a host, audited; `None` if there is no such
/// account.
pub(crate) async fn delete_account(
    db: &PgPool,
    host: Uuid,
    id: Uuid,
    who: Who<'_>,
) -> Result<Option<AccountRow>, AccountWriteError> {
    let mut tx = db.begin().await?;
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM host_accounts WHERE host_id = $1 FOR UPDATE) a",
    )
    .bind(host)
    .fetch_one(&mut *tx)
    .await?;
    let row: Option<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM host_accounts WHERE host_id = $1 AND id = $2 RETURNING {ACCOUNT_COLUMNS}"
    )))
    .bind(host)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if count <= 1 {
        return Err(AccountWriteError::LastAccount);
    }
    sync_first_account(&mut tx, host).await?;
    let detail = json!({"host": host, "before": row});
    audit::record(
        &mut tx,
        who,
        AuditAction::AccountDelete,
        &id.to_string(),
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(row))
}

// ---- grants ----

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub(crate) struct GrantRow {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
    pub host_id: Option<Uuid>,
    pub labels: Option<Json<std::collections::BTreeMap<String, String>>>,
    pub account: String,
    pub actions: Vec<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const GRANT_COLUMNS: &str = "g.id, g.user_id, g.group_id, g.host_id, g.labels, g.account, \
                             g.actions, g.not_before, g.not_after, g.created_at";

pub(crate) async fn grants(db: &PgPool) -> Result<Vec<GrantRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {GRANT_COLUMNS} FROM grants g ORDER BY g.created_at LIMIT 10000"
    )))
    .fetch_all(db)
    .await
}

/// Every grant bearing on the users `users` (their own and their groups'),
/// with the user it applies to. Deleted users have none.
pub(crate) async fn grants_of(
    db: &PgPool,
    users: &[Uuid],
) -> Result<Vec<(Uuid, GrantRow)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        subject: Uuid,
        #[sqlx(flatten)]
        grant: GrantRow,
    }
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT u.id AS subject, {GRANT_COLUMNS} FROM users u \
         JOIN grants g ON g.user_id = u.id \
           OR g.group_id IN (SELECT m.group_id FROM group_members m WHERE m.user_id = u.id) \
         WHERE u.id = ANY($1) AND u.deleted_at IS NULL AND u.disabled_at IS NULL"
    )))
    .bind(users)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.subject, r.grant)).collect())
}

/// A grant as written.
#[derive(Debug, Clone)]
pub(crate) struct GrantFields {
    pub user_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
    pub host_id: Option<Uuid>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    pub account: String,
    pub actions: Vec<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
}

/// A grant with the same subject, target and account whose validity
/// overlaps `g`'s.
pub(crate) async fn overlapping(db: &PgPool, g: &GrantFields) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM grants WHERE user_id IS NOT DISTINCT FROM $1 \
         AND group_id IS NOT DISTINCT FROM $2 AND host_id IS NOT DISTINCT FROM $3 \
         AND labels IS NOT DISTINCT FROM $4 AND account = $5 \
         AND tstzrange(not_before, not_after) && tstzrange($6, $7) ORDER BY id LIMIT 1",
    )
    .bind(g.user_id)
    .bind(g.group_id)
    .bind(g.host_id)
    .bind(g.labels.as_ref().map(Json))
    .bind(&g.account)
    .bind(g.not_before)
    .bind(g.not_after)
    .fetch_optional(db)
    .await
}

pub(crate) async fn create_grant(
    db: &PgPool,
    g: &GrantFields,
    who: Who<'_>,
) -> Result<GrantRow, sqlx::Error> {
    let mut tx = db.begin().await?;
    let row: GrantRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO grants AS g (id, user_id, group_id, host_id, labels, account, actions, \
         not_before, not_after, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         RETURNING {GRANT_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(g.user_id)
    .bind(g.group_id)
    .bind(g.host_id)
    .bind(g.labels.as_ref().map(Json))
    .bind(&g.account)
    .bind(&g.actions)
    .bind(g.not_before)
    .bind(g.not_after)
    .bind(who.map(|w| w.0))
    .fetch_one(&mut *tx)
    .await?;
    let detail = json!({"after": row});
    audit::record(
        &mut tx,
        who,
        AuditAction::GrantCreate,
        &row.id.to_string(),
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Deletes a grant, audited; `false` if there was none.
pub(crate) async fn delete_grant(db: &PgPool, id: Uuid, who: Who<'_>) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let row: Option<GrantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM grants g WHERE g.id = $1 RETURNING {GRANT_COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let detail = json!({"before": row});
    audit::record(
        &mut tx,
        who,
        AuditAction::GrantDelete,
        &id.to_string(),
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

// ---- live sessions under re-check ----

/// A live session whose owner's access is re-checked.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct LiveAccess {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub owner_role: String,
    pub owner_disabled: bool,
    pub host_id: Option<Uuid>,
    pub host_labels: Option<Json<std::collections::BTreeMap<String, String>>>,
    pub account: Option<String>,
    pub shell: bool,
    /// The kind of job this session is a host of (`command`, `service`…).
    pub job_kind: Option<String>,
    /// The host no longer has the account the session logged in as.
    pub account_gone: bool,
}

/// Live sessions of people who are not administrators, not yet ended for
/// lost access: a page of at most `limit`, by id, after `after`.
pub(crate) async fn live_to_check(
    db: &PgPool,
    live: &[String],
    after: Uuid,
    limit: i64,
) -> Result<Vec<LiveAccess>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id, s.owner_id, u.role AS owner_role, \
         (u.disabled_at IS NOT NULL OR u.deleted_at IS NOT NULL) AS owner_disabled, \
         s.host_id, h.labels AS host_labels, s.account, s.shell, j.kind AS job_kind, \
         (h.id IS NOT NULL AND s.account IS NOT NULL AND NOT EXISTS \
           (SELECT 1 FROM host_accounts a WHERE a.host_id = s.host_id AND a.login = s.account)) \
           AS account_gone \
         FROM sessions s JOIN users u ON u.id = s.owner_id LEFT JOIN hosts h ON h.id = s.host_id \
         LEFT JOIN jobs j ON j.id = s.job_id \
         WHERE s.status = ANY($1) AND s.access_revoked_at IS NULL AND u.role <> 'admin' \
         AND s.id > $2 ORDER BY s.id LIMIT $3",
    )
    .bind(live)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Marks a session ended for lost access, audited; `false` if another
/// proxy did first (or it is no longer live).
pub(crate) async fn mark_revoked(
    db: &PgPool,
    id: Uuid,
    live: &[String],
    why: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let marked = sqlx::query(
        "UPDATE sessions SET access_revoked_at = now() \
         WHERE id = $1 AND access_revoked_at IS NULL AND status = ANY($2)",
    )
    .bind(id)
    .bind(live)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !marked {
        return Ok(false);
    }
    audit::record(
        &mut tx,
        None,
        AuditAction::SessionAccessRevoked,
        &id.to_string(),
        json!({"why": why}),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

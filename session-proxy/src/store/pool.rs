//! The Postgres pool: create the database if needed, migrate, connect;
//! which errors are an outage.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

#[derive(Debug, thiserror::Error)]
pub(crate) enum DbSetupError {
    #[error("invalid database URL: {0}")]
    Url(sqlx::Error),
    #[error("database name {0:?} is not a plain identifier")]
    Name(String),
    #[error("cannot reach Postgres: {0}")]
    Connect(sqlx::Error),
    #[error("cannot create the database: {0}")]
    Create(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Longest wait for a pooled connection. Requests seldom wait on it: once
/// the database is known down they are refused at once (`health.rs`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long to wait for Postgres at start before giving up.
const STARTUP_WAIT: Duration = Duration::from_secs(60);

pub(crate) async fn connect(url: &str) -> Result<PgPool, DbSetupError> {
    let opts = PgConnectOptions::from_str(url).map_err(DbSetupError::Url)?;
    create_database_if_missing(&opts).await?;
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(opts)
        .await
        .map_err(DbSetupError::Connect)?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

async fn create_database_if_missing(opts: &PgConnectOptions) -> Result<(), DbSetupError> {
    let Some(name) = opts.get_database().map(str::to_owned) else {
        return Ok(());
    };
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(DbSetupError::Name(name));
    }
    let admin = opts.clone().database("postgres");
    let started = tokio::time::Instant::now();
    let mut conn = loop {
        match admin.connect().await {
            Ok(conn) => break conn,
            Err(err) if started.elapsed() < STARTUP_WAIT => {
                tracing::warn!(error = %err, "Postgres unavailable, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => return Err(DbSetupError::Connect(err)),
        }
    };
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await
        .map_err(DbSetupError::Create)?;
    if exists.is_none() {
        let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await;
        match created {
            Ok(_) => tracing::info!(database = %name, "created the database"),
            // Another proxy created it at the same moment.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(err) => return Err(DbSetupError::Create(err)),
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// Errors worth waiting out (the database is away or overloaded), as
/// opposed to a statement the database refuses.
pub(crate) fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(e) => e.code().is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("57P")
                || c == "40001"
                || c == "40P01"
                || c == "53300"
        }),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}

/// What an unauthenticated request may have stored (a username it tried):
/// control characters dropped, at most 64 characters.
pub(crate) fn untrusted_text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(crate::store::throttles::MAX_KEY)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn untrusted_text_is_short_and_printable() {
        let s = super::untrusted_text(&format!("ad\u{1b}[31mmin\r\n\0{}", "é".repeat(1000)));
        assert!(s.starts_with("ad[31mmin"), "{s}");
        assert_eq!(s.chars().count(), 64);
        assert!(!s.chars().any(char::is_control));
    }
}

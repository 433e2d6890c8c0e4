//! Brute-force protection for sign-ins, shared by every proxy through
//! Postgres: failures are counted per username and per client address;
//! from the fifth within a window, each key is blocked for an exponential
//! delay (1 s, 2 s, 4 s … capped at a minute). A blocked key is refused at
//! once with `429` and `Retry-After`: the delay is in the answer, no task
//! waits it out.
//!
//! Each attempt is counted *before* its password is checked, in one
//! statement per sign-in that refuses if a key is blocked, so a burst of
//! parallel guesses cannot all slip in before the first failure is stored.
//! A success clears its username and gives back its count on the address.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shellway_common::api::throttles::Throttle;
use tokio_util::sync::CancellationToken;

/// Failures (within [`WINDOW`]) before a key is blocked.
const THRESHOLD: i32 = 5;
/// The longest block.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// Failures older than this are forgotten.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Rows kept at most; the least recent go first.
const MAX_ROWS: i64 = 100_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Longest key stored.
pub(crate) const MAX_KEY: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Username,
    Address,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Username => "username",
            Kind::Address => "address",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "username" => Some(Kind::Username),
            "address" => Some(Kind::Address),
            _ => None,
        }
    }
}

/// One counter: a username or a client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub kind: Kind,
    pub key: String,
}

/// The counters a sign-in as `username` from `addr` touches. Usernames
/// are compared without case; an IPv6 client counts as its /64.
pub(crate) fn keys(username: &str, addr: Option<IpAddr>) -> Vec<Key> {
    let mut keys = vec![Key {
        kind: Kind::Username,
        key: crate::store::pool::untrusted_text(username).to_lowercase(),
    }];
    if let Some(ip) = addr {
        keys.push(Key {
            kind: Kind::Address,
            key: address_key(ip),
        });
    }
    keys
}

fn address_key(ip: IpAddr) -> String {
    match crate::client_addr::network(ip) {
        IpAddr::V6(net) => format!("{net}/64"),
        v4 => v4.to_string(),
    }
}

/// How long the `failures`th failure blocks its key.
pub(crate) fn delay(failures: i32) -> Option<Duration> {
    let over = failures.checked_sub(THRESHOLD)?;
    if over < 0 {
        return None;
    }
    let secs = 1u64.checked_shl(over.unsigned_abs()).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_DELAY))
}

/// What counting an attempt found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// A key is blocked: try again in this many seconds. Nothing counted.
    Blocked(u64),
    /// Counted; these keys are now blocked until the given time, should
    /// the attempt fail.
    Counted(Vec<(Key, i32, DateTime<Utc>)>),
}

fn columns(keys: &[Key]) -> (Vec<&'static str>, Vec<&str>) {
    keys.iter()
        .map(|k| (k.kind.as_str(), k.key.as_str()))
        .unzip()
}

/// Seconds until every blocked key among `keys` lifts, if one is blocked.
pub(crate) async fn blocked_for(db: &sqlx::PgPool, keys: &[Key]) -> sqlx::Result<Option<u64>> {
    let (kinds, names) = columns(keys);
    let secs: Option<f64> = sqlx::query_scalar(
        "SELECT max(extract(epoch FROM blocked_until - now()))::float8 FROM login_throttles \
         WHERE (kind, key) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
         AND blocked_until > now()",
    )
    .bind(&kinds)
    .bind(&names)
    .fetch_one(db)
    .await?;
    Ok(secs.map(|s| s.ceil().max(1.0) as u64))
}

/// Counts an attempt against every key, unless one of them is blocked.
pub(crate) async fn count_attempt(db: &sqlx::PgPool, keys: &[Key]) -> sqlx::Result<Attempt> {
    let (kinds, names) = columns(keys);
    let mut tx = db.begin().await?;
    let rows: Vec<(String, String, i32)> = sqlx::query_as(
        "INSERT INTO login_throttles AS t (kind, key, failures, last_failure_at) \
         SELECT *, 1, now() FROM unnest($1::text[], $2::text[]) \
         ON CONFLICT (kind, key) DO UPDATE SET failures = CASE \
             WHEN t.last_failure_at < now() - make_interval(secs => $3) THEN 1 \
             ELSE least(t.failures + 1, 1000000) END, \
         last_failure_at = now(), blocked_until = NULL \
         WHERE t.blocked_until IS NULL OR t.blocked_until <= now() \
         RETURNING kind, key, failures",
    )
    .bind(&kinds)
    .bind(&names)
    .bind(WINDOW.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    if rows.len() < keys.len() {
        tx.rollback().await?;
        let secs = blocked_for(db, keys).await?.unwrap_or(1);
        return Ok(Attempt::Blocked(secs));
    }
    // The rows stay locked until the commit: no attempt slips in between.
    let mut blocked = Vec::new();
    for (kind, key, failures) in rows {
        let (Some(kind), Some(wait)) = (Kind::parse(&kind), delay(failures)) else {
            continue;
        };
        let until: DateTime<Utc> = sqlx::query_scalar(
            "UPDATE login_throttles SET blocked_until = now() + make_interval(secs => $3) \
             WHERE kind = $1 AND key = $2 RETURNING blocked_until",
        )
        .bind(kind.as_str())
        .bind(&key)
        .bind(wait.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
        blocked.push((Key { kind, key }, failures, until));
    }
    tx.commit().await?;
    Ok(Attempt::Counted(blocked))
}

/// A successful sign-in: its username starts afresh; its address gets
/// back the attempt counted in advance.
pub(crate) async fn succeeded(db: &sqlx::PgPool, keys: &[Key]) -> sqlx::Result<()> {
    for k in keys {
        match k.kind {
            Kind::Username => {
                forget(db, k.kind, &k.key).await?;
            }
            Kind::Address => {
                // The key was not blocked when this attempt was counted
                // (else it would have been refused): any block is the
                // count's own, and goes with it.
                sqlx::query(
                    "UPDATE login_throttles SET failures = greatest(failures - 1, 0), \
                     blocked_until = NULL WHERE kind = $1 AND key = $2",
                )
                .bind(k.kind.as_str())
                .bind(&k.key)
                .execute(db)
                .await?;
            }
        }
    }
    Ok(())
}

/// Kind, key, failures, last failure, blocked until.
type ThrottleRow = (String, String, i32, DateTime<Utc>, Option<DateTime<Utc>>);

/// Keys at or over the threshold within the window, most recent first.
pub(crate) async fn list(db: &sqlx::PgPool, limit: i64) -> sqlx::Result<Vec<Throttle>> {
    let rows: Vec<ThrottleRow> = sqlx::query_as(
        "SELECT kind, key, failures, last_failure_at, blocked_until FROM login_throttles \
         WHERE failures >= $1 AND last_failure_at > now() - make_interval(secs => $2) \
         ORDER BY last_failure_at DESC LIMIT $3",
    )
    .bind(THRESHOLD)
    .bind(WINDOW.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await?;
    let throttle = |(kind, key, failures, last_failure_at, blocked_until)| Throttle {
        kind,
        key,
        failures,
        last_failure_at,
        blocked_until,
    };
    Ok(rows.into_iter().map(throttle).collect())
}

/// Forgets a key; whether it was there.
async fn forget<'e>(db: impl sqlx::PgExecutor<'e>, kind: Kind, key: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM login_throttles WHERE kind = $1 AND key = $2")
        .bind(kind.as_str())
        .bind(key)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// An administrator clears a key (audited); whether it was there.
pub(crate) async fn clear(
    db: &sqlx::PgPool,
    kind: Kind,
    key: &str,
    who: super::audit::Who<'_>,
) -> sqlx::Result<bool> {
    let mut tx = db.begin().await?;
    if !forget(&mut *tx, kind, key).await? {
        return Ok(false);
    }
    let detail = serde_json::json!({"kind": kind.as_str()});
    let action = super::AuditAction::LoginThrottleCleared;
    super::audit::record(&mut tx, who, action, key, detail).await?;
    tx.commit().await?;
    Ok(true)
}

async fn prune(db: &sqlx::PgPool) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM login_throttles WHERE last_failure_at < now() - make_interval(secs => $1) \
         AND (blocked_until IS NULL OR blocked_until < now())",
    )
    .bind(WINDOW.as_secs_f64())
    .execute(db)
    .await?;
    sqlx::query(
        "DELETE FROM login_throttles WHERE (kind, key) IN (SELECT kind, key FROM login_throttles \
         ORDER BY last_failure_at DESC OFFSET $1)",
    )
    .bind(MAX_ROWS)
    .execute(db)
    .await?;
    Ok(())
}

/// Drops forgotten keys now and then, until `shutdown`.
pub(crate) async fn prune_loop(db: sqlx::PgPool, shutdown: CancellationToken) {
    loop {
        if let Err(err) = prune(&db).await {
            tracing::warn!(error = %err, "cannot prune the sign-in throttles");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_the_fifth_failure_up_to_a_minute() {
        assert_eq!(delay(1), None);
        assert_eq!(delay(4), None);
        assert_eq!(delay(5), Some(Duration::from_secs(1)));
        assert_eq!(delay(6), Some(Duration::from_secs(2)));
        assert_eq!(delay(10), Some(Duration::from_secs(32)));
        assert_eq!(delay(11), Some(MAX_DELAY));
        assert_eq!(delay(1_000_000), Some(MAX_DELAY));
        assert_eq!(delay(i32::MIN), None);
    }

    #[test]
    fn keys_are_bounded_and_ipv6_counts_by_network() {
        let long = format!("Admin\u{7}\n{}", "x".repeat(500));
        let ks = keys(
            &long,
            Some(
                "2001:db8:1:2:3:4:5:6"
                    .parse()
                    .unwrap_or(IpAddr::from([0; 4])),
            ),
        );
        assert_eq!(ks[0].kind, Kind::Username);
        assert!(ks[0].key.starts_with("adminxxx"), "{}", ks[0].key);
        assert_eq!(ks[0].key.chars().count(), MAX_KEY);
        assert_eq!(ks[1].key, "2001:db8:1:2::/64");
        let mapped = keys("a", "::ffff:192.0.2.1".parse().ok());
        assert_eq!(mapped[1].key, "192.0.2.1");
        assert_eq!(keys("a", None).len(), 1);
    }
}

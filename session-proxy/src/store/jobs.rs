//! Jobs and their hosts. A job host moves `queued → running → ok | failed
//! | unreachable | canceled`, or `queued → skipped | canceled`; every move
//! is a conditional update, so two writers (the driver, a cancel on
//! another proxy) never both win. Changes are announced on the
//! [`CHANNEL`] notification channel with the job's id as payload.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::audit::{self, AuditAction, Who};

/// The Postgres notification channel job changes are announced on.
pub(crate) const CHANNEL: &str = "shellway_jobs";

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub id: Uuid,
    pub created_by: Option<Uuid>,
    pub owner: Option<String>,
    pub kind: String,
    pub label: String,
    pub spec: sqlx::types::Json<Value>,
    pub strategy: String,
    pub concurrency: i32,
    pub batch: Option<String>,
    pub max_failures: Option<String>,
    pub keep_going: bool,
    pub status: String,
    pub rerun_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Hosts per status, `{"ok": 3, "failed": 1}`.
    pub counts: sqlx::types::Json<Value>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct JobHostRow {
    pub host_id: Uuid,
    pub host_name: String,
    pub account: String,
    pub position: i32,
    pub session_id: Option<Uuid>,
    pub status: String,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    pub failed_step: Option<i32>,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub stdout_digest: Option<String>,
    pub stderr_digest: Option<String>,
}

const SELECT_JOB: &str =
    "SELECT j.id, j.created_by, u.username AS owner, j.kind, j.label, j.spec, \
     j.strategy, j.concurrency, j.batch, j.max_failures, j.keep_going, j.status, j.rerun_of, \
     j.created_at, j.ended_at, \
     COALESCE((SELECT jsonb_object_agg(status, n) FROM \
       (SELECT status, count(*) AS n FROM job_hosts WHERE job_id = j.id GROUP BY status) c), \
       '{}') AS counts \
     FROM jobs j LEFT JOIN users u ON u.id = j.created_by";

/// A job as it is written.
pub(crate) struct NewJob<'a> {
    pub id: Uuid,
    pub by: Who<'a>,
    pub kind: &'a str,
    pub label: &'a str,
    pub spec: &'a Value,
    pub strategy: &'a str,
    pub concurrency: i32,
    pub batch: Option<&'a str>,
    pub max_failures: Option<&'a str>,
    pub keep_going: bool,
    pub rerun_of: Option<Uuid>,
    /// The proxy that drives it.
    pub driver: &'a str,
}

/// One host of a new job, in the order hosts start.
pub(crate) struct NewJobHost<'a> {
    pub host_id: Uuid,
    pub host_name: &'a str,
    pub account: &'a str,
}

/// Writes a `running` job with its hosts `queued`, and its `job.start` (or
/// `job.rerun`) audit line.
pub(crate) async fn create(
    db: &PgPool,
    j: &NewJob<'_>,
    hosts: &[NewJobHost<'_>],
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO jobs (id, created_by, kind, label, spec, strategy, concurrency, batch, \
           max_failures, keep_going, status, rerun_of, driver, driven_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', $11, $12, now())",
    )
    .bind(j.id)
    .bind(j.by.map(|b| b.0))
    .bind(j.kind)
    .bind(j.label)
    .bind(sqlx::types::Json(j.spec))
    .bind(j.strategy)
    .bind(j.concurrency)
    .bind(j.batch)
    .bind(j.max_failures)
    .bind(j.keep_going)
    .bind(j.rerun_of)
    .bind(j.driver)
    .execute(&mut *tx)
    .await?;
    let ids: Vec<Uuid> = hosts.iter().map(|h| h.host_id).collect();
    let names: Vec<&str> = hosts.iter().map(|h| h.host_name).collect();
    let accounts: Vec<&str> = hosts.iter().map(|h| h.account).collect();
    sqlx::query(
        "INSERT INTO job_hosts (job_id, host_id, host_name, account, position, status) \
         SELECT $1, h, n, a, (p - 1)::int, 'queued' \
         FROM unnest($2::uuid[], $3::text[], $4::text[]) WITH ORDINALITY AS t(h, n, a, p)",
    )
    .bind(j.id)
    .bind(&ids)
    .bind(&names)
    .bind(&accounts)
    .execute(&mut *tx)
    .await?;
    let action = if j.rerun_of.is_some() {
        AuditAction::JobRerun
    } else {
        AuditAction::JobStart
    };
    let detail = json!({
        "kind": j.kind, "label": j.label, "hosts": hosts.len(), "rerun_of": j.rerun_of,
    });
    audit::record(&mut tx, j.by, action, &j.id.to_string(), detail).await?;
    notify(&mut tx, j.id).await?;
    tx.commit().await
}

pub(crate) async fn get(db: &PgPool, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_JOB} WHERE j.id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Jobs newest first, `owned_by` one user's (or everybody's), after the
/// job `before`.
pub(crate) async fn list(
    db: &PgPool,
    owned_by: Option<Uuid>,
    before: Option<Uuid>,
    limit: i64,
    polls: bool,
) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_JOB} WHERE ($1::uuid IS NULL OR j.created_by = $1) \
         AND ($2::uuid IS NULL OR (j.created_at, j.id) < \
              (SELECT c.created_at, c.id FROM jobs c WHERE c.id = $2)) \
         AND ($4 OR j.spec #> '{{request,poll}}' IS DISTINCT FROM 'true'::jsonb) \
         ORDER BY j.created_at DESC, j.id DESC LIMIT $3"
    )))
    .bind(owned_by)
    .bind(before)
    .bind(limit)
    .bind(polls)
    .fetch_all(db)
    .await
}

pub(crate) async fn hosts(db: &PgPool, job: Uuid) -> Result<Vec<JobHostRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT host_id, host_name, account, position, session_id, status, exit_code, \
           exit_signal, failed_step, error, started_at, ended_at, duration_ms, \
           stdout_digest, stderr_digest \
         FROM job_hosts WHERE job_id = $1 ORDER BY position",
    )
    .bind(job)
    .fetch_all(db)
    .await
}

/// Announces a change of `job` (delivered when `conn`'s transaction
/// commits).
pub(crate) async fn notify(conn: &mut PgConnection, job: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(job.to_string())
        .execute(conn)
        .await
        .map(drop)
}

/// Announces a change of the job `session` belongs to, if it is a job
/// host's session.
pub(crate) async fn notify_session(
    conn: &mut PgConnection,
    session: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_notify($1, job_id::text) FROM sessions WHERE id = $2 AND job_id IS NOT NULL",
    )
    .bind(CHANNEL)
    .bind(session)
    .execute(conn)
    .await
    .map(drop)
}

/// Marks a queued host `running` in its session, if the job still runs
/// and nobody canceled the host; `false` otherwise (then it must not
/// start).
pub(crate) async fn claim(
    db: &PgPool,
    job: Uuid,
    host: Uuid,
    session: Uuid,
    run: Uuid,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let claimed = sqlx::query(
        "UPDATE job_hosts SET status = 'running', session_id = $3, run_id = $4, started_at = now() \
         WHERE job_id = $1 AND host_id = $2 AND status = 'queued' \
           AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND status = 'running')",
    )
    .bind(job)
    .bind(host)
    .bind(session)
    .bind(run)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    notify(&mut tx, job).await?;
    tx.commit().await?;
    Ok(claimed)
}

/// A host claimed but never started (no session was written) goes back
/// to `queued`.
pub(crate) async fn requeue(db: &PgPool, job: Uuid, host: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE job_hosts SET status = 'queued', session_id = NULL, run_id = NULL, \
           started_at = NULL \
         WHERE job_id = $1 AND host_id = $2 AND status = 'running' \
           AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = job_hosts.session_id)",
    )
    .bind(job)
    .bind(host)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Whether the host is still claimed for `session` (not queued again
/// meanwhile). Asked once its session exists: from then on it cannot be
/// queued again.
pub(crate) async fn still_claimed(
    db: &PgPool,
    job: Uuid,
    host: Uuid,
    session: Uuid,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_hosts WHERE job_id = $1 AND host_id = $2 AND session_id = $3",
    )
    .bind(job)
    .bind(host)
    .bind(session)
    .fetch_one(db)
    .await?;
    Ok(n == 1)
}

/// A running host, with what its session and run say now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Progress {
    pub host_id: Uuid,
    pub session_id: Option<Uuid>,
    pub run_id: Option<Uuid>,
    pub cancel_requested: bool,
    /// Claimed long ago, and still no session: its proxy died between the
    /// claim and the request.
    pub never_started: bool,
    pub session_status: Option<String>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub run_status: Option<String>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    pub failed_step: Option<i32>,
    pub duration_ms: Option<i64>,
}

pub(crate) async fn running(db: &PgPool, job: Uuid) -> Result<Vec<Progress>, sqlx::Error> {
    sqlx::query_as(
        "SELECT jh.host_id, jh.session_id, jh.run_id, jh.cancel_requested, \
           (s.id IS NULL AND jh.started_at < now() - interval '30 seconds') AS never_started, \
           s.status AS session_status, s.error_kind, s.error, r.status AS run_status, \
           r.exit_code, r.exit_signal, r.failed_step, r.duration_ms \
         FROM job_hosts jh LEFT JOIN sessions s ON s.id = jh.session_id \
           LEFT JOIN runs r ON r.id = jh.run_id \
         WHERE jh.job_id = $1 AND jh.status = 'running' ORDER BY jh.position",
    )
    .bind(job)
    .fetch_all(db)
    .await
}

/// How a host ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub status: &'static str,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    pub failed_step: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
}

/// Ends a running host; `false` if it was not running.
pub(crate) async fn finish(
    db: &PgPool,
    job: Uuid,
    host: Uuid,
    o: &Outcome,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE job_hosts SET status = $3, exit_code = $4, exit_signal = $5, failed_step = $6, \
           error = $7, ended_at = now(), \
           duration_ms = COALESCE($8, (extract(epoch FROM now() - started_at) * 1000)::bigint) \
         WHERE job_id = $1 AND host_id = $2 AND status = 'running'",
    )
    .bind(job)
    .bind(host)
    .bind(o.status)
    .bind(o.exit_code)
    .bind(o.exit_signal.as_deref())
    .bind(o.failed_step)
    .bind(o.error.as_deref())
    .bind(o.duration_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    notify(&mut tx, job).await?;
    tx.commit().await?;
    Ok(done)
}

/// Every host still queued becomes `to` (`skipped` or `canceled`).
pub(crate) async fn end_queued(db: &PgPool, job: Uuid, to: &str) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let n = sqlx::query(
        "UPDATE job_hosts SET status = $2, ended_at = now() WHERE job_id = $1 AND status = 'queued'",
    )
    .bind(job)
    .bind(to)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    notify(&mut tx, job).await?;
    tx.commit().await?;
    Ok(n)
}

/// Ends a running job (`done` or `canceled`); `false` if it had ended.
pub(crate) async fn end(db: &PgPool, job: Uuid, to: &str) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let ended = sqlx::query(
        "UPDATE jobs SET status = $2, ended_at = now() WHERE id = $1 AND status = 'running'",
    )
    .bind(job)
    .bind(to)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    notify(&mut tx, job).await?;
    tx.commit().await?;
    Ok(ended)
}

/// Cancels hosts of a job (`None`: all of them): queued ones end
/// `canceled` now, running ones are marked to be canceled; returns the
/// sessions and runs to tell. Canceling every host also cancels the job
/// (audited `job.cancel`).
pub(crate) async fn cancel(
    db: &PgPool,
    job: Uuid,
    host: Option<Uuid>,
    by: Who<'_>,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    let mut tx = db.begin().await?;
    if host.is_none() {
        sqlx::query(
            "UPDATE jobs SET status = 'canceled', ended_at = now() \
             WHERE id = $1 AND status = 'running'",
        )
        .bind(job)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE job_hosts SET status = 'canceled', ended_at = now() \
         WHERE job_id = $1 AND status = 'queued' AND ($2::uuid IS NULL OR host_id = $2)",
    )
    .bind(job)
    .bind(host)
    .execute(&mut *tx)
    .await?;
    let running: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "UPDATE job_hosts SET cancel_requested = true \
         WHERE job_id = $1 AND status = 'running' AND ($2::uuid IS NULL OR host_id = $2) \
           AND session_id IS NOT NULL AND run_id IS NOT NULL \
         RETURNING session_id, run_id",
    )
    .bind(job)
    .bind(host)
    .fetch_all(&mut *tx)
    .await?;
    let detail = json!({"host": host});
    audit::record(
        &mut tx,
        by,
        AuditAction::JobCancel,
        &job.to_string(),
        detail,
    )
    .await?;
    notify(&mut tx, job).await?;
    tx.commit().await?;
    Ok(running)
}

/// Whether the host's cancel was asked for (after it was claimed).
pub(crate) async fn cancel_requested(
    db: &PgPool,
    job: Uuid,
    host: Uuid,
) -> Result<bool, sqlx::Error> {
    let asked: Option<bool> = sqlx::query_scalar(
        "SELECT jh.cancel_requested OR j.status = 'canceled' FROM job_hosts jh \
         JOIN jobs j ON j.id = jh.job_id WHERE jh.job_id = $1 AND jh.host_id = $2",
    )
    .bind(job)
    .bind(host)
    .fetch_optional(db)
    .await?;
    Ok(asked.unwrap_or(false))
}

/// One page of a host's recorded output (`stdout` or `stderr`), after
/// `after_seq`, at most `limit` chunks.
pub(crate) async fn output_page(
    db: &PgPool,
    session: Uuid,
    stream: &str,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<(i64, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, data FROM output_chunks WHERE session_id = $1 AND stream = $2 AND seq > $3 \
         ORDER BY seq LIMIT $4",
    )
    .bind(session)
    .bind(stream)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The running jobs a driver has not said anything of for `stale_s`:
/// their driver is gone.
pub(crate) async fn orphaned(db: &PgPool, stale_s: f64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM jobs j WHERE status IN ('running', 'canceled') \
           AND (driven_at IS NULL OR driven_at < now() - make_interval(secs => $1)) \
           AND EXISTS (SELECT 1 FROM job_hosts h WHERE h.job_id = j.id \
                       AND h.status IN ('queued', 'running')) \
         ORDER BY created_at LIMIT 100",
    )
    .bind(stale_s)
    .fetch_all(db)
    .await
}

/// Takes (or keeps) the driving of `job` for `proxy`, unless another
/// proxy drove it within `stale_s`.
pub(crate) async fn take(
    db: &PgPool,
    job: Uuid,
    proxy: &str,
    stale_s: f64,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE jobs SET driver = $2, driven_at = now() \
         WHERE id = $1 AND status IN ('running', 'canceled') \
           AND (driver IS NULL OR driver = $2 OR driven_at IS NULL \
                OR driven_at < now() - make_interval(secs => $3))",
    )
    .bind(job)
    .bind(proxy)
    .bind(stale_s)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// SHA-256 (hex) of the whole stdout and stderr of each of `sessions`, in
/// one query whose rows are hashed as they arrive (in the primary key's
/// order, so nothing is sorted): the memory it takes does not grow with
/// the output.
pub(crate) async fn stream_digests(
    db: &PgPool,
    sessions: &[Uuid],
) -> Result<HashMap<Uuid, [String; 2]>, sqlx::Error> {
    use futures_util::TryStreamExt;
    use sha2::{Digest, Sha256};
    let mut hashes: HashMap<Uuid, [Sha256; 2]> = sessions
        .iter()
        .map(|s| (*s, [Sha256::new(), Sha256::new()]))
        .collect();
    let mut rows = sqlx::query_as::<_, (Uuid, String, Vec<u8>)>(
        "SELECT session_id, stream, data FROM output_chunks \
         WHERE session_id = ANY($1) AND stream IN ('stdout', 'stderr') ORDER BY session_id, seq",
    )
    .bind(sessions)
    .fetch(db);
    while let Some((session, stream, data)) = rows.try_next().await? {
        if let Some(h) = hashes.get_mut(&session) {
            h[usize::from(stream == "stderr")].update(&data);
        }
    }
    Ok(hashes
        .into_iter()
        .map(|(s, [o, e])| (s, [hex::encode(o.finalize()), hex::encode(e.finalize())]))
        .collect())
}

/// Keeps the digests of ended hosts' streams, `(host, [stdout, stderr])`,
/// in one statement (first writer wins).
pub(crate) async fn save_digests(
    db: &PgPool,
    job: Uuid,
    digests: &[(Uuid, [String; 2])],
) -> Result<(), sqlx::Error> {
    let hosts: Vec<Uuid> = digests.iter().map(|(h, _)| *h).collect();
    let stdout: Vec<&str> = digests.iter().map(|(_, d)| d[0].as_str()).collect();
    let stderr: Vec<&str> = digests.iter().map(|(_, d)| d[1].as_str()).collect();
    sqlx::query(
        "UPDATE job_hosts j SET stdout_digest = d.o, stderr_digest = d.e \
         FROM unnest($2::uuid[], $3::text[], $4::text[]) AS d(h, o, e) \
         WHERE j.job_id = $1 AND j.host_id = d.h AND j.stdout_digest IS NULL",
    )
    .bind(job)
    .bind(hosts)
    .bind(stdout)
    .bind(stderr)
    .execute(db)
    .await
    .map(drop)
}

/// The output messages that hold the last `bytes` of each stream of
/// `sessions` (however small the messages), in order: `(session, stream,
/// data)`.
pub(crate) async fn tails(
    db: &PgPool,
    sessions: &[Uuid],
    bytes: i64,
) -> Result<Vec<(Uuid, String, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT session_id, stream, data FROM ( \
           SELECT session_id, stream, data, seq, \
             coalesce(sum(length(data)) OVER (PARTITION BY session_id, stream ORDER BY seq DESC \
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS later \
           FROM output_chunks WHERE session_id = ANY($1) AND stream IN ('stdout', 'stderr')) t \
         WHERE later < $2 ORDER BY session_id, stream, seq",
    )
    .bind(sessions)
    .bind(bytes)
    .fetch_all(db)
    .await
}

/// New output of each of `sessions` after its own cursor (`after[i]`), at
/// most `limit` messages each, in order: `(session, seq, stream, data)`.
pub(crate) async fn output_after(
    db: &PgPool,
    sessions: &[Uuid],
    after: &[i64],
    limit: i64,
) -> Result<Vec<(Uuid, i64, String, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.session_id, c.seq, c.stream, c.data \
         FROM unnest($1::uuid[], $2::bigint[]) AS t(s, a) \
         JOIN LATERAL (SELECT session_id, seq, stream, data FROM output_chunks \
           WHERE session_id = t.s AND seq > t.a AND stream IN ('stdout', 'stderr') \
           ORDER BY seq LIMIT $3) c ON true \
         ORDER BY c.session_id, c.seq",
    )
    .bind(sessions)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

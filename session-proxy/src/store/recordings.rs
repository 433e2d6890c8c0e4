//! Recordings: the output the recorder stores and what it writes beside
//! it (resizes, run markers, the size cap). Every write is idempotent (a key per
//! event), like the output's `(session, seq)`.

use std::collections::HashMap;

use serde_json::json;
use shellway_common::{Event, OutputMeta};
use sqlx::PgConnection;
use uuid::Uuid;

use super::audit::{self, AuditAction};

/// Longest command shown in a marker.
const LABEL_COMMAND: usize = 120;

/// Writes what `event` adds to the recording, after the recorder applied
/// it to the session and its runs.
pub(crate) async fn record_event(
    conn: &mut PgConnection,
    session: Uuid,
    event: &Event,
) -> Result<(), sqlx::Error> {
    match event {
        Event::Resized {
            seq,
            index,
            cols,
            rows,
        } => resized(conn, session, *seq, *index, *cols, *rows).await,
        Event::Started { run, command, .. } => run_started(conn, session, *run, command).await,
        Event::Completed {
            run,
            status,
            exit_code,
            exit_signal,
            failed_step,
            ..
        } => {
            let ending = Ending {
                status: status.as_str(),
                exit_code: *exit_code,
                exit_signal: exit_signal.as_deref(),
                failed_step: *failed_step,
            };
            run_ended(conn, session, *run, ending).await
        }
        _ => Ok(()),
    }
}

/// Stores output chunks; a `(session, seq)` stored before is skipped.
pub(crate) async fn insert_outputs(
    conn: &mut PgConnection,
    outputs: &[(Uuid, OutputMeta, &[u8])],
) -> Result<(), sqlx::Error> {
    let sessions: Vec<Uuid> = outputs.iter().map(|o| o.0).collect();
    let seqs: Vec<i64> = outputs.iter().map(|o| o.1.seq as i64).collect();
    let runs: Vec<Option<Uuid>> = outputs.iter().map(|o| o.1.run).collect();
    let streams: Vec<&str> = outputs.iter().map(|o| o.1.stream.as_str()).collect();
    let data: Vec<&[u8]> = outputs.iter().map(|o| o.2).collect();
    sqlx::query(
        "INSERT INTO output_chunks (session_id, seq, run_id, stream, data) \
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::bytea[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(sessions)
    .bind(seqs)
    .bind(runs)
    .bind(streams)
    .bind(data)
    .execute(conn)
    .await
    .map(drop)
}

/// The PTY took a new size after output `seq`.
async fn resized(
    conn: &mut PgConnection,
    session: Uuid,
    seq: u64,
    index: u32,
    cols: u16,
    rows: u16,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recording_events (session_id, seq, key, kind, cols, rows) \
         VALUES ($1, $2, $3, 'resize', $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(session)
    .bind(seq as i64)
    .bind(format!("resize:{index}"))
    .bind(i32::from(cols))
    .bind(i32::from(rows))
    .execute(&mut *conn)
    .await
    .map(drop)
}

/// A marker after the session's last recorded output. The recorder gets a
/// session's messages in the order the runner published them, so that is
/// where the runner was when it published the event.
async fn mark(
    conn: &mut PgConnection,
    session: Uuid,
    key: String,
    label: String,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recording_events (session_id, seq, key, kind, label) \
         VALUES ($1, COALESCE((SELECT max(seq) FROM output_chunks WHERE session_id = $1), 0), \
           $2, 'marker', $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(session)
    .bind(key)
    .bind(label)
    .execute(&mut *conn)
    .await
    .map(drop)
}

async fn run_started(
    conn: &mut PgConnection,
    session: Uuid,
    run: Uuid,
    command: &str,
) -> Result<(), sqlx::Error> {
    let label = format!("run started: {}", short(command));
    mark(conn, session, format!("run-start:{run}"), label).await
}

/// How a run ended, for its marker.
pub(crate) struct Ending<'a> {
    pub(crate) status: &'a str,
    pub(crate) exit_code: Option<i32>,
    pub(crate) exit_signal: Option<&'a str>,
    pub(crate) failed_step: Option<u32>,
}

pub(crate) async fn run_ended(
    conn: &mut PgConnection,
    session: Uuid,
    run: Uuid,
    ending: Ending<'_>,
) -> Result<(), sqlx::Error> {
    let command: Option<String> = sqlx::query_scalar("SELECT command FROM runs WHERE id = $1")
        .bind(run)
        .fetch_optional(&mut *conn)
        .await?;
    let label = end_label(command.as_deref().unwrap_or(""), &ending);
    mark(conn, session, format!("run-end:{run}"), label).await
}

/// End markers for the runs that were running when their session ended
/// (`lost`, or closed under them): no `completed` came for them.
pub(crate) async fn runs_cut_short(
    conn: &mut PgConnection,
    session: Uuid,
    runs: &[Uuid],
    status: &str,
) -> Result<(), sqlx::Error> {
    for run in runs {
        let ending = Ending {
            status,
            exit_code: None,
            exit_signal: None,
            failed_step: None,
        };
        run_ended(&mut *conn, session, *run, ending).await?;
    }
    Ok(())
}

fn end_label(command: &str, e: &Ending<'_>) -> String {
    let mut detail = Vec::new();
    if let Some(code) = e.exit_code {
        detail.push(format!("exit {code}"));
    }
    if let Some(signal) = e.exit_signal {
        detail.push(format!("signal {signal}"));
    }
    if let Some(step) = e.failed_step {
        detail.push(format!("step {step}"));
    }
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({})", detail.join(", "))
    };
    format!("run {}: {}{detail}", e.status, short(command))
}

/// A command on one line, cut to LABEL_COMMAND characters.
fn short(command: &str) -> String {
    let one_line = command.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(LABEL_COMMAND) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// Which of `outputs` are stored under the size cap: the others are kept
/// as empty chunks (their seq stays, so resuming viewers see no gap), and
/// a marker says where storing stopped. Output of a session with no row
/// yet is stored.
pub(crate) async fn admit(
    conn: &mut PgConnection,
    outputs: &[(Uuid, OutputMeta, &[u8])],
    cap: u64,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut offered: HashMap<Uuid, i64> = HashMap::new();
    for (session, _, data) in outputs {
        *offered.entry(*session).or_default() += data.len() as i64;
    }
    let (ids, bytes): (Vec<Uuid>, Vec<i64>) = offered.into_iter().unzip();
    let before: Vec<(Uuid, i64)> = sqlx::query_as(
        "UPDATE sessions s SET recorded_bytes = s.recorded_bytes + d.n \
         FROM UNNEST($1::uuid[], $2::bigint[]) AS d(id, n) WHERE s.id = d.id \
         RETURNING s.id, s.recorded_bytes - d.n",
    )
    .bind(ids)
    .bind(bytes)
    .fetch_all(&mut *conn)
    .await?;
    let mut used: HashMap<Uuid, i64> = before.into_iter().collect();
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    let mut keep = Vec::with_capacity(outputs.len());
    let mut stopped = Vec::new();
    for (session, meta, data) in outputs {
        let Some(total) = used.get_mut(session) else {
            keep.push(true);
            continue;
        };
        let was = *total;
        *total += data.len() as i64;
        let fits = *total <= cap;
        if !fits && was <= cap {
            stopped.push((*session, meta.seq.saturating_sub(1), was));
        }
        keep.push(fits);
    }
    for (session, seq, stored) in stopped {
        stop_storing(conn, session, seq, stored, cap).await?;
    }
    Ok(keep)
}

async fn stop_storing(
    conn: &mut PgConnection,
    session: Uuid,
    seq: u64,
    stored: i64,
    cap: i64,
) -> Result<(), sqlx::Error> {
    let label = format!(
        "recording stopped: {stored} bytes stored, the limit is {cap} \
         (SHELLWAY_RECORDING_MAX_BYTES); later output was not kept"
    );
    let added = sqlx::query(
        "INSERT INTO recording_events (session_id, seq, key, kind, label) \
         VALUES ($1, $2, 'truncated', 'marker', $3) ON CONFLICT DO NOTHING",
    )
    .bind(session)
    .bind(seq as i64)
    .bind(label)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if added > 0 {
        tracing::info!(session_id = %session, stored, cap, "recording size limit reached; later output is not stored");
        let detail = json!({"stored_bytes": stored, "max_bytes": cap, "after_seq": seq});
        let target = session.to_string();
        audit::record(conn, None, AuditAction::RecordingTruncated, &target, detail).await?;
    }
    Ok(())
}

/// When the session's recording was deleted by retention, if it was.
pub(crate) async fn deleted_at(
    db: &sqlx::PgPool,
    session: Uuid,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT recording_deleted_at FROM sessions WHERE id = $1")
        .bind(session)
        .fetch_one(db)
        .await
}

/// The last bytes of terminal output up to `seq` (looking a few chunks
/// back at most): a character they start is finished on the next page.
pub(crate) async fn pty_tail(
    db: &sqlx::PgPool,
    session: Uuid,
    seq: i64,
) -> Result<Vec<u8>, sqlx::Error> {
    let tail: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT substring(data FROM greatest(length(data) - 2, 1)) FROM output_chunks \
         WHERE session_id = $1 AND seq <= $2 AND seq > $2 - 16 AND stream = 'pty' \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(session)
    .bind(seq)
    .fetch_optional(db)
    .await?;
    Ok(tail.unwrap_or_default())
}

/// The first seq of the last `window` bytes of terminal output.
pub(crate) async fn tail_start(
    db: &sqlx::PgPool,
    session: Uuid,
    window: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(seq) FROM (SELECT seq, sum(length(data)) OVER (ORDER BY seq DESC) AS total \
         FROM output_chunks WHERE session_id = $1 AND stream = 'pty') t WHERE total <= $2",
    )
    .bind(session)
    .bind(window)
    .fetch_one(db)
    .await
}

/// Bytes recorded in the first `rows` chunks after `after`.
pub(crate) async fn bytes_after(
    db: &sqlx::PgPool,
    session: Uuid,
    after: i64,
    rows: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT sum(length(data))::bigint FROM (SELECT data FROM output_chunks \
         WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3) t",
    )
    .bind(session)
    .bind(after)
    .bind(rows)
    .fetch_one(db)
    .await
}

/// Chunks recorded with `from < seq <= upto`.
pub(crate) async fn count_between(
    db: &sqlx::PgPool,
    session: Uuid,
    from: i64,
    upto: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM output_chunks WHERE session_id = $1 AND seq > $2 AND seq <= $3",
    )
    .bind(session)
    .bind(from)
    .bind(upto)
    .fetch_one(db)
    .await
}

/// Seq, stream, run and bytes of up to `limit` chunks with
/// `from < seq <= upto`, in order.
pub(crate) async fn chunks(
    db: &sqlx::PgPool,
    session: Uuid,
    from: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<(i64, String, Option<Uuid>, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, stream, run_id, data FROM output_chunks \
         WHERE session_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
    )
    .bind(session)
    .bind(from)
    .bind(upto)
    .bind(limit)
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_labels_say_how_the_run_ended() {
        let e = Ending {
            status: "failed",
            exit_code: Some(3),
            exit_signal: None,
            failed_step: Some(2),
        };
        assert_eq!(
            end_label("make\n  test", &e),
            "run failed: make test (exit 3, step 2)"
        );
        let e = Ending {
            status: "lost",
            exit_code: None,
            exit_signal: None,
            failed_step: None,
        };
        assert_eq!(end_label("sleep 9", &e), "run lost: sleep 9");
    }

    #[test]
    fn long_commands_are_cut() {
        let long = "x".repeat(500);
        let s = short(&long);
        assert_eq!(s.chars().count(), LABEL_COMMAND + 1);
        assert!(s.ends_with('…'));
    }
}

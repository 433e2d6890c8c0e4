//! `GET /ws/jobs/{id}`: a job, live. JSON text frames, server to client:
//! `job` (first, and when the job's status changes), `host` (a host's
//! result whenever it changes), `output` (new stdout or stderr of a host,
//! in order, each stream apart) and `end` (the job is over; the socket
//! closes). Changes are learned from the job's notifications (at most one
//! look per [`TICK`]) and output from the recording: one query per tick
//! for every host still producing, so a job of any size costs no broker
//! consumer.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::{job_results, jobs, Action, ServiceError};
use crate::state::AppState;
use crate::store;

/// The most often a job is looked at.
const TICK: Duration = Duration::from_millis(250);
/// A look at new output even without a notification; the hosts are read
/// again every [`HOSTS_EVERY`] looks without one (a listener may have
/// missed a notification).
const IDLE_LOOK: Duration = Duration::from_secs(1);
const HOSTS_EVERY: u32 = 5;
/// Output messages read per host per look.
const OUTPUT_PAGE: i64 = 32;

pub(crate) async fn upgrade(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    jobs::load(&st, &user, id, Action::View).await?;
    Ok(ws.on_upgrade(move |socket| async move {
        if let Err(err) = follow(st, id, socket).await {
            tracing::debug!(job_id = %id, error = %err, "job WebSocket ended");
        }
    }))
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("the client went away")]
    Gone,
}

/// Where a host's output was read up to, and the bytes of a character
/// cut in two by a message boundary, per stream.
#[derive(Default)]
struct Cursor {
    seq: i64,
    partial: HashMap<String, Vec<u8>>,
    /// The host ended.
    drained: bool,
    /// Reads that found nothing new since it ended.
    empty_after_end: u8,
}

/// Reads a host's output goes on getting after it ended with nothing new:
/// proxies share the recorder's queue, so the last output may be stored
/// by another proxy a moment after the ending.
const READS_AFTER_END: u8 = 2;

async fn follow(st: AppState, id: Uuid, mut socket: WebSocket) -> Result<(), FollowError> {
    let mut changes = st.jobs.changes();
    let mut job_status = String::new();
    let mut hosts: HashMap<Uuid, Value> = HashMap::new();
    let mut cursors: HashMap<Uuid, Cursor> = HashMap::new();
    let mut owners: HashMap<Uuid, Uuid> = HashMap::new();
    let mut over = None;
    let mut dirty = true;
    let mut quiet_looks = 0;
    loop {
        // The hosts are read again when told of a change (or now and
        // then); new output at every look.
        quiet_looks += 1;
        if dirty || quiet_looks >= HOSTS_EVERY {
            dirty = false;
            quiet_looks = 0;
            let row = store::jobs::get(&st.db, id)
                .await?
                .ok_or(ServiceError::NotFound("job"))?;
            if row.status != job_status {
                job_status = row.status.clone();
                let frame = json!({"type": "job", "job": job_results::summary(&row)});
                send(&mut socket, frame).await?;
            }
            for h in job_results::host_results(&st, id).await? {
                let value = serde_json::to_value(&h).unwrap_or_default();
                if hosts.get(&h.host_id) != Some(&value) {
                    hosts.insert(h.host_id, value.clone());
                    send(&mut socket, json!({"type": "host", "host": value})).await?;
                }
                if let Some(session) = h.session_id {
                    owners.insert(session, h.host_id);
                    let c = cursors.entry(session).or_default();
                    c.drained = c.drained || !matches!(h.status.as_str(), "queued" | "running");
                }
            }
            over = jobs::is_over(&row).then(|| job_results::summary(&row));
        }
        let more = stream_output(&st, &mut socket, &mut cursors, &owners).await?;
        let all_read = cursors.values().all(|c| c.seq < 0);
        if let (Some(summary), false, true) = (&over, more, all_read) {
            send(&mut socket, json!({"type": "end", "job": summary})).await?;
            let _ = socket.send(Message::Close(None)).await;
            return Ok(());
        }
        if more {
            // More output is waiting: read on at once.
            continue;
        }
        // Hosts producing output (or just ended) are read twice as often.
        let producing = cursors.values().any(|c| c.seq >= 0);
        let wait = if producing { IDLE_LOOK / 2 } else { IDLE_LOOK };
        tokio::select! {
            _ = st.shutdown.cancelled() => return Ok(()),
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Err(FollowError::Gone),
                Some(Ok(_)) => {}
            },
            _ = crate::jobs::changed(&mut changes, id) => { dirty = true; }
            _ = tokio::time::sleep(wait) => {}
        }
        // Let a burst of changes gather into one look.
        tokio::time::sleep(TICK).await;
    }
}

/// Sends the new output of every host still producing; `true` if some
/// host has more than one page waiting.
async fn stream_output(
    st: &AppState,
    socket: &mut WebSocket,
    cursors: &mut HashMap<Uuid, Cursor>,
    owners: &HashMap<Uuid, Uuid>,
) -> Result<bool, FollowError> {
    // A host that ended is read once more (its last output), then no more.
    let open: Vec<(Uuid, i64)> = cursors
        .iter()
        .filter(|(_, c)| c.seq >= 0)
        .map(|(s, c)| (*s, c.seq))
        .collect();
    if open.is_empty() {
        return Ok(false);
    }
    let sessions: Vec<Uuid> = open.iter().map(|(s, _)| *s).collect();
    let after: Vec<i64> = open.iter().map(|(_, a)| *a).collect();
    let rows = store::jobs::output_after(&st.db, &sessions, &after, OUTPUT_PAGE).await?;
    let mut read: HashMap<Uuid, i64> = HashMap::new();
    for (session, seq, stream, data) in rows {
        *read.entry(session).or_default() += 1;
        let Some(c) = cursors.get_mut(&session) else {
            continue;
        };
        c.seq = seq;
        let mut bytes = c.partial.remove(&stream).unwrap_or_default();
        bytes.extend(data);
        let (text, rest) = split_utf8(bytes);
        if !rest.is_empty() {
            c.partial.insert(stream.clone(), rest);
        }
        if text.is_empty() {
            continue;
        }
        let host = owners.get(&session).copied().unwrap_or_default();
        let frame = json!({"type": "output", "host_id": host, "stream": stream, "data": text});
        send(socket, frame).await?;
    }
    let mut more = false;
    for (session, c) in cursors.iter_mut() {
        let got = read.get(session).copied().unwrap_or(0);
        if got >= OUTPUT_PAGE {
            more = true;
        } else if c.drained && got == 0 {
            c.empty_after_end += 1;
            if c.empty_after_end >= READS_AFTER_END {
                // Read to the end after it ended: done with this host.
                c.seq = -1;
            }
        }
    }
    Ok(more)
}

/// The longest valid UTF-8 prefix as text, and the bytes of a character
/// cut at the end (invalid bytes elsewhere become U+FFFD).
fn split_utf8(bytes: Vec<u8>) -> (String, Vec<u8>) {
    match std::str::from_utf8(&bytes) {
        Ok(_) => (String::from_utf8(bytes).unwrap_or_default(), Vec::new()),
        Err(e) if e.error_len().is_none() => {
            let cut = e.valid_up_to();
            (
                String::from_utf8_lossy(&bytes[..cut]).into_owned(),
                bytes[cut..].to_vec(),
            )
        }
        Err(_) => (String::from_utf8_lossy(&bytes).into_owned(), Vec::new()),
    }
}

async fn send(socket: &mut WebSocket, frame: Value) -> Result<(), FollowError> {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .map_err(|_| FollowError::Gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_in_two_waits_for_its_end() {
        let euro = "€".as_bytes();
        let (text, rest) = split_utf8([b"ab".as_slice(), &euro[..2]].concat());
        assert_eq!((text.as_str(), rest.as_slice()), ("ab", &euro[..2]));
        let (text, rest) = split_utf8([rest.as_slice(), &euro[2..]].concat());
        assert_eq!((text.as_str(), rest.len()), ("€", 0));
    }
}

//! One panel command on one host, as an exec run through the runners: a
//! session without a shell on the host's account, one run in it, its
//! output gathered from the session's live feed, then the session ends.
//! Recorded and audited like any run (`session.open`, `run.start`, its
//! output in the recording).

use std::time::Duration;

use shellway_common::control::{RunKind, RunSpec};
use shellway_common::{Control, Event, PtySize, RunStatus, SessionStatus, Stream};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use uuid::Uuid;

use super::outcome::HostRun;
use crate::auth::AuthUser;
use crate::bus::Report;
use crate::service::{sessions, ServiceError};
use crate::state::AppState;
use crate::store;
use crate::store::access::AccountRow;
use crate::store::hosts::HostRow;

/// Most output kept of one run (a journal of 5,000 long lines fits).
const MAX_OUTPUT: usize = 8 << 20;

fn run_status(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Ok => "ok",
        RunStatus::Failed => "failed",
        RunStatus::Canceled => "canceled",
        RunStatus::Queued | RunStatus::Running | RunStatus::Error | RunStatus::Lost => "error",
    }
}

fn push(buf: &mut String, data: &[u8]) {
    let room = MAX_OUTPUT.saturating_sub(buf.len());
    buf.push_str(&String::from_utf8_lossy(&data[..data.len().min(room)]));
}

/// A session that never opened: the host could not be reached (or would
/// not let us in).
fn unreachable(message: Option<&str>, status: SessionStatus) -> HostRun {
    HostRun {
        status: "unreachable".into(),
        error: Some(
            message
                .map(str::to_owned)
                .unwrap_or_else(|| format!("the connection ended {}", status.as_str())),
        ),
        ..HostRun::default()
    }
}

/// Runs `command` on `host` as `account` for `user` (who the caller has
/// decided may), within `limit`.
pub(crate) async fn run(
    st: &AppState,
    user: &AuthUser,
    host: &HostRow,
    account: &AccountRow,
    command: String,
    limit: Duration,
) -> Result<HostRun, ServiceError> {
    let session = Uuid::now_v7();
    // Subscribed before the runners hear of it: nothing is missed.
    let mut feed = st.fanout.subscribe(session).await;
    let pty = PtySize::default();
    sessions::request(st, user, session, host, account, pty, false).await?;
    let run = Uuid::now_v7();
    let new = store::runs::NewRun {
        id: run,
        session,
        kind: RunKind::Command.as_str(),
        label: &command,
        by: user.audit_id(),
    };
    store::runs::queue(&st.db, &new).await?;
    let spec = RunSpec {
        run,
        kind: RunKind::Command,
        label: command.clone(),
        steps: vec![command],
        by: user.username.clone(),
    };
    st.broker
        .publish_control(session, &Control::Run(spec), false)
        .await?;
    let deadline = Instant::now() + limit;
    let mut out = HostRun::default();
    let mut error = None;
    loop {
        let report = match tokio::time::timeout_at(deadline, feed.rx.recv()).await {
            Err(_) => {
                out.status = "error".into();
                error = Some(format!("no answer within {} s", limit.as_secs()));
                break;
            }
            Ok(Err(RecvError::Lagged(_))) => {
                error = Some("some output was lost on the way".into());
                continue;
            }
            Ok(Err(RecvError::Closed)) => {
                out.status = "error".into();
                break;
            }
            Ok(Ok(report)) => report,
        };
        match &*report {
            Report::Output { meta, data } if meta.run == Some(run) => match meta.stream {
                Stream::Stdout => push(&mut out.stdout, data),
                Stream::Stderr => push(&mut out.stderr, data),
                Stream::Pty => {}
            },
            Report::Event(Event::Completed {
                run: r,
                status,
                exit_code,
                ..
            }) if *r == run => {
                out.status = run_status(*status).into();
                out.exit_code = *exit_code;
                break;
            }
            Report::Event(Event::Error {
                message, run: r, ..
            }) if r.is_none_or(|r| r == run) => {
                error = Some(message.clone());
            }
            Report::Event(Event::Status {
                status, message, ..
            }) if !status.is_live() => {
                let message = message.as_deref().or(error.as_deref());
                out = unreachable(message, *status);
                break;
            }
            Report::Stored(s) if !s.status.is_live() => {
                let message = s.error.as_deref().or(error.as_deref());
                out = unreachable(message, s.status);
                break;
            }
            _ => {}
        }
    }
    if out.error.is_none() {
        out.error = error.filter(|_| out.status != "ok");
    }
    drop(feed);
    let reason = "the service command is done";
    if let Err(err) =
        sessions::end_with(st, session, reason, Some(&user.username), user.audit_id()).await
    {
        tracing::warn!(session_id = %session, error = %err, "cannot end a service command's session");
    }
    Ok(out)
}

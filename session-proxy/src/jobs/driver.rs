//! Drives one job: starts its hosts in order by the job's strategy
//! (`parallel` up to the concurrency, `rolling` one batch after another),
//! learns how each ended from its session and run (woken by the job's
//! notifications, or every [`POLL`]), stops starting hosts once failures
//! pass the threshold (the rest are `skipped`), and ends the job.

use std::time::Duration;

use chrono::Utc;
use shellway_common::control::{RunKind, RunSpec};
use shellway_common::{Control, PtySize, SessionRequest};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::service::jobs::{outcome, Plan};
use crate::service::{hosts, sessions, ServiceError};
use crate::state::AppState;
use crate::store::{self, jobs::JobRow};

/// How often a driver looks at its job without being told of a change.
const POLL: Duration = Duration::from_secs(1);
/// How long a driver lets notifications gather before it looks (hosts
/// often end together).
const GATHER: Duration = Duration::from_millis(20);

/// What a driver starts each host with (from the job's spec).
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct RunPlan {
    pub kind: RunKind,
    pub label: String,
    pub steps: Vec<String>,
}

pub(crate) async fn drive(st: AppState, job: Uuid, shutdown: CancellationToken) {
    let span = tracing::info_span!("job", job_id = %job);
    if let Err(err) = tracing::Instrument::instrument(drive_inner(&st, job, &shutdown), span).await
    {
        // Another proxy takes the job over once this one's claim is stale.
        tracing::warn!(job_id = %job, error = %err, "driving the job failed; leaving it to be taken over");
    }
}

async fn drive_inner(
    st: &AppState,
    job: Uuid,
    shutdown: &CancellationToken,
) -> Result<(), ServiceError> {
    let Some(row) = store::jobs::get(&st.db, job).await? else {
        return Ok(());
    };
    let plan = Plan::of(&row)?;
    let run: RunPlan = serde_json::from_value(row.spec.0["run"].clone())
        .map_err(|e| ServiceError::Internal(format!("job {job}: bad run in spec: {e}")))?;
    let mut changes = st.jobs.changes();
    let stale = crate::jobs::DRIVER_STALE.as_secs_f64();
    let mut told: std::collections::HashSet<Uuid> = Default::default();
    loop {
        if !store::jobs::take(&st.db, job, &st.jobs.proxy_id, stale).await? {
            // Another proxy drives it now.
            return Ok(());
        }
        for p in store::jobs::running(&st.db, job).await? {
            if p.never_started {
                // Claimed by a proxy that stopped before writing its
                // session: nothing ran, so it is started again.
                tracing::info!(host_id = %p.host_id, "a host was claimed but never started: queued again");
                store::jobs::requeue(&st.db, job, p.host_id).await?;
            } else if let Some(o) = outcome(&p) {
                store::jobs::finish(&st.db, job, p.host_id, &o).await?;
            } else if p.cancel_requested && told.insert(p.host_id) {
                tell_cancel(st, p.session_id, p.run_id).await;
            }
        }
        let hosts = store::jobs::hosts(&st.db, job).await?;
        let count = |s: &str| hosts.iter().filter(|h| h.status == s).count();
        let (running, queued) = (count("running"), count("queued"));
        let failures = count("failed") + count("unreachable");
        if queued > 0 && plan.must_stop(failures, hosts.len()) {
            tracing::info!(
                failures,
                "failure threshold passed: skipping the hosts not started"
            );
            store::jobs::end_queued(&st.db, job, "skipped").await?;
            continue;
        }
        if running == 0 && queued == 0 {
            // A canceled job stays `canceled`.
            store::jobs::end(&st.db, job, "done").await?;
            tracing::info!("job done");
            return Ok(());
        }
        let room = plan.room(running, hosts.len());
        // Side by side: each start is a few database round trips and a
        // publish (at most `room`, bounded by the concurrency or batch).
        let starts = hosts
            .iter()
            .filter(|h| h.status == "queued")
            .take(room)
            .map(|h| start_host(st, &row, &run, h));
        for started in futures_util::future::join_all(starts).await {
            started?;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(POLL) => {}
            _ = crate::jobs::changed(&mut changes, job) => tokio::time::sleep(GATHER).await,
        }
    }
}

async fn tell_cancel(st: &AppState, session: Option<Uuid>, run: Option<Uuid>) {
    let (Some(session), Some(run)) = (session, run) else {
        return;
    };
    let cancel = Control::Cancel { run: Some(run) };
    if let Err(err) = st.broker.publish_control(session, &cancel, false).await {
        tracing::warn!(session_id = %session, error = %err, "cannot tell a job host to cancel");
    }
}

/// Starts one host: its session (exec only, tagged with the job) with the
/// run in the request. A host that cannot be started ends `failed` with
/// the reason.
async fn start_host(
    st: &AppState,
    job: &JobRow,
    run: &RunPlan,
    h: &store::jobs::JobHostRow,
) -> Result<(), ServiceError> {
    let session = Uuid::now_v7();
    let run_id = Uuid::now_v7();
    if !store::jobs::claim(&st.db, job.id, h.host_id, session, run_id).await? {
        return Ok(());
    }
    if let Err(err) = open_host(st, job, run, h, session, run_id).await {
        let message = match &err {
            ServiceError::Db(_) | ServiceError::Internal(_) => {
                tracing::warn!(host = %h.host_name, error = %err, "cannot start a job host");
                "the host could not be started".to_owned()
            }
            other => other.to_string(),
        };
        let failed = store::jobs::Outcome {
            status: "failed",
            error: Some(message),
            ..Default::default()
        };
        store::jobs::finish(&st.db, job.id, h.host_id, &failed).await?;
        return Ok(());
    }
    if store::jobs::cancel_requested(&st.db, job.id, h.host_id).await? {
        tell_cancel(st, Some(session), Some(run_id)).await;
    }
    Ok(())
}

async fn open_host(
    st: &AppState,
    job: &JobRow,
    run: &RunPlan,
    h: &store::jobs::JobHostRow,
    session: Uuid,
    run_id: Uuid,
) -> Result<(), ServiceError> {
    let host = store::hosts::get(&st.db, h.host_id)
        .await?
        .ok_or_else(|| ServiceError::invalid("host", "the host was deleted"))?;
    let account = store::access::accounts(&st.db, host.id)
        .await?
        .into_iter()
        .find(|a| a.login == h.account)
        .ok_or_else(|| {
            ServiceError::invalid(
                "account",
                format!("the host has no account {:?}", h.account),
            )
        })?;
    let target = hosts::target(st, &host, &account).await?;
    let owner = job.created_by.zip(job.owner.as_deref());
    let owner_id = owner.ok_or_else(|| ServiceError::Internal("the job has no owner".into()))?;
    let pty = PtySize::default();
    let new = store::sessions::NewSession {
        id: session,
        host: host.id,
        host_name: &host.name,
        account: &account.login,
        owner: Some(owner_id),
        cols: pty.cols,
        rows: pty.rows,
        shell: false,
        job: Some(job.id),
    };
    store::sessions::create(&st.db, &new).await?;
    let queued = store::runs::NewRun {
        id: run_id,
        session,
        kind: run.kind.as_str(),
        label: &run.label,
        by: Some(owner_id),
    };
    store::runs::queue(&st.db, &queued).await?;
    if !store::jobs::still_claimed(&st.db, job.id, h.host_id, session).await? {
        // This proxy stalled and another queued the host again: it is not
        // ours to start any more.
        sessions::fail_unsent(st, session, "the job host was started elsewhere").await?;
        return Ok(());
    }
    let request = SessionRequest {
        session,
        owner: owner_id.1.to_owned(),
        host: target,
        pty,
        shell: false,
        requested_at: Utc::now(),
        idle_timeout_s: Some(st.settings.session_idle_timeout.as_secs()),
        run: Some(RunSpec {
            run: run_id,
            kind: run.kind,
            label: run.label.clone(),
            steps: run.steps.clone(),
            by: owner_id.1.to_owned(),
        }),
    };
    sessions::publish(st, &request).await?;
    tracing::info!(session_id = %session, host = %host.name, "job host started");
    Ok(())
}

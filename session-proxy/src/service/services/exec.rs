//! Panel reads (status polls, journal lines) on hosts: jobs of kind
//! `service` like the actions (one exec run per host through the runners,
//! recorded and audited like any run, checked against the `service`
//! grant for as long as they run), waited for here and read back whole.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use shellway_common::control::RunKind;
use uuid::Uuid;

use super::outcome::HostRun;
use super::panel::Target;
use crate::auth::AuthUser;
use crate::service::jobs::{self, JobKind, JobSpec, Strategy};
use crate::service::ServiceError;
use crate::state::AppState;
use crate::store;

/// Most output read back of one host's run (a journal of 5,000 long lines
/// fits).
const MAX_OUTPUT: usize = 8 << 20;
/// Output messages read at once.
const PAGE: i64 = 64;

/// A stream of a host's run, as text, up to [`MAX_OUTPUT`].
async fn read(st: &AppState, session: Option<Uuid>, stream: &str) -> Result<String, ServiceError> {
    let Some(session) = session else {
        return Ok(String::new());
    };
    let mut bytes = Vec::new();
    let mut after = 0;
    while bytes.len() < MAX_OUTPUT {
        let page = store::jobs::output_page(&st.db, session, stream, after, PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, data) in page {
            bytes.extend_from_slice(&data);
        }
    }
    bytes.truncate(MAX_OUTPUT);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Runs each target's command (targets with the same command share one
/// job), waits up to `limit`, and reads every host's result back, in the
/// targets' order. `request` says where the jobs come from.
pub(crate) async fn run_each(
    st: &AppState,
    user: &AuthUser,
    label: &str,
    request: &Value,
    work: Vec<(Target, String)>,
    limit: Duration,
) -> Result<Vec<(Target, HostRun)>, ServiceError> {
    let mut by_command: BTreeMap<String, Vec<(usize, Target)>> = BTreeMap::new();
    for (i, (target, command)) in work.into_iter().enumerate() {
        by_command.entry(command).or_default().push((i, target));
    }
    let mut started = Vec::new();
    for (command, targets) in by_command {
        let spec = JobSpec {
            kind: JobKind::Service,
            label: label.to_owned(),
            run_kind: RunKind::Command,
            steps: vec![command],
            hosts: targets
                .iter()
                .map(|(_, t)| (t.host.id, t.account.login.clone()))
                .collect(),
            strategy: Strategy::Parallel {
                concurrency: targets.len().clamp(1, 100) as u32,
            },
            max_failures: None,
            keep_going: true,
            request: request.clone(),
            rerun_of: None,
        };
        started.push((jobs::launch(st, user, spec).await?, targets));
    }
    let mut done = Vec::new();
    for (job, targets) in started {
        let row = jobs::wait(st, job, limit).await?;
        let late = !jobs::is_over(&row);
        if late {
            if let Err(err) = jobs::cancel(st, user, job, None).await {
                tracing::debug!(job_id = %job, error = %err, "cannot cancel a late panel read");
            }
        }
        let hosts = store::jobs::hosts(&st.db, job).await?;
        for (i, target) in targets {
            let Some(h) = hosts.iter().find(|h| h.host_id == target.host.id) else {
                continue;
            };
            let mut run = HostRun {
                status: h.status.clone(),
                exit_code: h.exit_code,
                stdout: read(st, h.session_id, "stdout").await?,
                stderr: read(st, h.session_id, "stderr").await?,
                error: h.error.clone(),
            };
            if late && matches!(h.status.as_str(), "queued" | "running") {
                run.status = "error".into();
                run.error = Some(format!("no answer within {} s", limit.as_secs()));
            }
            done.push((i, target, run));
        }
    }
    done.sort_by_key(|(i, _, _)| *i);
    Ok(done.into_iter().map(|(_, t, r)| (t, r)).collect())
}

//! Acting on a unit: an action on some of a service's hosts is a job
//! (kind `service`, one exec run per host through the runners, recorded
//! and audited like any job), and its feedback reads that job's hosts with
//! a person's explanation of each failure.

use serde_json::json;
use shellway_common::api::services::{
    ServiceActionHost, ServiceActionRequest, ServiceActionResult, ServiceActionStarted,
};
use shellway_common::control::RunKind;
use uuid::Uuid;

use super::outcome::{self, HostRun};
use super::panel::{self, Target};
use super::unit::UnitAction;
use super::{commands, Panel};
use crate::auth::AuthUser;
use crate::service::access::Access;
use crate::service::jobs::{self, JobKind, JobSpec, Strategy};
use crate::service::{job_results, Action, ServiceError};
use crate::state::AppState;
use crate::store;

/// Hosts acted on at once.
const CONCURRENCY: u32 = 10;

/// The command an action runs on each host.
fn command(panel: &Panel, action: UnitAction, lines: u32, follow: bool) -> String {
    match action {
        UnitAction::Status => commands::status(&[&panel.unit]).line(),
        UnitAction::Logs => commands::logs(&panel.unit, lines, follow).line(),
        change => commands::change(&panel.unit, change, panel.row.use_sudo)
            .map(|c| c.line())
            .unwrap_or_default(),
    }
}

/// `POST /api/services/{id}/actions`: checks the allowlist and the
/// caller's `service` grant on every host, then starts the job.
pub(crate) async fn start(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    req: ServiceActionRequest,
) -> Result<ServiceActionStarted, ServiceError> {
    let access = Access::load(st, user).await?;
    let (panel, hosts) = super::load(st, &access, id).await?;
    let action = UnitAction::parse(req.action.trim()).ok_or_else(|| {
        ServiceError::invalid(
            "action",
            format!(
                "actions are {}",
                UnitAction::ALL.map(UnitAction::as_str).join(", ")
            ),
        )
    })?;
    panel::allowed(&panel, action)?;
    if req.follow && action != UnitAction::Logs {
        return Err(ServiceError::invalid("follow", "only logs can be followed"));
    }
    let lines = panel::check_lines(req.lines)?;
    let targets: Vec<Target> =
        panel::targets(st, &access, &panel, hosts, req.hosts.as_deref()).await?;
    if req.follow && targets.len() != 1 {
        return Err(ServiceError::invalid(
            "hosts",
            "follow the logs of one host at a time",
        ));
    }
    let host_ids: Vec<Uuid> = targets.iter().map(|t| t.host.id).collect();
    let verb = if req.follow {
        "follow logs"
    } else {
        action.as_str()
    };
    let spec = JobSpec {
        kind: JobKind::Service,
        label: format!("{verb} {}", panel.row.unit),
        run_kind: RunKind::Command,
        steps: vec![command(&panel, action, lines, req.follow)],
        hosts: targets
            .into_iter()
            .map(|t| (t.host.id, t.account.login))
            .collect(),
        strategy: Strategy::Parallel {
            concurrency: CONCURRENCY,
        },
        max_failures: None,
        keep_going: true,
        request: json!({
            "service_id": id, "action": action.as_str(), "hosts": host_ids,
            "follow": req.follow, "lines": lines,
        }),
        rerun_of: None,
    };
    let job_id = jobs::launch(st, user, spec).await?;
    let detail = json!({
        "job": job_id, "action": action.as_str(), "unit": panel.row.unit,
        "hosts": host_ids, "follow": req.follow,
    });
    store::services::audit_action(&st.db, user.audit_id(), id, detail).await?;
    Ok(ServiceActionStarted {
        job_id,
        hosts: host_ids,
    })
}

/// `GET /api/services/{id}/actions/{job_id}`: each host's result, with
/// why it failed in words (the missing sudoers line when `sudo -n` asked
/// for a password).
pub(crate) async fn result(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    job_id: Uuid,
) -> Result<ServiceActionResult, ServiceError> {
    let access = Access::load(st, user).await?;
    let (panel, _) = super::load(st, &access, id).await?;
    let row = jobs::load(st, user, job_id, Action::View).await?;
    let request = &row.spec.0["request"];
    let ours = row.kind == JobKind::Service.as_str()
        && request["service_id"].as_str() == Some(id.to_string().as_str());
    if !ours {
        return Err(ServiceError::NotFound("job"));
    }
    let action = request["action"]
        .as_str()
        .and_then(UnitAction::parse)
        .unwrap_or(UnitAction::Status);
    let hosts = job_results::host_results(st, row.id)
        .await?
        .into_iter()
        .map(|h| {
            let line = (panel.row.use_sudo && action.changes())
                .then(|| commands::sudoers_line(&h.account, &panel.unit, action));
            let run = HostRun {
                status: h.status.clone(),
                exit_code: h.exit_code,
                stdout: h.stdout_tail.clone(),
                stderr: h.stderr_tail.clone(),
                error: h.error.clone(),
            };
            let settled = !matches!(h.status.as_str(), "queued" | "running");
            let error = settled
                .then(|| outcome::problem(&run, &h.account, line.as_deref()))
                .flatten();
            ServiceActionHost {
                host_id: h.host_id,
                host_name: h.host_name,
                status: h.status,
                exit_code: h.exit_code,
                session_id: h.session_id,
                stdout: h.stdout_tail,
                stderr: h.stderr_tail,
                error,
            }
        })
        .collect();
    Ok(ServiceActionResult {
        job_id,
        action: action.as_str().to_owned(),
        finished: jobs::is_over(&row),
        hosts,
    })
}

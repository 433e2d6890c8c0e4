//! Jobs: one command, saved task or script on many hosts. The rules:
//! which hosts a request reaches (and that the caller may run jobs on each
//! as the account), what runs, the strategy's bounds, who may read,
//! cancel and rerun a job, and how host results read and group. Running a
//! job is [`crate::jobs::driver`]'s.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};
use shellway_common::api::jobs::{JobRequest, RerunHosts};
use shellway_common::control::RunKind;
use shellway_common::Control;
use uuid::Uuid;

use super::access::Access;
use super::{authorize, Action, HostAction, Resource, ServiceError};
use crate::auth::AuthUser;
use crate::state::AppState;
use crate::store::{self, hosts::HostRow, jobs::JobRow};

use super::job_plan::strategy_of;
pub(crate) use super::job_plan::{outcome, Amount, Plan, Strategy};
pub(crate) use super::job_targets::resolve_targets;

/// Most hosts in one job.
pub(crate) const MAX_HOSTS: usize = 1000;
/// Longest command accepted.
const MAX_COMMAND: usize = 64 * 1024;

/// What a job runs, as the grants see it: `service` jobs need the
/// `service` action, every other job `job`.
pub(crate) fn host_action(kind: &str) -> HostAction {
    if kind == "service" {
        HostAction::Service
    } else {
        HostAction::Job
    }
}

/// What a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    Command,
    Task,
    Script,
    Service,
}

impl JobKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Task => "task",
            Self::Script => "script",
            Self::Service => "service",
        }
    }
}

/// A job to launch, checked by [`launch`]: what it is, the hosts with the
/// account on each, what runs on every host, and how hosts start.
#[derive(Debug, Clone)]
pub(crate) struct JobSpec {
    pub kind: JobKind,
    /// What people see: the command, `task: name`, `script: name`,
    /// `restart nginx`.
    pub label: String,
    pub run_kind: RunKind,
    /// Shell command lines run in order on each host; the first failing
    /// one fails the host.
    pub steps: Vec<String>,
    /// `(host id, account login)`, in start order.
    pub hosts: Vec<(Uuid, String)>,
    pub strategy: Strategy,
    pub max_failures: Option<Amount>,
    pub keep_going: bool,
    /// Shown as the job's `request` and repeated by a rerun; callers put
    /// their origin here (e.g. `{"service_id": …, "action": "restart"}`).
    pub request: Value,
    pub rerun_of: Option<Uuid>,
}

/// Writes the job and starts driving it on this proxy: every host must
/// exist, be one the caller may see, and allow the job's action as its
/// account.
pub(crate) async fn launch(
    st: &AppState,
    user: &AuthUser,
    spec: JobSpec,
) -> Result<Uuid, ServiceError> {
    if spec.hosts.is_empty() {
        return Err(ServiceError::invalid(
            "targets",
            "no host matches the targets",
        ));
    }
    if spec.hosts.len() > MAX_HOSTS {
        return Err(ServiceError::invalid(
            "targets",
            format!(
                "at most {MAX_HOSTS} hosts in one job ({} given)",
                spec.hosts.len()
            ),
        ));
    }
    if spec.steps.is_empty()
        || spec
            .steps
            .iter()
            .any(|s| s.len() > MAX_COMMAND || s.contains('\0'))
    {
        return Err(ServiceError::invalid(
            "command",
            "nothing to run, or a step too long or with a NUL byte",
        ));
    }
    if let Strategy::Parallel { concurrency } = spec.strategy {
        if !(1..=100).contains(&concurrency) {
            return Err(ServiceError::invalid(
                "concurrency",
                "concurrency is 1 to 100",
            ));
        }
    }
    if !st.broker.is_up() {
        return Err(crate::bus::BrokerError::NotConnected.into());
    }
    let access = Access::load(st, user).await?;
    let action = Action::Use(host_action(spec.kind.as_str()));
    let mut names = Vec::with_capacity(spec.hosts.len());
    let all: HashMap<Uuid, HostRow> = store::hosts::list(&st.db)
        .await?
        .into_iter()
        .map(|h| (h.id, h))
        .collect();
    let mut seen = HashSet::new();
    for (id, login) in &spec.hosts {
        if !seen.insert(*id) {
            return Err(ServiceError::invalid(
                "targets",
                format!("host {id} is named twice"),
            ));
        }
        let host = all
            .get(id)
            .filter(|h| access.sees(h))
            .ok_or(ServiceError::NotFound("host"))?;
        access.check(host, Some(login), action)?;
        names.push(host.name.clone());
    }
    let id = Uuid::now_v7();
    let (strategy, concurrency, batch) = match spec.strategy {
        Strategy::Parallel { concurrency } => ("parallel", concurrency as i32, None),
        Strategy::Rolling { batch } => ("rolling", 1, Some(batch.as_string())),
    };
    let max_failures = spec.max_failures.map(Amount::as_string);
    let stored = json!({
        "request": spec.request,
        "run": {"kind": spec.run_kind, "label": spec.label, "steps": spec.steps},
    });
    let job = store::jobs::NewJob {
        id,
        by: user.audit_id(),
        kind: spec.kind.as_str(),
        label: &spec.label,
        spec: &stored,
        strategy,
        concurrency,
        batch: batch.as_deref(),
        max_failures: max_failures.as_deref(),
        keep_going: spec.keep_going,
        rerun_of: spec.rerun_of,
        driver: &st.jobs.proxy_id,
    };
    let hosts: Vec<store::jobs::NewJobHost> = spec
        .hosts
        .iter()
        .zip(&names)
        .map(|((host_id, login), name)| store::jobs::NewJobHost {
            host_id: *host_id,
            host_name: name,
            account: login,
        })
        .collect();
    store::jobs::create(&st.db, &job, &hosts).await?;
    tracing::info!(job_id = %id, hosts = hosts.len(), user = %user.username, "job started");
    st.jobs.drive(st.clone(), id);
    Ok(id)
}

/// What a request runs: kind, label, run kind and steps.
async fn what_to_run(
    st: &AppState,
    req: &JobRequest,
) -> Result<(JobKind, String, RunKind, Vec<String>), ServiceError> {
    let given = [
        req.command.is_some(),
        req.task.is_some(),
        req.script_id.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ServiceError::invalid(
            "command",
            "give exactly one of command, task or script_id",
        ));
    }
    if let Some(cmd) = &req.command {
        let cmd = cmd.trim();
        if cmd.is_empty() {
            return Err(ServiceError::invalid("command", "the command is empty"));
        }
        if cmd.len() > MAX_COMMAND || cmd.contains('\0') {
            return Err(ServiceError::invalid(
                "command",
                "the command is too long or contains a NUL byte",
            ));
        }
        return Ok((
            JobKind::Command,
            cmd.to_owned(),
            RunKind::Command,
            vec![cmd.to_owned()],
        ));
    }
    if let Some(task) = &req.task {
        let command = super::library::task_for_job(st, &task.name, &task.params).await?;
        return Ok((
            JobKind::Task,
            format!("task: {}", task.name),
            RunKind::Task,
            vec![command],
        ));
    }
    let id = req.script_id.unwrap_or_default();
    let (name, body) = store::library::script_body(&st.db, id)
        .await?
        .ok_or_else(|| ServiceError::invalid("script_id", "no such saved script"))?;
    let steps = shellway_common::script::parse_script(&body)
        .map_err(|e| ServiceError::invalid("script_id", e.to_string()))?;
    Ok((
        JobKind::Script,
        format!("script: {name}"),
        RunKind::Batch,
        steps,
    ))
}

/// `POST /api/jobs`.
pub(crate) async fn start(
    st: &AppState,
    user: &AuthUser,
    req: JobRequest,
) -> Result<Uuid, ServiceError> {
    let (strategy, max_failures, keep_going) = strategy_of(&req)?;
    let (kind, label, run_kind, steps) = what_to_run(st, &req).await?;
    let hosts = resolve_targets(st, user, &req.targets, req.account.as_deref(), kind).await?;
    let request = serde_json::to_value(&req).unwrap_or_default();
    let spec = JobSpec {
        kind,
        label,
        run_kind,
        steps,
        hosts: hosts.into_iter().map(|(h, login)| (h.id, login)).collect(),
        strategy,
        max_failures,
        keep_going,
        request,
        rerun_of: None,
    };
    launch(st, user, spec).await
}

/// The job, if `user` may `action` it (read: its owner, auditors and
/// administrators; cancel and rerun: its owner and administrators).
pub(crate) async fn load(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    action: Action,
) -> Result<JobRow, ServiceError> {
    let row = store::jobs::get(&st.db, id)
        .await?
        .ok_or(ServiceError::NotFound("job"))?;
    let owner = row.created_by.unwrap_or_default();
    authorize(&user.actor(), action, Resource::Session { owner })?;
    Ok(row)
}

/// Jobs newest first: everybody's for those who see every session, else
/// the caller's own; service status reads only with `polls`.
pub(crate) async fn list(
    st: &AppState,
    user: &AuthUser,
    before: Option<Uuid>,
    limit: i64,
    polls: bool,
) -> Result<Vec<JobRow>, ServiceError> {
    let all = authorize(&user.actor(), Action::ListAll, Resource::Sessions).is_ok();
    let owned_by = (!all).then_some(user.id);
    Ok(store::jobs::list(&st.db, owned_by, before, limit, polls).await?)
}

/// Cancels a whole job, or one host of it (`host`): hosts not started end
/// `canceled`, running ones get INT, then TERM, then KILL.
pub(crate) async fn cancel(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    host: Option<Uuid>,
) -> Result<(), ServiceError> {
    let row = load(st, user, id, Action::Control).await?;
    if let Some(h) = host {
        let hosts = store::jobs::hosts(&st.db, id).await?;
        if !hosts.iter().any(|x| x.host_id == h) {
            return Err(ServiceError::NotFound("host"));
        }
    } else if row.status != "running" {
        return Err(ServiceError::conflict(
            "job_ended",
            format!("the job is already {}", row.status),
        ));
    }
    for (session, run) in store::jobs::cancel(&st.db, id, host, user.audit_id()).await? {
        let cancel = Control::Cancel { run: Some(run) };
        st.broker.publish_control(session, &cancel, false).await?;
    }
    Ok(())
}

/// Starts the job again on some of its hosts, with the same options:
/// `hosts` is `"failed"` (the default: failed, unreachable, skipped and
/// canceled hosts) or a list of the job's host ids.
pub(crate) async fn rerun(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    hosts: Option<&RerunHosts>,
) -> Result<Uuid, ServiceError> {
    let row = load(st, user, id, Action::Control).await?;
    let all = store::jobs::hosts(&st.db, id).await?;
    let chosen: Vec<(Uuid, String)> = match hosts {
        None => rerun_failed(&all),
        Some(RerunHosts::Named(s)) if s == "failed" => rerun_failed(&all),
        Some(RerunHosts::Ids(ids)) => {
            if ids.len() > MAX_HOSTS {
                return Err(ServiceError::invalid(
                    "hosts",
                    format!("at most {MAX_HOSTS} hosts"),
                ));
            }
            let mut out = Vec::new();
            for &want in ids {
                let h = all.iter().find(|h| h.host_id == want).ok_or_else(|| {
                    ServiceError::invalid("hosts", format!("host {want} is not part of the job"))
                })?;
                out.push((h.host_id, h.account.clone()));
            }
            out
        }
        Some(RerunHosts::Named(_)) => {
            return Err(ServiceError::invalid(
                "hosts",
                "hosts is \"failed\" or a list of host ids",
            ))
        }
    };
    if chosen.is_empty() {
        return Err(ServiceError::invalid("hosts", "no host to run again"));
    }
    let plan = Plan::of(&row)?;
    let run = &row.spec.0["run"];
    let steps: Vec<String> = serde_json::from_value(run["steps"].clone()).unwrap_or_default();
    let run_kind: RunKind = serde_json::from_value(run["kind"].clone()).unwrap_or(RunKind::Command);
    let kind = match row.kind.as_str() {
        "task" => JobKind::Task,
        "script" => JobKind::Script,
        "service" => JobKind::Service,
        _ => JobKind::Command,
    };
    let spec = JobSpec {
        kind,
        label: row.label.clone(),
        run_kind,
        steps,
        hosts: chosen,
        strategy: plan.strategy,
        max_failures: row
            .max_failures
            .as_deref()
            .map(|m| Amount::parse("max_failures", m))
            .transpose()?,
        keep_going: row.keep_going,
        request: row.spec.0["request"].clone(),
        rerun_of: Some(id),
    };
    launch(st, user, spec).await
}

/// Whether a job is over: not running, and no host left queued or running
/// (a canceled job's hosts may still be stopping).
pub(crate) fn is_over(row: &JobRow) -> bool {
    let busy = |s: &str| row.counts.0.get(s).and_then(Value::as_i64).unwrap_or(0) > 0;
    row.status != "running" && !busy("queued") && !busy("running")
}

/// Waits until job `id` is over (woken by its changes), or `limit`
/// passes; the job as it is then. (Service panels wait on their
/// actions' jobs with it.)
#[allow(dead_code)]
pub(crate) async fn wait(
    st: &AppState,
    id: Uuid,
    limit: std::time::Duration,
) -> Result<JobRow, ServiceError> {
    let mut changes = st.jobs.changes();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let row = store::jobs::get(&st.db, id)
            .await?
            .ok_or(ServiceError::NotFound("job"))?;
        if is_over(&row) || tokio::time::Instant::now() >= deadline {
            return Ok(row);
        }
        // A change of any job, or a second: look again.
        tokio::select! {
            _ = changes.recv() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The hosts "rerun failed" takes: every one that did not end `ok`.
fn rerun_failed(all: &[store::jobs::JobHostRow]) -> Vec<(Uuid, String)> {
    all.iter()
        .filter(|h| {
            matches!(
                h.status.as_str(),
                "failed" | "unreachable" | "skipped" | "canceled"
            )
        })
        .map(|h| (h.host_id, h.account.clone()))
        .collect()
}

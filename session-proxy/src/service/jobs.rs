//! Jobs: one command, saved task or script on many hosts. The rules:
//! which hosts a request reaches (and that the caller may run jobs on each
//! as the account), what runs, the strategy's bounds, who may read,
//! cancel and rerun a job, and how host results read and group. Running a
//! job is [`crate::jobs::driver`]'s.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Value};
use shellway_common::api::jobs::{JobRequest, RerunHosts, Targets};
use shellway_common::control::RunKind;
use shellway_common::Control;
use uuid::Uuid;

use super::access::{self, Access};
use super::{authorize, Action, HostAction, Resource, ServiceError};
use crate::auth::AuthUser;
use crate::state::AppState;
use crate::store::{self, hosts::HostRow, jobs::JobRow};

/// Most hosts in one job.
pub(crate) const MAX_HOSTS: usize = 1000;
/// Longest command accepted.
const MAX_COMMAND: usize = 64 * 1024;
/// Hosts running at once by default under `parallel`.
const DEFAULT_CONCURRENCY: u32 = 10;

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

/// How hosts start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// Up to `concurrency` hosts at once.
    Parallel { concurrency: u32 },
    /// `batch` hosts at a time, the next batch once the last has ended.
    Rolling { batch: Amount },
}

/// `N` hosts or `N%` of the job's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Amount {
    Count(u32),
    Percent(u32),
}

impl Amount {
    pub(crate) fn parse(field: &'static str, s: &str) -> Result<Self, ServiceError> {
        let bad = || ServiceError::invalid(field, format!("{field} is N or N% (got {s:?})"));
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => match p.parse::<u32>() {
                Ok(p) if p <= 100 => Ok(Self::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse::<u32>().map(Self::Count).map_err(|_| bad()),
        }
    }

    /// The amount among `total` hosts (a percentage rounds down).
    pub(crate) fn of(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n as usize,
            Self::Percent(p) => total * p as usize / 100,
        }
    }

    fn as_string(self) -> String {
        match self {
            Self::Count(n) => n.to_string(),
            Self::Percent(p) => format!("{p}%"),
        }
    }
}

/// A job's strategy and stop rule, as the driver applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub strategy: Strategy,
    /// Stop starting hosts once failures are more than this.
    pub max_failures: Option<Amount>,
}

impl Plan {
    pub(crate) fn of(row: &JobRow) -> Result<Self, ServiceError> {
        let strategy = match row.strategy.as_str() {
            "rolling" => Strategy::Rolling {
                batch: Amount::parse("batch", row.batch.as_deref().unwrap_or("1"))?,
            },
            _ => Strategy::Parallel {
                concurrency: row.concurrency.max(1) as u32,
            },
        };
        let max_failures = match &row.max_failures {
            Some(m) => Some(Amount::parse("max_failures", m)?),
            None if !row.keep_going => Some(Amount::Count(0)),
            None => None,
        };
        Ok(Self {
            strategy,
            max_failures,
        })
    }

    /// Whether `failures` among `total` hosts stop the job from starting more.
    pub(crate) fn must_stop(&self, failures: usize, total: usize) -> bool {
        self.max_failures.is_some_and(|m| failures > m.of(total))
    }

    /// How many more hosts of `total` may start while `running` run.
    pub(crate) fn room(&self, running: usize, total: usize) -> usize {
        match self.strategy {
            Strategy::Parallel { concurrency } => (concurrency as usize).saturating_sub(running),
            Strategy::Rolling { .. } if running > 0 => 0,
            // A batch of 0 (a small percentage) still moves: one host.
            Strategy::Rolling { batch } => batch.of(total).max(1),
        }
    }
}

/// How a running host ended, from its session and run (`None`: not yet).
pub(crate) fn outcome(p: &store::jobs::Progress) -> Option<store::jobs::Outcome> {
    use store::jobs::Outcome;
    let session = p.session_status.as_deref();
    let session_error = || p.error.clone();
    if matches!(session, Some("failed" | "rejected")) {
        let status = if p.error_kind.as_deref() == Some("unreachable") {
            "unreachable"
        } else {
            "failed"
        };
        return Some(Outcome {
            status,
            error: session_error().or_else(|| Some("the session failed".into())),
            ..Default::default()
        });
    }
    let ended = |status| Outcome {
        status,
        exit_code: p.exit_code,
        exit_signal: p.exit_signal.clone(),
        failed_step: p.failed_step,
        duration_ms: p.duration_ms,
        error: None,
    };
    match p.run_status.as_deref() {
        Some("ok") => Some(ended("ok")),
        Some("failed") => Some(ended("failed")),
        Some("canceled") if p.cancel_requested => Some(ended("canceled")),
        Some("canceled") => Some(Outcome {
            error: session_error().or_else(|| Some("the session ended before the run".into())),
            ..ended("failed")
        }),
        Some("error") => Some(Outcome {
            error: session_error().or_else(|| Some("the run could not execute".into())),
            ..ended("failed")
        }),
        Some("lost") => Some(Outcome {
            error: session_error().or_else(|| Some("the runner was lost".into())),
            ..ended("failed")
        }),
        _ => None,
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

/// The hosts `targets` reach that the caller may run `kind` jobs on, with
/// the account on each; explicit ids the caller cannot see are 404, ids
/// they may see but not use refused.
pub(crate) async fn resolve_targets(
    st: &AppState,
    user: &AuthUser,
    targets: &Targets,
    account: Option<&str>,
    kind: JobKind,
) -> Result<Vec<(HostRow, String)>, ServiceError> {
    let group = match &targets.group {
        Some(name) => Some(
            store::jobs::host_group(&st.db, name)
                .await?
                .ok_or_else(|| {
                    ServiceError::invalid("targets.group", format!("no host group named {name:?}"))
                })?,
        ),
        None => None,
    };
    let ids = targets.host_ids.as_deref().unwrap_or_default();
    let labels = targets.labels.as_ref();
    if ids.is_empty() && labels.is_none_or(BTreeMap::is_empty) && group.is_none() {
        return Err(ServiceError::invalid(
            "targets",
            "name hosts: host_ids, labels and/or group",
        ));
    }
    if ids.len() > MAX_HOSTS {
        return Err(ServiceError::invalid(
            "targets.host_ids",
            format!("at most {MAX_HOSTS} hosts"),
        ));
    }
    if let Some(problem) = labels.and_then(access::labels_problem) {
        return Err(ServiceError::invalid("targets.labels", problem));
    }
    let access = Access::load(st, user).await?;
    let action = Action::Use(host_action(kind.as_str()));
    let all = store::hosts::list(&st.db).await?;
    let by_id: HashMap<Uuid, &HostRow> = all.iter().map(|h| (h.id, h)).collect();
    let mut chosen: Vec<&HostRow> = Vec::new();
    let mut seen = HashSet::new();
    for id in ids {
        let host = by_id
            .get(id)
            .copied()
            .filter(|h| access.sees(h))
            .ok_or(ServiceError::NotFound("host"))?;
        if seen.insert(host.id) {
            chosen.push(host);
        }
    }
    let explicit = chosen.len();
    // Reached by a selector or a group: only hosts the caller may use.
    let usable = |h: &HostRow| access.check(h, None, action).is_ok();
    if let Some(g) = &group {
        for id in &g.host_ids {
            if let Some(h) = by_id.get(id).copied() {
                if usable(h) && seen.insert(h.id) {
                    chosen.push(h);
                }
            }
        }
    }
    let selectors = [
        labels,
        group.as_ref().and_then(|g| g.labels.as_ref().map(|l| &l.0)),
    ];
    for want in selectors.into_iter().flatten().filter(|l| !l.is_empty()) {
        for h in &all {
            let matches = want.iter().all(|(k, v)| h.labels.0.get(k) == Some(v));
            if matches && usable(h) && seen.insert(h.id) {
                chosen.push(h);
            }
        }
    }
    let ids: Vec<Uuid> = chosen.iter().map(|h| h.id).collect();
    let mut accounts: HashMap<Uuid, Vec<String>> = HashMap::new();
    for a in store::access::accounts_of(&st.db, &ids).await? {
        accounts.entry(a.host_id).or_default().push(a.login);
    }
    let mut out = Vec::new();
    for (i, host) in chosen.into_iter().enumerate() {
        let logins = accounts.remove(&host.id).unwrap_or_default();
        let login = match account {
            Some(a) if logins.iter().any(|l| l == a) => Some(a.to_owned()),
            Some(_) => None,
            None if logins.len() == 1 => logins.into_iter().next(),
            None => {
                if i < explicit {
                    return Err(ServiceError::invalid(
                        "account",
                        format!("host {} has {} accounts: name one", host.name, logins.len()),
                    ));
                }
                None
            }
        };
        let usable = login
            .as_deref()
            .is_some_and(|l| access.check(host, Some(l), action).is_ok());
        match login {
            Some(login) if usable => out.push((host.clone(), login)),
            // Explicitly named: say why it cannot be part of the job.
            Some(login) if i < explicit => {
                access.check(host, Some(&login), action)?;
            }
            None if i < explicit => {
                return Err(ServiceError::invalid(
                    "account",
                    format!(
                        "host {} has no account {:?}",
                        host.name,
                        account.unwrap_or("")
                    ),
                ))
            }
            // Reached by labels only: left out.
            _ => {}
        }
    }
    if out.len() > MAX_HOSTS {
        return Err(ServiceError::invalid(
            "targets",
            format!(
                "the targets reach {} hosts; at most {MAX_HOSTS} in one job",
                out.len()
            ),
        ));
    }
    Ok(out)
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

/// The strategy and stop rule a request asks for.
fn strategy_of(req: &JobRequest) -> Result<(Strategy, Option<Amount>, bool), ServiceError> {
    let strategy = match req.strategy.as_deref().unwrap_or("parallel") {
        "parallel" => {
            let concurrency = req.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
            if !(1..=100).contains(&concurrency) {
                return Err(ServiceError::invalid(
                    "concurrency",
                    "concurrency is 1 to 100",
                ));
            }
            if req.batch.is_some() {
                return Err(ServiceError::invalid(
                    "batch",
                    "batch is for the rolling strategy",
                ));
            }
            Strategy::Parallel { concurrency }
        }
        "rolling" => {
            let batch = Amount::parse("batch", req.batch.as_deref().unwrap_or("1"))?;
            if batch == Amount::Count(0) {
                return Err(ServiceError::invalid(
                    "batch",
                    "a batch has at least one host",
                ));
            }
            Strategy::Rolling { batch }
        }
        other => {
            return Err(ServiceError::invalid(
                "strategy",
                format!("unknown strategy {other:?} (use parallel or rolling)"),
            ))
        }
    };
    let max_failures = req
        .max_failures
        .as_deref()
        .map(|m| Amount::parse("max_failures", m))
        .transpose()?;
    Ok((strategy, max_failures, req.keep_going.unwrap_or(true)))
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
/// the caller's own.
pub(crate) async fn list(
    st: &AppState,
    user: &AuthUser,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<JobRow>, ServiceError> {
    let all = authorize(&user.actor(), Action::ListAll, Resource::Sessions).is_ok();
    let owned_by = (!all).then_some(user.id);
    Ok(store::jobs::list(&st.db, owned_by, before, limit).await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> store::jobs::Progress {
        store::jobs::Progress {
            host_id: Uuid::nil(),
            session_id: Some(Uuid::nil()),
            run_id: Some(Uuid::nil()),
            cancel_requested: false,
            never_started: false,
            session_status: Some("open".into()),
            error_kind: None,
            error: None,
            run_status: Some("running".into()),
            exit_code: None,
            exit_signal: None,
            failed_step: None,
            duration_ms: None,
        }
    }

    #[test]
    fn a_host_ends_as_its_run_or_its_session_says() {
        assert_eq!(outcome(&progress()), None);
        let ok = store::jobs::Progress {
            run_status: Some("ok".into()),
            exit_code: Some(0),
            ..progress()
        };
        assert_eq!(outcome(&ok).map(|o| o.status), Some("ok"));
        let unreachable = store::jobs::Progress {
            session_status: Some("failed".into()),
            error_kind: Some("unreachable".into()),
            error: Some("cannot connect to 127.0.0.1:1: refused".into()),
            run_status: Some("canceled".into()),
            ..progress()
        };
        let o = outcome(&unreachable).unwrap_or_default();
        assert_eq!(o.status, "unreachable");
        assert!(o.error.unwrap_or_default().contains("cannot connect"));
        let auth = store::jobs::Progress {
            error_kind: Some("ssh".into()),
            ..unreachable
        };
        assert_eq!(outcome(&auth).map(|o| o.status), Some("failed"));
        let canceled = store::jobs::Progress {
            run_status: Some("canceled".into()),
            cancel_requested: true,
            ..progress()
        };
        assert_eq!(outcome(&canceled).map(|o| o.status), Some("canceled"));
        let cut = store::jobs::Progress {
            cancel_requested: false,
            ..canceled
        };
        assert_eq!(outcome(&cut).map(|o| o.status), Some("failed"));
    }

    #[test]
    fn amounts_are_counts_or_percentages() {
        assert_eq!(Amount::parse("batch", "3").ok(), Some(Amount::Count(3)));
        assert_eq!(
            Amount::parse("batch", "25%").ok(),
            Some(Amount::Percent(25))
        );
        assert!(Amount::parse("batch", "101%").is_err());
        assert!(Amount::parse("batch", "-1").is_err());
        assert!(Amount::parse("batch", "x").is_err());
        assert_eq!(Amount::Percent(25).of(12), 3);
    }

    #[test]
    fn plans_bound_what_runs_and_when_to_stop() {
        let parallel = Plan {
            strategy: Strategy::Parallel { concurrency: 3 },
            max_failures: None,
        };
        assert_eq!(parallel.room(1, 10), 2);
        assert_eq!(parallel.room(5, 10), 0);
        assert!(!parallel.must_stop(10, 10));
        let rolling = Plan {
            strategy: Strategy::Rolling {
                batch: Amount::Count(2),
            },
            max_failures: Some(Amount::Count(1)),
        };
        assert_eq!(rolling.room(0, 10), 2);
        assert_eq!(rolling.room(1, 10), 0);
        let tenth = Plan {
            strategy: Strategy::Rolling {
                batch: Amount::Percent(10),
            },
            max_failures: None,
        };
        assert_eq!(tenth.room(0, 5), 1);
        assert_eq!(tenth.room(0, 40), 4);
        assert!(!rolling.must_stop(1, 10));
        assert!(rolling.must_stop(2, 10));
    }
}

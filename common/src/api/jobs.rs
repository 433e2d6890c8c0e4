//! Jobs: one command, saved task or script on many hosts, one exec run
//! per host, with a strategy; per-host results kept apart.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Which hosts: explicit ids and/or every host carrying all `labels`
/// (among those the caller may run jobs on). Hosts named twice run once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ids: Option<Vec<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// A saved host group, by name (`/api/host-groups`): its hosts and
    /// its label selector, as far as the caller may run jobs there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A saved task with its parameter values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRef {
    pub name: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// `POST /api/jobs`: targets, exactly one of `command`, `task`,
/// `script_id`, and how hosts are started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"targets": {"labels": {"role": "web"}}, "command": "uptime",
    "strategy": "parallel", "concurrency": 10}))]
pub struct JobRequest {
    pub targets: Targets,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_id: Option<Uuid>,
    /// The host account to run as (a host's only account when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `parallel` (default) or `rolling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(parallel|rolling)$")]
    pub strategy: Option<String>,
    /// Hosts running at once under `parallel`, 1 to 100 (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub concurrency: Option<u32>,
    /// Hosts per batch under `rolling`: `N` or `N%` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// Stop starting hosts once more than this many failed: `N` or `N%`
    /// (failed and unreachable count). Default: never stop, unless
    /// `keep_going` is false (then the first failure stops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<String>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_going: Option<bool>,
}

/// `POST /api/jobs/preview`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    pub targets: Targets,
    #[serde(default)]
    pub account: Option<String>,
}

/// A host a job would run on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PreviewHost {
    pub id: Uuid,
    pub name: String,
    pub account: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    pub count: usize,
    pub hosts: Vec<PreviewHost>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobCreated {
    pub id: Uuid,
}

/// `POST /api/jobs/{id}/rerun`: `hosts` is `"failed"` (failed,
/// unreachable, skipped and canceled hosts; the default) or a list of
/// host ids of the job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    #[serde(default)]
    pub hosts: Option<RerunHosts>,
}

/// `"failed"`, or host ids of the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RerunHosts {
    Named(String),
    Ids(Vec<Uuid>),
}

/// One job in the history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    pub id: Uuid,
    pub owner: Option<String>,
    #[schema(pattern = "^(command|task|script|service)$")]
    pub kind: String,
    pub label: String,
    #[schema(pattern = "^(queued|running|done|canceled)$")]
    pub status: String,
    pub strategy: String,
    pub concurrency: i32,
    pub rerun_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Hosts per status.
    pub counts: BTreeMap<String, i64>,
    pub hosts: i64,
}

/// One host of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobHost {
    pub host_id: Uuid,
    pub host_name: String,
    pub account: String,
    pub position: i32,
    #[schema(pattern = "^(queued|running|ok|failed|unreachable|canceled|skipped)$")]
    pub status: String,
    pub session_id: Option<Uuid>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    /// The batch step that failed (from 1).
    pub failed_step: Option<i32>,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// The last bytes of stdout and of stderr.
    pub stdout_tail: String,
    pub stderr_tail: String,
    /// Index into the job's `groups`.
    pub group: Option<usize>,
}

/// Hosts that ended alike: same status, exit code, stdout and stderr.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobGroup {
    pub status: String,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    pub error: Option<String>,
    pub count: usize,
    pub hosts: Vec<Uuid>,
    pub stdout_tail: String,
    pub stderr_tail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    #[serde(flatten)]
    pub summary: JobSummary,
    /// The options it was started with (what a rerun repeats).
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    pub batch: Option<String>,
    pub max_failures: Option<String>,
    pub keep_going: bool,
    pub host_results: Vec<JobHost>,
    /// Ended hosts grouped by identical outcome, biggest first.
    pub groups: Vec<JobGroup>,
}

/// `GET /api/jobs/{id}/hosts/{host_id}/output`: the host's whole output,
/// each stream on its own.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobHostOutput {
    pub host_id: Uuid,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

/// `POST /api/host-groups`: a name jobs target (`targets.group`) for
/// explicit hosts and/or every host carrying all `labels`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostGroupBody {
    pub name: String,
    #[serde(default)]
    pub host_ids: Vec<Uuid>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostGroup {
    pub id: Uuid,
    pub name: String,
    /// The group's hosts the caller may see.
    pub host_ids: Vec<Uuid>,
    pub labels: Option<BTreeMap<String, String>>,
    pub created_at: DateTime<Utc>,
}

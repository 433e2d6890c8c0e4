//! Service panels: a systemd unit on a set of hosts, with the actions
//! people may take on it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// `POST /api/services`, `PUT /api/services/{id}` (administrators).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Web server", "unit": "nginx.service", "host_ids": [],
    "labels": {"role": "web"}, "actions": ["status", "restart", "logs"], "use_sudo": true
}))]
pub struct ServiceSpec {
    /// The name people see: 1-100 printable characters.
    pub name: String,
    /// The systemd unit: `A-Z a-z 0-9 : _ . \ @ -`, at most 256
    /// characters; `.service` is added when it has no unit suffix.
    #[schema(pattern = "^[A-Za-z0-9:_.\\\\@-]{1,256}$")]
    pub unit: String,
    /// Hosts it runs on, by id …
    #[serde(default)]
    pub host_ids: Vec<Uuid>,
    /// … and/or every host carrying all of these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The account to act as on each host; the host's only account when
    /// absent.
    #[serde(default)]
    pub account: Option<String>,
    /// A subset of `status, start, stop, restart, reload, enable, disable, logs`.
    pub actions: Vec<String>,
    /// Run the changing actions as `sudo -n systemctl …`.
    #[serde(default)]
    pub use_sudo: bool,
}

/// A host a service runs on, by id and name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceHost {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Service {
    pub id: Uuid,
    pub name: String,
    /// The full unit name (with its suffix).
    pub unit: String,
    /// The hosts named by id (those that exist and the caller may see).
    pub host_ids: Vec<Uuid>,
    pub labels: BTreeMap<String, String>,
    pub account: Option<String>,
    pub actions: Vec<String>,
    pub use_sudo: bool,
    /// The hosts it resolves to now (those the caller may see).
    pub hosts: Vec<ServiceHost>,
    /// The sudoers lines to install on the hosts so that `sudo -n` allows
    /// exactly the allowed actions on this unit, for each login it acts as
    /// on the hosts the caller may see (empty without `use_sudo`).
    pub sudoers: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One dot of the panel: a unit on a host.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UnitStatus {
    pub host_id: Uuid,
    pub host_name: String,
    /// `active`, `inactive`, `failed`, `activating`, `deactivating`,
    /// `reloading`, `not-found`, `unreachable` or `unknown`.
    pub state: String,
    /// `green`, `grey`, `red` or `amber`.
    pub dot: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_file_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_pid: Option<u32>,
    /// `ActiveEnterTimestamp` as systemd prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Why there is no status (the SSH error for `unreachable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub checked_at: DateTime<Utc>,
}

/// `GET /api/services/{id}/status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceStatus {
    pub service_id: Uuid,
    pub unit: String,
    pub hosts: Vec<UnitStatus>,
}

/// `POST /api/services/{id}/actions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"action": "restart"}))]
pub struct ServiceActionRequest {
    #[schema(pattern = "^(status|start|stop|restart|reload|enable|disable|logs)$")]
    pub action: String,
    /// Some of the service's hosts; all of them when absent.
    #[serde(default)]
    pub hosts: Option<Vec<Uuid>>,
    /// With `logs`: follow (`journalctl -f`) until the job is canceled.
    #[serde(default)]
    pub follow: bool,
    /// With `logs`: how many lines (1-5000, default 100).
    #[serde(default)]
    pub lines: Option<u32>,
}

/// What an action started: a job, one run per host.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceActionStarted {
    pub job_id: Uuid,
    pub hosts: Vec<Uuid>,
}

/// `GET /api/services/{id}/logs?host=&lines=`.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// The host (required when the service runs on several).
    pub host: Option<Uuid>,
    /// How many lines, 1-5000 (default 100).
    pub lines: Option<u32>,
}

/// The last lines of a unit's journal on one host.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceLogs {
    pub host_id: Uuid,
    pub unit: String,
    /// `journalctl` output, short-iso lines.
    pub lines: Vec<String>,
    /// Why there are no lines (unreachable host, journalctl failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/services/{id}/status?max_age=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Seconds: answer from the last poll when every host's is this
    /// recent (at most 3600); 0 or absent polls the hosts now.
    pub max_age: Option<u32>,
}

/// One host of a service action, as the panel's feedback box shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceActionHost {
    pub host_id: Uuid,
    pub host_name: String,
    #[schema(pattern = "^(queued|running|ok|failed|unreachable|canceled|skipped)$")]
    pub status: String,
    pub exit_code: Option<i32>,
    /// The run's session (attach to `/ws/sessions/{id}` to watch it live).
    pub session_id: Option<Uuid>,
    /// The last bytes of stdout and of stderr.
    pub stdout: String,
    pub stderr: String,
    /// Why it did not succeed, for people: the SSH error of an unreachable
    /// host, or the sudoers line `sudo -n` lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/services/{id}/actions/{job_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceActionResult {
    pub job_id: Uuid,
    pub action: String,
    /// No host is queued or running any more.
    pub finished: bool,
    pub hosts: Vec<ServiceActionHost>,
}

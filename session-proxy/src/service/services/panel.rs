//! Reading a service on its hosts: status dots (one `systemctl show` per
//! host for every unit polled there, batched) and the journal's last lines.
//! Each read is an exec run through the runners ([`super::exec`]); acting
//! on a unit needs a grant of `service` on the host and account.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use shellway_common::api::services::{ServiceLogs, ServiceStatus, UnitStatus};
use uuid::Uuid;

use super::outcome;
use super::status::UnitState;
use super::unit::{Unit, UnitAction};
use super::{commands, exec, Panel};
use crate::auth::AuthUser;
use crate::service::access::{self, Access};
use crate::service::{Action, Denied, HostAction, ServiceError};
use crate::state::AppState;
use crate::store;
use crate::store::access::AccountRow;
use crate::store::hosts::HostRow;
use crate::store::services::StatusRow;

/// How long a status poll or a journal read may take on one host.
const READ_LIMIT: Duration = Duration::from_secs(20);

/// A host of a service and the account the panel acts as there.
pub(crate) struct Target {
    pub host: HostRow,
    pub account: AccountRow,
}

/// Refuses an action the service's allowlist does not name.
pub(crate) fn allowed(panel: &Panel, action: UnitAction) -> Result<(), ServiceError> {
    if panel.allows(action) {
        return Ok(());
    }
    Err(ServiceError::NotAllowed {
        code: "action_not_allowed",
        message: format!(
            "{} is not allowed on {} (allowed: {})",
            action.as_str(),
            panel.row.name,
            panel.row.actions.join(", ")
        ),
    })
}

/// The service's hosts to act on (`wanted`, or all those the caller may
/// see), each with its account, every one granted `service` to the caller.
pub(crate) async fn targets(
    st: &AppState,
    access: &Access,
    panel: &Panel,
    hosts: Vec<HostRow>,
    wanted: Option<&[Uuid]>,
) -> Result<Vec<Target>, ServiceError> {
    // Hosts the caller may not see are not theirs to name or to act on.
    let hosts: Vec<HostRow> = hosts.into_iter().filter(|h| access.sees(h)).collect();
    let picked: Vec<HostRow> = match wanted {
        None => hosts,
        Some(ids) => {
            if ids.is_empty() || ids.iter().any(|id| !hosts.iter().any(|h| h.id == *id)) {
                return Err(ServiceError::invalid(
                    "hosts",
                    "name one or more of the service's hosts",
                ));
            }
            hosts.into_iter().filter(|h| ids.contains(&h.id)).collect()
        }
    };
    let mut out = Vec::with_capacity(picked.len());
    for host in picked {
        let account = access::account_for(st, access, &host, panel.row.account.as_deref()).await?;
        access.check(
            &host,
            Some(&account.login),
            Action::Use(HostAction::Service),
        )?;
        out.push(Target { host, account });
    }
    Ok(out)
}

fn dto(host: &HostRow, s: &StatusRow) -> UnitStatus {
    UnitStatus {
        host_id: host.id,
        host_name: host.name.clone(),
        state: s.state.clone(),
        dot: super::status::dot(&s.state).to_owned(),
        active_state: s.active_state.clone(),
        sub_state: s.sub_state.clone(),
        unit_file_state: s.unit_file_state.clone(),
        main_pid: s.main_pid.and_then(|p| u32::try_from(p).ok()),
        since: s.since.clone(),
        error: s.error.clone(),
        checked_at: s.checked_at,
    }
}

fn row(service: Uuid, host: Uuid, u: UnitState) -> StatusRow {
    StatusRow {
        service_id: service,
        host_id: host,
        state: u.state,
        active_state: u.active_state,
        sub_state: u.sub_state,
        unit_file_state: u.unit_file_state,
        main_pid: u.main_pid.and_then(|p| i32::try_from(p).ok()),
        since: u.since,
        error: u.error,
        checked_at: Utc::now(),
    }
}

/// `a.service, b.service`: the units of a poll, each once.
fn units_label<'a>(polled: impl Iterator<Item = &'a Vec<(Uuid, Unit)>>) -> String {
    let mut names: Vec<&str> = polled.flatten().map(|(_, u)| u.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}

/// The units to poll on `host` as `login`: every service there acting as
/// that login (one `systemctl show` reads them all).
async fn units_on(
    st: &AppState,
    host: &HostRow,
    login: &str,
) -> Result<Vec<(Uuid, Unit)>, ServiceError> {
    let mut out = Vec::new();
    for r in store::services::list(&st.db).await? {
        let on_host = r.host_ids.contains(&host.id)
            || (!r.labels.0.is_empty()
                && r.labels
                    .0
                    .iter()
                    .all(|(k, v)| host.labels.0.get(k) == Some(v)));
        let same_login = r.account.as_deref().unwrap_or(&host.username) == login;
        if on_host && same_login {
            if let Ok(unit) = Unit::parse(&r.unit) {
                out.push((r.id, unit));
            }
        }
    }
    Ok(out)
}

/// `GET /api/services/{id}/status`: the dots of the service on the hosts
/// the caller may act on; polled now unless every one is younger than
/// `max_age`.
pub(crate) async fn status(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    max_age: Duration,
) -> Result<ServiceStatus, ServiceError> {
    let access = Access::load(st, user).await?;
    let (panel, hosts) = super::load(st, &access, id).await?;
    allowed(&panel, UnitAction::Status)?;
    let visible = hosts.len();
    let mut targets = Vec::new();
    // Hosts where no account can be chosen: an amber dot saying why.
    let mut problems = Vec::new();
    for host in hosts {
        match targets_one(st, &access, &panel, host).await? {
            Ok(Some(target)) => targets.push(target),
            Ok(None) => {}
            Err((host, why)) => problems.push(unknown(&host, why)),
        }
    }
    if targets.is_empty() && problems.is_empty() && visible > 0 {
        return Err(Denied::NotGranted(HostAction::Service.as_str()).into());
    }
    let cached = store::services::statuses(&st.db, id).await?;
    let oldest = Utc::now() - chrono::Duration::from_std(max_age).unwrap_or_default();
    let fresh = |t: &Target| {
        cached
            .iter()
            .any(|c| c.host_id == t.host.id && c.checked_at >= oldest)
    };
    let stale: Vec<&Target> = targets.iter().filter(|t| !fresh(t)).collect();
    if !stale.is_empty() {
        let mut work = Vec::new();
        let mut polled: BTreeMap<Uuid, Vec<(Uuid, Unit)>> = BTreeMap::new();
        for t in &stale {
            let units = units_on(st, &t.host, &t.account.login).await?;
            let refs: Vec<&Unit> = units.iter().map(|(_, u)| u).collect();
            let command = commands::status(&refs).line();
            work.push((
                Target {
                    host: t.host.clone(),
                    account: t.account.clone(),
                },
                command,
            ));
            polled.insert(t.host.id, units);
        }
        let label = format!("status {}", units_label(polled.values()));
        let request = json!({"service_id": id, "action": "status", "poll": true});
        let runs = exec::run_each(st, user, &label, &request, work, READ_LIMIT).await?;
        let mut rows = Vec::new();
        for (target, run) in runs {
            let units = polled.remove(&target.host.id).unwrap_or_default();
            let states = outcome::states(&run, units.len());
            for ((service, _), state) in units.into_iter().zip(states) {
                rows.push(row(service, target.host.id, state));
            }
        }
        store::services::put_statuses(&st.db, &rows).await?;
    }
    let cached: BTreeMap<Uuid, StatusRow> = store::services::statuses(&st.db, id)
        .await?
        .into_iter()
        .map(|r| (r.host_id, r))
        .collect();
    let hosts = targets
        .iter()
        .filter_map(|t| cached.get(&t.host.id).map(|s| dto(&t.host, s)))
        .chain(problems)
        .collect();
    Ok(ServiceStatus {
        service_id: id,
        unit: panel.row.unit.clone(),
        hosts,
    })
}

/// The host as a target when the caller may act on it there (`None`
/// when not); the host and why when no account can be chosen there.
async fn targets_one(
    st: &AppState,
    access: &Access,
    panel: &Panel,
    host: HostRow,
) -> Result<Result<Option<Target>, (HostRow, String)>, ServiceError> {
    let account = match access::account_for(st, access, &host, panel.row.account.as_deref()).await {
        Ok(account) => account,
        Err(ServiceError::Invalid { message, .. }) => return Ok(Err((host, message))),
        Err(other) => return Err(other),
    };
    let granted = access
        .check(
            &host,
            Some(&account.login),
            Action::Use(HostAction::Service),
        )
        .is_ok();
    Ok(Ok(granted.then_some(Target { host, account })))
}

/// An amber dot for a host the panel cannot poll, saying why.
fn unknown(host: &HostRow, why: String) -> UnitStatus {
    UnitStatus {
        host_id: host.id,
        host_name: host.name.clone(),
        state: "unknown".into(),
        dot: super::status::dot("unknown").to_owned(),
        active_state: None,
        sub_state: None,
        unit_file_state: None,
        main_pid: None,
        since: None,
        error: Some(why),
        checked_at: Utc::now(),
    }
}

/// `GET /api/services/{id}/logs`: the last `lines` of the unit's journal on
/// `host` (which may be left out when the service has one host).
pub(crate) async fn logs(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
    host: Option<Uuid>,
    lines: Option<u32>,
) -> Result<ServiceLogs, ServiceError> {
    let access = Access::load(st, user).await?;
    let (panel, hosts) = super::load(st, &access, id).await?;
    allowed(&panel, UnitAction::Logs)?;
    let lines = check_lines(lines)?;
    let seen: Vec<&HostRow> = hosts.iter().filter(|h| access.sees(h)).collect();
    let host = match (host, seen.as_slice()) {
        (Some(h), _) => h,
        (None, [only]) => only.id,
        (None, _) => {
            return Err(ServiceError::invalid(
                "host",
                "name the host (the service runs on several)",
            ))
        }
    };
    let mut targets = targets(st, &access, &panel, hosts, Some(&[host])).await?;
    let target = targets.pop().ok_or(ServiceError::NotFound("host"))?;
    let command = commands::logs(&panel.unit, lines, false).line();
    let label = format!("logs {}", panel.row.unit);
    let request = json!({"service_id": id, "action": "logs", "lines": lines});
    let mut runs = exec::run_each(
        st,
        user,
        &label,
        &request,
        vec![(target, command)],
        READ_LIMIT,
    )
    .await?;
    let (target, run) = runs
        .pop()
        .ok_or_else(|| ServiceError::Internal("a journal read ended without a result".into()))?;
    let error = outcome::problem(&run, &target.account.login, None);
    Ok(ServiceLogs {
        host_id: target.host.id,
        unit: panel.row.unit.clone(),
        lines: outcome::lines(&run),
        error,
    })
}

/// Journal lines asked for: 1-5000, 100 when not said.
pub(crate) fn check_lines(lines: Option<u32>) -> Result<u32, ServiceError> {
    match lines {
        None => Ok(commands::DEFAULT_LOG_LINES),
        Some(n) if (1..=commands::MAX_LOG_LINES).contains(&n) => Ok(n),
        Some(_) => Err(ServiceError::invalid(
            "lines",
            format!("lines must be 1-{}", commands::MAX_LOG_LINES),
        )),
    }
}

//! Service panels: a systemd unit on a set of hosts (ids and/or a label
//! selector), the actions people may take on it, and the account to act
//! as. Administrators register them; everyone sees those on hosts they
//! may see, and acts on a host only where a grant gives them `service`.

pub(crate) mod actions;
pub(crate) mod commands;
pub(crate) mod exec;
pub(crate) mod outcome;
pub(crate) mod panel;
pub(crate) mod schedule;
pub(crate) mod status;
pub(crate) mod unit;

use shellway_common::api::services::{Service, ServiceHost, ServiceSpec};
use uuid::Uuid;

use super::access::{self, Access};
use super::{hosts, ServiceError};
use crate::auth::AuthUser;
use crate::state::AppState;
use crate::store;
use crate::store::hosts::HostRow;
use crate::store::services::{SaveError, ServiceFields, ServiceRow};
use unit::{Unit, UnitAction};

const MAX_NAME: usize = 100;
/// Most hosts a service names by id.
const MAX_HOST_IDS: usize = 1000;

/// A service as stored, with its unit and allowlist parsed.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    pub row: ServiceRow,
    pub unit: Unit,
    pub actions: Vec<UnitAction>,
}

impl Panel {
    /// Both were checked before they were stored (and the table checks
    /// them again); an unreadable one is an internal error, and an
    /// unreadable allowlist allows nothing.
    fn of(row: ServiceRow) -> Result<Self, ServiceError> {
        let unit = Unit::parse(&row.unit)
            .map_err(|e| ServiceError::Internal(format!("stored unit {:?}: {e}", row.unit)))?;
        let actions = unit::parse_actions(&row.actions).unwrap_or_default();
        Ok(Self { row, unit, actions })
    }

    pub(crate) fn allows(&self, action: UnitAction) -> bool {
        self.actions.contains(&action)
    }

    /// The login used on `host`: the service's account, else the host's.
    pub(crate) fn login_on<'a>(&'a self, host: &'a HostRow) -> &'a str {
        self.row.account.as_deref().unwrap_or(&host.username)
    }
}

fn check_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "name",
            format!("name must be 1-{MAX_NAME} printable characters"),
        ));
    }
    Ok(name.to_owned())
}

/// What a spec asks for, checked field by field (every fault at once).
struct Checked {
    name: String,
    unit: Unit,
    actions: Vec<String>,
    host_ids: Vec<Uuid>,
}

async fn check(st: &AppState, spec: &ServiceSpec) -> Result<Checked, ServiceError> {
    let mut errors = Vec::new();
    let name = check_name(&spec.name).map_err(|e| errors.push(e)).ok();
    let unit = Unit::parse(&spec.unit)
        .map_err(|m| errors.push(ServiceError::invalid("unit", m)))
        .ok();
    let actions = unit::parse_actions(&spec.actions)
        .map_err(|m| errors.push(ServiceError::invalid("actions", m)))
        .ok();
    if let Some(problem) = access::labels_problem(&spec.labels) {
        errors.push(ServiceError::invalid("labels", problem));
    }
    if let Some(login) = &spec.account {
        if !access::login_ok(login) {
            errors.push(ServiceError::invalid(
                "account",
                "a login is 1-32 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
            ));
        }
    }
    let mut host_ids = spec.host_ids.clone();
    host_ids.sort();
    host_ids.dedup();
    if host_ids.is_empty() && spec.labels.is_empty() {
        errors.push(ServiceError::invalid(
            "host_ids",
            "name the hosts (host_ids) or a label selector (labels)",
        ));
    } else if host_ids.len() > MAX_HOST_IDS {
        errors.push(ServiceError::invalid(
            "host_ids",
            format!("at most {MAX_HOST_IDS} hosts by id"),
        ));
    } else if !host_ids.is_empty() {
        let found = store::hosts::selected(&st.db, &host_ids, &Default::default()).await?;
        if found.len() != host_ids.len() {
            errors.push(ServiceError::invalid("host_ids", "no such host"));
        }
    }
    match (name, unit, actions) {
        (Some(name), Some(unit), Some(actions)) if errors.is_empty() => Ok(Checked {
            name,
            unit,
            actions: actions.iter().map(|a| a.as_str().to_owned()).collect(),
            host_ids,
        }),
        _ => Err(match errors.len() {
            1 => errors.remove(0),
            _ => ServiceError::InvalidFields(errors),
        }),
    }
}

/// The hosts a service runs on, now.
pub(crate) async fn hosts_of(
    st: &AppState,
    row: &ServiceRow,
) -> Result<Vec<HostRow>, ServiceError> {
    Ok(store::hosts::selected(&st.db, &row.host_ids, &row.labels.0).await?)
}

/// The sudoers lines of a service on its hosts: one per allowed change,
/// for each login it acts as.
fn sudoers(panel: &Panel, hosts: &[HostRow]) -> Vec<String> {
    if !panel.row.use_sudo {
        return Vec::new();
    }
    let mut logins: Vec<&str> = hosts.iter().map(|h| panel.login_on(h)).collect();
    logins.sort_unstable();
    logins.dedup();
    logins
        .into_iter()
        .flat_map(|login| commands::sudoers(login, &panel.unit, &panel.actions))
        .collect()
}

fn dto(panel: &Panel, hosts: &[HostRow], access: &Access) -> Service {
    let r = &panel.row;
    // Only what the caller may see: hidden hosts' names and logins stay hidden.
    let visible: Vec<HostRow> = hosts.iter().filter(|h| access.sees(h)).cloned().collect();
    Service {
        id: r.id,
        name: r.name.clone(),
        unit: r.unit.clone(),
        host_ids: r
            .host_ids
            .iter()
            .copied()
            .filter(|id| visible.iter().any(|h| h.id == *id))
            .collect(),
        labels: r.labels.0.clone(),
        account: r.account.clone(),
        actions: r.actions.clone(),
        use_sudo: r.use_sudo,
        hosts: visible
            .iter()
            .map(|h| ServiceHost {
                id: h.id,
                name: h.name.clone(),
            })
            .collect(),
        sudoers: sudoers(panel, &visible),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// A service and its hosts, if `access` sees at least one of them (or may
/// see everything): others answer "not found".
pub(crate) async fn load(
    st: &AppState,
    access: &Access,
    id: Uuid,
) -> Result<(Panel, Vec<HostRow>), ServiceError> {
    let row = store::services::get(&st.db, id)
        .await?
        .ok_or(ServiceError::NotFound("service"))?;
    let hosts = hosts_of(st, &row).await?;
    let everything = access.actor.role != super::Role::User;
    if !everything && !hosts.iter().any(|h| access.sees(h)) {
        return Err(ServiceError::NotFound("service"));
    }
    Ok((Panel::of(row)?, hosts))
}

pub(crate) async fn list(st: &AppState, user: &AuthUser) -> Result<Vec<Service>, ServiceError> {
    let access = Access::load(st, user).await?;
    let everything = access.actor.role != super::Role::User;
    let mut out = Vec::new();
    for row in store::services::list(&st.db).await? {
        let hosts = hosts_of(st, &row).await?;
        if everything || hosts.iter().any(|h| access.sees(h)) {
            out.push(dto(&Panel::of(row)?, &hosts, &access));
        }
    }
    Ok(out)
}

pub(crate) async fn get(st: &AppState, user: &AuthUser, id: Uuid) -> Result<Service, ServiceError> {
    let access = Access::load(st, user).await?;
    let (panel, hosts) = load(st, &access, id).await?;
    Ok(dto(&panel, &hosts, &access))
}

/// Creates (`id: None`) or changes a service (administrators).
pub(crate) async fn save(
    st: &AppState,
    user: &AuthUser,
    id: Option<Uuid>,
    spec: ServiceSpec,
) -> Result<Service, ServiceError> {
    if let Some(id) = id {
        store::services::get(&st.db, id)
            .await?
            .ok_or(ServiceError::NotFound("service"))?;
    }
    hosts::may_manage(user)?;
    let c = check(st, &spec).await?;
    let fields = ServiceFields {
        name: &c.name,
        unit: c.unit.as_str(),
        host_ids: &c.host_ids,
        labels: &spec.labels,
        account: spec.account.as_deref(),
        actions: &c.actions,
        use_sudo: spec.use_sudo,
    };
    let create = id.is_none();
    let id = id.unwrap_or_else(Uuid::now_v7);
    let written = store::services::save(&st.db, id, create, &fields, user.audit_id())
        .await
        .map_err(|e| match e {
            SaveError::Duplicate => {
                ServiceError::conflict("duplicate", format!("a service named {:?} exists", c.name))
            }
            SaveError::Db(e) => e.into(),
        })?;
    if !written {
        return Err(ServiceError::NotFound("service"));
    }
    get(st, user, id).await
}

pub(crate) async fn delete(st: &AppState, user: &AuthUser, id: Uuid) -> Result<(), ServiceError> {
    hosts::may_manage(user)?;
    if store::services::delete(&st.db, id, user.audit_id()).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound("service"))
    }
}

//! Which hosts a job reaches: explicit ids (one the caller cannot see is
//! 404, one they may not use refused), a label selector and a saved host
//! group (both only among the hosts the caller may run such jobs on), and
//! the account on each.

use std::collections::{BTreeMap, HashMap, HashSet};

use shellway_common::api::jobs::Targets;
use uuid::Uuid;

use super::access::{self, Access};
use super::jobs::{host_action, JobKind, MAX_HOSTS};
use super::{Action, ServiceError};
use crate::auth::AuthUser;
use crate::state::AppState;
use crate::store::{self, hosts::HostRow};

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
            store::host_groups::host_group(&st.db, name)
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
        // An account no grant of the caller's covers reads as missing.
        let known = |l: &str| access.check(host, Some(l), Action::Read).is_ok();
        let login = match account {
            Some(a) if logins.iter().any(|l| l == a) && known(a) => Some(a.to_owned()),
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

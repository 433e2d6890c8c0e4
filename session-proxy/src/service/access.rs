//! The access model around [`authorize`]: loading a person's grants (their
//! own and their groups'), deciding about hosts and accounts with them,
//! managing groups, grants and host accounts, and ending the live sessions
//! whose access ended (a grant revoked or expired, a group left, a user
//! disabled or demoted).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    authorize, Action, Actor, Denied, Grant, GrantTarget, HostAccess, HostAction, Resource, Role,
    ServiceError,
};
use crate::auth::AuthUser;
use crate::state::AppState;
use crate::store;
use crate::store::access::{AccountRow, GrantRow, LiveAccess};
use crate::store::hosts::HostRow;
use crate::store::sessions::SessionRow;

/// The reason viewers are given when a session ends for lost access.
pub(crate) const ACCESS_REVOKED: &str = "access revoked";
/// How often every proxy re-checks live sessions (grants expire).
const RECHECK: Duration = Duration::from_secs(2);
/// Live sessions a re-check reads at once (it reads them all, page by page).
const RECHECK_PAGE: i64 = 1000;

pub(crate) fn to_grant(row: &GrantRow) -> Grant {
    let target = match (&row.host_id, &row.labels) {
        (Some(h), _) => GrantTarget::Host(*h),
        (None, Some(l)) => GrantTarget::Labels(l.0.clone()),
        // Refused by the table's check; reaches nothing.
        (None, None) => GrantTarget::Host(Uuid::nil()),
    };
    Grant {
        target,
        account: row.account.clone(),
        actions: row
            .actions
            .iter()
            .filter_map(|a| HostAction::parse(a))
            .collect(),
        not_before: row.not_before,
        not_after: row.not_after,
    }
}

/// A caller and the grants that bear on them: what decisions about hosts
/// are made with.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub actor: Actor,
    pub grants: Vec<Grant>,
    pub now: DateTime<Utc>,
}

impl Access {
    /// The caller's grants (none are loaded for those who need none).
    pub(crate) async fn load(st: &AppState, user: &AuthUser) -> Result<Self, ServiceError> {
        Self::of(st, user.actor()).await
    }

    pub(crate) async fn of(st: &AppState, actor: Actor) -> Result<Self, ServiceError> {
        let grants = if actor.role == Role::User {
            store::access::grants_of(&st.db, &[actor.id])
                .await?
                .iter()
                .map(|(_, g)| to_grant(g))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            actor,
            grants,
            now: Utc::now(),
        })
    }

    /// `authorize` for `action` on `host` as `account` (`None`: any).
    pub(crate) fn check(
        &self,
        host: &HostRow,
        account: Option<&str>,
        action: Action,
    ) -> Result<(), Denied> {
        self.check_on(host.id, &host.labels.0, account, action)
    }

    pub(crate) fn check_on(
        &self,
        host: Uuid,
        labels: &BTreeMap<String, String>,
        account: Option<&str>,
        action: Action,
    ) -> Result<(), Denied> {
        let resource = Resource::Host(HostAccess {
            id: host,
            labels,
            account,
            grants: &self.grants,
            now: self.now,
        });
        authorize(&self.actor, action, resource)
    }

    pub(crate) fn sees(&self, host: &HostRow) -> bool {
        self.check(host, None, Action::Read).is_ok()
    }

    /// The actions granted on `host` as `account`.
    pub(crate) fn actions(&self, host: &HostRow, account: &str) -> Vec<HostAction> {
        HostAction::ALL
            .into_iter()
            .filter(|a| self.check(host, Some(account), Action::Use(*a)).is_ok())
            .collect()
    }
}

/// The account of `host` a session or run names: `login`, or the host's
/// only account when none is named.
pub(crate) async fn account_for(
    st: &AppState,
    access: &Access,
    host: &HostRow,
    login: Option<&str>,
) -> Result<AccountRow, ServiceError> {
    let accounts = store::access::accounts(&st.db, host.id).await?;
    // Found or named in a refusal: only those the caller may know of (an
    // account no grant of theirs covers reads as one that does not exist).
    let known = |a: &&AccountRow| access.check(host, Some(&a.login), Action::Read).is_ok();
    match login {
        Some(login) => accounts
            .into_iter()
            .find(|a| a.login == login && known(&a))
            .ok_or_else(|| {
                ServiceError::invalid("account", format!("this host has no account {login:?}"))
            }),
        None => {
            if accounts.len() == 1 {
                Ok(accounts
                    .into_iter()
                    .next()
                    .ok_or(ServiceError::NotFound("account"))?)
            } else {
                Err(ServiceError::invalid(
                    "account",
                    format!(
                        "this host has {} accounts: name one (yours: {})",
                        accounts.len(),
                        accounts
                            .iter()
                            .filter(known)
                            .map(|a| a.login.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        }
    }
}

/// Whether `access` allows `action` on the host and account of `session`
/// (a deleted host allows nothing but to administrators).
pub(crate) async fn session_allows(
    st: &AppState,
    access: &Access,
    session: &SessionRow,
    action: HostAction,
) -> Result<Result<(), Denied>, ServiceError> {
    if access.actor.role == Role::Admin {
        return Ok(Ok(()));
    }
    let host = match session.host_id {
        Some(id) => store::hosts::get(&st.db, id).await?,
        None => None,
    };
    let Some(host) = host else {
        return Ok(Err(Denied::Hidden("host")));
    };
    Ok(access.check(&host, session.account.as_deref(), Action::Use(action)))
}

/// The action a session needs of its owner's grants while it lives.
pub(crate) fn session_action(shell: bool) -> HostAction {
    if shell {
        HostAction::Shell
    } else {
        HostAction::Run
    }
}

/// Ends, on every proxy's behalf, each live session whose owner may no
/// longer hold it: disabled, no longer allowed by a grant (revoked,
/// expired, a group left), or no longer a user who may connect.
pub(crate) async fn enforce(st: &AppState) -> Result<usize, ServiceError> {
    let live = store::lifecycle::live_sessions();
    let now = Utc::now();
    let mut ended = 0;
    let mut after = Uuid::nil();
    loop {
        let page = store::access::live_to_check(&st.db, &live, after, RECHECK_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(ended);
        };
        after = last.id;
        let mut owners: Vec<Uuid> = page.iter().map(|s| s.owner_id).collect();
        owners.sort();
        owners.dedup();
        let mut grants: HashMap<Uuid, Vec<Grant>> = HashMap::new();
        for (user, g) in store::access::grants_of(&st.db, &owners).await? {
            grants.entry(user).or_default().push(to_grant(&g));
        }
        for s in &page {
            let owner_grants = grants.get(&s.owner_id).map_or(&[][..], Vec::as_slice);
            if still_allowed(s, owner_grants, now) {
                continue;
            }
            if store::access::mark_revoked(&st.db, s.id, &live, ACCESS_REVOKED).await? {
                tracing::info!(session_id = %s.id, "access ended: ending the session");
                super::sessions::end_with(st, s.id, ACCESS_REVOKED, None, None).await?;
                ended += 1;
            }
        }
        if (page.len() as i64) < RECHECK_PAGE {
            return Ok(ended);
        }
    }
}

/// Whether a live session's owner may still hold it.
fn still_allowed(s: &LiveAccess, grants: &[Grant], now: DateTime<Utc>) -> bool {
    if s.owner_disabled || s.account_gone {
        return false;
    }
    // The host was deleted (or the session predates accounts): its grants
    // are gone with it, the session is left to end as it does.
    let (Some(host), Some(account)) = (s.host_id, &s.account) else {
        return true;
    };
    let access = Access {
        actor: Actor {
            id: s.owner_id,
            role: Role::parse(&s.owner_role).unwrap_or(Role::User),
        },
        grants: grants.to_vec(),
        now,
    };
    let labels = s
        .host_labels
        .as_ref()
        .map(|l| l.0.clone())
        .unwrap_or_default();
    access
        .check_on(
            host,
            &labels,
            Some(account),
            Action::Use(match s.job_kind.as_deref() {
                Some(kind) => super::jobs::host_action(kind),
                None => session_action(s.shell),
            }),
        )
        .is_ok()
}

/// Ends what [`enforce`] finds, logging rather than failing the change
/// that called it (the periodic re-check tries again).
pub(crate) async fn enforce_now(st: &AppState) {
    if let Err(err) = enforce(st).await {
        tracing::warn!(error = %err, "re-checking live sessions' access failed");
    }
}

/// Every proxy re-checks live sessions every [`RECHECK`]; one of them ends
/// each session (the conditional mark in the store).
pub(crate) async fn watch(st: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        enforce_now(&st).await;
    }
}

/// Most labels a host carries.
const MAX_LABELS: usize = 32;

/// What is wrong with a set of labels: at most 32, keys of 1-64
/// `A-Z a-z 0-9 . _ / -`, values of at most 128 printable characters.
pub(crate) fn labels_problem(labels: &BTreeMap<String, String>) -> Option<String> {
    if labels.len() > MAX_LABELS {
        return Some(format!("at most {MAX_LABELS} labels"));
    }
    for (k, v) in labels {
        let key_ok = (1..=64).contains(&k.len())
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
        if !key_ok {
            return Some(format!(
                "label key {k:?} must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', '/' or '-'"
            ));
        }
        if v.chars().count() > 128 || v.chars().any(char::is_control) {
            return Some(format!(
                "label {k:?}: values are at most 128 printable characters"
            ));
        }
    }
    None
}

/// A login on a host: 1-32 of `A-Z a-z 0-9 . _ -`, not starting with `.`
/// or `-`.
pub(crate) fn login_ok(login: &str) -> bool {
    login
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && login.len() <= 32
        && login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

// ---- groups ----

fn may_manage(user: &AuthUser) -> Result<(), ServiceError> {
    Ok(authorize(&user.actor(), Action::Manage, Resource::Access)?)
}

fn check_group_name(name: &str) -> Result<(), ServiceError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "name",
            "name must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
        ))
    }
}

pub(crate) async fn groups(
    st: &AppState,
    user: &AuthUser,
) -> Result<Vec<store::access::GroupRow>, ServiceError> {
    may_manage(user)?;
    Ok(store::access::groups(&st.db).await?)
}

/// Creates (`id: None`) or replaces a group; members who lose a grant
/// through it lose the sessions it allowed.
pub(crate) async fn save_group(
    st: &AppState,
    user: &AuthUser,
    id: Option<Uuid>,
    name: &str,
    members: &[Uuid],
) -> Result<store::access::GroupRow, ServiceError> {
    may_manage(user)?;
    check_group_name(name)?;
    if let Some(unknown) = store::access::unknown_users(&st.db, members).await?.first() {
        return Err(ServiceError::invalid(
            "members",
            format!("no user with id {unknown}"),
        ));
    }
    let saved = store::access::save_group(&st.db, id, name, members, user.audit_id()).await;
    let row = match saved {
        Ok(Some(row)) => row,
        Ok(None) => return Err(ServiceError::NotFound("group")),
        Err(store::access::GroupWriteError::DuplicateName) => {
            return Err(ServiceError::conflict(
                "duplicate_name",
                "a group with this name exists already",
            ))
        }
        Err(store::access::GroupWriteError::Db(e)) => return Err(e.into()),
    };
    if id.is_some() {
        enforce_now(st).await;
    }
    Ok(row)
}

pub(crate) async fn delete_group(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> Result<(), ServiceError> {
    may_manage(user)?;
    if !store::access::delete_group(&st.db, id, user.audit_id()).await? {
        return Err(ServiceError::NotFound("group"));
    }
    enforce_now(st).await;
    Ok(())
}

// ---- grants ----

pub(crate) async fn grants(st: &AppState, user: &AuthUser) -> Result<Vec<GrantRow>, ServiceError> {
    may_manage(user)?;
    Ok(store::access::grants(&st.db).await?)
}

/// A grant as asked for, before it is checked.
pub(crate) struct NewGrant {
    pub user: Option<Uuid>,
    pub group: Option<Uuid>,
    pub host: Option<Uuid>,
    pub labels: Option<BTreeMap<String, String>>,
    pub account: String,
    pub actions: Vec<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
}

/// Checks every field of a grant, naming the one at fault.
pub(crate) async fn create_grant(
    st: &AppState,
    user: &AuthUser,
    g: NewGrant,
) -> Result<GrantRow, ServiceError> {
    may_manage(user)?;
    if let Some(u) = g.user {
        if !store::access::unknown_users(&st.db, &[u]).await?.is_empty() {
            return Err(ServiceError::invalid(
                "subject",
                format!("no user with id {u}"),
            ));
        }
    }
    if let Some(group) = g.group {
        if !store::access::unknown_groups(&st.db, &[group])
            .await?
            .is_empty()
        {
            return Err(ServiceError::invalid(
                "subject",
                format!("no group with id {group}"),
            ));
        }
    }
    if g.actions.is_empty() {
        return Err(ServiceError::invalid("actions", "name at least one action"));
    }
    let mut actions = Vec::new();
    for a in &g.actions {
        let action = HostAction::parse(a).ok_or_else(|| {
            ServiceError::invalid(
                "actions",
                format!(
                    "unknown action {a:?} (use {})",
                    HostAction::ALL.map(HostAction::as_str).join(", ")
                ),
            )
        })?;
        if !actions.contains(&action) {
            actions.push(action);
        }
    }
    if let (Some(from), Some(to)) = (g.not_before, g.not_after) {
        if to <= from {
            return Err(ServiceError::invalid(
                "not_after",
                "not_after must be later than not_before",
            ));
        }
    }
    if let Some(labels) = &g.labels {
        if labels.is_empty() {
            return Err(ServiceError::invalid(
                "target",
                "a label selector names at least one label",
            ));
        }
        if let Some(problem) = labels_problem(labels) {
            return Err(ServiceError::invalid("target", problem));
        }
    }
    let login_ok = g.account == "*" || login_ok(&g.account);
    if !login_ok {
        return Err(ServiceError::invalid(
            "account",
            "account must be a login on the host or \"*\"",
        ));
    }
    if let Some(host) = g.host {
        let Some(_) = store::hosts::get(&st.db, host).await? else {
            return Err(ServiceError::invalid(
                "target",
                format!("no host with id {host}"),
            ));
        };
        if g.account != "*" {
            let accounts = store::access::accounts(&st.db, host).await?;
            if !accounts.iter().any(|a| a.login == g.account) {
                return Err(ServiceError::invalid(
                    "account",
                    format!("the host has no account {:?}", g.account),
                ));
            }
        }
    }
    let fields = store::access::GrantFields {
        user_id: g.user,
        group_id: g.group,
        host_id: g.host,
        labels: g.labels,
        account: g.account,
        actions: actions.iter().map(|a| a.as_str().to_owned()).collect(),
        not_before: g.not_before,
        not_after: g.not_after,
    };
    if let Some(other) = store::access::overlapping(&st.db, &fields).await? {
        return Err(ServiceError::invalid(
            "not_before",
            format!(
                "the validity overlaps grant {other} to the same subject, hosts and account; \
                 change or revoke that one instead"
            ),
        ));
    }
    Ok(store::access::create_grant(&st.db, &fields, user.audit_id()).await?)
}

/// Deletes a grant; the sessions that needed it end.
pub(crate) async fn delete_grant(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> Result<(), ServiceError> {
    may_manage(user)?;
    if !store::access::delete_grant(&st.db, id, user.audit_id()).await? {
        return Err(ServiceError::NotFound("grant"));
    }
    enforce_now(st).await;
    Ok(())
}

/// What the caller may reach: hosts, their accounts, the actions on each.
pub(crate) async fn mine(
    st: &AppState,
    user: &AuthUser,
) -> Result<Vec<(HostRow, Vec<(String, Vec<HostAction>)>)>, ServiceError> {
    let access = Access::load(st, user).await?;
    let mut hosts = store::hosts::list(&st.db).await?;
    hosts.retain(|h| access.sees(h));
    let ids: Vec<Uuid> = hosts.iter().map(|h| h.id).collect();
    let mut accounts: HashMap<Uuid, Vec<AccountRow>> = HashMap::new();
    for a in store::access::accounts_of(&st.db, &ids).await? {
        accounts.entry(a.host_id).or_default().push(a);
    }
    Ok(hosts
        .into_iter()
        .map(|h| {
            let usable = accounts
                .remove(&h.id)
                .unwrap_or_default()
                .into_iter()
                .map(|a| {
                    let actions = access.actions(&h, &a.login);
                    (a.login, actions)
                })
                .filter(|(_, actions)| !actions.is_empty())
                .collect();
            (h, usable)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_logins_are_plain() {
        let ok: BTreeMap<String, String> = [("env".into(), "prod".into())].into();
        assert_eq!(labels_problem(&ok), None);
        let bad_key: BTreeMap<String, String> = [("e nv".into(), "x".into())].into();
        assert!(labels_problem(&bad_key).is_some());
        let bad_value: BTreeMap<String, String> = [("env".into(), "a\nb".into())].into();
        assert!(labels_problem(&bad_value).is_some());
        let many: BTreeMap<String, String> =
            (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(labels_problem(&many).is_some());
        assert!(login_ok("deploy") && login_ok("_svc.1"));
        assert!(!login_ok("") && !login_ok("-x") && !login_ok(".x") && !login_ok("a b"));
        assert!(!login_ok(&"x".repeat(33)));
    }

    #[test]
    fn stored_grants_become_decisions() {
        let row = GrantRow {
            id: Uuid::nil(),
            user_id: Some(Uuid::nil()),
            group_id: None,
            host_id: None,
            labels: Some(sqlx::types::Json(
                [("env".to_owned(), "prod".to_owned())].into(),
            )),
            account: "*".into(),
            actions: vec!["shell".into(), "share".into(), "unknown".into()],
            not_before: None,
            not_after: None,
            created_at: Utc::now(),
        };
        let g = to_grant(&row);
        assert_eq!(
            g.target,
            GrantTarget::Labels([("env".to_owned(), "prod".to_owned())].into())
        );
        assert_eq!(g.actions, vec![HostAction::Shell, HostAction::Share]);
        assert_eq!(session_action(true), HostAction::Shell);
        assert_eq!(session_action(false), HostAction::Run);
    }
}

//! The one authorization point: may `actor` do `action` to `resource`?
//!
//! Roles: administrators may do everything. Auditors read everything
//! (hosts, every session, its runs and recording) and act on nothing.
//! Users read the task library, see and use only the hosts and accounts
//! their grants (their own and their groups', loaded by the service code
//! into [`HostAccess::grants`]) allow, right now; a host no grant reaches
//! is hidden. A session is its owner's (and its share links are also
//! their creator's to revoke); an API token is its user's.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What a user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Admin,
    Auditor,
    User,
}

impl Role {
    pub(crate) const ALL: [Role; 3] = [Role::Admin, Role::Auditor, Role::User];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Auditor => "auditor",
            Self::User => "user",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Actor {
    pub id: Uuid,
    pub role: Role,
}

/// What a grant allows on a host's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum HostAction {
    /// Open an interactive session.
    Shell,
    /// Run commands, tasks and scripts (and open a session without a shell).
    Run,
    Job,
    Service,
    /// Create share links to one's sessions there.
    Share,
    /// Read the recordings of everyone's sessions there.
    ViewRecordings,
}

impl HostAction {
    pub(crate) const ALL: [HostAction; 6] = [
        HostAction::Shell,
        HostAction::Run,
        HostAction::Job,
        HostAction::Service,
        HostAction::Share,
        HostAction::ViewRecordings,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Shell => "shell",
            Self::Run => "run",
            Self::Job => "job",
            Self::Service => "service",
            Self::Share => "share",
            Self::ViewRecordings => "view_recordings",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The hosts a grant reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GrantTarget {
    Host(Uuid),
    /// Every host carrying all of these labels.
    Labels(BTreeMap<String, String>),
}

/// One grant as it bears on a decision (direct or through a group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub target: GrantTarget,
    /// A login, or `*` for every account of the host.
    pub account: String,
    pub actions: Vec<HostAction>,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
}

impl Grant {
    fn valid_at(&self, now: DateTime<Utc>) -> bool {
        self.not_before.is_none_or(|t| t <= now) && self.not_after.is_none_or(|t| now < t)
    }

    fn reaches(&self, host: Uuid, labels: &BTreeMap<String, String>) -> bool {
        match &self.target {
            GrantTarget::Host(id) => *id == host,
            GrantTarget::Labels(want) => want.iter().all(|(k, v)| labels.get(k) == Some(v)),
        }
    }

    fn covers(&self, account: Option<&str>) -> bool {
        match account {
            None => true,
            Some(login) => self.account == "*" || self.account == login,
        }
    }
}

/// A host as a decision about it needs it: its labels, the account asked
/// for (`None`: any), the actor's grants and the time of the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostAccess<'a> {
    pub id: Uuid,
    pub labels: &'a BTreeMap<String, String>,
    pub account: Option<&'a str>,
    pub grants: &'a [Grant],
    pub now: DateTime<Utc>,
}

impl HostAccess<'_> {
    /// The grants in force for this host and account.
    fn in_force(&self) -> impl Iterator<Item = &Grant> + '_ {
        self.grants.iter().filter(move |g| {
            g.valid_at(self.now) && g.reaches(self.id, self.labels) && g.covers(self.account)
        })
    }
}

/// What they want to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Read a list or item (hosts, the library; a host or account: know
    /// that it exists).
    Read,
    /// See a session, its runs, recording and links; attach to it.
    View,
    /// Type into a session, run in it, share it, end it.
    Control,
    /// See every user's sessions, not just one's own.
    ListAll,
    /// Create, change or delete (hosts, tasks, scripts, users, groups,
    /// grants, throttles), or scan a host's key.
    Manage,
    /// Revoke a share link or an API token.
    Revoke,
    /// Do this on a host's account (what grants allow).
    Use(HostAction),
}

/// What it is done to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource<'a> {
    Hosts,
    Host(HostAccess<'a>),
    /// The credential vault: administrators only.
    Credentials,
    Library,
    Users,
    /// Groups and grants.
    Access,
    LoginThrottles,
    Sessions,
    Session {
        owner: Uuid,
    },
    Share {
        owner: Uuid,
        creator: Option<Uuid>,
    },
    Token {
        owner: Uuid,
    },
}

/// Refused. `Hidden`: the actor may not even know the thing exists
/// (answered as "not found"); `Forbidden`: the actor may know of it;
/// `NotGranted`: the host is theirs to see, not to do this on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Denied {
    #[error("{0} not found")]
    Hidden(&'static str),
    #[error("only administrators may do this")]
    Forbidden,
    #[error("no grant allows {0} on this host and account")]
    NotGranted(&'static str),
}

pub(crate) fn authorize(actor: &Actor, action: Action, resource: Resource) -> Result<(), Denied> {
    use Action::*;
    use Resource::*;
    let allowed = match (actor.role, resource, action) {
        (Role::Admin, _, _) => true,
        // Auditors read everything and act on nothing.
        (Role::Auditor, Hosts | Host(_) | Library | Sessions, Read | ListAll) => true,
        (Role::Auditor, Session { .. }, View) => true,
        (Role::Auditor, Host(_), Use(a)) => return Err(Denied::NotGranted(a.as_str())),
        (_, Hosts | Library, Read) => true,
        (_, Host(h), Read) => h.in_force().next().is_some(),
        (_, Host(h), Use(a)) => {
            if h.in_force().any(|g| g.actions.contains(&a)) {
                true
            } else {
                let visible = HostAccess { account: None, ..h }
                    .in_force()
                    .next()
                    .is_some();
                return Err(if visible {
                    Denied::NotGranted(a.as_str())
                } else {
                    Denied::Hidden("host")
                });
            }
        }
        (_, Session { owner }, View | Control) => owner == actor.id,
        (_, Share { owner, creator }, Revoke) => owner == actor.id || creator == Some(actor.id),
        (_, Token { owner }, Revoke) => owner == actor.id,
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    Err(match resource {
        Host(_) => Denied::Hidden("host"),
        Session { .. } => Denied::Hidden("session"),
        Share { .. } => Denied::Hidden("share link"),
        Token { .. } => Denied::Hidden("token"),
        Hosts | Credentials | Library | Users | Access | LoginThrottles | Sessions => {
            Denied::Forbidden
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn the_rules_as_a_table() {
        let alice = Actor {
            id: id(1),
            role: Role::User,
        };
        let bob = Actor {
            id: id(2),
            role: Role::User,
        };
        let admin = Actor {
            id: id(9),
            role: Role::Admin,
        };
        let alices = Resource::Session { owner: id(1) };
        let link_by_bob = Resource::Share {
            owner: id(1),
            creator: Some(id(2)),
        };
        let hidden = |what| Err(Denied::Hidden(what));
        let forbidden = Err(Denied::Forbidden);
        let table: Vec<(Actor, Action, Resource, Result<(), Denied>)> = vec![
            // Everybody reads hosts and the library; only admins change them.
            (alice, Read, Resource::Hosts, Ok(())),
            (alice, Manage, Resource::Hosts, forbidden),
            (admin, Manage, Resource::Hosts, Ok(())),
            (alice, Read, Resource::Library, Ok(())),
            (alice, Manage, Resource::Library, forbidden),
            (admin, Manage, Resource::Library, Ok(())),
            // Users and throttles are the admins' alone.
            (alice, Read, Resource::Users, forbidden),
            (alice, Manage, Resource::Users, forbidden),
            (admin, Manage, Resource::Users, Ok(())),
            // So is the credential vault, even to read.
            (alice, Read, Resource::Credentials, forbidden),
            (alice, Manage, Resource::Credentials, forbidden),
            (admin, Read, Resource::Credentials, Ok(())),
            (admin, Manage, Resource::Credentials, Ok(())),
            (alice, Manage, Resource::LoginThrottles, forbidden),
            (admin, Read, Resource::LoginThrottles, Ok(())),
            // A session is its owner's; others do not learn it exists.
            (alice, View, alices, Ok(())),
            (alice, Control, alices, Ok(())),
            (bob, View, alices, hidden("session")),
            (bob, Control, alices, hidden("session")),
            (admin, View, alices, Ok(())),
            (admin, Control, alices, Ok(())),
            (alice, ListAll, Resource::Sessions, forbidden),
            (admin, ListAll, Resource::Sessions, Ok(())),
            // A link is revoked by the session's owner, its creator, an admin.
            (alice, Revoke, link_by_bob, Ok(())),
            (bob, Revoke, link_by_bob, Ok(())),
            (
                Actor {
                    id: id(3),
                    role: Role::User,
                },
                Revoke,
                link_by_bob,
                hidden("share link"),
            ),
            (admin, Revoke, link_by_bob, Ok(())),
            // A token is revoked by its user or an admin.
            (alice, Revoke, Resource::Token { owner: id(1) }, Ok(())),
            (
                bob,
                Revoke,
                Resource::Token { owner: id(1) },
                hidden("token"),
            ),
            (admin, Revoke, Resource::Token { owner: id(1) }, Ok(())),
        ];
        for (actor, action, resource, expected) in table {
            assert_eq!(
                authorize(&actor, action, resource),
                expected,
                "{actor:?} {action:?} {resource:?}"
            );
        }
    }

    #[test]
    fn grants_as_a_table() {
        use chrono::TimeZone;
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let hour = chrono::Duration::hours(1);
        let user = Actor {
            id: id(1),
            role: Role::User,
        };
        let auditor = Actor {
            id: id(2),
            role: Role::Auditor,
        };
        let admin = Actor {
            id: id(3),
            role: Role::Admin,
        };
        let web1 = id(10);
        let db1 = id(11);
        let prod: BTreeMap<String, String> = [("env".to_owned(), "prod".to_owned())].into();
        let none = BTreeMap::new();
        let shell_deploy_web1 = Grant {
            target: GrantTarget::Host(web1),
            account: "deploy".into(),
            actions: vec![HostAction::Shell],
            not_before: None,
            not_after: None,
        };
        let run_any_prod = Grant {
            target: GrantTarget::Labels(prod.clone()),
            account: "*".into(),
            actions: vec![HostAction::Run],
            not_before: Some(now - hour),
            not_after: Some(now + hour),
        };
        let expired = Grant {
            target: GrantTarget::Host(db1),
            account: "*".into(),
            actions: vec![HostAction::Shell],
            not_before: None,
            not_after: Some(now),
        };
        let later = Grant {
            target: GrantTarget::Host(db1),
            account: "*".into(),
            actions: vec![HostAction::Shell],
            not_before: Some(now + hour),
            not_after: None,
        };
        let grants = vec![shell_deploy_web1, run_any_prod, expired, later];
        let host = |host: Uuid, labels, account| {
            Resource::Host(HostAccess {
                id: host,
                labels,
                account,
                grants: &grants,
                now,
            })
        };
        use HostAction::*;
        let hidden = Err(Denied::Hidden("host"));
        let table: Vec<(Actor, Action, Resource, Result<(), Denied>)> = vec![
            // A shell grant to deploy@web1.
            (user, Read, host(web1, &none, None), Ok(())),
            (user, Read, host(web1, &none, Some("deploy")), Ok(())),
            (user, Read, host(web1, &none, Some("root")), hidden),
            (user, Use(Shell), host(web1, &none, Some("deploy")), Ok(())),
            (
                user,
                Use(Shell),
                host(web1, &none, Some("root")),
                Err(Denied::NotGranted("shell")),
            ),
            (
                user,
                Use(Run),
                host(web1, &none, Some("deploy")),
                Err(Denied::NotGranted("run")),
            ),
            // A label grant reaches every account of every matching host.
            (user, Use(Run), host(id(12), &prod, Some("root")), Ok(())),
            (
                user,
                Use(Shell),
                host(id(12), &prod, Some("root")),
                Err(Denied::NotGranted("shell")),
            ),
            (user, Use(Run), host(id(12), &none, Some("root")), hidden),
            // Expired and not yet valid grants do nothing.
            (user, Read, host(db1, &none, None), hidden),
            (user, Use(Shell), host(db1, &none, Some("root")), hidden),
            // An auditor sees every host and does nothing on it.
            (auditor, Read, host(db1, &none, None), Ok(())),
            (
                auditor,
                Use(Shell),
                host(web1, &none, Some("deploy")),
                Err(Denied::NotGranted("shell")),
            ),
            (auditor, View, Resource::Session { owner: id(1) }, Ok(())),
            (auditor, ListAll, Resource::Sessions, Ok(())),
            (
                auditor,
                Control,
                Resource::Session { owner: id(1) },
                hidden_session(),
            ),
            (auditor, Manage, Resource::Hosts, Err(Denied::Forbidden)),
            (auditor, Manage, Resource::Access, Err(Denied::Forbidden)),
            (user, Manage, Resource::Access, Err(Denied::Forbidden)),
            // Administrators need no grant.
            (admin, Use(Shell), host(db1, &none, Some("root")), Ok(())),
            (admin, Manage, Resource::Access, Ok(())),
        ];
        for (actor, action, resource, expected) in table {
            assert_eq!(
                authorize(&actor, action, resource),
                expected,
                "{actor:?} {action:?} {resource:?}"
            );
        }
    }

    fn hidden_session() -> Result<(), Denied> {
        Err(Denied::Hidden("session"))
    }
}

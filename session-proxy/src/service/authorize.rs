//! The one authorization point: may `actor` do `action` to `resource`?
//! Today's rules: administrators may do everything; everybody signed in
//! may read hosts and the task library; a session is its owner's (and its
//! share links are also their creator's to revoke); an API token is its
//! user's. Grants (the next step) slot in here.

use uuid::Uuid;

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Actor {
    pub id: Uuid,
    pub is_admin: bool,
}

/// What they want to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Read a list or item everybody may read.
    Read,
    /// See a session, its runs, recording and links; attach to it.
    View,
    /// Type into a session, run in it, share it, end it.
    Control,
    /// See every user's sessions, not just one's own.
    ListAll,
    /// Create, change or delete (hosts, tasks, scripts, users, throttles),
    /// or scan a host's key.
    Manage,
    /// Revoke a share link or an API token.
    Revoke,
}

/// What it is done to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    Hosts,
    /// The credential vault: administrators only.
    Credentials,
    Library,
    Users,
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
/// (answered as "not found"); `Forbidden`: the actor may know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Denied {
    #[error("{0} not found")]
    Hidden(&'static str),
    #[error("only administrators may do this")]
    Forbidden,
}

pub(crate) fn authorize(actor: &Actor, action: Action, resource: Resource) -> Result<(), Denied> {
    use Action::*;
    use Resource::*;
    if actor.is_admin {
        return Ok(());
    }
    let allowed = match (resource, action) {
        (Hosts | Library, Read) => true,
        (Session { owner }, View | Control) => owner == actor.id,
        (Share { owner, creator }, Revoke) => owner == actor.id || creator == Some(actor.id),
        (Token { owner }, Revoke) => owner == actor.id,
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    Err(match resource {
        Session { .. } => Denied::Hidden("session"),
        Share { .. } => Denied::Hidden("share link"),
        Token { .. } => Denied::Hidden("token"),
        Hosts | Credentials | Library | Users | LoginThrottles | Sessions => Denied::Forbidden,
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
            is_admin: false,
        };
        let bob = Actor {
            id: id(2),
            is_admin: false,
        };
        let admin = Actor {
            id: id(9),
            is_admin: true,
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
                    is_admin: false,
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
}

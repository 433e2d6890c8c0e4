//! Share links: a secret URL that lets another person watch (`view`) or
//! type into (`control`) a live session. Revoking a link disconnects
//! everyone who joined through it, on every proxy (an `Event::Revoked` on
//! the session's events).

use std::time::Duration;

use chrono::{DateTime, Utc};
use shellway_common::event::ViewMode;
use shellway_common::{Event, SessionStatus};
use uuid::Uuid;

use super::{authorize, sessions, Action, Resource, ServiceError};
use crate::auth::{self, AuthUser};
use crate::state::AppState;
use crate::store;

/// Share tokens look like `swl_` + 64 hex digits (256 random bits).
pub(crate) const SHARE_PREFIX: &str = "swl_";
const DEFAULT_EXPIRY: Duration = Duration::from_secs(3600);

/// Deployment switches for sharing (see docs/configuration.md).
#[derive(Debug, Clone)]
pub struct Sharing {
    /// Longest lifetime a link may be given.
    pub max_expiry: Duration,
    /// Whether a `view` link works without signing in.
    pub anonymous_view: bool,
    /// Viewers one session accepts, owner included.
    pub max_viewers: usize,
    /// Of those, seats kept for the owner and administrators: link viewers
    /// cannot take them (at most `max_viewers - 1`).
    pub reserved_viewers: usize,
    /// Viewers one share link admits.
    pub max_viewers_per_link: usize,
    /// Live output messages (up to 32 KiB each) a viewer may fall behind
    /// before it resyncs from the recording: what a stalled viewer can make
    /// this proxy hold for its session.
    pub viewer_buffer: usize,
    /// Output bytes a flow-controlled viewer may have unacknowledged.
    pub window: usize,
    /// Output bytes a flow-controlled viewer may fall behind before it
    /// skips ahead to a snapshot of the screen.
    pub skip: usize,
}

impl Default for Sharing {
    fn default() -> Self {
        Self {
            max_expiry: Duration::from_secs(24 * 3600),
            anonymous_view: false,
            max_viewers: 64,
            reserved_viewers: 4,
            max_viewers_per_link: 16,
            viewer_buffer: 1024,
            window: 256 * 1024,
            skip: 1024 * 1024,
        }
    }
}

impl Sharing {
    pub(crate) fn seats(&self) -> crate::presence::Seats {
        crate::presence::Seats {
            max: self.max_viewers,
            reserved: self
                .reserved_viewers
                .min(self.max_viewers.saturating_sub(1)),
            per_link: self.max_viewers_per_link,
        }
    }
}

/// A link as people who joined through it are bound to it.
#[derive(Debug, Clone)]
pub(crate) struct Share {
    pub id: Uuid,
    pub session: Uuid,
    pub mode: ViewMode,
    pub expires_at: DateTime<Utc>,
    /// The last output recorded when the link was made: its viewers start
    /// from the screen and never see output from before (see
    /// docs/protocol.md, "Resume").
    pub start_seq: u64,
}

/// Why a link does not open its session. Says nothing about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LinkRefused {
    #[error("this is not a Shellway share link (check that it was copied whole)")]
    Malformed,
    #[error("this share link does not exist")]
    Unknown,
    #[error("this share link was revoked")]
    Revoked,
    #[error("this share link has expired")]
    Expired,
    #[error("the shared session has ended")]
    Ended,
}

pub(crate) fn join_path(token: &str) -> String {
    format!("/join/{token}")
}

/// A link just made: its token is shown this once.
#[derive(Debug, Clone)]
pub(crate) struct NewLink {
    pub id: Uuid,
    pub token: String,
    pub mode: ViewMode,
    pub expires_at: DateTime<Utc>,
}

/// `user` shares a live session they may control.
pub(crate) async fn create(
    st: &AppState,
    session: Uuid,
    user: &AuthUser,
    mode: Option<&str>,
    expires_in: Option<u64>,
) -> Result<NewLink, ServiceError> {
    let session = sessions::load_live(
        st,
        session,
        user,
        "session_ended",
        "the session has ended; only live sessions can be shared",
    )
    .await?;
    let access = super::access::Access::load(st, user).await?;
    super::access::session_allows(st, &access, &session, super::HostAction::Share).await??;
    let mode = parse_mode(mode.unwrap_or("view"))
        .ok_or_else(|| ServiceError::invalid("mode", "mode must be \"view\" or \"control\""))?;
    let max = st.settings.sharing.max_expiry;
    let expires_in = expires_in.map_or(DEFAULT_EXPIRY.min(max), Duration::from_secs);
    if expires_in.is_zero() || expires_in > max {
        return Err(ServiceError::invalid(
            "expires_in",
            format!("expires_in must be between 1 and {} seconds", max.as_secs()),
        ));
    }
    let (token, hash) = auth::new_secret(SHARE_PREFIX);
    let id = Uuid::now_v7();
    let new = store::shares::NewShare {
        id,
        session: session.id,
        token_hash: &hash,
        mode: mode_str(mode),
        by: user.audit_id(),
        expires_in_secs: expires_in.as_secs_f64(),
    };
    let expires_at = store::shares::create(&st.db, &new).await?;
    Ok(NewLink {
        id,
        token,
        mode,
        expires_at,
    })
}

/// The links of a session `user` may see, and whether it is live.
pub(crate) async fn list(
    st: &AppState,
    session: Uuid,
    user: &AuthUser,
) -> Result<(Vec<store::shares::ShareListRow>, bool), ServiceError> {
    let session = sessions::load(st, session, user, Action::View).await?;
    let rows = store::shares::of_session(&st.db, session.id).await?;
    Ok((rows, session.status().is_live()))
}

/// Revokes the link with id or token `key`: the session's owner, the
/// link's creator or an admin may.
pub(crate) async fn revoke(st: &AppState, key: &str, user: &AuthUser) -> Result<(), ServiceError> {
    let by_id = Uuid::parse_str(key).ok();
    let row = store::shares::find(&st.db, by_id, &auth::token_hash(key))
        .await?
        .ok_or(ServiceError::NotFound("share link"))?;
    let resource = Resource::Share {
        owner: row.owner_id,
        creator: row.created_by,
    };
    authorize(&user.actor(), Action::Revoke, resource)?;
    store::shares::revoke(&st.db, row.id, row.session_id, user.audit_id()).await?;
    // Sent even for a link revoked before: it disconnects anyone still on it.
    let revoked = Event::Revoked {
        share: row.id,
        by: user.username.clone(),
    };
    st.broker.publish_event(row.session_id, &revoked).await?;
    Ok(())
}

/// The live link behind `token`, or why it does not open its session.
pub(crate) async fn resolve(st: &AppState, token: &str) -> Result<Share, ServiceError> {
    let well_formed = token
        .strip_prefix(SHARE_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err(LinkRefused::Malformed.into());
    }
    let row = store::shares::by_token(&st.db, &auth::token_hash(token))
        .await?
        .ok_or(LinkRefused::Unknown)?;
    if row.revoked {
        return Err(LinkRefused::Revoked.into());
    }
    if row.expired {
        return Err(LinkRefused::Expired.into());
    }
    if !SessionStatus::parse(&row.session_status).is_some_and(SessionStatus::is_live) {
        return Err(LinkRefused::Ended.into());
    }
    Ok(Share {
        id: row.id,
        session: row.session_id,
        mode: parse_mode(&row.mode).unwrap_or(ViewMode::View),
        expires_at: row.expires_at,
        start_seq: u64::try_from(row.start_seq).unwrap_or(0),
    })
}

/// A `control` link works only while its session's owner still holds the
/// grant the session needs; a `view` link needs no grant of anyone.
pub(crate) async fn owner_still_allowed(st: &AppState, share: &Share) -> Result<(), ServiceError> {
    if share.mode != ViewMode::Control {
        return Ok(());
    }
    let session = store::sessions::get(&st.db, share.session)
        .await?
        .ok_or(LinkRefused::Ended)?;
    let role = store::users::role_of(&st.db, session.owner_id).await?;
    let Some(role) = role.as_deref().and_then(super::Role::parse) else {
        return Err(LinkRefused::Revoked.into());
    };
    let owner = super::Actor {
        id: session.owner_id,
        role,
    };
    let access = super::access::Access::of(st, owner).await?;
    let action = super::access::session_action(session.shell);
    if super::access::session_allows(st, &access, &session, action)
        .await?
        .is_err()
    {
        return Err(LinkRefused::Revoked.into());
    }
    Ok(())
}

/// Whether someone not signed in may use this link.
pub(crate) fn anonymous_may_join(st: &AppState, share: &Share) -> bool {
    share.mode == ViewMode::View && st.settings.sharing.anonymous_view
}

/// The shared session's host name and owner, for the join page.
pub(crate) async fn describe(
    st: &AppState,
    share: &Share,
) -> Result<(Option<String>, String), ServiceError> {
    Ok(store::shares::describe(&st.db, share.session).await?)
}

pub(crate) fn parse_mode(mode: &str) -> Option<ViewMode> {
    match mode {
        "view" => Some(ViewMode::View),
        "control" => Some(ViewMode::Control),
        _ => None,
    }
}

pub(crate) fn mode_str(mode: ViewMode) -> &'static str {
    match mode {
        ViewMode::View => "view",
        ViewMode::Control => "control",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        assert_eq!(parse_mode("view"), Some(ViewMode::View));
        assert_eq!(parse_mode("control"), Some(ViewMode::Control));
        assert_eq!(parse_mode("admin"), None);
        assert_eq!(mode_str(ViewMode::Control), "control");
    }

    #[test]
    fn tokens_carry_256_random_bits() {
        let (a, _) = auth::new_secret(SHARE_PREFIX);
        let (b, _) = auth::new_secret(SHARE_PREFIX);
        assert_ne!(a, b);
        assert_eq!(a.len(), SHARE_PREFIX.len() + 64);
    }
}

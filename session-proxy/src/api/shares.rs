//! Share links: a secret URL that lets another person watch (`view`) or
//! type into (`control`) a live session. Only the token's SHA-256 is
//! stored; revoking a link disconnects everyone who joined through it, on
//! every proxy (an `Event::Revoked` on the session's events).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::json;
use shellway_common::api::shares::{CreateShare, CreatedShare, JoinInfo, ShareInfo};
use shellway_common::event::ViewMode;
use shellway_common::Event;
use uuid::Uuid;

use super::{sessions, AppState, Json};
use crate::auth::{self, AuthUser};
use crate::db;
use crate::error::ApiError;

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

fn parse_mode(mode: &str) -> Option<ViewMode> {
    match mode {
        "view" => Some(ViewMode::View),
        "control" => Some(ViewMode::Control),
        _ => None,
    }
}

fn mode_str(mode: ViewMode) -> &'static str {
    match mode {
        ViewMode::View => "view",
        ViewMode::Control => "control",
    }
}

pub(crate) fn join_path(token: &str) -> String {
    format!("/join/{token}")
}

#[utoipa::path(post, operation_id = "create_share", path = "/api/sessions/{id}/shares", tag = "shares", params(("id" = Uuid, Path)), request_body = CreateShare, responses((status = 201, description = "The link, its token shown once", body = CreatedShare)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(body): Json<CreateShare>,
) -> Result<(StatusCode, axum::Json<CreatedShare>), ApiError> {
    let session = sessions::load(&st.db, id, &user).await?;
    if !session.status().is_live() {
        return Err(ApiError::conflict(
            "session_ended",
            "the session has ended; only live sessions can be shared",
        ));
    }
    let mode_name = body.mode.as_deref().unwrap_or("view");
    let mode = parse_mode(mode_name)
        .ok_or_else(|| ApiError::invalid("mode", "mode must be \"view\" or \"control\""))?;
    let max = st.settings.sharing.max_expiry;
    let expires_in = body
        .expires_in
        .map_or(DEFAULT_EXPIRY.min(max), Duration::from_secs);
    if expires_in.is_zero() || expires_in > max {
        return Err(ApiError::invalid(
            "expires_in",
            format!("expires_in must be between 1 and {} seconds", max.as_secs()),
        ));
    }
    let (token, hash) = auth::new_secret(SHARE_PREFIX);
    let share = Uuid::now_v7();
    let expires_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO shares (id, session_id, token_hash, mode, created_by, expires_at, start_seq) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), \
         (SELECT coalesce(max(seq), 0) FROM output_chunks WHERE session_id = $2)) \
         RETURNING expires_at",
    )
    .bind(share)
    .bind(session.id)
    .bind(hash)
    .bind(mode_str(mode))
    .bind(user.id)
    .bind(expires_in.as_secs_f64())
    .fetch_one(&st.db)
    .await?;
    db::audit(
        &st.db,
        user.audit_id(),
        "share.create",
        &session.id.to_string(),
        json!({"share": share, "mode": mode_str(mode), "expires_at": expires_at}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedShare {
            id: share,
            url: join_path(&token),
            ws_path: format!("/ws/join/{token}"),
            token,
            mode: mode_str(mode).to_owned(),
            expires_at,
        }),
    ))
}

type ShareListRow = (
    Uuid,
    String,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

#[utoipa::path(get, operation_id = "list_shares", path = "/api/sessions/{id}/shares", tag = "shares", params(("id" = Uuid, Path)), responses((status = 200, description = "The session's links, newest first", body = Vec<ShareInfo>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<ShareInfo>>, ApiError> {
    let session = sessions::load(&st.db, id, &user).await?;
    let rows: Vec<ShareListRow> = sqlx::query_as(
        "SELECT s.id, s.mode, u.username, s.created_at, s.expires_at, s.revoked_at \
         FROM shares s LEFT JOIN users u ON u.id = s.created_by \
         WHERE s.session_id = $1 ORDER BY s.created_at DESC",
    )
    .bind(session.id)
    .fetch_all(&st.db)
    .await?;
    let now = Utc::now();
    let live = session.status().is_live();
    let shares = rows
        .into_iter()
        .map(
            |(id, mode, created_by, created_at, expires_at, revoked_at)| ShareInfo {
                id,
                mode,
                created_by,
                created_at,
                expires_at,
                revoked_at,
                active: live && revoked_at.is_none() && expires_at > now,
            },
        )
        .collect();
    Ok(axum::Json(shares))
}

/// Share id, session id, creator, session owner, when revoked.
type RevokeRow = (Uuid, Uuid, Option<Uuid>, Uuid, Option<DateTime<Utc>>);
/// Share id, session id, mode, expiry, expired, revoked, session status.
type ResolveRow = (Uuid, Uuid, String, DateTime<Utc>, bool, bool, String, i64);

/// `DELETE /api/shares/{id or token}`: the session's owner, the link's
/// creator or an admin revokes a link.
#[utoipa::path(delete, operation_id = "revoke_share", path = "/api/shares/{key}", tag = "shares", params(("key" = String, Path, description = "The link's id or token")), responses((status = 204, description = "Revoked; its viewers are disconnected")))]
pub(crate) async fn revoke(
    State(st): State<AppState>,
    user: AuthUser,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    let by_id = Uuid::parse_str(&key).ok();
    let hash = auth::token_hash(&key);
    let row: Option<RevokeRow> = sqlx::query_as(
        "SELECT sh.id, sh.session_id, sh.created_by, s.owner_id, sh.revoked_at \
         FROM shares sh JOIN sessions s ON s.id = sh.session_id \
         WHERE sh.id = $1 OR sh.token_hash = $2",
    )
    .bind(by_id)
    .bind(hash)
    .fetch_optional(&st.db)
    .await?;
    let (share, session, creator, owner, revoked_at) = row
        .filter(|(_, _, creator, owner, _)| {
            user.is_admin || *owner == user.id || *creator == Some(user.id)
        })
        .ok_or_else(|| ApiError::not_found("share link"))?;
    let _ = (creator, owner);
    if revoked_at.is_none() {
        sqlx::query(
            "UPDATE shares SET revoked_at = now(), revoked_by = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(share)
        .bind(user.id)
        .execute(&st.db)
        .await?;
    }
    // Sent even for a link revoked before: it disconnects anyone still on it.
    st.broker
        .publish_event(
            session,
            &Event::Revoked {
                share,
                by: user.username.clone(),
            },
        )
        .await?;
    db::audit(
        &st.db,
        user.audit_id(),
        "share.revoke",
        &session.to_string(),
        json!({"share": share}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Why a link does not open a session. Says nothing about the session.
fn refused(status: StatusCode, code: &'static str, message: &str) -> ApiError {
    ApiError::new(status, code, message)
}

/// The live link behind `token`, or a clear refusal.
pub(crate) async fn resolve(db: &sqlx::PgPool, token: &str) -> Result<Share, ApiError> {
    let well_formed = token
        .strip_prefix(SHARE_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "share_malformed",
            "this is not a Shellway share link (check that it was copied whole)",
        ));
    }
    let row: Option<ResolveRow> = sqlx::query_as(
        "SELECT sh.id, sh.session_id, sh.mode, sh.expires_at, sh.expires_at <= now(), \
         sh.revoked_at IS NOT NULL, s.status, sh.start_seq \
         FROM shares sh JOIN sessions s ON s.id = sh.session_id WHERE sh.token_hash = $1",
    )
    .bind(auth::token_hash(token))
    .fetch_optional(db)
    .await?;
    let Some((id, session, mode, expires_at, expired, revoked, status, start_seq)) = row else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "share_unknown",
            "this share link does not exist",
        ));
    };
    if revoked {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "share_revoked",
            "this share link was revoked",
        ));
    }
    if expired {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "share_expired",
            "this share link has expired",
        ));
    }
    if !sessions::LIVE.contains(&status.as_str()) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "share_ended",
            "the shared session has ended",
        ));
    }
    Ok(Share {
        id,
        session,
        mode: parse_mode(&mode).unwrap_or(ViewMode::View),
        expires_at,
        start_seq: u64::try_from(start_seq).unwrap_or(0),
    })
}

/// `GET /api/join/{token}`: what a link opens, for the join page.
#[utoipa::path(get, operation_id = "describe_share", path = "/api/join/{token}", tag = "shares", security((), ("cookie" = []), ("bearer" = [])), params(("token" = String, Path)), responses((status = 200, description = "What the link opens", body = JoinInfo)))]
pub(crate) async fn describe(
    State(st): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Path(token): Path<String>,
) -> Result<axum::Json<JoinInfo>, ApiError> {
    let share = resolve(&st.db, &token).await?;
    if user.is_err() && !(share.mode == ViewMode::View && st.settings.sharing.anonymous_view) {
        return Err(ApiError::unauthenticated());
    }
    let (host, owner): (Option<String>, String) = sqlx::query_as(
        "SELECT h.name, u.username FROM sessions s JOIN users u ON u.id = s.owner_id \
         LEFT JOIN hosts h ON h.id = s.host_id WHERE s.id = $1",
    )
    .bind(share.session)
    .fetch_one(&st.db)
    .await?;
    Ok(axum::Json(JoinInfo {
        mode: mode_str(share.mode).to_owned(),
        host_name: host,
        owner,
        expires_at: share.expires_at,
        ws_path: format!("/ws/join/{token}"),
    }))
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

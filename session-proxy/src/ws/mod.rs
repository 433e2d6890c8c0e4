//! The console WebSocket of one session: `GET /ws/sessions/{id}` (owner or
//! admin) and `GET /ws/join/{token}` (share link); and a job's live
//! results, `GET /ws/jobs/{id}` ([`jobs`]).
//!
//! A viewer is two tasks: [`client`] reads what the browser sends and acts
//! on it at once (input never waits for output), and [`viewer`] sends the
//! session's output and events: it subscribes to the live feed, catches up
//! from the recording or a snapshot, and keeps within the client's flow
//! control [`window`], skipping ahead to a snapshot when the client falls
//! too far behind ([`outbox`] holds what is not sent yet, [`replay`] reads
//! the recording).

mod client;
mod jobs;
mod outbox;
mod replay;
mod viewer;
mod window;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use shellway_common::event::ViewMode;
use uuid::Uuid;

use crate::auth::{AuthUser, Credential};
use crate::error::ApiError;
use crate::presence::Seat;
use crate::service::{self, sessions, shares, Action};
use crate::state::AppState;

use viewer::{Attach, Viewer};

/// The WebSocket routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ws/sessions/{id}", get(upgrade))
        .route("/ws/join/{token}", get(join))
        .route("/ws/jobs/{id}", get(jobs::upgrade))
}

#[derive(Deserialize)]
pub(crate) struct WsQuery {
    after: Option<u64>,
    /// `view` or `control` (owner and admins only; an admin who does not
    /// own the session watches read-only unless asking for control).
    mode: Option<String>,
    /// Start with a snapshot of the screen instead of recorded output.
    snapshot: Option<bool>,
    /// The client acknowledges what it has drawn (`ack`) and takes part in
    /// flow control.
    flow: Option<bool>,
}

pub(crate) async fn upgrade(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let session = sessions::load(&st, id, &user, Action::View).await?;
    let owner = session.owner_id == user.id;
    let mode = match q.mode.as_deref() {
        None if owner => ViewMode::Control,
        None => ViewMode::View,
        Some("view") => ViewMode::View,
        Some("control") => ViewMode::Control,
        Some(_) => {
            return Err(ApiError::invalid(
                "mode",
                "mode must be \"view\" or \"control\"",
            ))
        }
    };
    if mode == ViewMode::Control {
        let resource = service::Resource::Session {
            owner: session.owner_id,
        };
        service::authorize(&user.actor(), Action::Control, resource).map_err(ApiError::from)?;
    }
    let seat = if owner { Seat::Owner } else { Seat::Admin };
    let attach = Attach {
        session: session.id,
        mode,
        seat,
        share: None,
        after: q.after,
        snapshot: q.snapshot.unwrap_or(!owner),
        flow: q.flow.unwrap_or(false),
    };
    let viewer = Viewer::new(st, user, attach)?;
    Ok(viewer.upgrade(ws))
}

/// `GET /ws/join/{token}`: a viewer who came through a share link.
pub(crate) async fn join(
    State(st): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Path(token): Path<String>,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let share = shares::resolve(&st, &token).await?;
    shares::owner_still_allowed(&st, &share).await?;
    let user = match user {
        Ok(user) => user,
        Err(_) if shares::anonymous_may_join(&st, &share) => AuthUser {
            id: Uuid::nil(),
            username: "anonymous".into(),
            role: crate::service::Role::User,
            credential: Credential::Token,
        },
        Err(err) => return Err(err),
    };
    let attach = Attach {
        session: share.session,
        mode: share.mode,
        seat: Seat::Link(share.id),
        share: Some(share),
        after: q.after,
        snapshot: true,
        flow: q.flow.unwrap_or(false),
    };
    let viewer = Viewer::new(st, user, attach)?;
    Ok(viewer.upgrade(ws))
}

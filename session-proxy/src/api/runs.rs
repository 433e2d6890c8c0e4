//! Runs: a command or a batch script executed in a live session.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use shellway_common::api::runs::{Run, RunCreated};
use uuid::Uuid;

use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::runs::{self, RunRequest};
use crate::service::sessions;
use crate::store;

#[utoipa::path(post, operation_id = "start_run", path = "/api/sessions/{id}/runs", tag = "sessions", params(("id" = Uuid, Path)), request_body = RunRequest, responses((status = 201, description = "Queued", body = RunCreated)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<RunRequest>,
) -> Result<(StatusCode, axum::Json<RunCreated>), ApiError> {
    sessions::load_live(&st, id, &user, "session_not_live", "the session has ended").await?;
    let run = runs::start(&st, id, &user, &req, false).await?;
    Ok((StatusCode::CREATED, axum::Json(RunCreated { id: run })))
}

/// The runs of each of `sessions` as the API shows them, oldest first.
pub(crate) async fn of_sessions(
    st: &AppState,
    sessions: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Run>>, ApiError> {
    let rows = store::runs::of_sessions(&st.db, sessions).await?;
    let mut map: HashMap<Uuid, Vec<Run>> = HashMap::new();
    for r in rows {
        map.entry(r.session_id).or_default().push(Run {
            id: r.id,
            kind: r.kind,
            command: r.command,
            status: r.status,
            exit_code: r.exit_code,
            exit_signal: r.exit_signal,
            failed_step: r.failed_step,
            started_at: r.started_at,
            ended_at: r.ended_at,
            duration_ms: r.duration_ms,
            output_tail: r.output_tail,
        });
    }
    Ok(map)
}

//! Runs: a command or a batch script executed in a live session.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::json;
pub(crate) use shellway_common::api::runs::RunRequest;
use shellway_common::api::runs::{Run, RunCreated};
use shellway_common::control::{RunKind, RunSpec};
use shellway_common::{script, Control};
use uuid::Uuid;

use super::library::{self, Saved};
use super::{sessions, AppState, Json};
use crate::auth::AuthUser;
use crate::db;
use crate::error::ApiError;

/// Longest single command accepted.
const MAX_COMMAND: usize = 64 * 1024;

/// What to run, from the request or the library: kind, label and steps.
async fn resolve(
    db: &sqlx::PgPool,
    req: &RunRequest,
) -> Result<(RunKind, String, Vec<String>), ApiError> {
    let task = req.task.is_some() || req.task_id.is_some();
    let given = [
        req.command.is_some(),
        req.script.is_some(),
        task,
        req.script_id.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::invalid(
            "command",
            "give exactly one of command, script, task, task_id or script_id",
        ));
    }
    if task {
        let Saved::Task { name, command } =
            library::task_by(db, req.task_id, req.task.as_deref()).await?
        else {
            return Err(ApiError::invalid("task", "no such saved task"));
        };
        let (_, _, steps) = plan(&RunRequest {
            command: Some(command),
            ..Default::default()
        })?;
        return Ok((RunKind::Task, name, steps));
    }
    if let Some(id) = req.script_id {
        let Saved::Script { name, body } = library::script_by(db, id).await? else {
            return Err(ApiError::invalid("script_id", "no such saved script"));
        };
        let steps = script::parse_script(&body)
            .map_err(|e| ApiError::invalid("script_id", e.to_string()))?;
        let label = format!("script: {name} ({})", step_count(steps.len()));
        return Ok((RunKind::Batch, label, steps));
    }
    plan(req)
}

/// A command or an ad-hoc script, validated: kind, label and steps.
fn plan(req: &RunRequest) -> Result<(RunKind, String, Vec<String>), ApiError> {
    match (&req.command, &req.script) {
        (Some(cmd), None) => {
            let cmd = cmd.trim();
            if cmd.is_empty() {
                return Err(ApiError::invalid("command", "the command is empty"));
            }
            if cmd.len() > MAX_COMMAND || cmd.contains('\0') {
                return Err(ApiError::invalid(
                    "command",
                    "the command is too long or contains a NUL byte",
                ));
            }
            Ok((RunKind::Command, cmd.to_owned(), vec![cmd.to_owned()]))
        }
        (None, Some(text)) => {
            let steps = script::parse_script(text)
                .map_err(|e| ApiError::invalid("script", e.to_string()))?;
            let label = format!("batch ({})", step_count(steps.len()));
            Ok((RunKind::Batch, label, steps))
        }
        _ => Err(ApiError::invalid(
            "command",
            "give exactly one of command or script",
        )),
    }
}

/// `1 step`, `5 steps`.
fn step_count(n: usize) -> String {
    format!("{n} step{}", if n == 1 { "" } else { "s" })
}

/// Records a queued run and sends it to the session's runner. `ordered`
/// keeps it in order with the caller's keystrokes (WebSocket path).
pub(crate) async fn start_run(
    st: &AppState,
    session: Uuid,
    user: &AuthUser,
    req: &RunRequest,
    ordered: bool,
) -> Result<Uuid, ApiError> {
    let (kind, label, steps) = resolve(&st.db, req).await?;
    let run = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO runs (id, session_id, kind, command, status, created_by) \
         SELECT $1, $2, $3, $4, 'queued', $5 FROM sessions \
         WHERE id = $2 AND status IN ('pending', 'connecting', 'open')",
    )
    .bind(run)
    .bind(session)
    .bind(kind.as_str())
    .bind(&label)
    .bind(user.id)
    .execute(&st.db)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict(
            "session_not_live",
            "the session has ended",
        ));
    }
    let spec = RunSpec {
        run,
        kind,
        label: label.clone(),
        steps,
        by: user.username.clone(),
    };
    if let Err(err) = st
        .broker
        .publish_control(session, &Control::Run(spec), ordered)
        .await
    {
        sqlx::query("UPDATE runs SET status = 'error', ended_at = now() WHERE id = $1")
            .bind(run)
            .execute(&st.db)
            .await?;
        return Err(err.into());
    }
    tracing::info!(session_id = %session, run_id = %run, user = %user.username, "run queued");
    db::audit(
        &st.db,
        user.audit_id(),
        "run.start",
        &run.to_string(),
        json!({"session": session, "command": label}),
    )
    .await;
    Ok(run)
}

#[utoipa::path(post, operation_id = "start_run", path = "/api/sessions/{id}/runs", tag = "sessions", params(("id" = Uuid, Path)), request_body = RunRequest, responses((status = 201, description = "Queued", body = RunCreated)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<RunRequest>,
) -> Result<(StatusCode, axum::Json<RunCreated>), ApiError> {
    let session = sessions::load(&st.db, id, &user).await?;
    if !session.status().is_live() {
        return Err(ApiError::conflict(
            "session_not_live",
            "the session has ended",
        ));
    }
    let run = start_run(&st, id, &user, &req, false).await?;
    Ok((StatusCode::CREATED, axum::Json(RunCreated { id: run })))
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: Uuid,
    session_id: Uuid,
    kind: String,
    command: String,
    status: String,
    exit_code: Option<i32>,
    exit_signal: Option<String>,
    failed_step: Option<i32>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
    output_tail: Option<String>,
}

/// The runs of each of `sessions`, oldest first.
pub(crate) async fn of_sessions(
    db: &sqlx::PgPool,
    sessions: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Run>>, ApiError> {
    let rows: Vec<RunRow> = sqlx::query_as(
        "SELECT id, session_id, kind, command, status, exit_code, exit_signal, failed_step, \
         started_at, ended_at, duration_ms, output_tail FROM runs \
         WHERE session_id = ANY($1) ORDER BY created_at, id",
    )
    .bind(sessions)
    .fetch_all(db)
    .await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_becomes_a_batch_of_its_steps() {
        let req = RunRequest {
            script: Some("# x\ncd /tmp\nls\n".into()),
            ..Default::default()
        };
        let (kind, label, steps) = plan(&req).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(kind, RunKind::Batch);
        assert_eq!(label, "batch (2 steps)");
        assert_eq!(steps, vec!["cd /tmp", "ls"]);
        let req = RunRequest {
            script: Some("if true; then\n  ls\nfi\n".into()),
            ..Default::default()
        };
        let (_, label, steps) = plan(&req).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((label.as_str(), steps.len()), ("batch (1 step)", 1));
    }

    #[test]
    fn a_script_that_does_not_parse_names_the_line() {
        let req = RunRequest {
            script: Some("ls\nif true; then\n  ls\n".into()),
            ..Default::default()
        };
        let err = plan(&req).err().unwrap_or_else(|| panic!("parsed"));
        assert_eq!(err.field.as_deref(), Some("script"));
        assert_eq!(err.message, "line 2: `if` is never closed (expected `fi`)");
    }

    #[test]
    fn exactly_one_thing_to_run() {
        let both = RunRequest {
            command: Some("ls".into()),
            script: Some("ls".into()),
            ..Default::default()
        };
        assert!(plan(&both).is_err());
        assert!(plan(&RunRequest::default()).is_err());
        let blank = RunRequest {
            command: Some("  ".into()),
            ..Default::default()
        };
        assert_eq!(
            plan(&blank).err().and_then(|e| e.field).as_deref(),
            Some("command")
        );
        let both = RunRequest {
            command: Some("ls".into()),
            script: Some("ls".into()),
            ..Default::default()
        };
        assert_eq!(plan(&both).err().map(|e| e.code), Some("invalid_field"));
    }
}

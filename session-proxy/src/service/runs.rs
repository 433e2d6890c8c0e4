//! Runs: a command, saved task or batch script executed in a live session.

use shellway_common::control::{RunKind, RunSpec};
use shellway_common::{script, Control};
use uuid::Uuid;

use super::access::Access;
use super::{Action, HostAction, Role, ServiceError};
use crate::auth::AuthUser;
use crate::state::AppState;
use crate::store;

/// Longest single command accepted.
const MAX_COMMAND: usize = 64 * 1024;

/// What to run: exactly one of its fields (the API's request body).
pub(crate) use shellway_common::api::runs::RunRequest;

/// What to run, from the request or the library: kind, label and steps.
async fn resolve(
    db: &sqlx::PgPool,
    req: &RunRequest,
) -> Result<(RunKind, String, Vec<String>), ServiceError> {
    let task = req.task.is_some() || req.task_id.is_some();
    let given = [
        req.command.is_some(),
        req.script.is_some(),
        task,
        req.script_id.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ServiceError::invalid(
            "command",
            "give exactly one of command, script, task, task_id or script_id",
        ));
    }
    if task {
        let (name, command, params) =
            store::library::task_command(db, req.task_id, req.task.as_deref())
                .await?
                .ok_or_else(|| ServiceError::invalid("task", "no such saved task"))?;
        if !params.0.is_empty() {
            return Err(ServiceError::invalid(
                "task",
                "this task takes parameters: run it as a job (POST /api/jobs)",
            ));
        }
        let (_, _, steps) = plan(&RunRequest {
            command: Some(command),
            ..Default::default()
        })?;
        return Ok((RunKind::Task, name, steps));
    }
    if let Some(id) = req.script_id {
        let (name, body) = store::library::script_body(db, id)
            .await?
            .ok_or_else(|| ServiceError::invalid("script_id", "no such saved script"))?;
        let steps = script::parse_script(&body)
            .map_err(|e| ServiceError::invalid("script_id", e.to_string()))?;
        let label = format!("script: {name} ({})", step_count(steps.len()));
        return Ok((RunKind::Batch, label, steps));
    }
    plan(req)
}

/// A command or an ad-hoc script, validated: kind, label and steps.
fn plan(req: &RunRequest) -> Result<(RunKind, String, Vec<String>), ServiceError> {
    match (&req.command, &req.script) {
        (Some(cmd), None) => {
            let cmd = cmd.trim();
            if cmd.is_empty() {
                return Err(ServiceError::invalid("command", "the command is empty"));
            }
            if cmd.len() > MAX_COMMAND || cmd.contains('\0') {
                return Err(ServiceError::invalid(
                    "command",
                    "the command is too long or contains a NUL byte",
                ));
            }
            Ok((RunKind::Command, cmd.to_owned(), vec![cmd.to_owned()]))
        }
        (None, Some(text)) => {
            let steps = script::parse_script(text)
                .map_err(|e| ServiceError::invalid("script", e.to_string()))?;
            let label = format!("batch ({})", step_count(steps.len()));
            Ok((RunKind::Batch, label, steps))
        }
        _ => Err(ServiceError::invalid(
            "command",
            "give exactly one of command or script",
        )),
    }
}

/// `1 step`, `5 steps`.
fn step_count(n: usize) -> String {
    format!("{n} step{}", if n == 1 { "" } else { "s" })
}

/// Whether `user`'s grants allow a run in `session` (its host and account);
/// `account`, when given, must be the session's.
async fn may_run(
    st: &AppState,
    session: Uuid,
    user: &AuthUser,
    account: Option<&str>,
) -> Result<(), ServiceError> {
    let row = store::sessions::get(&st.db, session)
        .await?
        .ok_or(ServiceError::NotFound("session"))?;
    if let Some(login) = account {
        if row.account.as_deref() != Some(login) {
            return Err(ServiceError::invalid(
                "account",
                format!(
                    "this session is logged in as {:?}",
                    row.account.unwrap_or_default()
                ),
            ));
        }
    }
    let access = Access::load(st, user).await?;
    if access.actor.role == Role::Admin {
        return Ok(());
    }
    let Some(host) = row.host_id else {
        return Err(ServiceError::conflict(
            "host_deleted",
            "the session's host was deleted",
        ));
    };
    let host = store::hosts::get(&st.db, host)
        .await?
        .ok_or(ServiceError::NotFound("host"))?;
    access.check(&host, row.account.as_deref(), Action::Use(HostAction::Run))?;
    Ok(())
}

/// Records a queued run in a live session `user` may control and sends it
/// to the session's runner. `ordered` keeps it in order with the caller's
/// keystrokes (WebSocket path).
pub(crate) async fn start(
    st: &AppState,
    session: Uuid,
    user: &AuthUser,
    req: &RunRequest,
    ordered: bool,
) -> Result<Uuid, ServiceError> {
    may_run(st, session, user, req.account.as_deref()).await?;
    let (kind, label, steps) = resolve(&st.db, req).await?;
    let run = Uuid::now_v7();
    let new = store::runs::NewRun {
        id: run,
        session,
        kind: kind.as_str(),
        label: &label,
        by: user.audit_id(),
    };
    if !store::runs::queue(&st.db, &new).await? {
        return Err(ServiceError::conflict(
            "session_not_live",
            "the session has ended",
        ));
    }
    let spec = RunSpec {
        run,
        kind,
        label,
        steps,
        by: user.username.clone(),
    };
    if let Err(err) = st
        .broker
        .publish_control(session, &Control::Run(spec), ordered)
        .await
    {
        store::runs::unsent(&st.db, run).await?;
        return Err(err.into());
    }
    tracing::info!(session_id = %session, run_id = %run, user = %user.username, "run queued");
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: &ServiceError) -> Option<&str> {
        match err {
            ServiceError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

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
        assert_eq!(field_of(&err), Some("script"));
        assert_eq!(
            err.to_string(),
            "line 2: `if` is never closed (expected `fi`)"
        );
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
            plan(&blank).err().as_ref().and_then(field_of),
            Some("command")
        );
        let both = RunRequest {
            command: Some("ls".into()),
            script: Some("ls".into()),
            ..Default::default()
        };
        assert!(matches!(plan(&both), Err(ServiceError::Invalid { .. })));
    }
}

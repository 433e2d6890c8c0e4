//! Saved tasks (a named command) and batch scripts (one step a line).
//! Everyone signed in reads and runs them; administrators write them.

use shellway_common::api::library::{Saved, Script, ScriptBody, Task, TaskBody};
use shellway_common::script;
use uuid::Uuid;

use super::{authorize, Action, Resource, ServiceError};
use crate::auth::AuthUser;
use crate::state::AppState;
pub(crate) use crate::store::library::Kind;
use crate::store::library::{self, SaveError, ScriptRow, TaskRow};

const MAX_NAME: usize = 100;
const MAX_TEXT: usize = 64 * 1024;

fn check_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "name",
            format!("name must be 1-{MAX_NAME} printable characters"),
        ));
    }
    Ok(name.to_owned())
}

fn check_text(field: &'static str, text: &str) -> Result<(), ServiceError> {
    if text.trim().is_empty() {
        return Err(ServiceError::invalid(field, format!("{field} is required")));
    }
    if text.len() > MAX_TEXT || text.contains('\0') {
        return Err(ServiceError::invalid(
            field,
            format!("{field} is too long or contains a NUL byte"),
        ));
    }
    Ok(())
}

/// The name, or every error of the name and the text at once.
fn both(
    name: Result<String, ServiceError>,
    text: Result<(), ServiceError>,
) -> Result<String, ServiceError> {
    match (name, text) {
        (Ok(name), Ok(())) => Ok(name),
        (name, text) => Err(ServiceError::InvalidFields(
            [name.err(), text.err()].into_iter().flatten().collect(),
        )),
    }
}

fn duplicate(e: SaveError, what: &str, name: &str) -> ServiceError {
    match e {
        SaveError::Duplicate => {
            ServiceError::conflict("duplicate", format!("a {what} named {name:?} exists"))
        }
        SaveError::Db(e) => e.into(),
    }
}

fn may_manage(user: &AuthUser) -> Result<(), ServiceError> {
    Ok(authorize(&user.actor(), Action::Manage, Resource::Library)?)
}

fn may_read(user: &AuthUser) -> Result<(), ServiceError> {
    Ok(authorize(&user.actor(), Action::Read, Resource::Library)?)
}

fn task_dto((id, name, label, command, description, params): TaskRow) -> Task {
    Task {
        id,
        name,
        label,
        command,
        description,
        params: params.0,
    }
}

fn script_dto((id, name, description, body): ScriptRow) -> Script {
    let steps = script::parse_script(&body).map(|s| s.len()).unwrap_or(0);
    Script {
        id,
        name,
        description,
        body,
        steps,
    }
}

pub(crate) async fn tasks(st: &AppState, user: &AuthUser) -> Result<Vec<Task>, ServiceError> {
    may_read(user)?;
    let rows = library::tasks(&st.db).await?;
    Ok(rows.into_iter().map(task_dto).collect())
}

pub(crate) async fn task(st: &AppState, user: &AuthUser, id: Uuid) -> Result<Task, ServiceError> {
    may_read(user)?;
    library::task(&st.db, id)
        .await?
        .map(task_dto)
        .ok_or(ServiceError::NotFound("task"))
}

/// Creates (`id: None`) or changes a task.
pub(crate) async fn save_task(
    st: &AppState,
    user: &AuthUser,
    id: Option<Uuid>,
    body: TaskBody,
) -> Result<Saved, ServiceError> {
    if let Some(id) = id {
        exists(st, Kind::Task, id).await?;
    }
    may_manage(user)?;
    let name = both(check_name(&body.name), check_text("command", &body.command))?;
    super::task_params::check(&body.params, body.command.trim())?;
    let id = id.unwrap_or_else(Uuid::now_v7);
    let fields = library::TaskFields {
        name: &name,
        label: body.label.trim(),
        command: body.command.trim(),
        description: body.description.trim(),
        params: &body.params,
    };
    library::save_task(&st.db, id, &fields, user.audit_id())
        .await
        .map_err(|e| duplicate(e, "task", &name))?;
    Ok(Saved { id, name })
}

pub(crate) async fn scripts(st: &AppState, user: &AuthUser) -> Result<Vec<Script>, ServiceError> {
    may_read(user)?;
    let rows = library::scripts(&st.db).await?;
    Ok(rows.into_iter().map(script_dto).collect())
}

pub(crate) async fn script(
    st: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> Result<Script, ServiceError> {
    may_read(user)?;
    library::script(&st.db, id)
        .await?
        .map(script_dto)
        .ok_or(ServiceError::NotFound("script"))
}

/// Creates (`id: None`) or changes a script; its body must parse.
pub(crate) async fn save_script(
    st: &AppState,
    user: &AuthUser,
    id: Option<Uuid>,
    body: ScriptBody,
) -> Result<Saved, ServiceError> {
    if let Some(id) = id {
        exists(st, Kind::Script, id).await?;
    }
    may_manage(user)?;
    let text = check_text("body", &body.body).and_then(|()| {
        script::parse_script(&body.body)
            .map(drop)
            .map_err(|e| ServiceError::invalid("body", e.to_string()))
    });
    let name = both(check_name(&body.name), text)?;
    let id = id.unwrap_or_else(Uuid::now_v7);
    let description = body.description.trim();
    library::save_script(&st.db, id, &name, description, &body.body, user.audit_id())
        .await
        .map_err(|e| duplicate(e, "script", &name))?;
    Ok(Saved { id, name })
}

async fn exists(st: &AppState, kind: Kind, id: Uuid) -> Result<(), ServiceError> {
    if library::exists(&st.db, kind, id).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound(kind.name()))
    }
}

pub(crate) async fn delete(
    st: &AppState,
    user: &AuthUser,
    kind: Kind,
    id: Uuid,
) -> Result<(), ServiceError> {
    may_manage(user)?;
    if library::delete(&st.db, kind, id, user.audit_id()).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound(kind.name()))
    }
}

/// The command a job runs for the saved task `name` with `params`.
pub(crate) async fn task_for_job(
    st: &AppState,
    name: &str,
    params: &std::collections::BTreeMap<String, String>,
) -> Result<String, ServiceError> {
    let (_, command, declared) = library::task_command(&st.db, None, Some(name))
        .await?
        .ok_or_else(|| ServiceError::invalid("task.name", "no such saved task"))?;
    super::task_params::render(&command, &declared.0, params)
}

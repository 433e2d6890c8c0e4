//! Saved tasks (a named command) and batch scripts (one step a line).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /api/tasks`, `PUT /api/tasks/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "disk", "label": "Disk usage", "command": "df -h", "description": ""}))]
pub struct TaskBody {
    pub name: String,
    #[serde(default)]
    pub label: String,
    pub command: String,
    #[serde(default)]
    pub description: String,
    /// Named values a job fills in: `{{name}}` in the command becomes the
    /// value, shell-quoted, once it matches the parameter's pattern.
    #[serde(default)]
    pub params: Vec<TaskParam>,
}

/// A task parameter: `name` (`[A-Za-z_][A-Za-z0-9_]*`, at most 32) and
/// the pattern every value must match as a whole (a regular expression,
/// anchored at both ends by Shellway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskParam {
    pub name: String,
    pub pattern: String,
    #[serde(default)]
    pub description: String,
}

/// `POST /api/scripts`, `PUT /api/scripts/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "check", "description": "", "body": "uptime\ndf -h\n"}))]
pub struct ScriptBody {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub body: String,
}

/// What a save answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Saved {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: Uuid,
    pub name: String,
    pub label: String,
    pub command: String,
    pub description: String,
    pub params: Vec<TaskParam>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Script {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub body: String,
    /// How many steps it runs (0 when it does not parse).
    pub steps: usize,
}

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

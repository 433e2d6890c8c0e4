//! Runs: a command, a saved task or a batch script executed in a session.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /api/sessions/{id}/runs`: exactly one of the fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub command: Option<String>,
    /// One step a line.
    pub script: Option<String>,
    /// A saved task, by name.
    pub task: Option<String>,
    pub task_id: Option<Uuid>,
    pub script_id: Option<Uuid>,
    /// The host account it runs as: the session's (given, it must match).
    pub account: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunCreated {
    pub id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: Uuid,
    #[schema(pattern = "^(command|task|batch)$")]
    pub kind: String,
    /// What ran, as a label.
    pub command: String,
    #[schema(pattern = "^(queued|running|ok|failed|error|canceled|lost)$")]
    pub status: String,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    /// The batch step that failed (from 1).
    pub failed_step: Option<i32>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub output_tail: Option<String>,
}

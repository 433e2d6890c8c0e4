//! Sessions: one SSH connection with its shell and runs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::runs::Run;

/// `POST /api/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenSession {
    pub host_id: Uuid,
    /// 1-1000; 80 when absent.
    #[schema(minimum = 1, maximum = 1000)]
    pub cols: Option<u16>,
    /// 1-1000; 24 when absent.
    #[schema(minimum = 1, maximum = 1000)]
    pub rows: Option<u16>,
    /// Whether to open an interactive shell (default true).
    pub shell: Option<bool>,
    /// The host account (login) to connect as; may be left out when the
    /// host has only one.
    #[serde(default)]
    pub account: Option<String>,
}

/// A session requested: attach a WebSocket to `ws_path`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenedSession {
    pub id: Uuid,
    pub ws_path: String,
}

/// `DELETE /api/sessions/{id}`: the end was requested.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EndingSession {
    pub id: Uuid,
}

/// `GET /api/sessions` filters; all optional, combined with AND.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionFilter {
    /// `live`, `finished`, `all` or one session status.
    pub status: Option<String>,
    /// Only the caller's own sessions.
    pub mine: Option<bool>,
    /// Only sessions on this host.
    pub host: Option<Uuid>,
    /// The owner's username (others than admins only ever see their own).
    pub owner: Option<String>,
    /// Started at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Started before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Text searched in the commands of the session's runs (at most 200).
    pub q: Option<String>,
    /// Sessions in the page: 1-200, 50 when absent.
    pub limit: Option<u32>,
    /// The page after this session (the last of the previous page).
    pub before: Option<Uuid>,
}

/// Someone watching a live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ViewerInfo {
    pub user: String,
    #[schema(pattern = "^(control|view)$")]
    pub mode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Session {
    pub id: Uuid,
    pub host_id: Option<Uuid>,
    pub host_name: Option<String>,
    /// The host account (login) it connected as.
    pub account: Option<String>,
    pub owner: String,
    #[schema(pattern = "^(pending|connecting|open|closed|failed|lost|rejected)$")]
    pub status: String,
    pub runner: Option<String>,
    pub cols: i32,
    pub rows: i32,
    pub error: Option<String>,
    pub error_type: Option<String>,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub ws_path: String,
    /// Who watches it now (empty once it ended).
    pub viewers: Vec<ViewerInfo>,
    /// Oldest first.
    pub runs: Vec<Run>,
}

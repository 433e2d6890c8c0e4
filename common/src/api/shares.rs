//! Share links: a secret URL to watch or type into a live session.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /api/sessions/{id}/shares`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateShare {
    /// `view` (the default) or `control`.
    #[schema(pattern = "^(view|control)$")]
    pub mode: Option<String>,
    /// Seconds; an hour when absent.
    #[schema(minimum = 1)]
    pub expires_in: Option<u64>,
}

/// The new link: `token` is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedShare {
    pub id: Uuid,
    pub token: String,
    /// The console's join page.
    pub url: String,
    pub ws_path: String,
    #[schema(pattern = "^(control|view)$")]
    pub mode: String,
    pub expires_at: DateTime<Utc>,
}

/// A link as listed (never its token).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShareInfo {
    pub id: Uuid,
    #[schema(pattern = "^(control|view)$")]
    pub mode: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether it still admits anyone.
    pub active: bool,
}

/// `GET /api/join/{token}`: what a link opens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinInfo {
    #[schema(pattern = "^(control|view)$")]
    pub mode: String,
    pub host_name: Option<String>,
    pub owner: String,
    pub expires_at: DateTime<Utc>,
    pub ws_path: String,
}

//! Sign-in throttling, for administrators.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A username or client address with recent failed sign-ins.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Throttle {
    #[schema(pattern = "^(username|address)$")]
    pub kind: String,
    pub key: String,
    pub failures: i32,
    pub last_failure_at: DateTime<Utc>,
    pub blocked_until: Option<DateTime<Utc>>,
}

//! `GET /readyz`: whether the proxy's dependencies are reachable.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `up` or `down`.
    pub database: String,
    pub broker: String,
    pub recorder_broker: String,
    /// The names of what is down; empty when ready.
    pub down: Vec<String>,
}

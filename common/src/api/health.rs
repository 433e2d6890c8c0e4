//! `GET /readyz`: whether the proxy's dependencies are reachable.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    #[schema(pattern = "^(up|down)$")]
    pub database: String,
    #[schema(pattern = "^(up|down)$")]
    pub broker: String,
    #[schema(pattern = "^(up|down)$")]
    pub recorder_broker: String,
    /// The names of what is down; empty when ready.
    pub down: Vec<String>,
}

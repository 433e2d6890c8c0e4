//! A session's recording, page by page, for the console's replay.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `GET /api/sessions/{id}/recording/events` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next` of the previous page; from the start when absent.
    pub after: Option<String>,
    /// Events in the page: 1-5000, 500 when absent.
    pub limit: Option<usize>,
}

/// An asciicast v2 event: `[seconds, code, data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CastEvent(pub f64, pub String, pub String);

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventsPage {
    pub width: i32,
    pub height: i32,
    /// `[seconds, code, data]`: `o` output, `r` resize, `m` marker.
    #[schema(value_type = Vec<Vec<serde_json::Value>>)]
    pub events: Vec<CastEvent>,
    /// The cursor of the next page.
    pub next: String,
    pub done: bool,
}

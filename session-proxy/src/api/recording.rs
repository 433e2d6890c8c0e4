//! A session's terminal output as an asciicast v2 file: `asciinema play`
//! replays it, and the console's Logs page plays it in a terminal.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{sessions, AppState};
use crate::auth::AuthUser;
use crate::error::ApiError;

pub(crate) async fn asciicast(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let session = sessions::load(&st.db, id, &user).await?;
    let rows: Vec<(DateTime<Utc>, Vec<u8>)> = sqlx::query_as(
        "SELECT at, data FROM output_chunks WHERE session_id = $1 AND stream = 'pty' ORDER BY seq",
    )
    .bind(session.id)
    .fetch_all(&st.db)
    .await?;
    let start = rows.first().map_or(session.created_at, |r| r.0);
    let header_line = json!({
        "version": 2,
        "width": session.cols,
        "height": session.rows,
        "timestamp": start.timestamp(),
        "title": format!("Shellway session {} on {}", session.id, session.host_name.as_deref().unwrap_or("?")),
        "env": {"TERM": "xterm-256color"},
    });
    let mut out = header_line.to_string();
    out.push('\n');
    for (at, data) in rows {
        let t = (at - start).num_microseconds().unwrap_or(0) as f64 / 1e6;
        // Bytes split inside a UTF-8 character become U+FFFD: asciicast
        // events are JSON strings.
        let text = String::from_utf8_lossy(&data);
        out.push_str(&json!([t, "o", text]).to_string());
        out.push('\n');
    }
    let filename = format!("attachment; filename=\"shellway-{}.cast\"", session.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-asciicast".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        out,
    )
        .into_response())
}

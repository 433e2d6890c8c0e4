//! A session's recording: the whole asciicast v2 file, streamed page by
//! page from Postgres (`asciinema play` replays it), and the same events
//! in bounded JSON pages for the console's replay.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use shellway_common::api::recording::{self as dto, EventsPage, PageQuery};
use shellway_common::Stream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::recording::asciicast::{self, CastEvent, Writer};
use crate::service::sessions;
use crate::store::recording_pages::{self as reader, Cursor, Limits};
use crate::store::recordings;
use crate::store::sessions::SessionRow;

/// One page of the download: output bytes read per query. A page becomes
/// one body chunk of at most a few MiB of JSON (escapes included).
const STREAM_PAGE: Limits = Limits {
    items: 256,
    bytes: 1 << 20,
};
/// Pages of the JSON endpoint: default and most items, and output bytes.
const PAGE_ITEMS: usize = 500;
const MAX_PAGE_ITEMS: usize = 5000;
const PAGE_BYTES: usize = 1 << 20;

/// The session, if its recording has not been deleted.
async fn recorded(st: &AppState, id: Uuid, user: &AuthUser) -> Result<SessionRow, ApiError> {
    let session = sessions::load_recording(st, id, user).await?;
    let deleted = recordings::deleted_at(&st.db, id).await?;
    match deleted {
        Some(at) => Err(ApiError::new(
            StatusCode::GONE,
            "recording_deleted",
            format!(
                "this session's recording was deleted on {} under the retention policy",
                at.format("%Y-%m-%d")
            ),
        )),
        None => Ok(session),
    }
}

fn header_of(s: &SessionRow) -> Value {
    asciicast::header(s.id, s.host_name.as_deref(), s.cols, s.rows, s.created_at)
}

/// `GET /api/sessions/{id}/recording`: the asciicast file.
#[utoipa::path(get, operation_id = "download_recording", path = "/api/sessions/{id}/recording", tag = "recordings", params(("id" = Uuid, Path)), responses((status = 200, description = "The asciicast v2 file", content_type = "application/x-asciicast", body = String)))]
pub(crate) async fn asciicast(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let session = recorded(&st, id, &user).await?;
    let download = Download {
        db: st.db.clone(),
        session: session.id,
        header: Some(header_of(&session)),
        cursor: Cursor::default(),
        writer: Writer::new(session.created_at),
        done: false,
        shutdown: st.shutdown.clone(),
    };
    let body = futures_util::stream::try_unfold(download, Download::next);
    let filename = format!("attachment; filename=\"shellway-{}.cast\"", session.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-asciicast".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// The state of one download between body chunks. Dropping it (the
/// client went away) stops it: the next page is never read.
struct Download {
    db: PgPool,
    session: Uuid,
    header: Option<Value>,
    cursor: Cursor,
    writer: Writer,
    done: bool,
    shutdown: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
enum DownloadError {
    #[error("the proxy is shutting down")]
    Shutdown,
    #[error("cannot read the recording")]
    Database,
}

impl Download {
    /// The next body chunk: the header line, then one page of events. An
    /// error aborts the response, so a client never takes a cut file for
    /// a whole one.
    async fn next(mut self) -> Result<Option<(Bytes, Self)>, DownloadError> {
        if let Some(header) = self.header.take() {
            return Ok(Some((Bytes::from(format!("{header}\n")), self)));
        }
        if self.done {
            return Ok(None);
        }
        let page = tokio::select! {
            () = self.shutdown.cancelled() => return Err(DownloadError::Shutdown),
            page = reader::page(&self.db, self.session, self.cursor, STREAM_PAGE) => page,
        };
        let page = page.map_err(|err| {
            tracing::warn!(session_id = %self.session, error = %err, "recording download failed");
            DownloadError::Database
        })?;
        self.cursor = page.next;
        self.done = page.done;
        let mut events: Vec<CastEvent> = Vec::new();
        for item in page.items {
            events.extend(self.writer.events(item));
        }
        if self.done {
            events.extend(self.writer.finish());
        }
        let mut out = String::new();
        for event in &events {
            out.push_str(&serde_json::to_string(event).unwrap_or_default());
            out.push('\n');
        }
        Ok(Some((Bytes::from(out), self)))
    }
}

/// `GET /api/sessions/{id}/recording/events?after=<cursor>&limit=<n>`:
/// `{width, height, events: [[t, code, data]…], next, done}`.
#[utoipa::path(get, operation_id = "recording_events", path = "/api/sessions/{id}/recording/events", tag = "recordings", params(("id" = Uuid, Path), PageQuery), responses((status = 200, description = "One page of the recording", body = EventsPage)))]
pub(crate) async fn events(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<axum::Json<EventsPage>, ApiError> {
    let Query(q) = query?;
    let after = match q.after.as_deref() {
        None | Some("") => Cursor::default(),
        Some(s) => Cursor::parse(s).ok_or_else(|| {
            ApiError::invalid("after", "after must be the `next` of an earlier page")
        })?,
    };
    let items = q.limit.unwrap_or(PAGE_ITEMS);
    if !(1..=MAX_PAGE_ITEMS).contains(&items) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit must be between 1 and {MAX_PAGE_ITEMS}"),
        ));
    }
    let session = recorded(&st, id, &user).await?;
    let limits = Limits {
        items,
        bytes: PAGE_BYTES,
    };
    let page = reader::page(&st.db, id, after, limits).await?;
    let mut writer = Writer::new(session.created_at);
    if after.seq > 0 {
        writer.resume(
            Stream::Pty,
            &recordings::pty_tail(&st.db, id, after.seq).await?,
        );
    }
    let mut events: Vec<CastEvent> = Vec::new();
    for item in page.items {
        events.extend(writer.events(item));
    }
    if page.done {
        events.extend(writer.finish());
    }
    Ok(axum::Json(EventsPage {
        width: session.cols,
        height: session.rows,
        events: events
            .into_iter()
            .map(|e| dto::CastEvent(e.time, e.code.to_owned(), e.data))
            .collect(),
        next: page.next.to_string(),
        done: page.done,
    }))
}

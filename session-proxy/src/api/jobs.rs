//! Jobs: one command, task or script on many hosts.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shellway_common::api::jobs::{
    Job, JobCreated, JobRequest, JobSummary, Preview, PreviewHost, PreviewRequest, RerunRequest,
};
use sqlx::PgPool;
use uuid::Uuid;

use super::{AppState, Json, Query};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::jobs::{self, JobKind};
use crate::service::{job_results, Action};
use crate::store;

#[utoipa::path(post, operation_id = "start_job", path = "/api/jobs", tag = "jobs", request_body = JobRequest, responses((status = 201, description = "Started", body = JobCreated)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Json(req): Json<JobRequest>,
) -> Result<(StatusCode, axum::Json<JobCreated>), ApiError> {
    let id = jobs::start(&st, &user, req).await?;
    Ok((StatusCode::CREATED, axum::Json(JobCreated { id })))
}

#[utoipa::path(post, operation_id = "preview_job", path = "/api/jobs/preview", tag = "jobs", request_body = PreviewRequest, responses((status = 200, description = "The hosts a job with these targets runs on", body = Preview)))]
pub(crate) async fn preview(
    State(st): State<AppState>,
    user: AuthUser,
    Json(req): Json<PreviewRequest>,
) -> Result<axum::Json<Preview>, ApiError> {
    let hosts = jobs::resolve_targets(
        &st,
        &user,
        &req.targets,
        req.account.as_deref(),
        JobKind::Command,
    )
    .await?;
    let hosts: Vec<PreviewHost> = hosts
        .into_iter()
        .map(|(h, account)| PreviewHost {
            id: h.id,
            name: h.name,
            account,
        })
        .collect();
    Ok(axum::Json(Preview {
        count: hosts.len(),
        hosts,
    }))
}

/// Jobs in one page of the history, by default and at most.
const PAGE_DEFAULT: u32 = 50;
const PAGE_MAX: u32 = 200;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// The page after this job.
    before: Option<Uuid>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// Also list the service panels' status reads (every status refresh
    /// and scheduled poll is a job; hidden by default).
    #[serde(default)]
    polls: bool,
}

#[utoipa::path(get, operation_id = "list_jobs", path = "/api/jobs", tag = "jobs", params(ListQuery), responses((status = 200, description = "Newest first", body = Vec<JobSummary>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Vec<JobSummary>>, ApiError> {
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit is 1 to {PAGE_MAX}"),
        ));
    }
    let rows = jobs::list(&st, &user, q.before, i64::from(limit), q.polls).await?;
    Ok(axum::Json(rows.iter().map(job_results::summary).collect()))
}

#[utoipa::path(get, operation_id = "get_job", path = "/api/jobs/{id}", tag = "jobs", params(("id" = Uuid, Path)), responses((status = 200, description = "Per-host results and groups", body = Job)))]
pub(crate) async fn detail(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Job>, ApiError> {
    let row = jobs::load(&st, &user, id, Action::View).await?;
    Ok(axum::Json(job_results::detail(&st, &row).await?))
}

#[utoipa::path(post, operation_id = "cancel_job", path = "/api/jobs/{id}/cancel", tag = "jobs", params(("id" = Uuid, Path)), responses((status = 204, description = "Hosts not started are canceled; running ones are interrupted")))]
pub(crate) async fn cancel(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    jobs::cancel(&st, &user, id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, operation_id = "cancel_job_host", path = "/api/jobs/{id}/hosts/{host_id}/cancel", tag = "jobs", params(("id" = Uuid, Path), ("host_id" = Uuid, Path)), responses((status = 204, description = "The host is canceled or being interrupted")))]
pub(crate) async fn cancel_host(
    State(st): State<AppState>,
    user: AuthUser,
    Path((id, host)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    jobs::cancel(&st, &user, id, Some(host)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, operation_id = "rerun_job", path = "/api/jobs/{id}/rerun", tag = "jobs", params(("id" = Uuid, Path)), request_body = RerunRequest, responses((status = 201, description = "The new job", body = JobCreated)))]
pub(crate) async fn rerun(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<RerunRequest>,
) -> Result<(StatusCode, axum::Json<JobCreated>), ApiError> {
    let new = jobs::rerun(&st, &user, id, req.hosts.as_ref()).await?;
    Ok((StatusCode::CREATED, axum::Json(JobCreated { id: new })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OutputQuery {
    /// `stdout` (default) or `stderr`.
    stream: Option<String>,
}

/// Output messages read per page of a download.
const OUTPUT_PAGE: i64 = 64;

#[utoipa::path(get, operation_id = "job_host_output", path = "/api/jobs/{id}/hosts/{host_id}/output", tag = "jobs", params(("id" = Uuid, Path), ("host_id" = Uuid, Path), OutputQuery), responses((status = 200, description = "The host's whole stdout or stderr", content_type = "application/octet-stream", body = String)))]
pub(crate) async fn output(
    State(st): State<AppState>,
    user: AuthUser,
    Path((id, host)): Path<(Uuid, Uuid)>,
    Query(q): Query<OutputQuery>,
) -> Result<Response, ApiError> {
    let stream = match q.stream.as_deref().unwrap_or("stdout") {
        "stdout" => "stdout",
        "stderr" => "stderr",
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "stream is stdout or stderr",
            ))
        }
    };
    jobs::load(&st, &user, id, Action::View).await?;
    let hosts = store::jobs::hosts(&st.db, id).await?;
    let h = hosts
        .iter()
        .find(|h| h.host_id == host)
        .ok_or_else(|| ApiError::not_found("host"))?;
    let pages = Pages {
        db: st.db.clone(),
        session: h.session_id,
        stream,
        after: 0,
    };
    let body = futures_util::stream::try_unfold(pages, Pages::next);
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(body),
    )
        .into_response())
}

/// A download of one stream, a page of output at a time (constant memory).
struct Pages {
    db: PgPool,
    session: Option<Uuid>,
    stream: &'static str,
    after: i64,
}

impl Pages {
    async fn next(mut self) -> Result<Option<(Vec<u8>, Self)>, sqlx::Error> {
        let Some(session) = self.session else {
            return Ok(None);
        };
        let page =
            store::jobs::output_page(&self.db, session, self.stream, self.after, OUTPUT_PAGE)
                .await?;
        let Some(last) = page.last().map(|(seq, _)| *seq) else {
            return Ok(None);
        };
        if (page.len() as i64) < OUTPUT_PAGE {
            self.session = None;
        }
        self.after = last;
        let bytes = page.into_iter().flat_map(|(_, d)| d).collect();
        Ok(Some((bytes, self)))
    }
}

//! The HTTP API: its routes, thin handlers over `service/`, and the JSON
//! extractor whose rejections speak our error format.

mod access;
mod account;
mod credentials;
mod host_groups;
mod host_input;
mod hosts;
mod jobs;
mod library;
pub(crate) mod login;
pub(crate) mod openapi;
mod recording;
mod runs;
mod services;
mod sessions;
mod shares;
mod throttles;
pub(crate) mod tokens;
mod users;

use axum::extract::FromRequest;
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::error::ApiError;
pub(crate) use crate::state::AppState;

/// `axum::Json`, with rejections in our error format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(crate) struct Json<T>(pub T);

/// `axum::extract::Query`, with rejections in our error format.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct Query<T>(pub T);

/// The API's routes (the WebSocket's are in `ws`, the whole app in `app.rs`).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/login", post(login::login))
        .route("/api/logout", post(login::logout))
        .route("/api/me", get(login::me))
        .route("/api/me/password", post(account::change_password))
        .route("/api/me/access", get(access::mine))
        .route(
            "/api/groups",
            get(access::list_groups).post(access::create_group),
        )
        .route(
            "/api/groups/{id}",
            put(access::update_group).delete(access::delete_group),
        )
        .route(
            "/api/grants",
            get(access::list_grants).post(access::create_grant),
        )
        .route("/api/grants/{id}", delete(access::delete_grant))
        .route(
            "/api/hosts/{id}/accounts",
            get(hosts::accounts).post(hosts::add_account),
        )
        .route(
            "/api/hosts/{id}/accounts/{account_id}",
            delete(hosts::remove_account),
        )
        .route("/api/tokens", get(tokens::list).post(tokens::create))
        .route("/api/tokens/{id}", delete(tokens::revoke))
        .route(
            "/api/credentials",
            get(credentials::list).post(credentials::create),
        )
        .route("/api/credentials/{id}", delete(credentials::remove))
        .route("/api/credentials/rotate", post(credentials::rotate))
        .route("/api/hosts", get(hosts::list).post(hosts::create))
        .route("/api/hosts/scan", post(hosts::scan))
        .route(
            "/api/hosts/{id}",
            get(hosts::get_one).put(hosts::update).delete(hosts::remove),
        )
        .route("/api/sessions", get(sessions::list).post(sessions::open))
        .route(
            "/api/sessions/{id}",
            get(sessions::detail).delete(sessions::end),
        )
        .route("/api/sessions/{id}/runs", post(runs::create))
        .route(
            "/api/sessions/{id}/shares",
            get(shares::list).post(shares::create),
        )
        .route("/api/shares/{key}", axum::routing::delete(shares::revoke))
        .route("/api/join/{token}", get(shares::describe))
        .route("/api/users", get(users::list).post(users::create))
        .route("/api/users/{id}", put(users::update).delete(users::remove))
        .route("/api/login-throttles", get(throttles::list))
        .route(
            "/api/login-throttles/{kind}/{key}",
            delete(throttles::clear),
        )
        .route("/api/sessions/{id}/recording", get(recording::asciicast))
        .route(
            "/api/sessions/{id}/recording/events",
            get(recording::events),
        )
        .route(
            "/api/host-groups",
            get(host_groups::list).post(host_groups::create),
        )
        .route("/api/host-groups/{id}", delete(host_groups::remove))
        .route("/api/jobs", get(jobs::list).post(jobs::create))
        .route("/api/jobs/preview", post(jobs::preview))
        .route("/api/jobs/{id}", get(jobs::detail))
        .route("/api/jobs/{id}/cancel", post(jobs::cancel))
        .route("/api/jobs/{id}/rerun", post(jobs::rerun))
        .route(
            "/api/jobs/{id}/hosts/{host_id}/cancel",
            post(jobs::cancel_host),
        )
        .route("/api/jobs/{id}/hosts/{host_id}/output", get(jobs::output))
        .route(
            "/api/tasks",
            get(library::list_tasks).post(library::create_task),
        )
        .route(
            "/api/tasks/{id}",
            get(library::get_task)
                .put(library::update_task)
                .delete(library::delete_task),
        )
        .route("/api/services", get(services::list).post(services::create))
        .route(
            "/api/services/{id}",
            get(services::get_one)
                .put(services::update)
                .delete(services::remove),
        )
        .route("/api/services/{id}/status", get(services::status))
        .route("/api/services/{id}/logs", get(services::logs))
        .route("/api/services/{id}/actions", post(services::act))
        .route(
            "/api/services/{id}/actions/{job_id}",
            get(services::action_result),
        )
        .route(
            "/api/scripts",
            get(library::list_scripts).post(library::create_script),
        )
        .route(
            "/api/scripts/{id}",
            get(library::get_script)
                .put(library::update_script)
                .delete(library::delete_script),
        )
}

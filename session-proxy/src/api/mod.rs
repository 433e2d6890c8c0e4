//! The HTTP API: shared state, the router, and the JSON extractor whose
//! rejections speak our error format.

mod account;
mod host_input;
mod hosts;
mod library;
pub(crate) mod login;
mod recording;
pub(crate) mod runs;
pub(crate) mod sessions;
pub(crate) mod shares;
mod throttles;
mod tokens;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequest;
use axum::routing::{delete, get, post, put};
use axum::Router;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::bus::Broker;
use crate::client_addr::TrustedProxies;
use crate::error::ApiError;
use crate::fanout::Fanout;
use crate::origin::Origin;
use crate::passwords::Hasher;

/// What the proxy knows once started, shared by every handler.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub request_ttl: Duration,
    pub cookie_secure: bool,
    pub sharing: shares::Sharing,
    pub trusted_proxies: TrustedProxies,
    /// The origin browsers use, when configured (`SHELLWAY_PUBLIC_URL`).
    pub public_origin: Option<Origin>,
    pub token_max_expiry: Duration,
    pub session_idle_timeout: Duration,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub db: PgPool,
    /// Whether Postgres is known down (requests then fail fast).
    pub db_health: crate::health::DbHealth,
    pub broker: Broker,
    /// The recorder's own connection (for `/readyz`).
    pub recorder_broker: Broker,
    pub fanout: Fanout,
    pub presence: crate::presence::Presence,
    /// Host-key scans, asked of a runner.
    pub scans: crate::bus::Scans,
    pub inputs: crate::inputs::InputLog,
    pub hasher: Hasher,
    pub settings: Arc<Settings>,
    /// Cancelled at shutdown; WebSockets end on it.
    pub shutdown: CancellationToken,
}

/// `axum::Json`, with rejections in our error format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(crate) struct Json<T>(pub T);

/// `axum::extract::Query`, with rejections in our error format.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct Query<T>(pub T);

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/login", post(login::login))
        .route("/api/logout", post(login::logout))
        .route("/api/me", get(login::me))
        .route("/api/me/password", post(account::change_password))
        .route("/api/tokens", get(tokens::list).post(tokens::create))
        .route("/api/tokens/{id}", delete(tokens::revoke))
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
        .route("/ws/sessions/{id}", get(crate::ws::upgrade))
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
            "/api/tasks",
            get(library::list_tasks).post(library::create_task),
        )
        .route(
            "/api/tasks/{id}",
            get(library::get_task)
                .put(library::update_task)
                .delete(library::delete_task),
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
        .route("/ws/join/{token}", get(crate::ws::join))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::health::fail_fast,
        ))
        .merge(crate::web::routes())
        .route("/healthz", get(crate::health::healthz))
        .route("/readyz", get(crate::health::readyz))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(axum::middleware::from_fn(crate::headers::add))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use shellway_common::amqp::DurableQueueOptions;
    use tower::ServiceExt;

    use super::*;

    /// A router whose database and broker are never reached.
    fn app() -> Router {
        let db = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(300))
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap_or_else(|e| panic!("{e}"));
        let topology = shellway_common::Topology::new("unit");
        let broker = Broker::new(
            "amqp://127.0.0.1:1",
            "unit",
            topology,
            DurableQueueOptions::default(),
        );
        let shutdown = CancellationToken::new();
        let fanout = Fanout::new(
            broker.clone(),
            db.clone(),
            "p".into(),
            1024,
            tokio_util::task::TaskTracker::new(),
            shutdown.clone(),
        );
        let inputs = crate::inputs::InputLog::new(
            db.clone(),
            &tokio_util::task::TaskTracker::new(),
            shutdown.clone(),
        );
        router(AppState {
            db,
            db_health: crate::health::DbHealth::default(),
            recorder_broker: broker.clone(),
            scans: crate::bus::Scans::new(broker.clone(), "p".into()),
            broker,
            fanout,
            presence: crate::presence::Presence::new("p".into()),
            inputs,
            hasher: Hasher::new(1, Duration::from_secs(1)).unwrap_or_else(|e| panic!("{e}")),
            settings: Arc::new(Settings {
                request_ttl: Duration::from_secs(1),
                cookie_secure: false,
                sharing: shares::Sharing::default(),
                trusted_proxies: TrustedProxies::default(),
                public_origin: None,
                token_max_expiry: tokens::DEFAULT_EXPIRY,
                session_idle_timeout: Duration::ZERO,
            }),
            shutdown,
        })
    }

    async fn call(req: Request<Body>) -> (StatusCode, serde_json::Value) {
        let resp = app().oneshot(req).await.unwrap_or_else(|e| match e {});
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap_or_default()
    }

    #[tokio::test]
    async fn protected_routes_refuse_anonymous_callers() {
        for path in [
            "/api/hosts",
            "/api/sessions",
            "/api/me",
            "/ws/sessions/00000000-0000-0000-0000-000000000000",
        ] {
            let (status, body) = call(get(path)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(body["error"]["code"], "unauthenticated", "{path}");
        }
    }

    #[tokio::test]
    async fn health_needs_no_credentials_and_unknown_routes_are_json_404s() {
        let (status, _) = call(get("/healthz")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = call(get("/api/nope")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
    }

    #[tokio::test]
    async fn malformed_login_json_is_a_client_error_in_our_format() {
        let req = Request::post("/api/login")
            .header("content-type", "application/json")
            .body(Body::from("{not json"))
            .unwrap_or_default();
        let (status, body) = call(req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_json");
    }

    #[tokio::test]
    async fn every_answer_carries_the_security_headers_and_the_api_is_not_cached() {
        for path in [
            "/healthz",
            "/api/me",
            "/login",
            "/assets/app.js",
            "/api/nope",
        ] {
            let resp = app()
                .oneshot(get(path))
                .await
                .unwrap_or_else(|e| match e {});
            let h = resp.headers();
            assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
            let csp = h["content-security-policy"].to_str().unwrap_or_default();
            for part in [
                "default-src 'self'",
                "script-src 'self';",
                "frame-ancestors 'none'",
            ] {
                assert!(csp.contains(part), "{path}: {csp}");
            }
            if path.starts_with("/api/") {
                assert_eq!(h["cache-control"], "no-store", "{path}");
            }
        }
    }

    #[tokio::test]
    async fn an_oversized_login_is_refused_before_it_is_read_whole() {
        let req = Request::post("/api/login")
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"username": "{}", "password": "x"}}"#,
                "u".repeat(2_000_000)
            )))
            .unwrap_or_default();
        let (status, body) = call(req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], "too_large");
    }

    #[tokio::test]
    async fn an_unreachable_database_is_503_unavailable_without_detail() {
        let req = Request::get("/api/hosts")
            .header("authorization", "Bearer sw_x")
            .body(Body::empty())
            .unwrap_or_default();
        let (status, body) = call(req).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    }
}

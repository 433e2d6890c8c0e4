//! The whole HTTP surface: the API's and the WebSocket's routes behind the
//! database fail-fast layer, the web console, health, and the headers
//! every answer carries.

use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) fn router(state: AppState) -> Router {
    crate::api::routes()
        .merge(crate::ws::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::health::fail_fast,
        ))
        .merge(crate::web::routes())
        .route("/api/openapi.json", get(crate::api::openapi::document))
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

    use std::sync::Arc;
    use std::time::Duration;

    use axum::Router;
    use tokio_util::sync::CancellationToken;

    use crate::bus::Broker;
    use crate::client_addr::TrustedProxies;
    use crate::fanout::Fanout;
    use crate::passwords::Hasher;
    use crate::state::{AppState, Settings};

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
        crate::app::router(AppState {
            db,
            db_health: crate::health::DbHealth::default(),
            recorder_broker: broker.clone(),
            asks: crate::bus::RunnerAsks::new(broker.clone(), "p".into()),
            broker,
            fanout,
            presence: crate::presence::Presence::new("p".into()),
            inputs,
            hasher: Hasher::new(1, Duration::from_secs(1)).unwrap_or_else(|e| panic!("{e}")),
            settings: Arc::new(Settings {
                request_ttl: Duration::from_secs(1),
                cookie_secure: false,
                sharing: crate::service::shares::Sharing::default(),
                trusted_proxies: TrustedProxies::default(),
                public_origin: None,
                token_max_expiry: crate::service::tokens::DEFAULT_EXPIRY,
                session_idle_timeout: Duration::ZERO,
                vault: Default::default(),
            }),
            jobs: crate::jobs::Jobs::new(
                "p".into(),
                tokio_util::task::TaskTracker::new(),
                shutdown.clone(),
            ),
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

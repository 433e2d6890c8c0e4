//! The one error type of the HTTP API: a status, a stable code and a message
//! written for a person. Internal detail goes to the log, never to the client.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::broker::BrokerError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, for validation errors.
    pub field: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in or send a valid API token",
        )
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
        }
    }

    pub(crate) fn not_supported(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "not_supported", message)
        }
    }

    /// Postgres is away: worth retrying shortly.
    pub(crate) fn database_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database is unavailable; try again shortly",
        )
    }

    /// Logs `err` and hides it behind a generic message.
    pub(crate) fn internal(err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&err) {
            tracing::warn!(error = %err, "database unavailable");
            return Self::database_unavailable();
        }
        Self::internal(&err)
    }
}

/// Marks a response that met a database outage (see `health::fail_fast`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DatabaseUnavailable;

impl From<BrokerError> for ApiError {
    fn from(err: BrokerError) -> Self {
        tracing::error!(error = %err, "broker error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker_unavailable",
            "the message broker is unavailable; try again shortly",
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(err: JsonRejection) -> Self {
        // The rejection text describes the client's own JSON (position and
        // expected type), nothing internal.
        Self::new(err.status(), "invalid_json", err.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }
}

impl From<QueryRejection> for ApiError {
    fn from(err: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", err.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        let unavailable = self.code == "unavailable";
        let mut resp = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if unavailable {
            resp.extensions_mut().insert(DatabaseUnavailable);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(err: ApiError) -> (StatusCode, String) {
        let resp = err.into_response();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn database_errors_never_reach_the_client() {
        let secret = "relation \"users\" does not exist at 10.0.0.5 password=hunter2";
        for inner in [
            sqlx::Error::Protocol(secret.into()),
            sqlx::Error::Configuration(secret.into()),
        ] {
            // The fixture would leak if shown as is...
            assert!(inner.to_string().contains("hunter2"));
            // ...and the client sees none of it.
            let (status, body) = body_of(ApiError::from(inner)).await;
            assert!(status.is_server_error(), "{status}");
            assert!(!body.contains("hunter2"), "{body}");
            assert!(!body.contains("relation"), "{body}");
        }
    }

    #[tokio::test]
    async fn a_database_outage_is_503_unavailable_and_a_bug_is_500_internal() {
        let (status, body) = body_of(ApiError::from(sqlx::Error::PoolTimedOut)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v["error"]["code"], "unavailable");
        let (status, body) = body_of(ApiError::from(sqlx::Error::RowNotFound)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("internal error"), "{body}");
    }

    #[tokio::test]
    async fn validation_errors_name_the_field() {
        let (status, body) = body_of(ApiError::invalid(
            "port",
            "port must be between 1 and 65535",
        ))
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v["error"]["code"], "invalid_field");
        assert_eq!(v["error"]["field"], "port");
    }
}

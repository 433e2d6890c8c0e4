//! The one error type of the HTTP API: a status, a stable code and a message
//! written for a person. Internal detail goes to the log, never to the client.

use std::borrow::Cow;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shellway_common::api::{self, errors::ErrorBody, errors::ErrorDetail};

use shellway_common::{BrowserEvent, ErrorKind};

use crate::bus::BrokerError;
use crate::service::shares::LinkRefused;
use crate::service::{Denied, ServiceError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, for validation errors.
    pub field: Option<Cow<'static, str>>,
    /// Every field at fault when there are several (the first is `field`
    /// and `message`), so a form can show them all at once.
    pub fields: Vec<FieldError>,
    /// Seconds after which trying again may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub field: Cow<'static, str>,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            fields: Vec::new(),
            retry_after: None,
        }
    }

    /// A refusal that lifts by itself: `Retry-After` tells when.
    pub(crate) fn retry_later(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        after_secs: u64,
    ) -> Self {
        Self {
            retry_after: Some(after_secs.max(1)),
            ..Self::new(status, code, message)
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

    pub(crate) fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
        }
    }

    /// The first of several validation errors, carrying all of them in
    /// `fields`; `None` when there are none.
    pub(crate) fn all(errors: Vec<ApiError>) -> Option<Self> {
        let fields = errors
            .iter()
            .filter_map(|e| {
                let field = e.field.clone()?;
                let message = e.message.clone();
                Some(FieldError { field, message })
            })
            .collect();
        let first = errors.into_iter().next()?;
        Some(Self { fields, ..first })
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
        if crate::store::pool::is_unavailable(&err) {
            tracing::warn!(error = %err, "database unavailable");
            return Self::database_unavailable();
        }
        if let Some(refused) = refused_value(&err) {
            return refused;
        }
        Self::internal(&err)
    }
}

/// A value the client sent that Postgres cannot store or compare (a NUL
/// byte in a text, a date beyond its range): the client's error, said
/// without the database's words.
fn refused_value(err: &sqlx::Error) -> Option<ApiError> {
    let code = match err {
        sqlx::Error::Database(e) => e.code()?,
        _ => return None,
    };
    let message = match code.as_ref() {
        // character_not_in_repertoire, untranslatable_character
        "22021" | "22P05" => "the request contains a NUL byte or a character that cannot be stored",
        // datetime_field_overflow, numeric_value_out_of_range
        "22008" | "22003" => "the request contains a date or number out of range",
        _ => return None,
    };
    tracing::info!(error = %err, "request refused by the database");
    Some(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_value",
        message,
    ))
}

/// The domain's errors as the HTTP API answers them: the one place that
/// decides each one's status and code.
impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::NotFound(what) => Self::not_found(what),
            ServiceError::Invalid { field, message } => Self::invalid(field, message),
            ServiceError::InvalidFields(errors) => {
                let errors = errors.into_iter().map(ApiError::from).collect();
                Self::all(errors).unwrap_or_else(|| Self::invalid("body", "invalid"))
            }
            ServiceError::Conflict { code, message } => Self::conflict(code, message),
            ServiceError::Denied(denied) => denied.into(),
            ServiceError::Forbidden(why) => Self::forbidden(why),
            ServiceError::NotAllowed { code, message } => {
                Self::new(StatusCode::FORBIDDEN, code, message)
            }
            ServiceError::Unauthenticated(why) => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_credentials", why)
            }
            ServiceError::WrongSecret { field, message } => Self {
                field: Some(field.into()),
                ..Self::forbidden(message)
            },
            ServiceError::Throttled {
                message,
                retry_after_s,
            } => Self::retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                message,
                retry_after_s,
            ),
            ServiceError::Busy(why) => {
                Self::retry_later(StatusCode::SERVICE_UNAVAILABLE, "busy", why, 1)
            }
            ServiceError::NotSsh(message) => Self::new(StatusCode::BAD_GATEWAY, "ssh", message),
            ServiceError::NoCapacity(message) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "capacity", message)
            }
            ServiceError::Internal(err) => Self::internal(&err),
            ServiceError::Share(refused) => {
                let (status, code) = match refused {
                    LinkRefused::Malformed => (StatusCode::NOT_FOUND, "share_malformed"),
                    LinkRefused::Unknown => (StatusCode::NOT_FOUND, "share_unknown"),
                    LinkRefused::Revoked => (StatusCode::FORBIDDEN, "share_revoked"),
                    LinkRefused::Expired => (StatusCode::FORBIDDEN, "share_expired"),
                    LinkRefused::Ended => (StatusCode::FORBIDDEN, "share_ended"),
                };
                Self::new(status, code, refused.to_string())
            }
            ServiceError::Db(err) => err.into(),
            ServiceError::Broker(err) => err.into(),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Hidden(what) => Self::not_found(what),
            Denied::Forbidden => Self::forbidden(denied.to_string()),
            Denied::NotGranted(_) => {
                Self::new(StatusCode::FORBIDDEN, "not_granted", denied.to_string())
            }
        }
    }
}

/// The domain's errors as a WebSocket viewer is told them: what it sent
/// was wrong (`protocol`), or the proxy could not do it (`runtime`), with
/// the message the HTTP API would give (no internal detail).
pub(crate) fn ws_event(err: ServiceError) -> BrowserEvent {
    let kind = match err {
        ServiceError::Invalid { .. } => ErrorKind::Protocol,
        _ => ErrorKind::Runtime,
    };
    BrowserEvent::error(kind, ApiError::from(err).message)
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
        crate::rejection::from_rejection(&err)
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }
}

impl From<QueryRejection> for ApiError {
    fn from(err: QueryRejection) -> Self {
        crate::rejection::from_query_rejection(&err)
    }
}

impl ApiError {
    /// What the client is told.
    pub(crate) fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                field: self.field.as_ref().map(|f| f.clone().into_owned()),
                fields: self
                    .fields
                    .iter()
                    .map(|f| api::errors::FieldError {
                        field: f.field.clone().into_owned(),
                        message: f.message.clone(),
                    })
                    .collect(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unavailable = self.code == "unavailable";
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
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
    async fn refusals_that_lift_say_when() {
        let resp = ApiError::retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "wait",
            7,
        )
        .into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[axum::http::header::RETRY_AFTER], "7");
        let never_zero = ApiError::retry_later(StatusCode::SERVICE_UNAVAILABLE, "busy", "wait", 0);
        assert_eq!(never_zero.retry_after, Some(1));
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
        assert!(v["error"].get("fields").is_none(), "{body}");
    }

    #[tokio::test]
    async fn several_validation_errors_are_all_listed() {
        let errors = vec![
            ApiError::invalid("name", "name is required"),
            ApiError::invalid("port", "port must be between 1 and 65535"),
        ];
        let err = ApiError::all(errors).unwrap_or_else(|| panic!("an error"));
        let (_, body) = body_of(err).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v["error"]["field"], "name");
        assert_eq!(v["error"]["message"], "name is required");
        assert_eq!(v["error"]["fields"][1]["field"], "port");
        assert_eq!(v["error"]["fields"].as_array().map(Vec::len), Some(2));
        assert!(ApiError::all(Vec::new()).is_none());
    }

    #[test]
    fn domain_errors_map_to_one_status_and_code_each() {
        let cases: Vec<(ServiceError, StatusCode, &str)> = vec![
            (
                ServiceError::NotFound("host"),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                ServiceError::invalid("cols", "x"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
            ),
            (
                ServiceError::conflict("session_ended", "x"),
                StatusCode::CONFLICT,
                "session_ended",
            ),
            (
                Denied::Hidden("session").into(),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (Denied::Forbidden.into(), StatusCode::FORBIDDEN, "forbidden"),
            (
                LinkRefused::Expired.into(),
                StatusCode::FORBIDDEN,
                "share_expired",
            ),
            (
                LinkRefused::Malformed.into(),
                StatusCode::NOT_FOUND,
                "share_malformed",
            ),
            (
                BrokerError::NotConnected.into(),
                StatusCode::SERVICE_UNAVAILABLE,
                "broker_unavailable",
            ),
            (
                sqlx::Error::PoolTimedOut.into(),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
        ];
        for (err, status, code) in cases {
            let name = format!("{err:?}");
            let api = ApiError::from(err);
            assert_eq!((api.status, api.code), (status, code), "{name}");
        }
    }

    #[test]
    fn a_viewer_is_told_what_it_did_wrong_and_never_the_database_detail() {
        let secret = "relation \"users\" does not exist password=hunter2";
        let leaky = ServiceError::Db(sqlx::Error::Protocol(secret.into()));
        assert!(
            leaky.to_string().contains("hunter2"),
            "the fixture would leak"
        );
        let event = serde_json::to_value(ws_event(leaky)).unwrap_or_default();
        assert_eq!(event["type"], "runtime");
        assert!(!event.to_string().contains("hunter2"), "{event}");
        let invalid = ws_event(ServiceError::invalid("command", "the command is empty"));
        let event = serde_json::to_value(invalid).unwrap_or_default();
        assert_eq!(event["type"], "protocol");
        assert_eq!(event["message"], "the command is empty");
    }
}

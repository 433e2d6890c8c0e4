//! API tokens for scripts: `Authorization: Bearer sw_…` (the rules are
//! in `service::tokens`). The secret is shown once, at creation.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use shellway_common::api::tokens::{CreatedToken, NewToken, TokenInfo};
use uuid::Uuid;

use super::AppState;
use crate::auth::{self, AuthUser};
use crate::error::ApiError;
use crate::service::tokens;

/// The body, which may be empty (every field has a default).
fn parse(body: &Bytes) -> Result<NewToken, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(NewToken::default());
    }
    Ok(axum::Json::<NewToken>::from_bytes(body)?.0)
}

#[utoipa::path(post, operation_id = "create_token", path = "/api/tokens", tag = "tokens", request_body(content = Option<NewToken>, description = "May be empty"), responses((status = 201, description = "The token, shown once", body = CreatedToken)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<CreatedToken>), ApiError> {
    let body = parse(&body)?;
    let created = tokens::create(&st, &user, auth::bearer_token(&headers), body).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// The caller's tokens, newest first (never a secret or a hash).
#[utoipa::path(get, operation_id = "list_tokens", path = "/api/tokens", tag = "tokens", responses((status = 200, description = "The caller's tokens, newest first", body = Vec<TokenInfo>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<TokenInfo>>, ApiError> {
    Ok(axum::Json(tokens::list(&st, &user).await?))
}

/// Revokes a token: your own, or anyone's if you are an admin.
#[utoipa::path(delete, operation_id = "revoke_token", path = "/api/tokens/{id}", tag = "tokens", params(("id" = Uuid, Path)), responses((status = 204, description = "Revoked")))]
pub(crate) async fn revoke(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    tokens::revoke(&st, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::service::tokens::{validate, DEFAULT_EXPIRY};

    fn parse(s: &'static str) -> Result<NewToken, ApiError> {
        super::parse(&Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn an_empty_body_asks_for_the_defaults() {
        let max = Duration::from_secs(365 * 86_400);
        for body in ["", " \n", "{}"] {
            let t = parse(body).unwrap_or_else(|e| panic!("{body:?}: {e:?}"));
            assert_eq!(validate(&t, max).ok(), Some(DEFAULT_EXPIRY));
        }
        // A maximum below the default lowers the default.
        let t = parse("{}").unwrap_or_default();
        assert_eq!(
            validate(&t, Duration::from_secs(60)).ok(),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn expiry_scopes_and_name_are_checked() {
        let max = Duration::from_secs(3600);
        let field = |body| {
            parse(body)
                .and_then(|t| validate(&t, max).map_err(ApiError::from))
                .err()
                .and_then(|e| e.field.map(|f| f.into_owned()))
        };
        assert_eq!(field(r#"{"expires_in": 0}"#), Some("expires_in".to_owned()));
        assert_eq!(
            field(r#"{"expires_in": 3601}"#),
            Some("expires_in".to_owned())
        );
        assert_eq!(field(r#"{"expires_in": 3600}"#), None);
        assert_eq!(field(r#"{"scopes": ["admin"]}"#), Some("scopes".to_owned()));
        assert_eq!(field(r#"{"scopes": ["tokens"]}"#), None);
        assert_eq!(field(r#"{"name": "a\nb"}"#), Some("name".to_owned()));
        assert!(
            parse(r#"{"nmae": "typo"}"#).is_err(),
            "unknown fields are refused"
        );
    }
}

//! API tokens for scripts: `Authorization: Bearer sw_…`. Each has a name,
//! an expiry (90 days unless asked otherwise, never past
//! `SHELLWAY_TOKEN_MAX_EXPIRY_S`) and scopes. A token mints tokens only if
//! it has the `tokens` scope; a signed-in person always may. Only the hash
//! of a token is stored; the secret is shown once, at creation.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use shellway_common::api::tokens::{CreatedToken, NewToken, TokenInfo};
use uuid::Uuid;

use super::AppState;
use crate::auth::{self, AuthUser, Credential};
use crate::error::ApiError;
use crate::service::{authorize, Action, Resource};
use crate::store;

/// A token's lifetime when none is asked for.
pub(crate) const DEFAULT_EXPIRY: Duration = Duration::from_secs(90 * 86_400);
/// The scope that lets a token mint tokens.
const SCOPE_TOKENS: &str = "tokens";
const SCOPES: &[&str] = &[SCOPE_TOKENS];
const MAX_NAME: usize = 64;
/// Live tokens one user may hold.
const MAX_PER_USER: i64 = 100;
/// Expired tokens are listed for this long, then forgotten.
const KEEP_EXPIRED_DAYS: i32 = 30;

/// The body, which may be empty (every field has a default).
fn parse(body: &Bytes) -> Result<NewToken, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(NewToken::default());
    }
    Ok(axum::Json::<NewToken>::from_bytes(body)?.0)
}

/// The token's lifetime, once its name and scopes are checked.
fn validate(token: &NewToken, max: Duration) -> Result<Duration, ApiError> {
    if token.name.chars().count() > MAX_NAME || token.name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            format!("name has at most {MAX_NAME} printable characters"),
        ));
    }
    if let Some(bad) = token.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(ApiError::invalid(
            "scopes",
            format!("unknown scope {bad:?}; known: {}", SCOPES.join(", ")),
        ));
    }
    let expiry = match token.expires_in {
        None => DEFAULT_EXPIRY.min(max),
        Some(secs) if secs >= 1 && secs <= max.as_secs() => Duration::from_secs(secs),
        Some(_) => {
            return Err(ApiError::invalid(
                "expires_in",
                format!("expires_in must be between 1 and {} seconds", max.as_secs()),
            ))
        }
    };
    Ok(expiry)
}

/// A token may mint tokens only with the `tokens` scope.
async fn may_mint(st: &AppState, user: &AuthUser, headers: &HeaderMap) -> Result<(), ApiError> {
    if matches!(user.credential, Credential::Cookie { .. }) {
        return Ok(());
    }
    let scopes: Option<Vec<String>> = match auth::bearer_token(headers) {
        Some(token) => store::tokens::scopes(&st.db, &auth::token_hash(token)).await?,
        None => None,
    };
    if scopes.is_some_and(|s| s.iter().any(|s| s == SCOPE_TOKENS)) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "this token cannot mint tokens: sign in, or use a token created with the \"tokens\" scope",
        ))
    }
}

#[utoipa::path(post, operation_id = "create_token", path = "/api/tokens", tag = "tokens", request_body(content = Option<NewToken>, description = "May be empty"), responses((status = 201, description = "The token, shown once", body = CreatedToken)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<CreatedToken>), ApiError> {
    let body = parse(&body)?;
    let expiry = validate(&body, st.settings.token_max_expiry)?;
    may_mint(&st, &user, &headers).await?;
    let live = store::tokens::live_count(&st.db, user.id, KEEP_EXPIRED_DAYS).await?;
    if live >= MAX_PER_USER {
        return Err(ApiError::conflict(
            "too_many_tokens",
            format!("you have {live} live tokens, the most allowed; revoke some first"),
        ));
    }
    let (token, hash) = auth::new_secret(auth::TOKEN_PREFIX);
    let id = Uuid::now_v7();
    let new = store::tokens::NewToken {
        id,
        user: (user.id, &user.username),
        hash: &hash,
        name: &body.name,
        scopes: &body.scopes,
        expires_in_secs: expiry.as_secs_f64(),
    };
    let expires_at = store::tokens::create(&st.db, &new).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken {
            token,
            id,
            name: body.name,
            scopes: body.scopes,
            expires_at,
        }),
    ))
}

/// The caller's tokens, newest first (never a secret or a hash).
#[utoipa::path(get, operation_id = "list_tokens", path = "/api/tokens", tag = "tokens", responses((status = 200, description = "The caller's tokens, newest first", body = Vec<TokenInfo>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<TokenInfo>>, ApiError> {
    let rows = store::tokens::of_user(&st.db, user.id, MAX_PER_USER * 4).await?;
    let now = Utc::now();
    let list = rows
        .into_iter()
        .map(
            |(id, name, scopes, created_at, last_used_at, expires_at)| TokenInfo {
                id,
                name,
                scopes,
                created_at,
                last_used_at,
                expires_at,
                expired: expires_at <= now,
            },
        )
        .collect();
    Ok(axum::Json(list))
}

/// Revokes a token: your own, or anyone's if you are an admin.
#[utoipa::path(delete, operation_id = "revoke_token", path = "/api/tokens/{id}", tag = "tokens", params(("id" = Uuid, Path)), responses((status = 204, description = "Revoked")))]
pub(crate) async fn revoke(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let owner = store::tokens::owner(&st.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("token"))?;
    authorize(&user.actor(), Action::Revoke, Resource::Token { owner })?;
    if !store::tokens::revoke(&st.db, id, user.audit_id()).await? {
        return Err(ApiError::not_found("token"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

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
                .and_then(|t| validate(&t, max))
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

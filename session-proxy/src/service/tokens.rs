//! API tokens: each has a name, an expiry (90 days unless asked
//! otherwise, never past `SHELLWAY_TOKEN_MAX_EXPIRY_S`) and scopes. A
//! token mints tokens only if it has the `tokens` scope; a signed-in person
//! always may. Only the hash of a token is stored.

use std::time::Duration;

use chrono::Utc;
use shellway_common::api::tokens::{CreatedToken, NewToken, TokenInfo};
use uuid::Uuid;

use super::{authorize, Action, Resource, ServiceError};
use crate::auth::{self, AuthUser, Credential};
use crate::state::AppState;
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

/// The token's lifetime, once its name and scopes are checked.
pub(crate) fn validate(token: &NewToken, max: Duration) -> Result<Duration, ServiceError> {
    if token.name.chars().count() > MAX_NAME || token.name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "name",
            format!("name has at most {MAX_NAME} printable characters"),
        ));
    }
    if let Some(bad) = token.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(ServiceError::invalid(
            "scopes",
            format!("unknown scope {bad:?}; known: {}", SCOPES.join(", ")),
        ));
    }
    match token.expires_in {
        None => Ok(DEFAULT_EXPIRY.min(max)),
        Some(secs) if secs >= 1 && secs <= max.as_secs() => Ok(Duration::from_secs(secs)),
        Some(_) => Err(ServiceError::invalid(
            "expires_in",
            format!("expires_in must be between 1 and {} seconds", max.as_secs()),
        )),
    }
}

/// A token may mint tokens only with the `tokens` scope (`bearer`: the
/// token the request came with, if any).
async fn may_mint(
    st: &AppState,
    user: &AuthUser,
    bearer: Option<&str>,
) -> Result<(), ServiceError> {
    if matches!(user.credential, Credential::Cookie { .. }) {
        return Ok(());
    }
    let scopes: Option<Vec<String>> = match bearer {
        Some(token) => store::tokens::scopes(&st.db, &auth::token_hash(token)).await?,
        None => None,
    };
    if scopes.is_some_and(|s| s.iter().any(|s| s == SCOPE_TOKENS)) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "this token cannot mint tokens: sign in, or use a token created with the \"tokens\" scope",
        ))
    }
}

/// Mints a token for `user`; the secret is in the answer and nowhere else.
pub(crate) async fn create(
    st: &AppState,
    user: &AuthUser,
    bearer: Option<&str>,
    body: NewToken,
) -> Result<CreatedToken, ServiceError> {
    let expiry = validate(&body, st.settings.token_max_expiry)?;
    may_mint(st, user, bearer).await?;
    let live = store::tokens::live_count(&st.db, user.id, KEEP_EXPIRED_DAYS).await?;
    if live >= MAX_PER_USER {
        return Err(ServiceError::conflict(
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
    Ok(CreatedToken {
        token,
        id,
        name: body.name,
        scopes: body.scopes,
        expires_at,
    })
}

/// `user`'s tokens, newest first (never a secret or a hash).
pub(crate) async fn list(st: &AppState, user: &AuthUser) -> Result<Vec<TokenInfo>, ServiceError> {
    let rows = store::tokens::of_user(&st.db, user.id, MAX_PER_USER * 4).await?;
    let now = Utc::now();
    Ok(rows
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
        .collect())
}

/// Revokes a token: one's own, or anyone's for an admin.
pub(crate) async fn revoke(st: &AppState, user: &AuthUser, id: Uuid) -> Result<(), ServiceError> {
    let owner = store::tokens::owner(&st.db, id)
        .await?
        .ok_or(ServiceError::NotFound("token"))?;
    authorize(&user.actor(), Action::Revoke, Resource::Token { owner })?;
    if store::tokens::revoke(&st.db, id, user.audit_id()).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound("token"))
    }
}

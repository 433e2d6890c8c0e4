//! Who is calling: login cookies with CSRF tokens, API tokens, and the
//! `AuthUser` extractor every protected route takes. Passwords are in
//! `passwords.rs`.
//!
//! Cookie and API tokens are 256 random bits; only their SHA-256 is stored.
//! Neither works for a disabled or deleted user, nor a token past its expiry.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE, UPGRADE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::origin::Origin;
use crate::service::{Actor, Role};
use crate::state::AppState;
use crate::store;

pub(crate) const COOKIE_NAME: &str = "shellway_session";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
pub(crate) const TOKEN_PREFIX: &str = "sw_";
/// How long a login lasts.
pub(crate) const LOGIN_HOURS: i64 = 12;

/// A fresh random secret (hex of 256 bits) and its stored hash.
pub(crate) fn new_secret(prefix: &str) -> (String, Vec<u8>) {
    let token = format!("{prefix}{}", hex::encode(rand::random::<[u8; 32]>()));
    let hash = token_hash(&token);
    (token, hash)
}

pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Compares two secrets without an early exit on the first difference.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of the login cookie, if the request carries one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// `Set-Cookie` value of a login.
pub(crate) fn login_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        LOGIN_HOURS * 3600
    )
}

/// `Set-Cookie` value that removes the login cookie.
pub(crate) fn logout_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// Login cookie; carries the session's CSRF token.
    Cookie {
        csrf_token: String,
    },
    Token,
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct AuthUser {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    pub credential: Credential,
}

impl AuthUser {
    /// The caller as `service::authorize` judges them.
    pub(crate) fn actor(&self) -> Actor {
        Actor {
            id: self.id,
            role: self.role,
        }
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub(crate) fn audit_id(&self) -> Option<(Uuid, &str)> {
        Some((self.id, self.username.as_str()))
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = bearer_token(&parts.headers) {
            let row = store::users::by_token(&state.db, &token_hash(token)).await?;
            let (id, username, role) = row.ok_or_else(ApiError::unauthenticated)?;
            return Ok(Self {
                id,
                username,
                role: Role::parse(&role).unwrap_or(Role::User),
                credential: Credential::Token,
            });
        }
        let cookie = session_cookie(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
        let row = store::users::by_cookie(&state.db, &token_hash(cookie)).await?;
        let (id, username, role, csrf_token) = row.ok_or_else(ApiError::unauthenticated)?;
        let site = crate::origin::expected(parts, &state.settings);
        check_cookie_request(&parts.method, &parts.headers, &csrf_token, site.as_ref())?;
        Ok(Self {
            id,
            username,
            role: Role::parse(&role).unwrap_or(Role::User),
            credential: Credential::Cookie { csrf_token },
        })
    }
}

/// What a cookie-authenticated request must also show: the CSRF token on
/// anything that changes state; on a WebSocket upgrade, the Origin of a
/// page of this site (`site`: scheme, host and port).
pub(crate) fn check_cookie_request(
    method: &Method,
    headers: &HeaderMap,
    csrf_token: &str,
    site: Option<&Origin>,
) -> Result<(), ApiError> {
    if is_websocket_upgrade(headers) {
        return if crate::origin::matches(headers, site) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "cross-origin WebSocket refused: open the console from this site",
            ))
        };
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match sent {
        Some(sent) if same_secret(sent, csrf_token) => Ok(()),
        _ => Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "csrf",
            "missing or wrong X-CSRF-Token header",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn finds_the_session_cookie_among_others() {
        let h = headers(&[("cookie", "a=1; shellway_session=abc ; b=2")]);
        assert_eq!(session_cookie(&h), Some("abc"));
        let h = headers(&[("cookie", "x=1"), ("cookie", "shellway_session=zz")]);
        assert_eq!(session_cookie(&h), Some("zz"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "shellway_session=")])),
            None
        );
        assert_eq!(
            session_cookie(&headers(&[("cookie", "not_shellway_session=1")])),
            None
        );
    }

    #[test]
    fn bearer_tokens_are_parsed_case_insensitively() {
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer sw_x")])),
            Some("sw_x")
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "bearer sw_y")])),
            Some("sw_y")
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Basic abc")])),
            None
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer ")])),
            None
        );
    }

    #[test]
    fn state_changes_need_the_csrf_token() {
        let ok = headers(&[("x-csrf-token", "tok")]);
        assert!(check_cookie_request(&Method::POST, &ok, "tok", None).is_ok());
        let wrong = headers(&[("x-csrf-token", "tok2")]);
        let err = check_cookie_request(&Method::DELETE, &wrong, "tok", None);
        assert_eq!(err.map_err(|e| e.code), Err("csrf"));
        assert!(check_cookie_request(&Method::PUT, &HeaderMap::new(), "tok", None).is_err());
        assert!(check_cookie_request(&Method::GET, &HeaderMap::new(), "tok", None).is_ok());
    }

    #[test]
    fn cookie_websockets_must_come_from_our_origin() {
        let site: Origin = "https://console.example:8080"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let from = |origin: &'static str| {
            let h = headers(&[("upgrade", "websocket"), ("origin", origin)]);
            check_cookie_request(&Method::GET, &h, "t", Some(&site)).is_ok()
        };
        assert!(from("https://console.example:8080"));
        assert!(from("https://CONSOLE.example:8080/"));
        assert!(!from("https://evil.example"));
        assert!(!from("http://console.example:8080"), "another scheme");
        assert!(!from("https://console.example"), "another port");
        assert!(!from("https://console.example:8081"), "another port");
        assert!(!from("null"));
        let none = headers(&[("upgrade", "websocket")]);
        assert!(check_cookie_request(&Method::GET, &none, "t", Some(&site)).is_err());
        let h = headers(&[
            ("upgrade", "websocket"),
            ("origin", "https://console.example:8080"),
        ]);
        assert!(
            check_cookie_request(&Method::GET, &h, "t", None).is_err(),
            "no Host, no site: refused"
        );
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let c = login_cookie("abc", true);
        assert!(c.starts_with("shellway_session=abc;"));
        for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!login_cookie("abc", false).contains("Secure"));
    }

    #[test]
    fn secrets_are_long_and_only_hashes_are_kept() {
        let (token, hash) = new_secret(TOKEN_PREFIX);
        assert!(token.starts_with("sw_") && token.len() == 3 + 64);
        assert_eq!(hash, token_hash(&token));
        assert!(same_secret(&token, &token.clone()));
        assert!(!same_secret(&token, "sw_"));
    }
}

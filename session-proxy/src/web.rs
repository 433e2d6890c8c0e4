//! The web console: pages and assets embedded in the binary (no build step,
//! no internet access needed). Every page but the login page needs a login;
//! the pages are one app (`index.html` + `app.js`) that picks its view from
//! the path. See docs/web-console.md.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $mime:literal) => {
        Asset {
            path: $path,
            mime: $mime,
            body: include_bytes!(concat!("../assets/", $path)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("jobs.js", "text/javascript; charset=utf-8"),
    asset!("services.js", "text/javascript; charset=utf-8"),
    asset!("login.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("manual.html", "text/html; charset=utf-8"),
    asset!("vendor/xterm.js", "text/javascript; charset=utf-8"),
    asset!("vendor/xterm.css", "text/css; charset=utf-8"),
    asset!("vendor/addon-fit.js", "text/javascript; charset=utf-8"),
];

const INDEX: &str = include_str!("../assets/index.html");
const LOGIN: &str = include_str!("../assets/login.html");

/// Paths the app shows (each its own view of `index.html`).
const PAGES: &[&str] = &[
    "/",
    "/hosts",
    "/tasks",
    "/scripts",
    "/services",
    "/logs",
    "/logs/{id}",
    "/jobs",
    "/jobs/{id}",
    "/manual",
    "/monitor",
    "/users",
    "/groups",
    "/grants",
    "/credentials",
    "/my-hosts",
    "/account",
    "/join/{token}",
];

pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/login", get(login_page))
        .route("/assets/{*path}", get(asset));
    for page in PAGES {
        router = router.route(page, get(app_page));
    }
    router
}

fn html(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

async fn login_page() -> Response {
    html(LOGIN)
}

/// An app page, or the login page first (coming back here after).
async fn app_page(
    State(_): State<AppState>,
    user: Result<AuthUser, ApiError>,
    uri: axum::http::Uri,
) -> Response {
    match user {
        Ok(_) => html(INDEX),
        Err(_) => {
            let next = uri.path();
            Redirect::to(&format!("/login?next={}", encode(next))).into_response()
        }
    }
}

async fn asset(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.mime),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// Percent-encodes a path for a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_typed() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.path);
            assert!(a.mime.contains('/'), "{}", a.path);
        }
        assert!(INDEX.contains("app.js"));
        assert!(LOGIN.contains("form"));
        // The pages run under a CSP without 'unsafe-inline' scripts.
        for page in [INDEX, LOGIN] {
            assert!(!page.contains("<script>"), "inline script");
            let handler = page.match_indices(" on").any(|(i, _)| {
                let rest = &page[i + 3..];
                let name = rest.len()
                    - rest
                        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                        .len();
                name > 0 && rest[name..].starts_with('=')
            });
            assert!(!handler, "inline event handler");
        }
    }

    #[test]
    fn next_paths_are_encoded() {
        assert_eq!(encode("/logs/abc"), "/logs/abc");
        assert_eq!(encode("/join/a b?x"), "/join/a%20b%3Fx");
    }
}

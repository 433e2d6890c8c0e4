//! Headers on every response (see docs/security.md):
//!
//! - `Content-Security-Policy`: scripts, styles, connections (WebSocket
//!   included: CSP3's `'self'` covers same-origin `ws:`/`wss:`) and frames
//!   from this site only, no inline script. Styles allow `'unsafe-inline'`:
//!   xterm.js sizes and colours the terminal with `<style>` elements and
//!   `style` attributes it creates at run time, which nothing else allows.
//! - `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`
//!   (join URLs carry their token in the path), `X-Frame-Options: DENY`.
//! - `Cache-Control: no-store` on the API, unless the handler said otherwise.

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self'; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub(crate) async fn add(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if api && !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

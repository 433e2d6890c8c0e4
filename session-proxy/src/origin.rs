//! Web origins (scheme, host, port), and the origin a page of this site
//! has: what a cookie-carrying WebSocket upgrade must come from (against
//! cross-site WebSocket hijacking).
//!
//! The proxy speaks plain HTTP; browsers reach it over HTTPS through a
//! TLS-terminating proxy. So the site's origin is `SHELLWAY_PUBLIC_URL`
//! when set; otherwise the `Host` the browser asked for, with `https` only
//! when a trusted proxy says so (`X-Forwarded-Proto`, and its
//! `X-Forwarded-Host` if it rewrote `Host`), else `http`.

use std::str::FromStr;

use axum::http::header::{HOST, ORIGIN};
use axum::http::request::Parts;

use crate::state::Settings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: &'static str,
    host: String,
    port: u16,
}

impl Origin {
    /// `host` or `host:port` (as in a `Host` header) under `scheme`.
    fn of_host(scheme: &'static str, authority: &str) -> Option<Self> {
        let authority = authority.trim();
        if authority.is_empty() || authority.contains(['@', '/', '?', '#', ' ']) {
            return None;
        }
        let default = if scheme == "https" { 443 } else { 80 };
        // `[v6]:port`, `[v6]`, `name:port`, `name`.
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') && (h.ends_with(']') || !h.contains(':')) => {
                (h, p.parse::<u16>().ok()?)
            }
            _ => (authority, default),
        };
        if host.is_empty() {
            return None;
        }
        Some(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl FromStr for Origin {
    type Err = String;

    /// `https://console.example.com` (a path after it is ignored).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an http(s) URL like https://console.example.com");
        let (scheme, rest) = s.trim().split_once("://").ok_or_else(bad)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => "http",
            "https" => "https",
            _ => return Err(bad()),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        Self::of_host(scheme, authority).ok_or_else(bad)
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The origin of this site's pages, as seen by the browser that sent `parts`.
pub(crate) fn expected(parts: &Parts, settings: &Settings) -> Option<Origin> {
    if let Some(public) = &settings.public_origin {
        return Some(public.clone());
    }
    let trusted = &settings.trusted_proxies;
    let from_proxy = crate::client_addr::peer(parts).filter(|p| trusted.contains(*p));
    let https = from_proxy.is_some_and(|p| trusted.forwarded_https(p, &parts.headers));
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let host = from_proxy
        .and_then(|_| header("x-forwarded-host"))
        .or_else(|| header(HOST.as_str()))?;
    Origin::of_host(if https { "https" } else { "http" }, host)
}

/// Whether the request's `Origin` is `expected` (scheme, host and port).
pub(crate) fn matches(headers: &axum::http::HeaderMap, expected: Option<&Origin>) -> bool {
    let sent = headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Origin>().ok());
    matches!((sent, expected), (Some(s), Some(e)) if &s == e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Origin {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn origins_compare_scheme_host_and_port_with_default_ports() {
        assert_eq!(
            o("https://Console.Example"),
            o("https://console.example:443/x")
        );
        assert_eq!(o("http://console.example"), o("http://console.example:80"));
        assert_ne!(o("http://console.example"), o("https://console.example"));
        assert_ne!(
            o("https://console.example"),
            o("https://console.example:8443")
        );
        assert_eq!(o("http://[::1]:8080"), o("http://[::1]:8080/"));
        assert_ne!(o("http://[::1]:8080"), o("http://[::1]"));
        assert!("null".parse::<Origin>().is_err());
        assert!("ftp://x".parse::<Origin>().is_err());
        assert!("https://user@x".parse::<Origin>().is_err());
        assert!("https://x:99999".parse::<Origin>().is_err());
    }

    #[test]
    fn a_host_header_gets_the_schemes_default_port() {
        assert_eq!(
            Origin::of_host("https", "console.example"),
            Some(o("https://console.example:443"))
        );
        assert_eq!(
            Origin::of_host("http", "127.0.0.1:8080"),
            Some(o("http://127.0.0.1:8080"))
        );
        assert_eq!(Origin::of_host("http", "[::1]"), Some(o("http://[::1]:80")));
        assert_eq!(Origin::of_host("http", ""), None);
    }
}

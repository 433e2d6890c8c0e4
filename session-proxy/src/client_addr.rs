//! Who is on the other end of a request: the socket's peer, or, only when
//! that peer is a proxy we trust (`SHELLWAY_TRUSTED_PROXIES`), the client
//! and scheme it reports in `X-Forwarded-For` / `X-Forwarded-Proto`.
//! Anyone can write those headers; from anyone else they are ignored.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::error::ApiError;
use crate::state::AppState;

/// Addresses (`10.0.0.5`) and networks (`10.0.0.0/8`, `fd00::/8`) of the
/// reverse proxies in front of this one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as the IPv4 they are.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The network that stands for one client: the address itself for IPv4,
/// the /64 for IPv6 (one host usually holds the whole /64).
pub(crate) fn network(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (addr, prefix) = match item.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (item, None),
            };
            let addr = canonical(
                addr.parse::<IpAddr>()
                    .map_err(|_| format!("{item:?} is not an IP address or network"))?,
            );
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("{item:?} has a bad prefix length"))?,
            };
            nets.push(Network { addr, prefix });
        }
        Ok(Self(nets))
    }
}

impl std::fmt::Display for TrustedProxies {
    /// The form `from_str` reads: `10.0.0.0/8,192.0.2.7/32`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{}/{}", n.addr, n.prefix)?;
        }
        Ok(())
    }
}

impl TrustedProxies {
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client behind a request that came from `peer`: the right-most
    /// `X-Forwarded-For` hop that is not one of our proxies (hops to its
    /// right were added by proxies we trust, so it cannot be forged).
    /// `None` when a trusted proxy reported something unreadable.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return Some(peer);
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if hops.is_empty() {
            return Some(peer);
        }
        let mut last = peer;
        for hop in hops.iter().rev() {
            let ip = canonical(parse_hop(hop)?);
            if !self.contains(ip) {
                return Some(ip);
            }
            last = ip;
        }
        Some(last)
    }

    /// Whether the browser talks HTTPS to the proxy in front of us (only a
    /// trusted proxy can say so; we never terminate TLS ourselves).
    pub(crate) fn forwarded_https(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        self.contains(canonical(peer))
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The socket peer of a request, as the server loop recorded it.
pub(crate) fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The client of a request (see [`TrustedProxies::client`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let trusted = &state.settings.trusted_proxies;
        Ok(Self(
            peer(parts).and_then(|p| trusted.client(p, &parts.headers)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn xff(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static(v));
        h
    }

    #[test]
    fn networks_parse_and_match() {
        let t: TrustedProxies = "10.0.0.0/8, 192.168.1.7 ,fd00::/8,::1"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(t.contains(ip("10.200.3.4")));
        assert!(t.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped");
        assert!(t.contains(ip("192.168.1.7")));
        assert!(!t.contains(ip("192.168.1.8")));
        assert!(t.contains(ip("fd12::1")));
        assert!(t.contains(ip("::1")));
        assert!(!t.contains(ip("127.0.0.1")));
        let odd: TrustedProxies = "172.16.0.0/12".parse().unwrap_or_default();
        assert!(odd.contains(ip("172.31.255.1")));
        assert!(!odd.contains(ip("172.32.0.1")));
        assert_eq!("".parse::<TrustedProxies>(), Ok(TrustedProxies::default()));
        assert_eq!(t.to_string().parse::<TrustedProxies>(), Ok(t.clone()));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("proxy.local".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        // Anyone can send the header: from an untrusted peer it is ignored.
        assert_eq!(
            none.client(ip("203.0.113.9"), &xff("1.2.3.4")),
            Some(ip("203.0.113.9"))
        );
        let t: TrustedProxies = "10.0.0.0/8".parse().unwrap_or_default();
        assert_eq!(
            t.client(ip("10.0.0.2"), &xff("1.2.3.4")),
            Some(ip("1.2.3.4"))
        );
        // A client that forges hops on the left gains nothing: the right-most
        // untrusted hop is the one our proxy saw.
        assert_eq!(
            t.client(ip("10.0.0.2"), &xff("6.6.6.6, 1.2.3.4, 10.0.0.9")),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(
            t.client(ip("10.0.0.2"), &xff("[2001:db8::1]:443")),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(t.client(ip("10.0.0.2"), &xff("garbage")), None);
        assert_eq!(
            t.client(ip("10.0.0.2"), &HeaderMap::new()),
            Some(ip("10.0.0.2"))
        );
    }

    #[test]
    fn only_a_trusted_proxy_says_the_browser_used_https() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let t: TrustedProxies = "10.0.0.1".parse().unwrap_or_default();
        assert!(t.forwarded_https(ip("10.0.0.1"), &h));
        assert!(!t.forwarded_https(ip("10.0.0.2"), &h));
        assert!(!t.forwarded_https(ip("10.0.0.1"), &HeaderMap::new()));
    }
}

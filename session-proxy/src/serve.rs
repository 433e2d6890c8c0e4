//! The HTTP server loop: accepts connections within bounds and hands each
//! to hyper, as `axum::serve` does, plus what that does not offer:
//!
//! - at most `max_total` connections at once, WebSockets included (an
//!   upgraded socket keeps its slot until it closes), and `max_per_address`
//!   from one client address (an IPv6 client counts as its /64; trusted
//!   proxies are exempt, they carry everyone);
//! - `header_timeout` to send a request head: a socket that sends nothing,
//!   dribbles its head (slowloris) or idles between requests is closed
//!   after it. Nothing unauthenticated outlives it: WebSocket upgrades need
//!   a login (or a view link) before they are granted.
//!
//! A connection over a bound is closed at once, before a byte is read.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::client_addr::{network, TrustedProxies};

/// Bounds on connections. See docs/configuration.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_total: usize,
    pub max_per_address: usize,
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_total: 10_000,
            max_per_address: 256,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Largest request head hyper buffers (hyper's default is ~400 KiB).
const MAX_HEAD: usize = 64 * 1024;
/// How long open requests get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);
/// Refused connections are logged at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown`, then lets open requests
/// finish (for up to [`DRAIN`]).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    trusted: TrustedProxies,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_total));
    let per_address = PerAddress::new(limits.max_per_address);
    let connections = TaskTracker::new();
    let mut refusals = Refusals::default();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err, &shutdown).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refusals.note("the connection limit", peer, limits.max_total);
            continue;
        };
        let address = if trusted.contains(peer.ip()) {
            None
        } else {
            match per_address.enter(peer.ip()) {
                Some(guard) => Some(guard),
                None => {
                    refusals.note("the per-address limit", peer, limits.max_per_address);
                    continue;
                }
            }
        };
        // Keystroke echoes are tiny writes: never hold them back (Nagle).
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let io = Counted {
            tcp,
            _slot: slot,
            _address: address,
        };
        connections.spawn(serve_connection(
            io,
            peer,
            router.clone(),
            limits.header_timeout,
            shutdown.clone(),
        ));
    }
    connections.close();
    if tokio::time::timeout(DRAIN, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("open requests did not finish in time");
    }
}

async fn serve_connection(
    io: Counted,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let done = tokio::select! {
        done = conn.as_mut() => done,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = done {
        tracing::debug!(error = %err, %peer, "connection ended with an error");
    }
}

/// An accept error: the next connection's own trouble, or the process out
/// of file descriptors (then wait a little rather than spin).
async fn accept_failed(err: io::Error, shutdown: &CancellationToken) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %err, "cannot accept connections");
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
}

/// Logs refused connections without letting a flood flood the log.
#[derive(Default)]
struct Refusals {
    since_log: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, limit: &str, peer: SocketAddr, value: usize) {
        self.since_log += 1;
        let due = self
            .last_log
            .is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY);
        if due {
            tracing::warn!(
                %peer, limit, value, refused = self.since_log,
                "connections refused (count since the last such line)"
            );
            self.since_log = 0;
            self.last_log = Some(Instant::now());
        }
    }
}

/// Open connections per client network.
#[derive(Clone)]
struct PerAddress {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection of a client network, counted until dropped.
struct AddressGuard {
    network: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerAddress {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    fn enter(&self, ip: IpAddr) -> Option<AddressGuard> {
        let network = network(ip);
        let mut open = self.open.lock().ok()?;
        let count = open.entry(network).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressGuard {
            network,
            open: self.open.clone(),
        })
    }
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock() {
            if let Some(count) = open.get_mut(&self.network) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&self.network);
                }
            }
        }
    }
}

/// A TCP stream that holds its connection slots for as long as it lives,
/// through a WebSocket upgrade too.
struct Counted {
    tcp: TcpStream,
    _slot: OwnedSemaphorePermit,
    _address: Option<AddressGuard>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn each_client_network_gets_its_own_count_and_slots_come_back() {
        let limit = PerAddress::new(2);
        let a1 = limit.enter(ip("192.0.2.1"));
        let a2 = limit.enter(ip("192.0.2.1"));
        assert!(a1.is_some() && a2.is_some());
        assert!(
            limit.enter(ip("192.0.2.1")).is_none(),
            "third from one address"
        );
        assert!(limit.enter(ip("192.0.2.2")).is_some(), "another address");
        // One /64 is one client.
        let v6 = limit.enter(ip("2001:db8::1"));
        let v6b = limit.enter(ip("2001:db8::ffff:2"));
        assert!(v6.is_some() && v6b.is_some());
        assert!(limit.enter(ip("2001:db8::3")).is_none());
        drop(a1);
        assert!(
            limit.enter(ip("192.0.2.1")).is_some(),
            "a closed one frees its slot"
        );
        drop((a2, v6, v6b));
        let open = limit.open.lock().map(|m| m.len()).unwrap_or(usize::MAX);
        assert_eq!(open, 0, "no entry is left behind");
    }
}

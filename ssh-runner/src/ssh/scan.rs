//! Fetching a host's key for an administrator to pin, without becoming a
//! port scanner.
//!
//! Only the key exchange runs (nothing authenticates). Whatever happens
//! before the peer has sent an SSH identification line (connection refused,
//! reset, closed, silence, a name that does not resolve) is one and the
//! same answer, [`ScanError::NoSshServer`]: telling those apart would map a
//! network for whoever may scan. Once the peer has spoken SSH, its key or
//! an SSH-level error is reported.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::client;
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::known_hosts;

/// How far into the stream an SSH identification line is looked for
/// (RFC 4253 lets a server send other lines first).
const SNIFF_LIMIT: usize = 8192;

/// Why no key came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScanError {
    /// Nothing that speaks SSH answered; deliberately no more detail.
    #[error("no SSH server answered at {0}")]
    NoSshServer(String),
    /// The peer spoke SSH, then the key exchange failed.
    #[error("the SSH server at {addr} answered, but {reason}")]
    Ssh { addr: String, reason: String },
}

/// `host:port`, with brackets around an IPv6 address.
fn address(hostname: &str, port: u16) -> String {
    if hostname.contains(':') {
        format!("[{hostname}]:{port}")
    } else {
        format!("{hostname}:{port}")
    }
}

/// The key of `hostname:port` as an OpenSSH line and its SHA256
/// fingerprint, all within `timeout`.
pub(crate) async fn fetch_host_key(
    hostname: &str,
    port: u16,
    timeout: Duration,
) -> Result<(String, String), ScanError> {
    let addr = address(hostname, port);
    let spoke_ssh = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(None));
    let exchange = exchange(hostname, port, spoke_ssh.clone(), seen.clone());
    let outcome = tokio::time::timeout(timeout, exchange).await;
    if let Some(key) = seen.lock().ok().and_then(|mut s| s.take()) {
        return Ok(key);
    }
    let spoke = spoke_ssh.load(Ordering::Relaxed);
    let reason = match outcome {
        _ if !spoke => {
            if let Ok(Err(err)) = &outcome {
                tracing::debug!(%addr, error = %err, "host key scan: no SSH server");
            }
            return Err(ScanError::NoSshServer(addr));
        }
        Err(_) => format!(
            "the key exchange did not finish within {} ms",
            timeout.as_millis()
        ),
        Ok(Err(err)) => format!("the key exchange failed ({err})"),
        Ok(Ok(())) => "it showed no host key".to_owned(),
    };
    Err(ScanError::Ssh { addr, reason })
}

/// Connects and runs the handshake until the server's key is seen.
async fn exchange(
    hostname: &str,
    port: u16,
    spoke_ssh: Arc<AtomicBool>,
    seen: Arc<Mutex<Option<(String, String)>>>,
) -> Result<(), russh::Error> {
    let stream = TcpStream::connect((hostname, port)).await?;
    stream.set_nodelay(true).ok();
    let stream = Sniffer {
        inner: stream,
        watch: IdWatch::new(),
        spoke_ssh,
    };
    let config = Arc::new(client::Config::default());
    match client::connect_stream(config, stream, KeyCatcher { seen }).await {
        // The catcher refuses every key, so this is unexpected; end politely.
        Ok(handle) => {
            handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await
                .ok();
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Records the server's key and refuses it: the handshake stops there.
struct KeyCatcher {
    seen: Arc<Mutex<Option<(String, String)>>>,
}

impl client::Handler for KeyCatcher {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((
                known_hosts::openssh_line(&key),
                known_hosts::fingerprint(&key),
            ));
        }
        Ok(false)
    }
}

/// Whether a byte stream has shown a line starting `SSH-`.
#[derive(Debug)]
struct IdWatch {
    /// How much of `SSH-` the current line has matched so far; `None` once
    /// it cannot match.
    matched: Option<usize>,
    watched: usize,
    seen: bool,
}

impl IdWatch {
    fn new() -> Self {
        Self {
            matched: Some(0),
            watched: 0,
            seen: false,
        }
    }

    /// Feeds what the peer sent; true once an identification line began.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        const ID: &[u8] = b"SSH-";
        for &b in bytes {
            if self.seen || self.watched >= SNIFF_LIMIT {
                break;
            }
            self.watched += 1;
            self.matched = match self.matched {
                _ if b == b'\n' => Some(0),
                Some(n) if ID.get(n) == Some(&b) => Some(n + 1),
                _ => None,
            };
            self.seen = self.matched == Some(ID.len());
        }
        self.seen
    }
}

/// A stream that notes whether the peer spoke SSH.
struct Sniffer {
    inner: TcpStream,
    watch: IdWatch,
    spoke_ssh: Arc<AtomicBool>,
}

impl AsyncRead for Sniffer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let this = &mut *self;
            if this.watch.feed(&buf.filled()[before..]) {
                this.spoke_ssh.store(true, Ordering::Relaxed);
            }
        }
        polled
    }
}

impl AsyncWrite for Sniffer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoke(chunks: &[&[u8]]) -> bool {
        let mut watch = IdWatch::new();
        chunks.iter().any(|c| watch.feed(c))
    }

    #[test]
    fn an_identification_line_is_recognised_across_reads() {
        assert!(spoke(&[b"SSH-2.0-OpenSSH_9.6\r\n"]));
        assert!(spoke(&[b"SS", b"H", b"-2.0-x"]));
        // Other lines may come first (RFC 4253).
        assert!(spoke(&[b"hello there\r\n", b"SSH-2.0-x\r\n"]));
    }

    #[test]
    fn anything_else_is_not_ssh() {
        assert!(!spoke(&[b"HTTP/1.1 400 Bad Request\r\n\r\n"]));
        assert!(!spoke(&[b"220 smtp ESMTP SSH-2.0 ready\r\n"]));
        assert!(!spoke(&[b""]));
        let mut long = vec![b'x'; SNIFF_LIMIT];
        long.extend_from_slice(b"\nSSH-2.0-late");
        assert!(!spoke(&[&long]));
    }

    #[test]
    fn the_generic_message_names_only_the_address() {
        assert_eq!(
            ScanError::NoSshServer(address("10.0.0.1", 22)).to_string(),
            "no SSH server answered at 10.0.0.1:22"
        );
        assert_eq!(address("::1", 2222), "[::1]:2222");
    }
}

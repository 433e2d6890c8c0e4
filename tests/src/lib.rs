//! The integration-test harness.
//!
//! `TestEnv::start()` gives a test its own world: a fresh Postgres
//! database, broker names under a unique prefix, a real OpenSSH sshd on a
//! free loopback port with generated keys, and a session proxy and runner
//! on port 0. Every test can run in parallel with every other.
//!
//! Services are found through environment variables with local defaults:
//! `SHELLWAY_TEST_DATABASE_URL` (postgres://postgres@127.0.0.1:5432/test) and
//! `SHELLWAY_TEST_AMQP_URL` (amqp://guest:guest@127.0.0.1:5672/%2f).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

pub mod api;
pub mod browser;
pub mod env;
pub mod finder;
pub mod interrupt;
pub mod netns;
pub mod pgcluster;
pub mod rabbit;
pub mod relay;
pub mod rss;
pub mod signin;
pub mod sshd;
pub mod systemd;
pub mod ws;

pub use api::Api;
pub use env::{TestEnv, TestEnvOptions};
pub use signin::{try_login, CookieClient};
pub use sshd::Sshd;
pub use systemd::FakeSystemd;
pub use ws::{Frame, WsClient};

use std::time::Duration;

/// Default time to wait for anything a test expects to happen.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, or panics after `timeout` naming
/// `what`. For state that has no event to wait on (database rows).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 6]>()))
}

/// A directory of its own under the system's temp dir, removed on drop
/// (sshd's keys, the bench's files, a browser profile).
pub struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // A process killed just before may still be writing in it.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `rabbitmqctl -q ARGS` against the local broker; its output.
pub async fn rabbitmqctl(args: &[&str]) -> String {
    let out = tokio::process::Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .await
        .expect("rabbitmqctl (installed with rabbitmq-server) runs");
    assert!(out.status.success(), "rabbitmqctl {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

//! A RabbitMQ node of the test's own, to stop, kill and start again under
//! running sessions without touching the machine's shared broker.
//!
//! The node runs as user `rabbitmq` (Debian's package runs the server as
//! that user and its Erlang cookie is in `/var/lib/rabbitmq`), with its own
//! node name, AMQP and distribution ports, and data, log and config under a
//! scratch directory; no plugins (management off). It boots in 5–10 s on
//! the CI machine.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::sshd::free_server_port;
use crate::ScratchDir;

/// Longest boot the harness waits for.
const BOOT_WAIT: Duration = Duration::from_secs(90);

pub struct RabbitNode {
    dir: ScratchDir,
    pub nodename: String,
    /// The AMQP port (on every listening address).
    pub port: u16,
    dist_port: u16,
    /// The `rabbitmq-server` script; the Erlang VM is its child.
    child: Option<Child>,
}

impl RabbitNode {
    /// Starts a node listening on 127.0.0.1 and waits until it accepts AMQP.
    pub async fn start() -> Self {
        Self::start_on(&[]).await
    }

    /// Like `start`, also listening on `extra` addresses (which must exist).
    pub async fn start_on(extra: &[&str]) -> Self {
        let dir = ScratchDir::new("shellway-rabbit-").expect("scratch dir");
        let nodename = format!("{}@localhost", crate::unique("swt"));
        let port = free_server_port();
        let dist_port = free_server_port();
        let mut conf = format!("listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n");
        for (i, addr) in extra.iter().enumerate() {
            conf.push_str(&format!("listeners.tcp.{} = {addr}:{port}\n", i + 2));
        }
        std::fs::write(dir.join("rabbitmq.conf"), conf).expect("write rabbitmq.conf");
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("write env conf");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("write plugins");
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        chown_rabbitmq(&dir);
        let mut node = Self {
            dir,
            nodename,
            port,
            dist_port,
            child: None,
        };
        node.boot().await;
        node
    }

    /// The AMQP URL of the node on 127.0.0.1.
    pub fn url(&self) -> String {
        self.url_at("127.0.0.1")
    }

    /// The AMQP URL of the node on `host`.
    pub fn url_at(&self, host: &str) -> String {
        format!("amqp://guest:guest@{host}:{}/%2f", self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Starts the node (again, with the same data) and waits until it
    /// accepts AMQP connections.
    pub async fn boot(&mut self) {
        assert!(self.child.is_none(), "the node is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("server.out"))
            .expect("server log");
        let child = Command::new("setpriv")
            .args([
                "--reuid=rabbitmq",
                "--regid=rabbitmq",
                "--init-groups",
                "env",
            ])
            .arg("HOME=/var/lib/rabbitmq")
            .arg(format!("RABBITMQ_NODENAME={}", self.nodename))
            .arg(format!("RABBITMQ_NODE_PORT={}", self.port))
            .arg(format!("RABBITMQ_DIST_PORT={}", self.dist_port))
            .arg(format!(
                "RABBITMQ_MNESIA_BASE={}",
                self.path("mnesia").display()
            ))
            .arg(format!("RABBITMQ_LOG_BASE={}", self.path("log").display()))
            .arg(format!(
                "RABBITMQ_CONFIG_FILE={}",
                self.path("rabbitmq.conf").display()
            ))
            .arg(format!(
                "RABBITMQ_CONF_ENV_FILE={}",
                self.path("rabbitmq-env.conf").display()
            ))
            .arg(format!(
                "RABBITMQ_ENABLED_PLUGINS_FILE={}",
                self.path("enabled_plugins").display()
            ))
            .arg(format!(
                "RABBITMQ_PID_FILE={}",
                self.path("beam.pid").display()
            ))
            .arg("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("rabbitmq-server (Debian package rabbitmq-server) starts");
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Waits until the node accepts an AMQP connection.
    pub async fn wait_ready(&self) {
        let url = self.url();
        let deadline = tokio::time::Instant::now() + BOOT_WAIT;
        loop {
            if let Ok(conn) = shellway_common::amqp::connect_once(&url, "test probe").await {
                conn.close(200, "probe".into()).await.ok();
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the test RabbitMQ node did not accept AMQP within {BOOT_WAIT:?}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the node accepts TCP connections on its AMQP port now.
    pub async fn accepts(&self) -> bool {
        tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_ok()
    }

    fn beam_pid(&self) -> Option<String> {
        std::fs::read_to_string(self.path("beam.pid"))
            .ok()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
    }

    /// Stops the node the way `systemctl stop` does (SIGTERM: a clean
    /// shutdown) and waits until it has exited.
    pub async fn stop(&mut self) {
        self.signal("TERM").await;
    }

    /// Kills the node with SIGKILL (a crash) and waits until it is gone.
    pub async fn kill(&mut self) {
        self.signal("KILL").await;
    }

    async fn signal(&mut self, signal: &str) {
        let pid = self.beam_pid().expect("the node wrote its pid file");
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} {pid}");
        let mut child = self.child.take().expect("the node runs");
        tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("the node exits within 60 s")
            .expect("reap the node");
        std::fs::remove_file(self.path("beam.pid")).ok();
    }

    /// The node's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("server.out")).unwrap_or_default()
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        if let Some(pid) = self.beam_pid() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

fn chown_rabbitmq(dir: &std::path::Path) {
    let status = std::process::Command::new("chown")
        .args(["-R", "rabbitmq:rabbitmq"])
        .arg(dir)
        .status()
        .expect("chown runs");
    assert!(status.success(), "chown the node's directory to rabbitmq");
}

//! Command line and environment (`SHELLWAY_…`), parsed once with clap.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shellway_common::amqp::DurableQueueOptions;
use shellway_common::Topology;

use crate::Config;

#[derive(Debug, Parser)]
#[command(
    name = "session-proxy",
    version,
    about = "Shellway's session proxy: web console, HTTP API, WebSockets, recorder"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub opts: Options,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the API and the console (the default).
    Serve,
    /// Create an administrator; the password comes from
    /// SHELLWAY_ADMIN_PASSWORD or standard input.
    CreateAdmin {
        #[arg(long)]
        username: String,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    #[arg(
        long,
        env = "SHELLWAY_DATABASE_URL",
        global = true,
        default_value = "postgres://postgres@127.0.0.1:5432/shellway",
        hide_env_values = true
    )]
    pub database_url: String,
    #[arg(
        long,
        env = "SHELLWAY_AMQP_URL",
        global = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    #[arg(
        long,
        env = "SHELLWAY_AMQP_PREFIX",
        global = true,
        default_value = "shellway"
    )]
    pub amqp_prefix: String,
    #[arg(
        long,
        env = "SHELLWAY_LISTEN",
        global = true,
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Names this proxy's queues (default: random).
    #[arg(long, env = "SHELLWAY_PROXY_ID", global = true)]
    pub proxy_id: Option<String>,
    #[arg(
        long,
        env = "SHELLWAY_REQUEST_TTL_MS",
        global = true,
        default_value_t = 10_000
    )]
    pub request_ttl_ms: u64,
    #[arg(
        long,
        env = "SHELLWAY_HEARTBEAT_MS",
        global = true,
        default_value_t = 2_000
    )]
    pub heartbeat_ms: u64,
    #[arg(long, env = "SHELLWAY_QUEUE_EXPIRES_MS", global = true)]
    pub queue_expires_ms: Option<u64>,
    /// The administrator created at start when `SHELLWAY_ADMIN_PASSWORD`
    /// is set and no user of that name exists.
    #[arg(
        long,
        env = "SHELLWAY_ADMIN_USERNAME",
        global = true,
        default_value = "admin"
    )]
    pub admin_username: String,
    #[arg(
        long,
        env = "SHELLWAY_ADMIN_PASSWORD",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub admin_password: Option<String>,
    #[arg(
        long,
        env = "SHELLWAY_COOKIE_SECURE",
        global = true,
        default_value_t = false
    )]
    pub cookie_secure: bool,
    /// Also run an SSH runner in this process.
    #[arg(
        long,
        env = "SHELLWAY_WITH_RUNNER",
        global = true,
        default_value_t = false
    )]
    pub with_runner: bool,
    #[arg(long, env = "SHELLWAY_RUNNER_ID", global = true)]
    pub runner_id: Option<String>,
    #[arg(long, env = "SHELLWAY_RUNNER_CAPACITY", global = true)]
    pub runner_capacity: Option<u32>,
    #[arg(long, env = "SHELLWAY_CONNECT_TIMEOUT_MS", global = true)]
    pub connect_timeout_ms: Option<u64>,
    /// Longest lifetime of a share link, in seconds.
    #[arg(
        long,
        env = "SHELLWAY_SHARE_MAX_EXPIRY_S",
        global = true,
        default_value_t = 86_400
    )]
    pub share_max_expiry_s: u64,
    /// Let `view` share links work without signing in.
    #[arg(
        long,
        env = "SHELLWAY_SHARE_ANONYMOUS_VIEW",
        global = true,
        default_value_t = false
    )]
    pub share_anonymous_view: bool,
    /// Viewers one session accepts (owner included).
    #[arg(
        long,
        env = "SHELLWAY_MAX_VIEWERS",
        global = true,
        default_value_t = 64
    )]
    pub max_viewers: usize,
    /// Live output messages a viewer may fall behind before it resyncs
    /// from the recording.
    #[arg(
        long,
        env = "SHELLWAY_VIEWER_BUFFER",
        global = true,
        default_value_t = 1024
    )]
    pub viewer_buffer: usize,
    /// End a session after this many seconds with no viewer and no input
    /// (0: never). Sent to the runner with each session request.
    #[arg(
        long,
        env = "SHELLWAY_SESSION_IDLE_TIMEOUT_S",
        global = true,
        default_value_t = 1800
    )]
    pub session_idle_timeout_s: u64,
}

/// Eight random hex digits.
pub(crate) fn random_id() -> String {
    hex::encode(rand::random::<[u8; 4]>())
}

impl Options {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.heartbeat_ms < 100 {
            return Err("SHELLWAY_HEARTBEAT_MS must be at least 100".into());
        }
        if self.share_max_expiry_s == 0 {
            return Err("SHELLWAY_SHARE_MAX_EXPIRY_S must be at least 1".into());
        }
        if self.max_viewers == 0 {
            return Err("SHELLWAY_MAX_VIEWERS must be at least 1".into());
        }
        if self.viewer_buffer == 0 {
            return Err("SHELLWAY_VIEWER_BUFFER must be at least 1".into());
        }
        if self.request_ttl_ms < 100 {
            return Err("SHELLWAY_REQUEST_TTL_MS must be at least 100".into());
        }
        let prefix_ok = !self.amqp_prefix.is_empty()
            && self
                .amqp_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !prefix_ok {
            return Err("SHELLWAY_AMQP_PREFIX must be letters, digits, '-' or '_'".into());
        }
        if let Some(id) = &self.proxy_id {
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                return Err("SHELLWAY_PROXY_ID must be letters, digits, '-' or '_'".into());
            }
        }
        Ok(())
    }

    pub(crate) fn to_config(&self) -> Config {
        let topology = Topology::new(self.amqp_prefix.clone());
        let heartbeat = Duration::from_millis(self.heartbeat_ms);
        let durable = DurableQueueOptions {
            expires: self.queue_expires_ms.map(Duration::from_millis),
        };
        let with_runner = self.with_runner.then(|| {
            let mut rc = ssh_runner::Config {
                amqp_url: self.amqp_url.clone(),
                topology: topology.clone(),
                heartbeat,
                durable: durable.clone(),
                ..Default::default()
            };
            if let Some(id) = &self.runner_id {
                rc.runner_id = id.clone();
            }
            if let Some(c) = self.runner_capacity {
                rc.capacity = c;
            }
            if let Some(ms) = self.connect_timeout_ms {
                rc.connect_timeout = Duration::from_millis(ms);
            }
            rc
        });
        Config {
            database_url: self.database_url.clone(),
            amqp_url: self.amqp_url.clone(),
            topology,
            proxy_id: self.proxy_id.clone().unwrap_or_else(random_id),
            request_ttl: Duration::from_millis(self.request_ttl_ms),
            heartbeat,
            durable,
            bootstrap_admin: self
                .admin_password
                .clone()
                .map(|password| (self.admin_username.clone(), password)),
            cookie_secure: self.cookie_secure,
            with_runner,
            session_idle_timeout: Duration::from_secs(self.session_idle_timeout_s),
            sharing: crate::Sharing {
                max_expiry: Duration::from_secs(self.share_max_expiry_s),
                anonymous_view: self.share_anonymous_view,
                max_viewers: self.max_viewers,
                viewer_buffer: self.viewer_buffer,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_for_local_use() {
        let cli = Cli::try_parse_from(["session-proxy"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(cli.command.is_none());
        assert_eq!(cli.opts.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cli.opts.request_ttl_ms, 10_000);
        assert!(cli.opts.validate().is_ok());
        let cfg = cli.opts.to_config();
        assert_eq!(cfg.proxy_id.len(), 8);
        assert!(cfg.with_runner.is_none());
        assert!(cfg.bootstrap_admin.is_none(), "no password, no admin");
        assert_eq!(cfg.session_idle_timeout, Duration::from_secs(1800));
    }

    #[test]
    fn an_admin_password_alone_creates_the_admin_user() {
        let cli = Cli::try_parse_from(["session-proxy", "--admin-password", "pw-123456"])
            .unwrap_or_else(|e| panic!("{e}"));
        let cfg = cli.opts.to_config();
        assert_eq!(
            cfg.bootstrap_admin,
            Some(("admin".to_owned(), "pw-123456".to_owned()))
        );
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["session-proxy", "serve", "--with-runner"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(cli.command, Some(Command::Serve)));
        assert!(cli.opts.with_runner);
        let cli = Cli::try_parse_from(["session-proxy", "create-admin", "--username", "root"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(cli.command, Some(Command::CreateAdmin { ref username }) if username == "root")
        );
    }
}

//! Command line and environment (`SHELLWAY_…`), parsed once with clap.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shellway_common::amqp::DurableQueueOptions;
use shellway_common::Topology;

use crate::Config;
use crate::{ConnectionLimits, Origin, Security, TrustedProxies};

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
    /// The credential vault (run by an operator, not by the server).
    #[command(subcommand)]
    Vault(VaultCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Re-encrypt every stored credential to new runner recipients, in
    /// one transaction. Needs the runners' current identity; see
    /// docs/vault.md for the switch-over.
    Rotate {
        /// A file with the current identity (or identities), `AGE-SECRET-KEY-1…`.
        #[arg(long)]
        identity_file: std::path::PathBuf,
        /// The new recipient(s), `age1…`, comma-separated or repeated.
        #[arg(long, required = true)]
        to: Vec<String>,
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
    /// Mark the login cookie `Secure` (default: unless listening on loopback).
    #[arg(
        long,
        env = "SHELLWAY_COOKIE_SECURE",
        global = true,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub cookie_secure: Option<bool>,
    /// The URL browsers use, e.g. https://console.example.com.
    #[arg(long, env = "SHELLWAY_PUBLIC_URL", global = true, value_parser = parse_origin)]
    pub public_url: Option<Origin>,
    /// Reverse proxies (addresses or networks, comma-separated) whose
    /// X-Forwarded-For/-Proto/-Host headers are believed.
    #[arg(
        long,
        env = "SHELLWAY_TRUSTED_PROXIES",
        global = true,
        default_value = "",
        value_parser = parse_trusted
    )]
    pub trusted_proxies: TrustedProxies,
    /// Password hashes computed at once (default: twice the cores).
    #[arg(long, env = "SHELLWAY_HASH_CONCURRENCY", global = true)]
    pub hash_concurrency: Option<usize>,
    #[arg(
        long,
        env = "SHELLWAY_HASH_WAIT_MS",
        global = true,
        default_value_t = 2_000
    )]
    pub hash_wait_ms: u64,
    /// Longest lifetime of an API token, in seconds.
    #[arg(
        long,
        env = "SHELLWAY_TOKEN_MAX_EXPIRY_S",
        global = true,
        default_value_t = 365 * 86_400
    )]
    pub token_max_expiry_s: u64,
    /// Connections at once, WebSockets included.
    #[arg(
        long,
        env = "SHELLWAY_MAX_CONNECTIONS",
        global = true,
        default_value_t = ConnectionLimits::default().max_total
    )]
    pub max_connections: usize,
    /// Connections at once from one client address (IPv6: one /64).
    #[arg(
        long,
        env = "SHELLWAY_MAX_CONNECTIONS_PER_ADDRESS",
        global = true,
        default_value_t = ConnectionLimits::default().max_per_address
    )]
    pub max_connections_per_address: usize,
    /// Time to send a request head; also how long an idle connection stays.
    #[arg(
        long,
        env = "SHELLWAY_HEADER_TIMEOUT_MS",
        global = true,
        default_value_t = 10_000
    )]
    pub header_timeout_ms: u64,
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
    /// The in-process runner's key directory (see ssh-runner).
    #[arg(long, env = "SHELLWAY_RUNNER_KEY_DIR", global = true)]
    pub runner_key_dir: Option<std::path::PathBuf>,
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
    /// Of the viewers one session accepts, seats kept for its owner and
    /// administrators (link viewers cannot take them).
    #[arg(
        long,
        env = "SHELLWAY_VIEWERS_RESERVED",
        global = true,
        default_value_t = 4
    )]
    pub viewers_reserved: usize,
    /// Viewers one share link admits.
    #[arg(
        long,
        env = "SHELLWAY_SHARE_MAX_VIEWERS_PER_LINK",
        global = true,
        default_value_t = 16
    )]
    pub share_max_viewers_per_link: usize,
    /// Output bytes a flow-controlled viewer (the console) may have sent
    /// and not yet acknowledged.
    #[arg(
        long,
        env = "SHELLWAY_VIEWER_WINDOW",
        global = true,
        default_value_t = 256 * 1024
    )]
    pub viewer_window: usize,
    /// Output bytes a flow-controlled viewer may fall behind before it
    /// skips ahead to a snapshot of the screen.
    #[arg(
        long,
        env = "SHELLWAY_VIEWER_SKIP",
        global = true,
        default_value_t = 1024 * 1024
    )]
    pub viewer_skip: usize,
    /// Delete the recordings of sessions that ended this many days ago
    /// (0: keep them for ever).
    #[arg(
        long,
        env = "SHELLWAY_RECORDING_RETENTION_DAYS",
        global = true,
        default_value_t = 0
    )]
    pub recording_retention_days: u32,
    /// Output bytes stored per session (0: no limit).
    #[arg(
        long,
        env = "SHELLWAY_RECORDING_MAX_BYTES",
        global = true,
        default_value_t = 0
    )]
    pub recording_max_bytes: u64,
    /// Seconds between two retention sweeps.
    #[arg(
        long,
        env = "SHELLWAY_RECORDING_SWEEP_S",
        global = true,
        default_value_t = 3600
    )]
    pub recording_sweep_s: u64,
    /// End a session after this many seconds with no viewer and no input
    /// (0: never). Sent to the runner with each session request.
    #[arg(
        long,
        env = "SHELLWAY_SESSION_IDLE_TIMEOUT_S",
        global = true,
        default_value_t = 1800
    )]
    pub session_idle_timeout_s: u64,
    /// The runners' age recipients (`age1…`, comma-separated) stored
    /// credentials are sealed to. Public keys: the proxy cannot decrypt.
    #[arg(long, env = "SHELLWAY_VAULT_RECIPIENTS", global = true)]
    pub vault_recipients: Option<String>,
    /// Seconds between scheduled polls of the service panels' status
    /// (0: only on demand); unreachable services back off up to 10 min.
    #[arg(
        long,
        env = "SHELLWAY_SERVICE_STATUS_S",
        global = true,
        default_value_t = 30
    )]
    pub service_status_s: u64,
}

fn parse_origin(s: &str) -> Result<Origin, String> {
    s.parse()
}

fn parse_trusted(s: &str) -> Result<TrustedProxies, String> {
    s.parse()
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
        if self.with_runner && !crate::embedded_runner::AVAILABLE {
            return Err("--with-runner: this build has no embedded runner \
                        (cargo feature embedded-runner); start ssh-runner instead"
                .into());
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
        if self.viewers_reserved >= self.max_viewers {
            return Err("SHELLWAY_VIEWERS_RESERVED must be less than SHELLWAY_MAX_VIEWERS".into());
        }
        if self.share_max_viewers_per_link == 0 {
            return Err("SHELLWAY_SHARE_MAX_VIEWERS_PER_LINK must be at least 1".into());
        }
        if self.viewer_window < 16 * 1024 {
            return Err("SHELLWAY_VIEWER_WINDOW must be at least 16384 (bytes)".into());
        }
        if self.viewer_skip < self.viewer_window {
            return Err("SHELLWAY_VIEWER_SKIP must be at least SHELLWAY_VIEWER_WINDOW".into());
        }
        if self.recording_sweep_s == 0 {
            return Err("SHELLWAY_RECORDING_SWEEP_S must be at least 1".into());
        }
        if self.hash_concurrency == Some(0) {
            return Err("SHELLWAY_HASH_CONCURRENCY must be at least 1".into());
        }
        if self.token_max_expiry_s == 0 {
            return Err("SHELLWAY_TOKEN_MAX_EXPIRY_S must be at least 1".into());
        }
        if self.max_connections == 0 || self.max_connections_per_address == 0 {
            return Err(
                "SHELLWAY_MAX_CONNECTIONS and SHELLWAY_MAX_CONNECTIONS_PER_ADDRESS must be at least 1"
                    .into(),
            );
        }
        if self.header_timeout_ms < 100 {
            return Err("SHELLWAY_HEADER_TIMEOUT_MS must be at least 100".into());
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
        if let Some(list) = &self.vault_recipients {
            shellway_common::vault::parse_recipients(list)
                .map_err(|err| format!("SHELLWAY_VAULT_RECIPIENTS: {err}"))?;
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
        let with_runner =
            crate::embedded_runner::from_options(self, &topology, heartbeat, &durable);
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
            cookie_secure: self
                .cookie_secure
                .unwrap_or(!self.listen.ip().is_loopback()),
            with_runner,
            session_idle_timeout: Duration::from_secs(self.session_idle_timeout_s),
            sharing: crate::Sharing {
                max_expiry: Duration::from_secs(self.share_max_expiry_s),
                anonymous_view: self.share_anonymous_view,
                max_viewers: self.max_viewers,
                reserved_viewers: self.viewers_reserved,
                max_viewers_per_link: self.share_max_viewers_per_link,
                viewer_buffer: self.viewer_buffer,
                window: self.viewer_window,
                skip: self.viewer_skip,
            },
            recording: crate::RecordingPolicy {
                retention: (self.recording_retention_days > 0).then(|| {
                    Duration::from_secs(u64::from(self.recording_retention_days) * 86_400)
                }),
                max_bytes: (self.recording_max_bytes > 0).then_some(self.recording_max_bytes),
                sweep_every: Duration::from_secs(self.recording_sweep_s),
            },
            security: self.security(),
            service_status_every: Duration::from_secs(self.service_status_s),
            vault_recipients: self
                .vault_recipients
                .as_deref()
                .and_then(|list| shellway_common::vault::parse_recipients(list).ok())
                .unwrap_or_default(),
        }
    }

    fn security(&self) -> Security {
        let defaults = Security::default();
        Security {
            trusted_proxies: self.trusted_proxies.clone(),
            public_url: self.public_url.clone(),
            hash_concurrency: self.hash_concurrency.unwrap_or(defaults.hash_concurrency),
            hash_wait: Duration::from_millis(self.hash_wait_ms),
            token_max_expiry: Duration::from_secs(self.token_max_expiry_s),
            connections: ConnectionLimits {
                max_total: self.max_connections,
                max_per_address: self.max_connections_per_address,
                header_timeout: Duration::from_millis(self.header_timeout_ms),
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
        assert_eq!(
            cfg.recording,
            crate::RecordingPolicy::default(),
            "recordings are kept"
        );
        assert!(!cfg.cookie_secure, "plain HTTP on loopback");
        assert_eq!(cfg.security.trusted_proxies, TrustedProxies::default());
        assert!(cfg.security.hash_concurrency >= 2);
        assert_eq!(cfg.security.connections, ConnectionLimits::default());
    }

    #[test]
    fn the_cookie_is_secure_unless_listening_on_loopback_or_told_otherwise() {
        let secure = |args: &[&str]| {
            let mut all = vec!["session-proxy"];
            all.extend_from_slice(args);
            let cli = Cli::try_parse_from(all).unwrap_or_else(|e| panic!("{e}"));
            cli.opts.to_config().cookie_secure
        };
        assert!(!secure(&[]));
        assert!(!secure(&["--listen", "[::1]:8080"]));
        assert!(secure(&["--listen", "0.0.0.0:8080"]));
        assert!(!secure(&[
            "--listen",
            "0.0.0.0:8080",
            "--cookie-secure",
            "false"
        ]));
        assert!(secure(&["--cookie-secure", "yes"]));
    }

    #[test]
    fn bad_security_settings_are_refused_at_start() {
        for args in [
            ["--trusted-proxies", "10.0.0.0/99"],
            ["--trusted-proxies", "proxy.local"],
            ["--public-url", "console.example.com"],
        ] {
            let mut all = vec!["session-proxy"];
            all.extend_from_slice(&args);
            assert!(Cli::try_parse_from(all).is_err(), "{args:?}");
        }
        let cli = Cli::try_parse_from(["session-proxy", "--hash-concurrency", "0"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(cli.opts.validate().is_err());
        let cli = Cli::try_parse_from([
            "session-proxy",
            "--trusted-proxies",
            "10.0.0.0/8, 192.168.0.1",
            "--public-url",
            "https://console.example.com",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let cfg = cli.opts.to_config();
        assert!(cfg.security.public_url.is_some());
        assert_ne!(cfg.security.trusted_proxies, TrustedProxies::default());
    }

    #[test]
    fn an_admin_password_alone_creates_the_admin_user() {
        let cli = Cli::try_parse_from(["session-proxy", "--admin-password", "pw-123456-long"])
            .unwrap_or_else(|e| panic!("{e}"));
        let cfg = cli.opts.to_config();
        assert_eq!(
            cfg.bootstrap_admin,
            Some(("admin".to_owned(), "pw-123456-long".to_owned()))
        );
    }

    #[test]
    fn recording_limits_are_read_in_days_and_bytes() {
        let cli = Cli::try_parse_from([
            "session-proxy",
            "--recording-retention-days",
            "30",
            "--recording-max-bytes",
            "1000000",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let cfg = cli.opts.to_config();
        assert_eq!(
            cfg.recording.retention,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(cfg.recording.max_bytes, Some(1_000_000));
        let cli = Cli::try_parse_from(["session-proxy", "--recording-sweep-s", "0"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(cli.opts.validate().is_err());
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["session-proxy", "serve", "--with-runner"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(cli.command, Some(Command::Serve)));
        assert!(cli.opts.with_runner);
        let cli = Cli::try_parse_from([
            "session-proxy",
            "serve",
            "--with-runner",
            "--runner-key-dir",
            "/keys",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        #[cfg(feature = "embedded-runner")]
        assert_eq!(
            cli.opts.to_config().with_runner.map(|r| r.key_dir),
            Some(std::path::PathBuf::from("/keys"))
        );
        #[cfg(not(feature = "embedded-runner"))]
        assert!(cli.opts.validate().is_err(), "no runner in this build");
        let cli = Cli::try_parse_from(["session-proxy", "create-admin", "--username", "root"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(cli.command, Some(Command::CreateAdmin { ref username }) if username == "root")
        );
    }
}

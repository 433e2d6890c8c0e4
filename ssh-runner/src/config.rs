//! Command line and environment (`SHELLWAY_…`) of the runner.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shellway_common::amqp::DurableQueueOptions;
use shellway_common::vault::{self, Identities};
use shellway_common::Topology;

use crate::Config;

pub(crate) const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub(crate) const DEFAULT_PREFIX: &str = "shellway";
pub(crate) const DEFAULT_CAPACITY: u32 = 1000;
pub(crate) const DEFAULT_HEARTBEAT_MS: u64 = 2000;
pub(crate) const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
pub(crate) const DEFAULT_OUTAGE_HOLD_MS: u64 = 300_000;

/// Shellway SSH runner: takes session requests from RabbitMQ and owns the
/// SSH connections.
#[derive(Debug, Parser)]
#[command(name = "ssh-runner", version)]
pub(crate) struct Cli {
    /// RabbitMQ URL.
    #[arg(long, env = "SHELLWAY_AMQP_URL", default_value = DEFAULT_AMQP_URL)]
    amqp_url: String,
    /// Prefix of every exchange and queue name; must match the proxies'.
    #[arg(long, env = "SHELLWAY_AMQP_PREFIX", default_value = DEFAULT_PREFIX)]
    amqp_prefix: String,
    /// Unique id of this runner [default: <hostname>-<4 random hex digits>].
    #[arg(long, env = "SHELLWAY_RUNNER_ID")]
    runner_id: Option<String>,
    /// Most sessions this runner holds at once.
    #[arg(long, env = "SHELLWAY_RUNNER_CAPACITY", default_value_t = DEFAULT_CAPACITY,
          value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
    /// Heartbeat interval, in milliseconds.
    #[arg(long, env = "SHELLWAY_HEARTBEAT_MS", default_value_t = DEFAULT_HEARTBEAT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_ms: u64,
    /// SSH connect (and handshake) timeout, in milliseconds.
    #[arg(long, env = "SHELLWAY_CONNECT_TIMEOUT_MS", default_value_t = DEFAULT_CONNECT_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    connect_timeout_ms: u64,
    /// Directory that holds the hosts' private keys (`key_path`); a key
    /// file elsewhere is refused [default: $HOME/.ssh, else /etc/shellway/keys].
    #[arg(long, env = "SHELLWAY_RUNNER_KEY_DIR")]
    key_dir: Option<PathBuf>,
    /// Delete the durable queues after this long unused (tests).
    #[arg(long, env = "SHELLWAY_QUEUE_EXPIRES_MS")]
    queue_expires_ms: Option<u64>,
    /// How long sessions outlive a broker this runner cannot reach, in
    /// milliseconds; then they end and the remote processes are stopped.
    #[arg(long, env = "SHELLWAY_OUTAGE_HOLD_MS", default_value_t = DEFAULT_OUTAGE_HOLD_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    outage_hold_ms: u64,
    /// Address of the runner's `/healthz` and `/readyz` (none by default).
    #[arg(long, env = "SHELLWAY_HEALTH_LISTEN")]
    health_listen: Option<std::net::SocketAddr>,
    /// Files holding the vault's age identities (`AGE-SECRET-KEY-1…`, one
    /// per line), comma-separated: during a rotation, the old and the new.
    #[arg(long, env = "SHELLWAY_VAULT_IDENTITY_FILE", value_delimiter = ',')]
    vault_identity_file: Vec<PathBuf>,
    /// The identities themselves, comma-separated (instead of or besides
    /// the files).
    #[arg(long, env = "SHELLWAY_VAULT_IDENTITY", hide_env_values = true)]
    vault_identity: Option<String>,
}

impl Cli {
    pub(crate) fn into_config(self) -> anyhow::Result<Config> {
        let vault = self.vault_identities()?;
        Ok(Config {
            amqp_url: self.amqp_url,
            topology: Topology::new(self.amqp_prefix),
            runner_id: self
                .runner_id
                .filter(|id| !id.trim().is_empty())
                .unwrap_or_else(default_runner_id),
            capacity: self.capacity,
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            key_dir: self.key_dir.unwrap_or_else(default_key_dir),
            durable: DurableQueueOptions {
                expires: self.queue_expires_ms.map(Duration::from_millis),
            },
            outage_hold: Duration::from_millis(self.outage_hold_ms),
            health_listen: self.health_listen,
            vault,
        })
    }

    /// Every identity from the files and the variable. The errors name a
    /// file and a line, never a key.
    fn vault_identities(&self) -> anyhow::Result<Identities> {
        let mut all = Vec::new();
        // An empty value (a compose default) means none.
        for path in self
            .vault_identity_file
            .iter()
            .filter(|p| !p.as_os_str().is_empty())
        {
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|err| {
                anyhow::anyhow!("SHELLWAY_VAULT_IDENTITY_FILE {}: {err}", path.display())
            })?);
            let ids = vault::parse_identities(&text).map_err(|err| {
                anyhow::anyhow!("SHELLWAY_VAULT_IDENTITY_FILE {}: {err}", path.display())
            })?;
            anyhow::ensure!(
                !ids.is_empty(),
                "SHELLWAY_VAULT_IDENTITY_FILE {} holds no age identity",
                path.display()
            );
            all.extend(ids);
        }
        if let Some(list) = self
            .vault_identity
            .as_ref()
            .filter(|l| !l.trim().is_empty())
        {
            let ids = vault::parse_identities(list)
                .map_err(|err| anyhow::anyhow!("SHELLWAY_VAULT_IDENTITY: {err}"))?;
            all.extend(ids);
        }
        Ok(Identities::new(all))
    }
}

/// `$HOME/.ssh` (where a user's keys are), else `/etc/shellway/keys`.
pub(crate) fn default_key_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|home| home.is_absolute())
        .map(|home| home.join(".ssh"))
        .unwrap_or_else(|| PathBuf::from("/etc/shellway/keys"))
}

/// `<hostname>-<4 random hex digits>`.
pub(crate) fn default_runner_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "runner".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &random[..4])
}

/// Refuses a configuration the runner cannot work with.
pub(crate) fn validate(config: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(config.capacity >= 1, "capacity must be at least 1");
    anyhow::ensure!(
        !config.heartbeat.is_zero(),
        "the heartbeat interval must not be zero"
    );
    anyhow::ensure!(
        !config.connect_timeout.is_zero(),
        "the connect timeout must not be zero"
    );
    anyhow::ensure!(
        config.key_dir.is_absolute(),
        "the key directory (SHELLWAY_RUNNER_KEY_DIR) must be an absolute path, not {}",
        config.key_dir.display()
    );
    anyhow::ensure!(
        !config.outage_hold.is_zero(),
        "the outage hold must not be zero"
    );
    anyhow::ensure!(
        !config.runner_id.trim().is_empty(),
        "the runner id must not be empty"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let cli = Cli::try_parse_from(["ssh-runner"]).unwrap_or_else(|e| panic!("{e}"));
        let config = cli.into_config().unwrap_or_else(|e| panic!("{e}"));
        let default = Config::default();
        assert_eq!(config.amqp_url, DEFAULT_AMQP_URL);
        assert_eq!(config.topology, default.topology);
        assert_eq!(config.capacity, 1000);
        assert_eq!(config.heartbeat, Duration::from_millis(2000));
        assert_eq!(config.connect_timeout, Duration::from_secs(10));
        assert_eq!(config.outage_hold, Duration::from_secs(300));
        assert_eq!(config.health_listen, None);
        assert!(config.runner_id.len() > 5, "{}", config.runner_id);
        assert_eq!(config.key_dir, default_key_dir());
        assert!(validate(&config).is_ok());
    }

    #[test]
    fn flags_override_and_zero_capacity_is_refused() {
        let cli = Cli::try_parse_from([
            "ssh-runner",
            "--capacity",
            "3",
            "--runner-id",
            "r1",
            "--queue-expires-ms",
            "5",
            "--key-dir",
            "/keys",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let config = cli.into_config().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.key_dir, PathBuf::from("/keys"));
        let relative = Config {
            key_dir: "keys".into(),
            ..config.clone()
        };
        assert!(validate(&relative).is_err());
        assert_eq!((config.capacity, config.runner_id.as_str()), (3, "r1"));
        assert_eq!(config.durable.expires, Some(Duration::from_millis(5)));
        assert!(Cli::try_parse_from(["ssh-runner", "--capacity", "0"]).is_err());
    }
}

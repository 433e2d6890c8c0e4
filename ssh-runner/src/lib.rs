//! Shellway's SSH runner.
//!
//! A stateless worker: it takes session requests from RabbitMQ (within its
//! capacity), opens the SSH connection, the PTY shell and exec runs, and
//! reports everything back as events and output. See `docs/architecture.md`
//! for the whole picture and `shellway_common` for the wire contract.

mod asks;
mod broker;
mod config;
mod health;
mod heartbeat;
mod idle;
mod input;
mod intake;
mod link;
mod output;
mod presence;
mod publisher;
mod remote_pid;
mod runs;
mod screen;
mod session;
mod slots;
mod ssh;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt;
use shellway_common::amqp::{self, Backoff, DurableQueueOptions};
use shellway_common::Topology;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::intake::Intake;
use crate::link::{Link, LinkOwner};
use crate::slots::Slots;

/// How long a stopping runner waits for its sessions to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// Output all sessions of a runner may hold that the recorder has not
/// stored yet; beyond it, sessions wait (and their hosts with them).
const OUTPUT_BUDGET: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub amqp_url: String,
    pub topology: Topology,
    pub runner_id: String,
    /// Most sessions held at once.
    pub capacity: u32,
    pub heartbeat: Duration,
    pub connect_timeout: Duration,
    /// Where `key_path` keys must be: a key file outside it is refused.
    pub key_dir: std::path::PathBuf,
    /// Options of the durable queues (passed to `declare_shared`).
    pub durable: DurableQueueOptions,
    /// How long sessions outlive a broker the runner cannot reach.
    pub outage_hold: Duration,
    /// Where to answer `/healthz` and `/readyz`, if anywhere.
    pub health_listen: Option<std::net::SocketAddr>,
    /// The vault's age identities, to open stored credentials (old and
    /// new during a rotation); none: sessions with one fail (`auth`).
    pub vault: shellway_common::vault::Identities,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            amqp_url: config::DEFAULT_AMQP_URL.into(),
            topology: Topology::new(config::DEFAULT_PREFIX),
            runner_id: config::default_runner_id(),
            capacity: config::DEFAULT_CAPACITY,
            heartbeat: Duration::from_millis(config::DEFAULT_HEARTBEAT_MS),
            connect_timeout: Duration::from_millis(config::DEFAULT_CONNECT_TIMEOUT_MS),
            key_dir: config::default_key_dir(),
            durable: DurableQueueOptions::default(),
            outage_hold: Duration::from_millis(config::DEFAULT_OUTAGE_HOLD_MS),
            health_listen: None,
            vault: Default::default(),
        }
    }
}

/// Runs the runner until `shutdown` is cancelled: then it stops taking
/// requests, closes every session ("runner shutting down"), waits for the
/// last events to be confirmed and returns. Losing the broker is not an
/// error: the runner reconnects by itself.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config::validate(&config)?;
    let config = Arc::new(config);
    let slots = Slots::new(config.capacity);
    let sessions = TaskTracker::new();
    tracing::info!(runner = %config.runner_id, capacity = config.capacity, prefix = config.topology.prefix(), key_dir = %config.key_dir.display(), vault_identities = config.vault.len(), "runner starting");
    if !config.key_dir.is_dir() {
        tracing::warn!(key_dir = %config.key_dir.display(), "the key directory does not exist: hosts with a key_path cannot connect");
    }
    let (owner, link) = link::new();
    let budget = publisher::Budget::new(OUTPUT_BUDGET);
    let health = match config.health_listen {
        Some(addr) => Some(health::serve(addr, link.clone(), shutdown.clone()).await?),
        None => None,
    };

    let served = Served {
        config: &config,
        link: &link,
        budget: &budget,
        slots: &slots,
        sessions: &sessions,
        shutdown: &shutdown,
    };
    let last = connect_and_serve(&served, &owner).await;

    tracing::info!(sessions = sessions.len(), "runner stopping");
    sessions.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(sessions = sessions.len(), "sessions did not close in time");
    }
    if let Some(broker) = last {
        broker.close("runner stopped").await;
    }
    if let Some(health) = health {
        health.await.ok();
    }
    tracing::info!("runner stopped");
    Ok(())
}

/// Connects, serves, and connects again whenever the broker is lost, until
/// `shutdown`; returns the connection in use then (sessions still publish
/// their last events on it). Sessions outlive every reconnect: they watch
/// `link` and move to the new connection by themselves.
async fn connect_and_serve(s: &Served<'_>, owner: &LinkOwner) -> Option<Broker> {
    let (config, shutdown) = (s.config, s.shutdown);
    let name = format!("ssh-runner {}", config.runner_id);
    let mut generation = 0;
    let mut backoff = Backoff::default();
    loop {
        let conn = tokio::select! {
            () = shutdown.cancelled() => return None,
            conn = amqp::connect(&config.amqp_url, &name) => conn,
        };
        generation += 1;
        let broker = match Broker::open(conn, config, generation).await {
            Ok(broker) => broker,
            Err((conn, err)) => {
                let pause = backoff.next_pause();
                tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "cannot set up the broker connection; retrying");
                conn.close(200, "setup failed".into()).await.ok();
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        backoff = Backoff::default();
        owner.set(Some(broker.clone()));
        let served = serve(&broker, s).await;
        match served {
            Ok(()) => return Some(broker),
            Err(err) => {
                owner.set(None);
                tracing::warn!(error = %err, generation, "lost the broker; reconnecting (sessions go on)");
                broker.close("reconnecting").await;
            }
        }
    }
}

/// What serving needs, across connections.
struct Served<'a> {
    config: &'a Arc<Config>,
    link: &'a Link,
    budget: &'a publisher::Budget,
    slots: &'a Slots,
    sessions: &'a TaskTracker,
    shutdown: &'a CancellationToken,
}

/// Serves on one broker connection: takes requests, sends heartbeats and
/// answers what proxies ask (host-key scans, vault re-seals) until
/// shutdown (`Ok`) or until the connection is lost (`Err`).
async fn serve(broker: &Broker, s: &Served<'_>) -> anyhow::Result<()> {
    let mut events = broker.connection().events_listener();
    let connection_error = async {
        while let Some(event) = events.next().await {
            if let lapin::Event::Error(err) = event {
                return err;
            }
        }
        lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed).into()
    };
    let intake = Intake {
        broker,
        link: s.link,
        budget: s.budget,
        config: s.config,
        slots: s.slots,
        sessions: s.sessions,
        shutdown: s.shutdown,
    };
    tokio::select! {
        taken = intake.run() => Ok(taken?),
        beat = heartbeat::run(broker, s.config, s.slots, s.shutdown) => Ok(beat?),
        asks = asks::serve(broker, s.config, s.shutdown) => Ok(asks?),
        err = connection_error => Err(err.into()),
        () = broker.broken() => anyhow::bail!("a channel of the connection failed"),
    }
}

/// The `ssh-runner` binary: configuration from flags and `SHELLWAY_…`
/// variables, logs per `RUST_LOG` (default `info`), runs until SIGINT or
/// SIGTERM.
pub fn cli_main() -> ExitCode {
    let cli = config::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("ssh-runner: {err:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let running = run(config, shutdown.clone());
        tokio::pin!(running);
        tokio::select! {
            result = &mut running => result,
            () = stop_signal() => {
                tracing::info!("stop signal received; shutting down");
                shutdown.cancel();
                running.await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "runner failed");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch SIGTERM");
                interrupt.await.ok();
            }
        }
    }
    #[cfg(not(unix))]
    interrupt.await.ok();
}

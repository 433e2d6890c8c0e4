//! Shellway's SSH runner.
//!
//! A stateless worker: it takes session requests from RabbitMQ (within its
//! capacity), opens the SSH connection, the PTY shell and exec runs, and
//! reports everything back as events and output. See `docs/architecture.md`
//! for the whole picture and `shellway_common` for the wire contract.

mod broker;
mod config;
mod heartbeat;
mod idle;
mod intake;
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
use lapin::Connection;
use shellway_common::amqp::{self, DurableQueueOptions};
use shellway_common::Topology;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::intake::Intake;
use crate::slots::Slots;
pub use crate::ssh::scan::{fetch_host_key, ScanError};

/// How long a stopping runner waits for its sessions to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// Pause before serving again after the broker was lost.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

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
    tracing::info!(runner = %config.runner_id, capacity = config.capacity, prefix = config.topology.prefix(), key_dir = %config.key_dir.display(), "runner starting");
    if !config.key_dir.is_dir() {
        tracing::warn!(key_dir = %config.key_dir.display(), "the key directory does not exist: hosts with a key_path cannot connect");
    }

    let name = format!("ssh-runner {}", config.runner_id);
    let mut conn: Option<Arc<Connection>> = None;
    loop {
        let current = match conn.take() {
            Some(c) if c.status().connected() => c,
            _ => {
                let connecting = amqp::connect(&config.amqp_url, &name, Duration::MAX);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    c = connecting => Arc::new(c?),
                }
            }
        };
        let served = serve(&current, &config, &slots, &sessions, &shutdown).await;
        conn = Some(current);
        match served {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!(error = %err, "lost the broker; reconnecting");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                }
            }
        }
    }

    tracing::info!(sessions = sessions.len(), "runner stopping");
    sessions.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(sessions = sessions.len(), "sessions did not close in time");
    }
    if let Some(conn) = conn.filter(|c| c.status().connected()) {
        if let Err(err) = conn.close(200, "runner stopped".into()).await {
            tracing::debug!(error = %err, "closing the broker connection failed");
        }
    }
    tracing::info!("runner stopped");
    Ok(())
}

/// Serves on one broker connection: takes requests and sends heartbeats
/// until shutdown (`Ok`) or until the broker is lost (`Err`).
async fn serve(
    conn: &Arc<Connection>,
    config: &Arc<Config>,
    slots: &Slots,
    sessions: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let broker = Broker::open(conn.clone(), config).await?;
    let intake = Intake {
        broker: &broker,
        config,
        slots,
        sessions,
        shutdown,
    };
    tokio::select! {
        taken = intake.run() => Ok(taken?),
        () = heartbeat::run(&broker, config, slots, shutdown) => Ok(()),
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
    let config = cli.into_config();
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

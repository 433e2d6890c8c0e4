//! Shellway's session proxy: the HTTP API and WebSockets people use, the
//! recorder that persists everything the runners report, and the watchers
//! of runner liveness and rejected requests.
//!
//! `run(config, listener, shutdown)` is the whole service; the binary and the
//! tests both call it.

mod api;
mod app;
mod auth;
mod bus;
mod client_addr;
mod config;
mod embedded_runner;
mod error;
mod fanout;
mod headers;
mod health;
mod inputs;
mod jobs;
mod liveness;
mod origin;
mod passwords;
mod presence;
mod reaper;
mod recorder;
mod recording;
mod rejected;
mod rejection;
mod serve;
mod service;
mod state;
mod store;
mod web;
mod ws;

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use shellway_common::amqp::DurableQueueOptions;
use shellway_common::Topology;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::Broker;
use crate::fanout::Fanout;
use crate::state::{AppState, Settings};

/// Everything the proxy needs to start. See `docs/configuration.md`.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub amqp_url: String,
    pub topology: Topology,
    pub proxy_id: String,
    pub request_ttl: Duration,
    /// The runners' heartbeat interval; three missed make a runner dead.
    pub heartbeat: Duration,
    pub durable: DurableQueueOptions,
    /// Created at start if that user does not exist.
    pub bootstrap_admin: Option<(String, String)>,
    pub cookie_secure: bool,
    /// Run a runner in this process too.
    pub with_runner: Option<RunnerConfig>,
    pub sharing: Sharing,
    pub recording: RecordingPolicy,
    pub security: Security,
    /// Sessions with no viewer and no input end after this long (zero:
    /// never); the runner keeps the clock.
    pub session_idle_timeout: Duration,
    /// The runners' age X25519 recipients (`age1…`) stored credentials are
    /// sealed to; none: the vault refuses credentials. The proxy never
    /// holds an identity.
    pub vault_recipients: Vec<shellway_common::vault::Recipient>,
    /// How often service panels' status dots are polled again (zero:
    /// only when someone asks).
    pub service_status_every: Duration,
}

pub use crate::client_addr::TrustedProxies;
pub use crate::embedded_runner::RunnerConfig;
pub use crate::origin::Origin;
pub use crate::recording::RecordingPolicy;
pub use crate::serve::ConnectionLimits;
pub use crate::service::shares::Sharing;

/// Bounds at the edge: connections, sign-ins, tokens, and what the proxy
/// trusts. See docs/security.md.
#[derive(Debug, Clone)]
pub struct Security {
    /// Reverse proxies whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// The URL browsers use; WebSocket origins must match it.
    pub public_url: Option<Origin>,
    /// Password hashes computed at once (each holds ~19 MiB).
    pub hash_concurrency: usize,
    /// How long a sign-in waits for a hashing thread before `busy`.
    pub hash_wait: Duration,
    /// Longest lifetime of an API token.
    pub token_max_expiry: Duration,
    pub connections: ConnectionLimits,
}

impl Default for Security {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            trusted_proxies: TrustedProxies::default(),
            public_url: None,
            hash_concurrency: 2 * cores,
            hash_wait: Duration::from_secs(2),
            token_max_expiry: Duration::from_secs(365 * 86_400),
            connections: ConnectionLimits::default(),
        }
    }
}

/// How long background tasks get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Runs the proxy on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let db = store::pool::connect(&config.database_url).await?;
    let hasher =
        passwords::Hasher::new(config.security.hash_concurrency, config.security.hash_wait)?;
    if let Some((username, password)) = &config.bootstrap_admin {
        if service::accounts::ensure_admin(&db, &hasher, username, password).await? {
            tracing::info!(%username, "created the bootstrap administrator");
        }
    }
    let tasks = shutdown.child_token();
    let tracker = TaskTracker::new();
    // Serving starts at once: while RabbitMQ is down, `/readyz` says so and
    // what needs it fails fast; its supervisor connects in the background.
    let broker = Broker::new(
        &config.amqp_url,
        &format!("session-proxy {}", config.proxy_id),
        config.topology.clone(),
        config.durable.clone(),
    );
    tracker.spawn(broker.clone().supervise(tasks.clone()));
    let fanout = Fanout::new(
        broker.clone(),
        db.clone(),
        config.proxy_id.clone(),
        config.sharing.viewer_buffer,
        tracker.clone(),
        tasks.clone(),
    );
    let presence = presence::Presence::new(config.proxy_id.clone());
    tracker.spawn(presence.clone().run(broker.clone(), tasks.clone()));
    let asks = bus::RunnerAsks::new(broker.clone(), config.proxy_id.clone());
    tracker.spawn(asks.clone().run(tasks.clone()));
    // The recorder has a connection of its own: its copy of each output
    // message then does not queue on the socket and I/O thread that carry
    // the live feed to viewers.
    let recording = Broker::new(
        &config.amqp_url,
        &format!("session-proxy {} recorder", config.proxy_id),
        config.topology.clone(),
        config.durable.clone(),
    );
    tracker.spawn(recording.clone().supervise(tasks.clone()));
    let db_health = health::DbHealth::default();
    let state = AppState {
        db: db.clone(),
        db_health: db_health.clone(),
        broker: broker.clone(),
        recorder_broker: recording.clone(),
        fanout,
        presence,
        asks,
        inputs: inputs::InputLog::new(db.clone(), &tracker, tasks.clone()),
        hasher,
        settings: Arc::new(Settings {
            request_ttl: config.request_ttl,
            cookie_secure: config.cookie_secure,
            sharing: config.sharing.clone(),
            trusted_proxies: config.security.trusted_proxies.clone(),
            public_origin: config.security.public_url.clone(),
            token_max_expiry: config.security.token_max_expiry,
            session_idle_timeout: config.session_idle_timeout,
            vault: crate::service::credentials::Vault::new(config.vault_recipients.clone()),
        }),
        jobs: jobs::Jobs::new(config.proxy_id.clone(), tracker.clone(), tasks.clone()),
        shutdown: tasks.clone(),
    };
    tracker.spawn(state.jobs.clone().listen(db.clone()));
    tracker.spawn(state.jobs.clone().adopt(state.clone()));
    tracker.spawn(service::access::watch(state.clone(), tasks.clone()));
    tracker.spawn(service::services::schedule::run(
        state.clone(),
        config.service_status_every,
        tasks.clone(),
    ));
    tracker.spawn(recorder::run(
        db.clone(),
        recording,
        config.recording.max_bytes,
        tasks.clone(),
    ));
    tracker.spawn(recording::retention::run(
        db.clone(),
        config.recording.clone(),
        tasks.clone(),
    ));
    let liveness = liveness::Liveness::new(
        db.clone(),
        broker.clone(),
        config.proxy_id.clone(),
        config.heartbeat,
    );
    tracker.spawn(liveness::run(liveness.clone(), tasks.clone()));
    let reaper = reaper::Reaper {
        db: db.clone(),
        broker: broker.clone(),
        liveness,
        request_ttl: config.request_ttl,
        heartbeat: config.heartbeat,
    };
    tracker.spawn(reaper.run(tasks.clone()));
    tracker.spawn(rejected::run(
        db.clone(),
        broker.clone(),
        config.request_ttl,
        tasks.clone(),
    ));
    tracker.spawn(health::watch(db.clone(), db_health, tasks.clone()));
    tracker.spawn(store::throttles::prune_loop(db.clone(), tasks.clone()));
    if let Some(runner) = config.with_runner.clone() {
        tracker.spawn(embedded_runner::run(runner, tasks.clone()));
    }

    tracing::info!(addr = ?listener.local_addr().ok(), proxy_id = %config.proxy_id, "session proxy listening");
    serve::serve(
        listener,
        app::router(state),
        config.security.connections.clone(),
        config.security.trusted_proxies.clone(),
        shutdown.clone(),
    )
    .await;
    tasks.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("background tasks did not stop in time");
    }
    db.close().await;
    Ok(())
}

/// The `session-proxy` command line.
pub fn cli_main() -> ExitCode {
    let cli = config::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if let Err(msg) = cli.opts.validate() {
        eprintln!("session-proxy: {msg}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("session-proxy: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(config::Command::CreateAdmin { username }) => {
                create_admin(&cli.opts, &username).await
            }
            Some(config::Command::Vault(config::VaultCommand::Rotate { identity_file, to })) => {
                vault_rotate(&cli.opts, &identity_file, &to).await
            }
            Some(config::Command::Serve) | None => serve(&cli.opts).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "session-proxy failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(opts: &config::Options) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        on_signal.cancel();
    });
    run(opts.to_config(), listener, shutdown).await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn create_admin(opts: &config::Options, username: &str) -> anyhow::Result<()> {
    let password = match &opts.admin_password {
        Some(p) => p.clone(),
        None => read_password()?,
    };
    passwords::check_new(username, &password).map_err(anyhow::Error::msg)?;
    let db = store::pool::connect(&opts.database_url).await?;
    let hasher = passwords::Hasher::new(1, Duration::from_secs(60))?;
    let created = service::accounts::ensure_admin(&db, &hasher, username, &password).await?;
    db.close().await;
    if created {
        tracing::info!(%username, "administrator created");
    } else {
        tracing::warn!(%username, "that user exists already; nothing changed");
    }
    Ok(())
}

async fn vault_rotate(
    opts: &config::Options,
    identity_file: &std::path::Path,
    to: &[String],
) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(identity_file)
            .with_context(|| format!("cannot read {}", identity_file.display()))?,
    );
    let identities = shellway_common::vault::parse_identities(&text)?;
    anyhow::ensure!(
        !identities.is_empty(),
        "{} holds no age identity",
        identity_file.display()
    );
    let to = shellway_common::vault::parse_recipients(&to.join(","))?;
    let n = rotate_vault(&opts.database_url, &identities, &to).await?;
    tracing::info!(
        credentials = n,
        "every credential is sealed to the new recipients"
    );
    Ok(())
}

/// Re-seals every stored credential to `to` in one transaction, opening
/// each with `identities` (`session-proxy vault rotate`). Returns how many.
pub async fn rotate_vault(
    database_url: &str,
    identities: &[shellway_common::vault::Identity],
    to: &[shellway_common::vault::Recipient],
) -> anyhow::Result<usize> {
    let db = store::pool::connect(database_url).await?;
    let result = service::credentials::rotate(&db, identities, to).await;
    db.close().await;
    result
}

/// One line from standard input, without echo when it is a terminal.
fn read_password() -> anyhow::Result<String> {
    let tty = std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if tty {
        eprint!("password: ");
        stty("-echo");
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if tty {
        stty("echo");
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

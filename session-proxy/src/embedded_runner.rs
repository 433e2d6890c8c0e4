//! The runner `serve --with-runner` starts in this process, for a
//! one-command start: the only place the proxy links runner code, behind
//! the cargo feature `embedded-runner` (on by default). A build without it
//! (`--no-default-features`) refuses `--with-runner`; everything else the
//! proxy needs from a runner goes over the broker.

use std::time::Duration;

use shellway_common::amqp::DurableQueueOptions;
use shellway_common::Topology;
use tokio_util::sync::CancellationToken;

use crate::config::Options;

/// The in-process runner's settings.
#[cfg(feature = "embedded-runner")]
pub use ssh_runner::Config as RunnerConfig;

/// No runner in this build: no value of this type can exist.
#[cfg(not(feature = "embedded-runner"))]
#[derive(Debug, Clone)]
pub enum RunnerConfig {}

/// Whether this build can run a runner in-process.
pub(crate) const AVAILABLE: bool = cfg!(feature = "embedded-runner");

/// The runner's settings from the proxy's flags, if `--with-runner`.
#[cfg(feature = "embedded-runner")]
pub(crate) fn from_options(
    opts: &Options,
    topology: &Topology,
    heartbeat: Duration,
    durable: &DurableQueueOptions,
) -> Option<RunnerConfig> {
    opts.with_runner.then(|| {
        let mut rc = RunnerConfig {
            amqp_url: opts.amqp_url.clone(),
            topology: topology.clone(),
            heartbeat,
            durable: durable.clone(),
            ..Default::default()
        };
        if let Some(id) = &opts.runner_id {
            rc.runner_id = id.clone();
        }
        if let Some(c) = opts.runner_capacity {
            rc.capacity = c;
        }
        if let Some(ms) = opts.connect_timeout_ms {
            rc.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(dir) = &opts.runner_key_dir {
            rc.key_dir = dir.clone();
        }
        rc
    })
}

#[cfg(not(feature = "embedded-runner"))]
pub(crate) fn from_options(
    _opts: &Options,
    _topology: &Topology,
    _heartbeat: Duration,
    _durable: &DurableQueueOptions,
) -> Option<RunnerConfig> {
    None
}

/// Runs the runner until `shutdown`.
#[cfg(feature = "embedded-runner")]
pub(crate) async fn run(config: RunnerConfig, shutdown: CancellationToken) {
    if let Err(err) = ssh_runner::run(config, shutdown).await {
        tracing::error!(error = %err, "the in-process runner stopped");
    }
}

#[cfg(not(feature = "embedded-runner"))]
pub(crate) async fn run(config: RunnerConfig, _shutdown: CancellationToken) {
    match config {}
}

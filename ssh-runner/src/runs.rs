//! Exec runs of a session: one at a time, in arrival order, each step on a
//! new exec channel of the session's SSH connection, so the PTY stays
//! usable meanwhile. Steps run in bash when the host has it (looked up once
//! per session), else in `/bin/sh`. A batch stops at its first failing
//! step; `cd`, `export` and function definitions carry over to later steps
//! (`shellway_common::script::state`). Cancel escalates INT → TERM → KILL.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::{ChannelMsg, Sig};
use shellway_common::control::RunSpec;
use shellway_common::script::state::MAX_STATE;
use shellway_common::script::{summary, BatchState};
use shellway_common::{ErrorKind, Event, RunStatus, Stream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::output::{ChannelKind, ChannelReader, Next};
use crate::publisher::SharedPublisher;
use crate::remote_pid::{self, StderrHead};
use crate::ssh::SshConnection;

/// Most runs waiting behind the current one in a session.
pub(crate) const MAX_QUEUED_RUNS: usize = 64;
/// Most bytes of a step's output captured for the batch's state: one more
/// than the state may hold, so an overflow is seen.
const MAX_CAPTURE: usize = MAX_STATE + 1;
/// Most bytes of the path `command -v bash` may print.
const MAX_SHELL_PATH: usize = 256;
/// The shell steps run in when the host has no bash.
const POSIX_SHELL: &str = "/bin/sh";
/// Cancel: INT, then TERM after this…
const TERM_AFTER: Duration = Duration::from_millis(300);
/// …then KILL and close after this more…
const KILL_AFTER: Duration = Duration::from_millis(700);
/// …then stop waiting for the channel to close.
const GIVE_UP_AFTER: Duration = Duration::from_millis(300);

#[derive(Default)]
struct RunState {
    /// The run executing now and its cancel token.
    current: Mutex<Option<(Uuid, CancellationToken)>>,
    /// Queued runs canceled before they started.
    canceled: Mutex<HashSet<Uuid>>,
}

/// The session actor's side: submit and cancel runs.
pub(crate) struct RunQueue {
    tx: mpsc::Sender<RunSpec>,
    state: Arc<RunState>,
}

impl RunQueue {
    /// Queues a run; gives it back if too many are waiting.
    pub(crate) fn submit(&self, spec: RunSpec) -> Result<(), RunSpec> {
        self.tx.try_send(spec).map_err(|err| match err {
            mpsc::error::TrySendError::Full(spec) | mpsc::error::TrySendError::Closed(spec) => spec,
        })
    }

    /// Whether a run is going or waiting (the session is not idle then).
    pub(crate) fn busy(&self) -> bool {
        let running = self.state.current.lock().is_ok_and(|c| c.is_some());
        running || self.tx.capacity() < self.tx.max_capacity()
    }

    /// Cancels `run` (the current run if `None`); returns the run being
    /// canceled, if there is one.
    pub(crate) fn cancel(&self, run: Option<Uuid>) -> Option<Uuid> {
        let current = self.state.current.lock().ok()?.clone();
        match (run, current) {
            (None, Some((id, token))) => {
                token.cancel();
                Some(id)
            }
            (Some(run), Some((id, token))) if run == id => {
                token.cancel();
                Some(id)
            }
            (Some(run), _) => {
                let mut canceled = self.state.canceled.lock().ok()?;
                if canceled.len() < MAX_QUEUED_RUNS {
                    canceled.insert(run);
                }
                Some(run)
            }
            (None, None) => None,
        }
    }
}

/// Executes a session's runs until `stop`; then reports the ones still
/// queued as canceled.
pub(crate) struct RunWorker {
    rx: mpsc::Receiver<RunSpec>,
    state: Arc<RunState>,
    ssh: Arc<SshConnection>,
    publisher: SharedPublisher,
    stop: CancellationToken,
    /// The shell steps run in, once known.
    shell: Option<String>,
    /// A job host's session: cancelled once its one run is done.
    one_shot: Option<CancellationToken>,
}

pub(crate) fn queue(
    ssh: Arc<SshConnection>,
    publisher: SharedPublisher,
    stop: CancellationToken,
) -> (RunQueue, RunWorker) {
    let (tx, rx) = mpsc::channel(MAX_QUEUED_RUNS);
    let state = Arc::new(RunState::default());
    let queue = RunQueue {
        tx,
        state: state.clone(),
    };
    let worker = RunWorker {
        rx,
        state,
        ssh,
        publisher,
        stop,
        shell: None,
        one_shot: None,
    };
    (queue, worker)
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    status: RunStatus,
    exit_code: Option<i32>,
    exit_signal: Option<String>,
    failed_step: Option<u32>,
}

impl Outcome {
    fn of(status: RunStatus) -> Self {
        Self {
            status,
            exit_code: None,
            exit_signal: None,
            failed_step: None,
        }
    }
}

/// How one exec ended.
#[derive(Debug)]
enum Exit {
    Code(u32),
    Signal(String),
    Canceled,
    /// The channel could not open or the SSH connection failed.
    Error(String),
}

fn signal_name(sig: &Sig) -> String {
    match sig {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

impl RunWorker {
    /// Serves one run only, then cancels `done`.
    pub(crate) fn one_shot(&mut self, done: CancellationToken) {
        self.one_shot = Some(done);
    }

    pub(crate) async fn run(mut self) {
        loop {
            let spec = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                spec = self.rx.recv() => spec,
            };
            match spec {
                Some(spec) => self.execute(spec).await,
                None => break,
            }
            if let Some(done) = &self.one_shot {
                done.cancel();
                break;
            }
        }
        self.rx.close();
        while let Ok(spec) = self.rx.try_recv() {
            self.complete(spec.run, Outcome::of(RunStatus::Canceled), Duration::ZERO)
                .await;
        }
    }

    async fn publish(&self, event: Event) {
        self.publisher.lock().await.event(&event).await;
    }

    async fn complete(&self, run: Uuid, o: Outcome, took: Duration) {
        self.publish(Event::Completed {
            run,
            status: o.status,
            exit_code: o.exit_code,
            exit_signal: o.exit_signal,
            failed_step: o.failed_step,
            duration_ms: took.as_millis() as u64,
        })
        .await;
    }

    async fn execute(&mut self, spec: RunSpec) {
        let was_canceled = self
            .state
            .canceled
            .lock()
            .map(|mut c| c.remove(&spec.run))
            .unwrap_or(false);
        if was_canceled {
            self.complete(spec.run, Outcome::of(RunStatus::Canceled), Duration::ZERO)
                .await;
            return;
        }
        let token = self.stop.child_token();
        if let Ok(mut current) = self.state.current.lock() {
            *current = Some((spec.run, token.clone()));
        }
        let span = tracing::info_span!("run", run_id = %spec.run, kind = spec.kind.as_str());
        let started = Instant::now();
        self.publish(Event::Started {
            run: spec.run,
            kind: spec.kind,
            command: spec.label.clone(),
            steps: spec.steps.len() as u32,
        })
        .await;
        let outcome = tracing::Instrument::instrument(self.steps(&spec, &token), span).await;
        if let Ok(mut current) = self.state.current.lock() {
            *current = None;
        }
        tracing::info!(run_id = %spec.run, status = outcome.status.as_str(), "run finished");
        self.complete(spec.run, outcome, started.elapsed()).await;
    }

    async fn steps(&mut self, spec: &RunSpec, token: &CancellationToken) -> Outcome {
        let total = spec.steps.len() as u32;
        let batch = total > 1;
        let shell = match self.shell(spec.run, token).await {
            Ok(shell) => shell,
            Err(exit) => return self.ended(spec.run, exit, None).await,
        };
        let mut state = BatchState::default();
        for (i, step) in spec.steps.iter().enumerate() {
            let current = i as u32 + 1;
            if batch {
                self.publish(Event::Progress {
                    run: spec.run,
                    current,
                    total,
                    step: summary(step),
                })
                .await;
            }
            let planned = state.plan(step);
            let mut captured = planned.capture.is_some().then(Vec::new);
            let exit = self
                .exec(spec.run, &shell, &planned.command, token, captured.as_mut())
                .await;
            let failed_step = batch.then_some(current);
            let Exit::Code(0) = exit else {
                return self.ended(spec.run, exit, failed_step).await;
            };
            let stdout = captured.unwrap_or_default();
            if let Err(err) = state.absorb(&planned, step, &stdout) {
                let exit = Exit::Error(err.to_string());
                return self.ended(spec.run, exit, failed_step).await;
            }
        }
        Outcome {
            exit_code: Some(0),
            ..Outcome::of(RunStatus::Ok)
        }
    }

    /// How a run ends after a step that did not succeed (exit 0 is not
    /// passed here).
    async fn ended(&self, run: Uuid, exit: Exit, failed_step: Option<u32>) -> Outcome {
        match exit {
            Exit::Code(code) => Outcome {
                status: RunStatus::Failed,
                exit_code: Some(code as i32),
                exit_signal: None,
                failed_step,
            },
            Exit::Signal(sig) => Outcome {
                status: RunStatus::Failed,
                exit_code: None,
                exit_signal: Some(sig),
                failed_step,
            },
            Exit::Canceled => Outcome {
                failed_step,
                ..Outcome::of(RunStatus::Canceled)
            },
            Exit::Error(message) => {
                self.publish(Event::Error {
                    kind: ErrorKind::Runtime,
                    message,
                    run: Some(run),
                })
                .await;
                Outcome {
                    failed_step,
                    ..Outcome::of(RunStatus::Error)
                }
            }
        }
    }

    /// The shell steps run in: bash where `command -v bash` finds it, else
    /// `/bin/sh`. Looked up on the session's first run only.
    async fn shell(&mut self, run: Uuid, token: &CancellationToken) -> Result<String, Exit> {
        if let Some(shell) = &self.shell {
            return Ok(shell.clone());
        }
        let mut out = Vec::new();
        let shell = match self
            .exec(run, POSIX_SHELL, "command -v bash", token, Some(&mut out))
            .await
        {
            Exit::Code(0) => bash_path(&out).unwrap_or_else(|| POSIX_SHELL.to_owned()),
            Exit::Code(_) => POSIX_SHELL.to_owned(),
            other => return Err(other),
        };
        tracing::debug!(shell, "steps run in this shell");
        self.shell = Some(shell.clone());
        Ok(shell)
    }

    /// Runs one command on a new exec channel, publishing its output
    /// (or capturing stdout into `capture`, bounded).
    async fn exec(
        &self,
        run: Uuid,
        shell: &str,
        command: &str,
        token: &CancellationToken,
        mut capture: Option<&mut Vec<u8>>,
    ) -> Exit {
        let channel = match self.ssh.open_channel().await {
            Ok(channel) => channel,
            Err(err) => {
                tracing::warn!(error = %err, "cannot open an exec channel");
                return Exit::Error("cannot open a channel on the SSH connection".into());
            }
        };
        let (read, write) = channel.split();
        if let Err(err) = write.exec(true, remote_pid::wrap(shell, command)).await {
            tracing::warn!(error = %err, "exec request failed");
            return Exit::Error("the host refused to run the command".into());
        }
        let mut reader = ChannelReader::new(read, ChannelKind::Exec);
        let mut stderr = StderrHead::default();
        let mut exit = None;
        // The next escalation step of a cancel, and when it is due.
        let mut cancel: Option<(Sig, Instant)> = None;
        loop {
            let deadline = cancel.as_ref().map(|(_, at)| *at);
            tokio::select! {
                () = token.cancelled(), if cancel.is_none() => {
                    tracing::info!("canceling: INT");
                    signal(&write, Sig::INT).await;
                    self.kill_group(stderr.pid(), "INT");
                    cancel = Some((Sig::TERM, Instant::now() + TERM_AFTER));
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    match cancel.take() {
                        Some((Sig::TERM, _)) => {
                            tracing::info!("canceling: TERM");
                            signal(&write, Sig::TERM).await;
                            self.kill_group(stderr.pid(), "TERM");
                            cancel = Some((Sig::KILL, Instant::now() + KILL_AFTER));
                        }
                        Some((Sig::KILL, _)) => {
                            tracing::info!("canceling: KILL and close");
                            signal(&write, Sig::KILL).await;
                            self.kill_group(stderr.pid(), "KILL");
                            write.close().await.ok();
                            cancel = Some((Sig::Custom("give up".into()), Instant::now() + GIVE_UP_AFTER));
                        }
                        _ => break,
                    }
                }
                next = reader.next() => match next {
                    Next::Output(mut batch) if batch.stream == Stream::Stderr => {
                        batch.data = stderr.feed(&batch.data);
                        if !batch.data.is_empty() {
                            self.publisher.output(batch.stream, Some(run), batch.data).await;
                        }
                    }
                    Next::Output(batch) => match capture.as_deref_mut() {
                        Some(buf) if batch.stream == Stream::Stdout => {
                            let room = MAX_CAPTURE.saturating_sub(buf.len());
                            buf.extend(batch.data.iter().take(room));
                        }
                        _ => self.publisher.output(batch.stream, Some(run), batch.data).await,
                    },
                    Next::Msg(ChannelMsg::ExitStatus { exit_status }) => exit = Some(Exit::Code(exit_status)),
                    Next::Msg(ChannelMsg::ExitSignal { signal_name: sig, .. }) => {
                        exit = Some(Exit::Signal(signal_name(&sig)));
                    }
                    // Trailing output may follow the exit status: read on
                    // until the channel closes.
                    Next::Msg(ChannelMsg::Close) | Next::End => break,
                    Next::Msg(_) => {}
                },
            }
        }
        let held = stderr.finish();
        if !held.is_empty() {
            self.publisher.output(Stream::Stderr, Some(run), held).await;
        }
        if cancel.is_some() || token.is_cancelled() {
            return Exit::Canceled;
        }
        exit.unwrap_or_else(|| Exit::Error("the command ended without an exit status".into()))
    }
}

impl RunWorker {
    /// Signals a step's process group from a second exec channel, in the
    /// background (the cancel escalation must not wait on it).
    fn kill_group(&self, pid: Option<u32>, signal: &'static str) {
        let Some(pid) = pid else {
            tracing::debug!("no remote pid known; relying on the signal request");
            return;
        };
        let ssh = self.ssh.clone();
        tokio::spawn(async move {
            let sent = async {
                let channel = ssh.open_channel().await?;
                channel
                    .exec(true, remote_pid::kill_group(pid, signal))
                    .await?;
                let mut channel = channel;
                while let Some(msg) = channel.wait().await {
                    if matches!(msg, ChannelMsg::Close) {
                        break;
                    }
                }
                Ok::<(), russh::Error>(())
            };
            match tokio::time::timeout(Duration::from_secs(5), sent).await {
                Ok(Ok(())) => tracing::debug!(pid, signal, "signalled the step's processes"),
                Ok(Err(err)) => {
                    tracing::debug!(pid, signal, error = %err, "cannot signal the step's processes")
                }
                Err(_) => tracing::debug!(pid, signal, "signalling the step's processes timed out"),
            }
        });
    }
}

async fn signal<S>(write: &russh::ChannelWriteHalf<S>, sig: Sig)
where
    S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    if let Err(err) = write.signal(sig).await {
        tracing::debug!(error = %err, "sending a signal failed");
    }
}

/// The path `command -v bash` printed, if it is a plain absolute path.
fn bash_path(out: &[u8]) -> Option<String> {
    let path = std::str::from_utf8(out).ok()?.trim_end_matches('\n');
    let plain = path.starts_with('/')
        && path.len() <= MAX_SHELL_PATH
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._+-".contains(&b));
    plain.then(|| path.to_owned())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_absolute_bash_path_is_used() {
        assert_eq!(
            bash_path(b"/usr/bin/bash\n").as_deref(),
            Some("/usr/bin/bash")
        );
        assert_eq!(
            bash_path(b"/opt/bash-5.2/bin/bash").as_deref(),
            Some("/opt/bash-5.2/bin/bash")
        );
        assert_eq!(bash_path(b"bash\n"), None);
        assert_eq!(bash_path(b"alias bash='rm -rf /'\n"), None);
        assert_eq!(bash_path(b"/bin/ba sh\n"), None);
        assert_eq!(bash_path(b"/usr/bin/bash\n/bin/bash\n"), None);
        assert_eq!(bash_path(&[b'/'; 300]), None);
    }
}

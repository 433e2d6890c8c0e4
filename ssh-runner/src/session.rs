//! One session, from request to close: connect to the host, open the PTY
//! shell, then act on the session's input queue (keystrokes, resize, runs,
//! cancel, close) until the session ends, and report it all as events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use russh::{ChannelMsg, ChannelWriteHalf};
use shellway_common::control::{RunSpec, PRESENCE_REFRESH, PRESENCE_TTL};
use shellway_common::topology::{KIND_CONTROL, KIND_INPUT};
use shellway_common::{
    Control, ErrorKind, Event, PtySize, RunStatus, SessionRequest, SessionStatus, Stream,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;
use uuid::Uuid;

use crate::broker::Broker;
use crate::idle::{self, IdleClock, IdleStep};
use crate::output::{ChannelKind, ChannelReader, Next, COALESCE_LIMIT};
use crate::presence::Board;
use crate::publisher::{SessionPublisher, SharedPublisher};
use crate::runs::{self, RunQueue, MAX_QUEUED_RUNS};
use crate::screen::Screen;
use crate::slots::Slot;
use crate::ssh::{self, SshConnection};
use crate::Config;

/// Input messages the broker may hand a session before it acknowledges them.
const INPUT_PREFETCH: u16 = 64;
/// Input is acknowledged in batches (`multiple`): after this many messages…
const ACK_EVERY: u16 = INPUT_PREFETCH / 2;
/// …or once input has been quiet this long. An ack per keystroke sent one
/// more frame through the broker just as the keystroke's echo came back.
const ACK_QUIET: Duration = Duration::from_millis(20);
/// How long a closing session waits for its confirms.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);
/// How long a closing session waits for the shell's last output.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

type PtyWriter = ChannelWriteHalf<russh::client::Msg>;

/// What a session needs from the runner.
pub(crate) struct SessionDeps {
    pub(crate) broker: Broker,
    pub(crate) config: Arc<Config>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) slot: Slot,
}

/// Why a session ended.
#[derive(Debug)]
struct End {
    reason: String,
    by: Option<String>,
}

impl End {
    fn because(reason: &str) -> Self {
        Self {
            reason: reason.into(),
            by: None,
        }
    }
}

/// Serves one session request to its end. Never fails: every failure is
/// reported to the session's events.
pub(crate) async fn serve(request: SessionRequest, deps: SessionDeps) {
    let span = tracing::info_span!(
        "session",
        session_id = %request.session,
        host = %request.host.name,
        runner = %deps.config.runner_id,
    );
    serve_inner(request, deps).instrument(span).await;
}

async fn serve_inner(request: SessionRequest, deps: SessionDeps) {
    let SessionDeps {
        broker,
        config,
        shutdown,
        slot,
    } = deps;
    let session = request.session;
    let publisher = SessionPublisher::new(
        broker.publisher_for(session),
        config.topology.events_exchange(),
        session,
    )
    .shared();
    let runner = Some(config.runner_id.clone());
    let status = |status, message: Option<String>| Event::Status {
        status,
        runner: runner.clone(),
        message,
    };
    publisher
        .lock()
        .await
        .event(&status(SessionStatus::Connecting, None))
        .await;
    tracing::info!(addr = %format!("{}:{}", request.host.hostname, request.host.port), shell = request.shell, "opening session");

    let queue = config.topology.input_queue(session);
    let input = match open_input(&broker, &queue).await {
        Ok(input) => input,
        Err(message) => return fail(&publisher, status, ErrorKind::Runtime, message).await,
    };
    let attempt = ssh::connect(&request.host, config.connect_timeout, &config.key_dir).await;
    if let Some(key) = attempt.host_key {
        let event = Event::HostKey {
            key: key.key,
            fingerprint: key.fingerprint,
        };
        publisher.lock().await.event(&event).await;
    }
    let ssh = match attempt.result {
        Ok(ssh) => Arc::new(ssh),
        Err(err) => {
            tracing::info!(error = %err, "cannot open session");
            close_channel(&input).await;
            return fail(&publisher, status, ErrorKind::Ssh, err.to_string()).await;
        }
    };
    let pty = if request.shell {
        match open_shell(&ssh, request.pty).await {
            Ok(channel) => Some(channel),
            Err(err) => {
                tracing::warn!(error = %err, "cannot start the shell");
                ssh.disconnect().await;
                close_channel(&input).await;
                let message = "the host refused to start a shell".to_owned();
                return fail(&publisher, status, ErrorKind::Ssh, message).await;
            }
        }
    } else {
        None
    };
    let tag = format!("{}.{session}", config.runner_id);
    let consumer = match consume_input(&input, &queue, &tag).await {
        Ok(consumer) => consumer,
        Err(message) => {
            ssh.disconnect().await;
            return fail(&publisher, status, ErrorKind::Runtime, message).await;
        }
    };
    publisher
        .lock()
        .await
        .event(&status(SessionStatus::Open, None))
        .await;
    tracing::info!("session open");

    let stop_runs = CancellationToken::new();
    let (runs, worker) = runs::queue(ssh.clone(), publisher.clone(), stop_runs.clone());
    let worker = AbortOnDropHandle::new(tokio::spawn(worker.run().in_current_span()));
    let shell_done = CancellationToken::new();
    let screen = pty
        .as_ref()
        .map(|_| Screen::new(request.pty.cols, request.pty.rows));
    let (pty_write, pty_task) = match (pty, &screen) {
        (Some(channel), Some(screen)) => {
            let (read, write) = channel.split();
            let task = pty_reader(read, publisher.clone(), screen.clone(), shell_done.clone());
            let task = AbortOnDropHandle::new(tokio::spawn(task.in_current_span()));
            (Some(write), Some(task))
        }
        _ => (None, None),
    };

    let idle_timeout = request.idle_timeout_s.map(Duration::from_secs);
    let actor = Actor {
        input: input.clone(),
        consumer,
        pty: pty_write,
        screen,
        presence: Board::default(),
        idle: IdleClock::new(idle_timeout, tokio::time::Instant::now()),
        runs,
        publisher: publisher.clone(),
        resizes: 0,
    };
    let End { reason, by } = actor.run(&shutdown, &shell_done, ssh.closed()).await;
    tracing::info!(%reason, by = by.as_deref().unwrap_or(""), "closing session");

    // Runs first (a canceled run reports itself), then the host, then the
    // shell's last output, and only then the closing events.
    stop_runs.cancel();
    if worker.await.is_err() {
        tracing::warn!("the run worker ended abnormally");
    }
    ssh.disconnect().await;
    if let Some(task) = pty_task {
        if tokio::time::timeout(DRAIN_LIMIT, task).await.is_err() {
            tracing::warn!("the shell's output did not end in time");
        }
    }
    close_channel(&input).await;
    let mut p = publisher.lock().await;
    p.event(&Event::Closed {
        reason: reason.clone(),
        by,
    })
    .await;
    p.event(&status(SessionStatus::Closed, Some(reason))).await;
    p.flush(FLUSH_LIMIT).await;
    drop(slot);
}

/// Reports a session that could not open, and waits for the report to be
/// confirmed before the slot is given back.
async fn fail(
    publisher: &SharedPublisher,
    status: impl Fn(SessionStatus, Option<String>) -> Event,
    kind: ErrorKind,
    message: String,
) {
    let mut p = publisher.lock().await;
    p.event(&Event::error(kind, message.clone())).await;
    p.event(&status(SessionStatus::Failed, Some(message))).await;
    p.flush(FLUSH_LIMIT).await;
}

/// A channel of the session's own, after checking its input queue exists.
async fn open_input(broker: &Broker, queue: &str) -> Result<Channel, String> {
    let channel = broker.input_channel().await.map_err(|err| {
        tracing::warn!(error = %err, "cannot open a broker channel");
        "the runner cannot reach the broker".to_owned()
    })?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        Ok(_) => Ok(channel),
        Err(err) => {
            tracing::warn!(error = %err, queue, "session input queue is missing");
            Err(format!("the session's input queue {queue} does not exist"))
        }
    }
}

async fn consume_input(channel: &Channel, queue: &str, tag: &str) -> Result<Consumer, String> {
    let exclusive = BasicConsumeOptions {
        exclusive: true,
        ..Default::default()
    };
    let consumer = async {
        channel
            .basic_qos(INPUT_PREFETCH, BasicQosOptions::default())
            .await?;
        channel
            .basic_consume(queue.into(), tag.into(), exclusive, FieldTable::default())
            .await
    };
    consumer.await.map_err(|err| {
        tracing::warn!(error = %err, queue, "cannot consume the session input queue");
        format!("cannot take the session's input queue {queue}")
    })
}

async fn close_channel(channel: &Channel) {
    if channel.status().connected() {
        if let Err(err) = channel.close(200, "session ended".into()).await {
            tracing::debug!(error = %err, "closing the input channel failed");
        }
    }
}

/// The locale asked for in interactive shells.
const SHELL_LANG: &str = "C.UTF-8";

async fn open_shell(
    ssh: &SshConnection,
    pty: PtySize,
) -> Result<russh::Channel<russh::client::Msg>, russh::Error> {
    let channel = ssh.open_channel().await?;
    // The browser terminal speaks UTF-8. Without a locale the login shell
    // falls back to C, and readline mangles every non-ASCII key typed; the
    // OpenSSH client sends the user's LANG the same way (sshd keeps it only
    // where `AcceptEnv LANG` allows, the Debian/Ubuntu default).
    channel.set_env(false, "LANG", SHELL_LANG).await?;
    channel
        .request_pty(
            false,
            "xterm-256color",
            pty.cols.into(),
            pty.rows.into(),
            0,
            0,
            &[],
        )
        .await?;
    channel.request_shell(false).await?;
    Ok(channel)
}

/// A PTY batch at least this big means output is streaming…
const STREAMING: usize = 4 * 1024;
/// …and is given this long to fill up before it is published.
const STREAM_LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// Publishes the shell's output until the shell ends, keeping the screen
/// in step with what was published.
async fn pty_reader(
    read: russh::ChannelReadHalf,
    publisher: SharedPublisher,
    screen: Screen,
    done: CancellationToken,
) {
    let mut reader = ChannelReader::new(read, ChannelKind::Pty);
    loop {
        match reader.next().await {
            Next::Output(mut batch) => {
                if batch.data.len() >= STREAMING && batch.data.len() < COALESCE_LIMIT {
                    // Output is streaming (an echo is never this big): a
                    // moment's wait fills the message, and fewer, larger
                    // messages cost the broker, the proxy and the database
                    // much less per byte.
                    tokio::time::sleep(STREAM_LINGER).await;
                    reader.top_up(&mut batch);
                }
                let mut p = publisher.lock().await;
                screen.feed(&batch.data);
                p.output(Stream::Pty, None, &batch.data).await
            }
            Next::Msg(ChannelMsg::ExitStatus { exit_status }) => {
                tracing::info!(exit_status, "shell exited");
            }
            Next::Msg(ChannelMsg::Close) | Next::End => break,
            Next::Msg(_) => {}
        }
    }
    done.cancel();
}

/// Handled input messages not yet acknowledged: the latest one's acker
/// (and when it came) acknowledges them all.
#[derive(Default)]
struct Unacked {
    latest: Option<(lapin::Acker, tokio::time::Instant)>,
    count: u16,
}

impl Unacked {
    fn add(&mut self, acker: lapin::Acker) {
        self.latest = Some((acker, tokio::time::Instant::now()));
        self.count += 1;
    }

    /// When the batch is due: `ACK_QUIET` after the last message.
    fn due(&self) -> Option<tokio::time::Instant> {
        self.latest.as_ref().map(|(_, at)| *at + ACK_QUIET)
    }

    async fn ack(&mut self) {
        if let Some((acker, _)) = self.latest.take() {
            if let Err(err) = acker.ack(BasicAckOptions { multiple: true }).await {
                tracing::debug!(error = %err, "cannot acknowledge input");
            }
        }
        self.count = 0;
    }
}

/// The session's input side: the input queue consumer and what it drives.
struct Actor {
    input: Channel,
    consumer: Consumer,
    pty: Option<PtyWriter>,
    screen: Option<Screen>,
    presence: Board,
    /// `None` when sessions never time out.
    idle: Option<IdleClock>,
    runs: RunQueue,
    publisher: SharedPublisher,
    /// Resizes reported so far.
    resizes: u32,
}

impl Actor {
    async fn run(
        mut self,
        shutdown: &CancellationToken,
        shell_done: &CancellationToken,
        host_gone: &CancellationToken,
    ) -> End {
        let mut presence_check = tokio::time::interval(PRESENCE_REFRESH);
        let mut unacked = Unacked::default();
        let end = loop {
            let ack_due = unacked.due();
            let idle_due = self.idle.as_ref().and_then(IdleClock::due);
            let delivery = tokio::select! {
                biased;
                () = shutdown.cancelled() => break End::because("runner shutting down"),
                // Before `shell_done`: a lost connection also ends the shell.
                () = host_gone.cancelled() => break End::because("connection to the host was lost"),
                () = shell_done.cancelled() => break End::because("shell exited"),
                delivery = self.consumer.next() => delivery,
                () = tokio::time::sleep_until(ack_due.unwrap_or_else(tokio::time::Instant::now)), if ack_due.is_some() => {
                    unacked.ack().await;
                    continue;
                }
                _ = presence_check.tick() => {
                    let changed = self.presence.expire(Instant::now(), PRESENCE_TTL);
                    self.publish_presence(changed).await;
                    continue;
                }
                () = tokio::time::sleep_until(idle_due.unwrap_or_else(tokio::time::Instant::now)), if idle_due.is_some() => {
                    if self.idle_check().await {
                        break End::because("idle");
                    }
                    continue;
                }
            };
            let mut delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(err)) => {
                    // Deliveries of the broken channel cannot be acknowledged.
                    unacked = Unacked::default();
                    tracing::warn!(error = %err, "session input interrupted; waiting for the broker");
                    if let Err(err) = self.input.wait_for_recovery(err).await {
                        tracing::warn!(error = %err, "session input lost");
                        break End::because("the session's input queue was lost");
                    }
                    continue;
                }
                None => break End::because("the session's input queue was deleted"),
            };
            let end = self.handle(&mut delivery).await;
            unacked.add(delivery.acker);
            if unacked.count >= ACK_EVERY {
                unacked.ack().await;
            }
            if let Some(end) = end {
                break end;
            }
        };
        // Whatever ended the session, what it handled is acknowledged.
        unacked.ack().await;
        end
    }

    async fn handle(&mut self, delivery: &mut Delivery) -> Option<End> {
        let kind = delivery.properties.kind().as_ref().map(|k| k.as_str());
        match kind {
            Some(KIND_INPUT) => {
                self.active();
                self.write(std::mem::take(&mut delivery.data)).await;
                None
            }
            Some(KIND_CONTROL) => match serde_json::from_slice::<Control>(&delivery.data) {
                Ok(control) => self.control(control).await,
                Err(err) => {
                    tracing::warn!(error = %err, "malformed control message dropped");
                    None
                }
            },
            other => {
                tracing::warn!(kind = ?other, "input message of unknown type dropped");
                None
            }
        }
    }

    async fn write(&self, data: Vec<u8>) {
        match &self.pty {
            Some(pty) => {
                if let Err(err) = pty.data_bytes(data).await {
                    tracing::debug!(error = %err, "cannot write to the shell");
                }
            }
            None => tracing::debug!("input for a session without a shell dropped"),
        }
    }

    async fn control(&mut self, control: Control) -> Option<End> {
        if matches!(
            control,
            Control::Resize { .. } | Control::Run(_) | Control::Cancel { .. }
        ) {
            self.active();
        }
        match control {
            Control::Resize { cols, rows } => {
                self.resized(cols, rows).await;
                if let Some(pty) = &self.pty {
                    if let Err(err) = pty.window_change(cols.into(), rows.into(), 0, 0).await {
                        tracing::debug!(error = %err, "resize failed");
                    }
                }
            }
            Control::Run(spec) => {
                tracing::info!(run_id = %spec.run, by = %spec.by, kind = spec.kind.as_str(), "run requested");
                let queued = Event::Queued {
                    run: spec.run,
                    kind: spec.kind,
                    command: spec.label.clone(),
                    steps: spec.steps.len() as u32,
                };
                // Handed over under the publisher's lock: the worker's
                // `started` waits for it, so `queued` always comes first.
                let mut p = self.publisher.lock().await;
                match self.runs.submit(spec) {
                    Ok(()) => p.event(&queued).await,
                    Err(spec) => {
                        drop(p);
                        self.refuse(spec).await;
                    }
                }
            }
            Control::Cancel { run } => match self.runs.cancel(run) {
                Some(run) => {
                    tracing::info!(run_id = %run, "cancel requested");
                    self.publisher
                        .lock()
                        .await
                        .event(&Event::Canceling { run })
                        .await;
                }
                None => tracing::info!("cancel requested with no run going"),
            },
            Control::Close { reason, by } => return Some(End { reason, by }),
            Control::Snapshot { request } => self.snapshot(request).await,
            Control::Presence { proxy, viewers } => {
                let changed = self.presence.update(proxy, viewers, Instant::now());
                self.publish_presence(changed).await;
            }
        }
        None
    }

    /// Resizes the screen and reports the new size, under the publisher's
    /// lock like a snapshot: the event names the last output written at
    /// the old size, so a recording replays each at the size it had.
    async fn resized(&mut self, cols: u16, rows: u16) {
        let Some(screen) = &self.screen else { return };
        let mut p = self.publisher.lock().await;
        if !screen.resize(cols, rows) {
            return;
        }
        self.resizes += 1;
        let event = Event::Resized {
            seq: p.seq(),
            index: self.resizes,
            cols,
            rows,
        };
        p.event(&event).await;
    }

    /// Publishes the current screen, taken under the publisher's lock so it
    /// matches the output up to the seq it names.
    async fn snapshot(&self, request: Uuid) {
        let mut p = self.publisher.lock().await;
        let (cols, rows, data) = match &self.screen {
            Some(screen) => {
                let shown = screen.render();
                (shown.cols, shown.rows, shown.data)
            }
            None => (0, 0, String::new()),
        };
        let event = Event::Snapshot {
            request: Some(request),
            seq: p.seq(),
            cols,
            rows,
            data,
        };
        p.event(&event).await;
        // Who is here, again: a viewer asks for a snapshot once its proxy
        // listens to the session, so it hears this even when the
        // `presence` its arrival caused went out before (its proxy was not
        // listening yet), or never did (a reload: the list left and came
        // back the same).
        if self.presence.watched() {
            let viewers = self.presence.current().to_vec();
            p.event(&Event::Presence { viewers }).await;
        }
    }

    async fn publish_presence(&mut self, changed: Option<Vec<shellway_common::event::Viewer>>) {
        if let Some(idle) = &mut self.idle {
            idle.watched(self.presence.watched(), tokio::time::Instant::now());
        }
        if let Some(viewers) = changed {
            let event = Event::Presence { viewers };
            self.publisher.lock().await.event(&event).await;
        }
    }

    /// Input or a command from a viewer: the session is in use.
    fn active(&mut self) {
        if let Some(idle) = &mut self.idle {
            idle.activity(tokio::time::Instant::now());
        }
    }

    /// Acts on the idle clock when it is due; true when the session must
    /// end. A run going or waiting keeps the session in use.
    async fn idle_check(&mut self) -> bool {
        if self.runs.busy() {
            self.active();
            return false;
        }
        let Some(step) = self
            .idle
            .as_mut()
            .and_then(|c| c.check(tokio::time::Instant::now()))
        else {
            return false;
        };
        match step {
            IdleStep::Close => {
                tracing::info!("closing the session: no viewer and no input");
                true
            }
            IdleStep::Warn { idle, left } => {
                tracing::info!(left_s = left.as_secs(), "warning of the idle timeout");
                self.announce(&idle::warning(idle, left)).await;
                false
            }
        }
    }

    /// Writes a line of our own into the terminal's output: viewers see it
    /// (a late joiner in the snapshot) and the recording keeps it.
    async fn announce(&self, text: &str) {
        let mut p = self.publisher.lock().await;
        if let Some(screen) = &self.screen {
            screen.feed(text.as_bytes());
        }
        p.output(Stream::Pty, None, text.as_bytes()).await;
    }

    async fn refuse(&self, spec: RunSpec) {
        let message = format!("too many runs waiting in this session (at most {MAX_QUEUED_RUNS})");
        let mut p = self.publisher.lock().await;
        p.event(&Event::Error {
            kind: ErrorKind::Runtime,
            message,
            run: Some(spec.run),
        })
        .await;
        p.event(&Event::Completed {
            run: spec.run,
            status: RunStatus::Error,
            exit_code: None,
            exit_signal: None,
            failed_step: None,
            duration_ms: 0,
        })
        .await;
    }
}

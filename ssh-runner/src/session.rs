//! One session, from request to close: connect to the host, open the PTY
//! shell, then act on the session's input queue (keystrokes, resize, runs,
//! cancel, close) until the session ends, and report it all as events.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
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
use crate::input::{
    attached, next_delivery, Attach, Attached, Attaching, Detach, Unacked, ACK_EVERY,
    INPUT_PREFETCH,
};
use crate::link::Link;
use crate::output::{ChannelKind, ChannelReader, Next, COALESCE_LIMIT};
use crate::presence::Board;
use crate::publisher::{Budget, Outbox, SharedPublisher};
use crate::runs::{self, RunQueue, MAX_QUEUED_RUNS};
use crate::screen::Screen;
use crate::slots::Slot;
use crate::ssh::{self, SshConnection};
use crate::Config;

/// How long a closing session waits for its confirms.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);
/// Why a job host's session ends when its run is done.
const JOB_HOST_DONE: &str = "job host done";
/// How long a closing session waits for the shell's last output.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

type PtyWriter = ChannelWriteHalf<russh::client::Msg>;

/// What a session needs from the runner.
pub(crate) struct SessionDeps {
    /// The connection the request came on.
    pub(crate) broker: Broker,
    /// Whatever connection is current later.
    pub(crate) link: Link,
    /// The runner's budget of unrecorded output.
    pub(crate) budget: Budget,
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
        link,
        budget,
        config,
        shutdown,
        slot,
    } = deps;
    let session = request.session;
    let publisher = Outbox::new(
        link.clone(),
        config.topology.events_exchange(),
        session,
        budget,
    );
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
        Err(message) => {
            return fail(&publisher, status, ErrorKind::Runtime, message, &config).await
        }
    };
    let attempt = ssh::connect(
        &request.host,
        config.connect_timeout,
        &config.key_dir,
        &config.vault,
    )
    .await;
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
            let kind = if err.is_vault() {
                ErrorKind::Auth
            } else if request.run.is_some() && err.is_unreachable() {
                ErrorKind::Unreachable
            } else {
                ErrorKind::Ssh
            };
            return fail(&publisher, status, kind, err.to_string(), &config).await;
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
                return fail(&publisher, status, ErrorKind::Ssh, message, &config).await;
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
            return fail(&publisher, status, ErrorKind::Runtime, message, &config).await;
        }
    };
    publisher
        .lock()
        .await
        .event(&status(SessionStatus::Open, None))
        .await;
    tracing::info!("session open");

    let stop_runs = CancellationToken::new();
    let (runs, mut worker) = runs::queue(ssh.clone(), publisher.clone(), stop_runs.clone());
    // The shell's end, or a job host's run's: either ends the session.
    let shell_done = CancellationToken::new();
    let done_reason = if request.run.is_some() {
        worker.one_shot(shell_done.clone());
        JOB_HOST_DONE
    } else {
        "shell exited"
    };
    let worker = AbortOnDropHandle::new(tokio::spawn(worker.run().in_current_span()));
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
    let mut actor = Actor {
        attach: Attach {
            link,
            session,
            topology: config.topology.clone(),
            tag,
        },
        generation: broker.generation(),
        input,
        consumer: Some(consumer),
        unacked: Unacked::default(),
        attaching: None,
        detached_at: None,
        handled: VecDeque::new(),
        hold: config.outage_hold,
        pty: pty_write,
        screen,
        presence: Board::default(),
        idle: IdleClock::new(idle_timeout, tokio::time::Instant::now()),
        runs,
        publisher: publisher.clone(),
        resizes: 0,
    };
    if let Some(spec) = request.run {
        actor.start_run(spec).await;
    }
    let End { reason, by } = actor
        .run(&shutdown, (&shell_done, done_reason), ssh.closed())
        .await;
    tracing::info!(%reason, by = by.as_deref().unwrap_or(""), "closing session");

    // Runs first (a canceled run reports itself), then the host, then the
    // shell's last output, and only then the closing events; meanwhile the
    // recorder's receipts keep coming in, until everything is safe.
    let closing = async {
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
        let mut p = publisher.lock().await;
        p.event(&Event::Closed {
            reason: reason.clone(),
            by,
        })
        .await;
        p.event(&status(SessionStatus::Closed, Some(reason))).await;
        drop(p);
        publisher.flush(flush_limit(&config, &shutdown)).await;
    };
    tokio::select! {
        biased;
        () = closing => {}
        () = actor.take_receipts() => {}
    }
    actor.finish().await;
    drop(slot);
}

/// How long a closing session waits for its last messages to be
/// confirmed: through a broker outage (up to the outage hold), unless the
/// runner is stopping.
fn flush_limit(config: &Config, shutdown: &CancellationToken) -> Duration {
    if shutdown.is_cancelled() {
        FLUSH_LIMIT
    } else {
        config.outage_hold.max(FLUSH_LIMIT)
    }
}

/// Reports a session that could not open, and waits for the report to be
/// confirmed before the slot is given back.
async fn fail(
    publisher: &SharedPublisher,
    status: impl Fn(SessionStatus, Option<String>) -> Event,
    kind: ErrorKind,
    message: String,
    config: &Config,
) {
    let mut p = publisher.lock().await;
    p.event(&Event::error(kind, message.clone())).await;
    p.event(&status(SessionStatus::Failed, Some(message))).await;
    drop(p);
    // Events only: the broker's confirms make them safe.
    publisher.flush(config.outage_hold.max(FLUSH_LIMIT)).await;
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
                let (mut p, budget) = publisher.lock_for_output(batch.data.len()).await;
                screen.feed(&batch.data);
                p.output(Stream::Pty, None, batch.data, budget).await
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

/// What woke the session's input loop.
enum Step {
    End(End),
    Delivery(Option<Result<Delivery, lapin::Error>>),
    /// The runner has a newer connection than the consumer's.
    Replaced,
    /// `None`: the attach task failed.
    Attached(Option<Attached>),
    AckDue,
    PresenceCheck,
    /// The idle clock wants looking at.
    IdleDue,
}

/// The session's input side: the input queue consumer and what it drives.
struct Actor {
    attach: Attach,
    /// The connection the consumer is on.
    generation: u64,
    input: Channel,
    /// `None` while the broker is away.
    consumer: Option<Consumer>,
    unacked: Unacked,
    /// Consuming the input queue again, after the broker went away.
    attaching: Option<Attaching>,
    detached_at: Option<tokio::time::Instant>,
    /// Ids of input handled but not acknowledged when the channel broke.
    handled: VecDeque<ShortString>,
    /// How long the session outlives a broker it cannot reach.
    hold: Duration,
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
    /// Runs until the session ends; returns why.
    async fn run(
        &mut self,
        shutdown: &CancellationToken,
        (shell_done, done_reason): (&CancellationToken, &str),
        host_gone: &CancellationToken,
    ) -> End {
        let mut presence_check = tokio::time::interval(PRESENCE_REFRESH);
        loop {
            let ack_due = self.unacked.due();
            let give_up = self.detached_at.map(|at| at + self.hold);
            let idle_due = self.idle.as_ref().and_then(IdleClock::due);
            let step = tokio::select! {
                biased;
                () = shutdown.cancelled() => Step::End(End::because("runner shutting down")),
                // Before `shell_done`: a lost connection also ends the shell.
                () = host_gone.cancelled() => Step::End(End::because("connection to the host was lost")),
                () = shell_done.cancelled() => Step::End(End::because(done_reason)),
                () = tokio::time::sleep_until(give_up.unwrap_or_else(tokio::time::Instant::now)), if give_up.is_some() => {
                    Step::End(End::because(&format!(
                        "the runner could not reach the message broker for {} s",
                        self.hold.as_secs()
                    )))
                }
                delivery = next_delivery(&mut self.consumer) => Step::Delivery(delivery),
                _ = self.attach.link.newer_than(self.generation), if self.consumer.is_some() => Step::Replaced,
                done = attached(&mut self.attaching) => Step::Attached(done),
                () = tokio::time::sleep_until(ack_due.unwrap_or_else(tokio::time::Instant::now)), if ack_due.is_some() => Step::AckDue,
                _ = presence_check.tick() => Step::PresenceCheck,
                () = tokio::time::sleep_until(idle_due.unwrap_or_else(tokio::time::Instant::now)), if idle_due.is_some() => Step::IdleDue,
            };
            let end = match step {
                Step::End(end) => Some(end),
                Step::PresenceCheck => {
                    let changed = self.presence.expire(Instant::now(), PRESENCE_TTL);
                    self.publish_presence(changed).await;
                    None
                }
                Step::IdleDue => self.idle_check().await.then(|| End::because("idle")),
                other => self.input_step(other, false).await,
            };
            if let Some(end) = end {
                // Whatever ended the session, what it handled is acknowledged.
                self.unacked.ack().await;
                return end;
            }
        }
    }

    /// One step of the input side: a delivery, the consumer's end or
    /// return, an ack due. While `closing`, only receipts are handled.
    async fn input_step(&mut self, step: Step, closing: bool) -> Option<End> {
        let mut delivery = match step {
            Step::AckDue => {
                self.unacked.ack().await;
                return None;
            }
            Step::Attached(Some(done)) => {
                self.attaching = None;
                self.detached_at = None;
                self.reattached(done).await;
                return None;
            }
            Step::Attached(None) => {
                tracing::warn!("attaching the session input failed; trying again");
                self.detach_and_retry();
                return None;
            }
            Step::Delivery(Some(Ok(delivery))) => delivery,
            Step::Delivery(other) => {
                let end = self.detached(Detach::from(other));
                if end.is_none() {
                    self.detach_and_retry();
                }
                return end;
            }
            Step::Replaced => {
                self.detached(Detach::Replaced);
                self.detach_and_retry();
                return None;
            }
            Step::End(end) => return Some(end),
            Step::PresenceCheck | Step::IdleDue => return None,
        };
        let end = if self.seen_before(&delivery) {
            None
        } else if closing {
            self.receipt_only(&delivery).await;
            None
        } else {
            self.handle(&mut delivery).await
        };
        self.unacked.add(delivery);
        if self.unacked.count >= ACK_EVERY {
            self.unacked.ack().await;
        }
        end
    }

    fn detach_and_retry(&mut self) {
        self.detached_at
            .get_or_insert_with(tokio::time::Instant::now);
        let attach = self.attach.clone().run(self.generation).in_current_span();
        self.attaching = Some(AbortOnDropHandle::new(tokio::spawn(attach)));
    }

    /// While the session closes: applies the recorder's receipts (so its
    /// last output can be known safe) and drops any other input. Never
    /// returns; the caller stops it.
    async fn take_receipts(&mut self) {
        loop {
            let ack_due = self.unacked.due();
            let step = tokio::select! {
                delivery = next_delivery(&mut self.consumer) => Step::Delivery(delivery),
                _ = self.attach.link.newer_than(self.generation), if self.consumer.is_some() => Step::Replaced,
                done = attached(&mut self.attaching) => Step::Attached(done),
                () = tokio::time::sleep_until(ack_due.unwrap_or_else(tokio::time::Instant::now)), if ack_due.is_some() => Step::AckDue,
            };
            if self.input_step(step, true).await.is_some() {
                // The queue is gone: no receipt comes any more.
                std::future::pending::<()>().await;
            }
        }
    }

    async fn receipt_only(&self, delivery: &Delivery) {
        let control = delivery
            .properties
            .kind()
            .as_ref()
            .filter(|k| k.as_str() == KIND_CONTROL)
            .and_then(|_| serde_json::from_slice::<Control>(&delivery.data).ok());
        match control {
            Some(Control::Recorded { seqs }) => self.publisher.recorded(&seqs).await,
            _ => tracing::debug!("input for a closing session dropped"),
        }
    }

    /// Acknowledges what was handled and closes the input channel.
    async fn finish(mut self) {
        self.unacked.ack().await;
        close_channel(&self.input).await;
    }

    /// The consumer stopped. Returns `Some` if that ends the session (the
    /// queue was deleted); otherwise the broker went away and the input is
    /// consumed again once it is back.
    fn detached(&mut self, why: Detach) -> Option<End> {
        self.consumer = None;
        let error = match why {
            Detach::Cancelled if self.input.status().connected() => {
                // The broker cancelled the consumer of a channel that works.
                return Some(End::because("the session's input queue was deleted"));
            }
            Detach::Cancelled => "the input channel closed".to_owned(),
            Detach::Failed(err) => err.to_string(),
            Detach::Replaced => "the runner reconnected to the broker".to_owned(),
        };
        tracing::warn!(%error, "session input interrupted; the session goes on and waits for the broker");
        self.handled.extend(self.unacked.lost());
        while self.handled.len() > INPUT_PREFETCH as usize {
            self.handled.pop_front();
        }
        None
    }

    /// The input queue is consumed again: publish what the broker did not
    /// confirm before it went away.
    async fn reattached(&mut self, done: Attached) {
        tracing::info!(generation = done.generation, "session input consumed again");
        close_channel(&self.input).await;
        self.generation = done.generation;
        self.input = done.input;
        self.consumer = Some(done.consumer);
        self.publisher.resend().await;
    }

    /// A message handled before the channel broke and handed out again:
    /// acknowledged, not handled twice.
    fn seen_before(&mut self, delivery: &Delivery) -> bool {
        if !delivery.redelivered {
            self.handled.clear();
            return false;
        }
        let id = delivery.properties.message_id().as_ref();
        match id.and_then(|id| self.handled.iter().position(|h| h == id)) {
            Some(i) => {
                self.handled.remove(i);
                tracing::debug!("input handled before the broker went away; not repeated");
                true
            }
            None => false,
        }
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
            Control::Run(spec) => self.start_run(spec).await,
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
            Control::Recorded { seqs } => self.publisher.recorded(&seqs).await,
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
        let (mut p, budget) = self.publisher.lock_for_output(text.len()).await;
        if let Some(screen) = &self.screen {
            screen.feed(text.as_bytes());
        }
        p.output(Stream::Pty, None, text.as_bytes().to_vec(), budget)
            .await;
    }

    async fn start_run(&self, spec: RunSpec) {
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

//! The output side of one viewer: events and terminal output, in order.
//!
//! Order of business: subscribe to the live feed, then catch up (from the
//! recording, or a snapshot of the screen) to where live output takes over,
//! then stream live. Every output message has a per-session `seq`; the
//! viewer sends each seq at most once, in order.
//!
//! A flow-controlled client (`?flow=true`) is sent no more than its window
//! beyond what it acknowledged; what the feed brings meanwhile waits in the
//! outbox, and when more than `skip` bytes of output wait, the viewer drops
//! them and sends a fresh snapshot instead: a browser shows the present,
//! not minutes of stale output (the recording keeps every byte). A client
//! without flow control gets every byte: when it falls behind the live
//! feed it is fed from the recording.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use shellway_common::browser::LinkState;
use shellway_common::event::{ViewMode, Viewer as Attendee};
use shellway_common::{
    BrowserEvent, Control, ErrorKind, Event, SessionStatus, Stream as OutStream,
};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;
use uuid::Uuid;

use super::client::{ClientSide, FromClient};
use super::outbox::Outbox;
use super::window::Window;
use crate::auth::AuthUser;
use crate::bus::Report;
use crate::error::ApiError;
use crate::fanout::{self, StoredStatus, Subscription};
use crate::presence::{Attendance, Seat};
use crate::service::shares::Share;
use crate::state::AppState;

/// Largest WebSocket message at all.
const MAX_MESSAGE: usize = 1024 * 1024;
const SOCKET_BUFFER: usize = 16 * 1024;
/// Consecutive PTY chunks are merged into frames up to this size.
pub(super) const FRAME_MAX: usize = 64 * 1024;
/// Messages still forwarded after the session ended, before closing…
const LINGER: Duration = Duration::from_millis(300);
/// …and at most this long for a viewer still drawing what it was sent.
const LINGER_MAX: Duration = Duration::from_secs(5);
/// How long a joiner waits for the runner's snapshot before falling back
/// to replaying the recording.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(3);
/// How long a viewer that saw a session fail waits for the recorder to
/// store the error it missed.
const RECORDED_ERROR_WAIT: Duration = Duration::from_secs(2);
/// Live messages taken from the feed in one go (then one frame is sent).
const DRAIN_BATCH: usize = 64;
/// Messages the client reader may have waiting for this side.
const FROM_CLIENT: usize = 32;
/// Output waiting for (or sent to and not yet drawn by) a flow-controlled
/// viewer when it types Ctrl-C — or arriving for it lately, a flood in
/// progress — beyond which it stops being streamed output and is shown the
/// screen instead (see [`Settling`]).
const INTERRUPT_SKIP: usize = 64 * 1024;
/// After such a Ctrl-C, the screen is painted once the feed has been quiet
/// this long (the program stopped, the prompt is out)…
const SETTLE_QUIET: Duration = Duration::from_millis(15);
/// …and streaming resumes this long after the Ctrl-C whatever the program
/// does (one that ignores Ctrl-C is shown the present, then streamed).
const SETTLE_MAX: Duration = Duration::from_millis(400);
/// A flow-controlled viewer missing more live messages than this catches
/// up by snapshot rather than from the recording.
const GAP_FOR_SNAPSHOT: u64 = 64;

/// What a viewer attaches to, and how.
pub(super) struct Attach {
    pub(super) session: Uuid,
    pub(super) mode: ViewMode,
    pub(super) seat: Seat,
    /// The link this viewer came through, if any.
    pub(super) share: Option<Share>,
    /// Resume after this seq.
    pub(super) after: Option<u64>,
    /// Start with a snapshot of the screen (when `after` is not given).
    pub(super) snapshot: bool,
    /// The client acknowledges what it draws.
    pub(super) flow: bool,
}

/// A Ctrl-C typed over a backlog: what the program prints until it stops
/// is not streamed (the recording keeps it); the viewer is painted the
/// screen whenever the feed pauses, so the prompt shows as soon as it is
/// printed rather than after megabytes of stale output are drawn.
#[derive(Debug, Clone, Copy)]
struct Settling {
    until: Instant,
    /// When to paint the screen, if output was skipped since the last
    /// paint: a moment after the last of it.
    paint_at: Option<Instant>,
}

impl Settling {
    fn wake_at(&self) -> Instant {
        self.paint_at.map_or(self.until, |at| at.min(self.until))
    }
}

/// One attached viewer's output side.
pub(crate) struct Viewer {
    pub(super) st: AppState,
    pub(super) user: AuthUser,
    pub(super) session: Uuid,
    mode: ViewMode,
    share: Option<Share>,
    after: Option<u64>,
    snapshot: bool,
    /// Highest output seq sent to this viewer.
    pub(super) last_sent: u64,
    /// A link viewer sees nothing recorded at or before this seq (what was
    /// there before the link existed).
    pub(super) floor: u64,
    status: SessionStatus,
    error_sent: bool,
    /// The session just opened: check with the runner that nothing
    /// published before the live feed was bound went missing.
    needs_sync: bool,
    /// The live feed lost messages for this viewer.
    lagged: bool,
    /// Settling after a Ctrl-C over a backlog.
    settling: Option<Settling>,
    /// Set when the viewer must leave: the reason, and who caused it.
    ended: Option<(String, Option<String>)>,
    outbox: Outbox,
    pub(super) window: Window,
    _attendance: Attendance,
}

impl Viewer {
    pub(super) fn new(st: AppState, user: AuthUser, a: Attach) -> Result<Self, ApiError> {
        let attendee = Attendee {
            user: user.username.clone(),
            mode: a.mode,
        };
        let attendance = st
            .presence
            .attend(a.session, attendee, a.seat, st.settings.sharing.seats())
            .map_err(|no| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_viewers",
                    no.to_string(),
                )
            })?;
        let window = a.flow.then_some(st.settings.sharing.window);
        Ok(Self {
            floor: a.share.as_ref().map_or(0, |s| s.start_seq),
            st,
            user,
            session: a.session,
            mode: a.mode,
            share: a.share,
            after: a.after,
            snapshot: a.snapshot,
            last_sent: 0,
            status: SessionStatus::Pending,
            error_sent: false,
            needs_sync: false,
            lagged: false,
            settling: None,
            ended: None,
            outbox: Outbox::default(),
            window: Window::new(window),
            _attendance: attendance,
        })
    }

    pub(super) fn upgrade(self, ws: WebSocketUpgrade) -> Response {
        let span = tracing::info_span!(
            "viewer",
            session_id = %self.session,
            user = %self.user.username,
            mode = ?self.mode,
            share = ?self.share.as_ref().map(|s| s.id),
            flow = self.window.is_flow_controlled(),
        );
        span.in_scope(|| tracing::info!("viewer attached"));
        let viewer = self;
        ws.read_buffer_size(SOCKET_BUFFER)
            .write_buffer_size(SOCKET_BUFFER)
            .max_message_size(MAX_MESSAGE)
            .max_frame_size(MAX_MESSAGE)
            .on_upgrade(move |socket| {
                let (sink, stream) = socket.split();
                viewer.serve(sink, stream).instrument(span)
            })
    }
}

/// Why the socket stopped.
#[derive(Debug)]
pub(super) struct Gone;

enum Step {
    Client(Option<FromClient>),
    Acked,
    Live(Result<Arc<Report>, RecvError>),
    Send,
    Settle,
    Linger,
    Expired,
    Shutdown,
}

impl Viewer {
    /// Runs the viewer over any message sink and stream (a real socket, or
    /// channels in tests).
    pub(crate) async fn serve<Si, St, E1, E2>(mut self, mut sink: Si, stream: St)
    where
        Si: Sink<Message, Error = E1> + Unpin,
        St: Stream<Item = Result<Message, E2>> + Unpin + Send + 'static,
        E2: Send + 'static,
    {
        let (acked_tx, acked) = watch::channel(0u64);
        let (out, from_client) = mpsc::channel(FROM_CLIENT);
        let reader = ClientSide {
            st: self.st.clone(),
            user: self.user.clone(),
            session: self.session,
            mode: self.mode,
            share: self.share.as_ref().map(|s| s.id),
            acked: acked_tx,
            out,
        };
        let _reader = AbortOnDropHandle::new(tokio::spawn(reader.run(stream).in_current_span()));
        let reason = match self.run(&mut sink, from_client, acked).await {
            Ok(reason) => reason,
            Err(Gone) => return,
        };
        let close = Message::Close(Some(CloseFrame {
            code: 1000,
            reason: reason.into(),
        }));
        let _ = sink.send(close).await;
        let _ = sink.close().await;
        tracing::info!("viewer left");
    }

    async fn run<Si, E>(
        &mut self,
        sink: &mut Si,
        mut from_client: mpsc::Receiver<FromClient>,
        mut acked: watch::Receiver<u64>,
    ) -> Result<String, Gone>
    where
        Si: Sink<Message, Error = E> + Unpin,
    {
        let mut sub = self.st.fanout.subscribe(self.session).await;
        let row = match fanout::load_status(&self.st.db, self.session).await {
            Ok(Some(row)) => row,
            other => {
                if let Err(err) = other {
                    tracing::warn!(error = %err, "cannot read the session status");
                }
                let event = BrowserEvent::error(ErrorKind::Runtime, "the session is unavailable");
                self.send_event(sink, &event).await?;
                return Ok("unavailable".into());
            }
        };
        self.status = row.status;
        let connected = BrowserEvent::Connected {
            session: self.session,
            runner: row.runner.clone(),
            mode: self.mode,
            status: row.status,
        };
        self.send_event(sink, &connected).await?;
        self.catch_up_at_start(sink, &mut sub, row.status).await?;
        if !self.status.is_live() {
            self.send_final(sink, &row).await?;
            return Ok(format!("session {}", self.status.as_str()));
        }

        // When the session ended, and until when to keep forwarding.
        let mut linger: Option<(Instant, Instant)> = None;
        let expires = self.share.as_ref().map(|s| s.expires_at);
        loop {
            let can_send = self.can_send();
            let settle_at = self.settling.map(|s| s.wake_at());
            let step = tokio::select! {
                _ = self.st.shutdown.cancelled() => Step::Shutdown,
                msg = from_client.recv() => Step::Client(msg),
                Ok(()) = acked.changed() => Step::Acked,
                live = sub.rx.recv() => Step::Live(live),
                _ = std::future::ready(()), if can_send => Step::Send,
                _ = sleep_until(settle_at), if settle_at.is_some() => Step::Settle,
                _ = sleep_until(linger.map(|l| l.1)), if linger.is_some() => Step::Linger,
                _ = sleep_until_utc(expires), if expires.is_some() => Step::Expired,
            };
            match step {
                Step::Shutdown => return Ok("server shutting down".into()),
                Step::Linger => {
                    let (ended, _) = linger.unwrap_or((Instant::now(), Instant::now()));
                    if self.outbox.is_empty() || ended.elapsed() >= LINGER_MAX {
                        return Ok(format!("session {}", self.status.as_str()));
                    }
                    linger = Some((ended, Instant::now() + LINGER));
                }
                Step::Expired => self.ended = Some(("the share link expired".into(), None)),
                Step::Client(None) => return Err(Gone),
                Step::Client(Some(FromClient::Event(event))) => {
                    self.send_event(sink, &event).await?
                }
                Step::Client(Some(FromClient::Interrupted)) => {
                    // Ctrl-C during a flood: skip what waits rather than
                    // draw it, and paint the screen once the program has
                    // stopped (even to a page still drawing).
                    let behind = self.outbox.output_bytes() + self.window.unacked();
                    let flooding = self.outbox.recent_output();
                    if self.window.is_flow_controlled() && behind.max(flooding) >= INTERRUPT_SKIP {
                        let now = Instant::now();
                        self.outbox.drop_output();
                        self.settling = Some(Settling {
                            until: now + SETTLE_MAX,
                            paint_at: Some(now + SETTLE_QUIET),
                        });
                    }
                }
                Step::Settle => self.settle(sink, &mut sub).await?,
                Step::Client(Some(FromClient::Leave { reason, by })) => {
                    self.ended = Some((reason, Some(by)))
                }
                Step::Acked => self.window.ack(*acked.borrow_and_update()),
                Step::Live(Err(RecvError::Lagged(missed))) => {
                    tracing::debug!(missed, "viewer lagged behind the live feed");
                    self.lagged = true;
                }
                Step::Live(Err(RecvError::Closed)) => return Ok("live feed closed".into()),
                Step::Live(Ok(report)) => {
                    self.take(report);
                    self.drain(&mut sub);
                    self.skip_while_settling();
                }
                Step::Send => self.send_next(sink, &mut sub).await?,
            }
            if self.lagged && self.settling.is_some() {
                // Painted when it settles.
                self.lagged = false;
                self.skip_while_settling();
            }
            if self.lagged || self.too_far_behind() {
                if self.window.is_flow_controlled() && self.window.room() == 0 {
                    // Still drawing what it was sent: what waits is
                    // dropped, and the present is painted once it can be
                    // taken (snapshots never come faster than it draws).
                    self.outbox.drop_output();
                    self.lagged = true;
                } else {
                    self.resync(sink, &mut sub).await?;
                }
            }
            if std::mem::take(&mut self.needs_sync) {
                self.sync(sink, &mut sub).await?;
            }
            if let Some((reason, by)) = self.ended.take() {
                let closed = BrowserEvent::Closed {
                    reason: reason.clone(),
                    by,
                };
                self.send_event(sink, &closed).await?;
                return Ok(reason);
            }
            if !self.status.is_live() && linger.is_none() {
                let now = Instant::now();
                linger = Some((now, now + LINGER));
            }
        }
    }

    /// Where a new viewer starts: after `after` (resuming), at a snapshot
    /// of the screen, or a bounded tail of the recording; then what was
    /// recorded since.
    async fn catch_up_at_start<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        sub: &mut Subscription,
        status: SessionStatus,
    ) -> Result<(), Gone> {
        // A link viewer may resume only after what it could have seen.
        let after = self.after.filter(|after| *after >= self.floor);
        // A joiner asks even while the recording still says `connecting`
        // (the recorder trails by a moment): the runner answers as soon as
        // the shell is open, and a joiner must start from the screen, not
        // from a replayed tail of bytes. An open session is asked where its
        // output stands (a snapshot carries the runner's seq): the
        // recording may trail live output by a moment, and a viewer must
        // not miss what was published just before it subscribed.
        let ask = match status {
            SessionStatus::Open => true,
            SessionStatus::Pending | SessionStatus::Connecting => self.snapshot || after.is_none(),
            _ => false,
        };
        let snapshot = if ask {
            self.take_snapshot(sub, false).await
        } else {
            None
        };
        let too_much = match (after, &snapshot) {
            (Some(after), Some(_)) if self.window.is_flow_controlled() => {
                self.recorded_beyond(after, self.st.settings.sharing.skip)
                    .await
            }
            _ => false,
        };
        let start = match (after, snapshot) {
            (Some(_), Some(snap)) if too_much => {
                // Too much to replay to a browser: show the screen.
                self.send_snapshot(sink, &snap).await?;
                snap.seq
            }
            (Some(after), snap) => {
                if let Some(snap) = snap.filter(|s| s.seq > after) {
                    self.last_sent = after;
                    self.catch_up(snap.seq).await;
                }
                after
            }
            (None, Some(snap)) if self.snapshot => {
                self.send_snapshot(sink, &snap).await?;
                snap.seq
            }
            (None, snap) => {
                let start = self.replay_start().await.max(self.floor);
                if let Some(snap) = snap.filter(|s| s.seq > start) {
                    self.last_sent = start;
                    self.catch_up(snap.seq).await;
                }
                start
            }
        };
        self.last_sent = start;
        self.replay(sink, None).await
    }

    fn can_send(&self) -> bool {
        match self.outbox.front().map(Arc::as_ref) {
            None => false,
            Some(Report::Output { .. }) => self.window.room() > 0,
            Some(_) => true,
        }
    }

    /// Whether more output waits than this viewer may fall behind.
    fn too_far_behind(&self) -> bool {
        let sharing = &self.st.settings.sharing;
        if self.window.is_flow_controlled() {
            self.outbox.output_bytes() > sharing.skip
        } else {
            self.outbox.len() > sharing.viewer_buffer
        }
    }

    /// Takes one live report: acted on now if it concerns this viewer's
    /// membership, else queued to be sent in order.
    fn take(&mut self, report: Arc<Report>) {
        match report.as_ref() {
            // Snapshots answer one viewer's request (see `take_snapshot`).
            Report::Event(Event::Snapshot { .. }) => {}
            Report::Event(Event::Revoked { share, by }) => {
                if self.share.as_ref().is_some_and(|s| s.id == *share) {
                    let reason = "the share link was revoked".to_owned();
                    self.ended = Some((reason, Some(by.clone())));
                }
            }
            Report::Event(Event::Presence { viewers }) => {
                self.st.presence.note_total(self.session, viewers.len());
                self.outbox.push(report);
            }
            _ => self.outbox.push(report),
        }
    }

    /// While settling after a Ctrl-C, output is skipped, and the screen is
    /// painted a moment after the last of it.
    fn skip_while_settling(&mut self) {
        let Some(settling) = self.settling.as_mut() else {
            return;
        };
        if self.outbox.output_bytes() > 0 || self.lagged {
            self.outbox.drop_output();
            settling.paint_at = Some(Instant::now() + SETTLE_QUIET);
        }
    }

    /// The feed paused (paint the screen), or settling is over.
    async fn settle<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        sub: &mut Subscription,
    ) -> Result<(), Gone> {
        let Some(mut settling) = self.settling else {
            return Ok(());
        };
        let now = Instant::now();
        let due = settling
            .paint_at
            .is_some_and(|at| at <= now || now >= settling.until);
        if due {
            settling.paint_at = None;
            self.resync(sink, sub).await?;
        }
        self.settling = (now < settling.until).then_some(settling);
        Ok(())
    }

    /// Takes what else the feed has right now, up to a batch.
    fn drain(&mut self, sub: &mut Subscription) {
        for _ in 0..DRAIN_BATCH {
            if self.too_far_behind() {
                return;
            }
            match sub.rx.try_recv() {
                Ok(report) => self.take(report),
                Err(TryRecvError::Lagged(_)) => {
                    self.lagged = true;
                    return;
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => return,
            }
        }
    }

    /// Catches up after falling behind: a flow-controlled client skips to
    /// a snapshot of the screen; any other (or a session without a screen)
    /// gets what it missed from the recording.
    async fn resync<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        sub: &mut Subscription,
    ) -> Result<(), Gone> {
        self.lagged = false;
        self.outbox.drop_output();
        if !self.window.is_flow_controlled() {
            return self.replay(sink, None).await;
        }
        match self.take_snapshot(sub, true).await {
            Some(snap) if snap.seq <= self.last_sent => Ok(()),
            // No screen (exec runs only): nothing to paint; the skipped
            // output stays in the recording.
            Some(snap) if snap.cols == 0 => {
                self.last_sent = snap.seq;
                Ok(())
            }
            Some(snap) => {
                tracing::debug!(from = self.last_sent, to = snap.seq, "viewer skipped ahead");
                self.send_snapshot(sink, &snap).await
            }
            None => {
                // No snapshot in time: the end of the recording, no more
                // than a newcomer is shown.
                self.last_sent = self.last_sent.max(self.replay_start().await);
                self.replay(sink, None).await
            }
        }
    }

    // ---- sending ------------------------------------------------------------

    pub(super) async fn send<Si: Sink<Message, Error = E> + Unpin, E>(
        &self,
        sink: &mut Si,
        msg: Message,
    ) -> Result<(), Gone> {
        sink.send(msg).await.map_err(|_| Gone)
    }

    pub(super) async fn send_event<Si: Sink<Message, Error = E> + Unpin, E>(
        &self,
        sink: &mut Si,
        event: &BrowserEvent,
    ) -> Result<(), Gone> {
        let text = serde_json::to_string(event).unwrap_or_default();
        self.send(sink, Message::Text(text.into())).await
    }

    /// Sends the next thing in the outbox (merging PTY output queued behind
    /// it into one frame, within the window).
    async fn send_next<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        sub: &mut Subscription,
    ) -> Result<(), Gone> {
        let Some(report) = self.outbox.pop() else {
            return Ok(());
        };
        let (meta, data) = match report.as_ref() {
            Report::Event(event) => return self.on_event(sink, event).await,
            Report::Link(state) => return self.on_link(sink, *state).await,
            Report::Stored(stored) => return self.on_stored(sink, stored).await,
            Report::Output { meta, data } => (meta, data),
        };
        if meta.seq <= self.last_sent {
            return Ok(());
        }
        if meta.seq > self.last_sent + 1 {
            // Missed live output (the feed was rebuilt, or the session
            // opened before it was bound): fill the gap first.
            let missing = meta.seq - 1;
            self.outbox.unpop(report);
            if self.window.is_flow_controlled() && missing - self.last_sent > GAP_FOR_SNAPSHOT {
                return self.resync(sink, sub).await;
            }
            self.catch_up(missing).await;
            self.replay(sink, Some(missing)).await?;
            if self.last_sent < missing {
                // Not recorded (yet): skip what cannot be had.
                self.last_sent = missing;
            }
            return Ok(());
        }
        if meta.stream != OutStream::Pty {
            return self
                .send_chunk(sink, meta.seq, meta.stream, meta.run, data)
                .await;
        }
        // The frame is built in place (seq header first, patched at the
        // end): one copy of the bytes per viewer, not two.
        let room = self.window.room();
        let mut frame = Vec::with_capacity(8 + data.len().max(FRAME_MAX / 4));
        frame.extend_from_slice(&[0u8; 8]);
        frame.extend_from_slice(data);
        let mut seq = meta.seq;
        while frame.len() < FRAME_MAX + 8 {
            let next = match self.outbox.front().map(Arc::as_ref) {
                Some(Report::Output { meta, data })
                    if meta.stream == OutStream::Pty
                        && meta.seq == seq + 1
                        && frame.len() - 8 + data.len() <= room =>
                {
                    (meta.seq, data)
                }
                _ => break,
            };
            frame.extend_from_slice(next.1);
            seq = next.0;
            self.outbox.pop();
        }
        frame[..8].copy_from_slice(&seq.to_be_bytes());
        let bytes = frame.len() - 8;
        self.send(sink, Message::Binary(frame.into())).await?;
        self.last_sent = seq;
        self.window.sent(seq, bytes);
        Ok(())
    }

    async fn on_event<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        event: &Event,
    ) -> Result<(), Gone> {
        match event {
            Event::Status {
                status, message, ..
            } => {
                if !self.status.is_live() {
                    return Ok(());
                }
                if *status == SessionStatus::Open && self.status != SessionStatus::Open {
                    self.needs_sync = true;
                }
                if *status == SessionStatus::Failed && message.is_some() && !self.error_sent {
                    // A runner reports a failure as its error then this
                    // status; the error came before this viewer
                    // subscribed: the recording has it.
                    self.send_recorded_error(sink).await?;
                }
                self.status = *status;
            }
            Event::Closed { .. } if self.status.is_live() => self.status = SessionStatus::Closed,
            Event::Error { run: None, .. } => self.error_sent = true,
            _ => {}
        }
        match BrowserEvent::from_runner(event) {
            Some(out) => self.send_event(sink, &out).await,
            None => Ok(()),
        }
    }

    /// The live feed lost the broker, or has it back: after `restored`,
    /// what was published meanwhile (and what the runner publishes again)
    /// is caught up as when the session opened.
    async fn on_link<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        state: LinkState,
    ) -> Result<(), Gone> {
        if state == LinkState::Restored && self.status.is_live() {
            self.needs_sync = true;
        }
        self.send_event(sink, &BrowserEvent::link(state)).await
    }

    /// A status read from the database: news only if it is further along
    /// than what this viewer knows.
    async fn on_stored<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        stored: &StoredStatus,
    ) -> Result<(), Gone> {
        if rank(stored.status) <= rank(self.status) {
            return Ok(());
        }
        if stored.status.is_live() {
            if stored.status == SessionStatus::Open {
                self.needs_sync = true;
            }
            self.status = stored.status;
            let event = BrowserEvent::Status {
                status: stored.status,
                runner: stored.runner.clone(),
                message: None,
            };
            return self.send_event(sink, &event).await;
        }
        self.send_final(sink, stored).await
    }

    pub(super) async fn send_chunk<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        seq: u64,
        stream: OutStream,
        run: Option<Uuid>,
        data: &[u8],
    ) -> Result<(), Gone> {
        let chunk = BrowserEvent::Chunk {
            run: run.unwrap_or_default(),
            stream,
            seq,
            data: String::from_utf8_lossy(data).into_owned(),
        };
        self.send_event(sink, &chunk).await?;
        self.last_sent = seq;
        self.window.sent(seq, data.len());
        Ok(())
    }

    /// Sends a snapshot of the screen: the client paints it in place of
    /// everything before `snap.seq`.
    async fn send_snapshot<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        snap: &Snapshot,
    ) -> Result<(), Gone> {
        let event = BrowserEvent::Snapshot {
            seq: snap.seq,
            cols: snap.cols,
            rows: snap.rows,
            data: snap.data.clone(),
        };
        self.send_event(sink, &event).await?;
        self.last_sent = self.last_sent.max(snap.seq);
        self.window.sent(snap.seq, snap.data.len());
        Ok(())
    }

    // ---- snapshots ----------------------------------------------------------

    /// Makes sure everything the runner published so far reaches this
    /// viewer: asks for its seq, waits for the recorder to have it, and
    /// replays what the live feed did not bring.
    async fn sync<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        sub: &mut Subscription,
    ) -> Result<(), Gone> {
        let Some(snap) = self.take_snapshot(sub, false).await else {
            // The runner is not answering (yet): what the recording has.
            return self.replay(sink, None).await;
        };
        // What the feed already brought is in the outbox, in order.
        let next = self.last_sent + 1;
        let queued = self.outbox_holds(next);
        if snap.seq > self.last_sent && !queued {
            self.catch_up(snap.seq).await;
            self.replay(sink, Some(snap.seq)).await?;
        }
        Ok(())
    }

    fn outbox_holds(&self, seq: u64) -> bool {
        self.outbox
            .iter()
            .any(|r| matches!(r, Report::Output { meta, .. } if meta.seq == seq))
    }

    /// Asks the runner for the current screen and waits for it. Live
    /// reports that arrive meanwhile are queued, output unless
    /// `skip_output` (it is all at or before the snapshot's seq).
    async fn take_snapshot(
        &mut self,
        sub: &mut Subscription,
        skip_output: bool,
    ) -> Option<Snapshot> {
        let request = Uuid::now_v7();
        let ask = Control::Snapshot { request };
        if let Err(err) = self
            .st
            .broker
            .publish_control(self.session, &ask, true)
            .await
        {
            tracing::warn!(error = %err, "cannot ask for a snapshot");
            return None;
        }
        let deadline = Instant::now() + SNAPSHOT_WAIT;
        loop {
            let report = match tokio::time::timeout_at(deadline, sub.rx.recv()).await {
                Ok(Ok(report)) => report,
                Ok(Err(RecvError::Lagged(_))) => continue,
                Ok(Err(RecvError::Closed)) | Err(_) => {
                    tracing::info!("no snapshot in time");
                    return None;
                }
            };
            match report.as_ref() {
                Report::Event(Event::Snapshot {
                    request: Some(r),
                    seq,
                    cols,
                    rows,
                    data,
                }) if *r == request => {
                    return Some(Snapshot {
                        seq: *seq,
                        cols: *cols,
                        rows: *rows,
                        data: data.clone(),
                    })
                }
                Report::Output { .. } if skip_output => {}
                _ => self.take(report),
            }
        }
    }

    // ---- status -------------------------------------------------------------

    /// Sends the error the recorder stored for this failed session, waiting
    /// a moment for it (the recorder trails the live feed).
    async fn send_recorded_error<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
    ) -> Result<(), Gone> {
        let deadline = Instant::now() + RECORDED_ERROR_WAIT;
        loop {
            match fanout::load_status(&self.st.db, self.session).await {
                Ok(Some(row)) if row.error.is_some() => {
                    return self.send_error_of(sink, &row).await
                }
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(25)).await
                }
                Ok(_) => return Ok(()),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the session's error");
                    return Ok(());
                }
            }
        }
    }

    /// The stored error of `row`, once per viewer.
    async fn send_error_of<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        row: &StoredStatus,
    ) -> Result<(), Gone> {
        if let (Some(message), false) = (&row.error, self.error_sent) {
            let kind = row
                .error_kind
                .as_deref()
                .and_then(|k| serde_json::from_value(serde_json::Value::String(k.to_owned())).ok())
                .unwrap_or(ErrorKind::Runtime);
            self.error_sent = true;
            self.send_event(sink, &BrowserEvent::error(kind, message.clone()))
                .await?;
        }
        Ok(())
    }

    /// The error (if any) and the final status of an ended session.
    async fn send_final<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        row: &StoredStatus,
    ) -> Result<(), Gone> {
        self.send_error_of(sink, row).await?;
        self.status = row.status;
        let event = BrowserEvent::Status {
            status: row.status,
            runner: row.runner.clone(),
            message: row.error.clone(),
        };
        self.send_event(sink, &event).await
    }
}

/// A runner's picture of the screen after output `seq`.
struct Snapshot {
    seq: u64,
    cols: u16,
    rows: u16,
    data: String,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until a wall-clock instant (a share link's expiry).
async fn sleep_until_utc(at: Option<DateTime<Utc>>) {
    let left = at
        .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
        .unwrap_or(Duration::from_secs(86_400));
    tokio::time::sleep(left).await;
}

/// Statuses only move forward: pending, connecting, open, then one final.
fn rank(s: SessionStatus) -> u8 {
    match s {
        SessionStatus::Pending => 0,
        SessionStatus::Connecting => 1,
        SessionStatus::Open => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward() {
        assert!(rank(SessionStatus::Pending) < rank(SessionStatus::Connecting));
        assert!(rank(SessionStatus::Connecting) < rank(SessionStatus::Open));
        for s in [
            SessionStatus::Closed,
            SessionStatus::Failed,
            SessionStatus::Lost,
            SessionStatus::Rejected,
        ] {
            assert!(rank(SessionStatus::Open) < rank(s));
        }
    }
}

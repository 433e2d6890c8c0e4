//! The console WebSocket of one session: `GET /ws/sessions/{id}[?after=N]`.
//!
//! Order of business: subscribe to the live feed, then replay the recording
//! from the database up to where live output takes over, then stream live.
//! Every output message has a per-session `seq`; the viewer sends each seq
//! once, in order, filling any gap (lag, reconnect) from the recording.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use shellway_common::event::{ViewMode, Viewer as Attendee};
use shellway_common::output::encode_frame;
use shellway_common::{
    ClientAction, Control, ErrorKind, Event, SessionStatus, Stream as OutStream,
};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::api::runs::{self, RunRequest};
use crate::api::sessions;
use crate::api::shares::{self, Share};
use crate::api::AppState;
use crate::auth::{AuthUser, Credential};
use crate::broker::Report;
use crate::error::ApiError;
use crate::fanout::Subscription;
use crate::inputs::Typed;
use crate::presence::Attendance;

/// Largest client frame accepted by the parser.
const MAX_ACTION: usize = 256 * 1024;
/// Largest WebSocket message at all.
const MAX_MESSAGE: usize = 1024 * 1024;
const SOCKET_BUFFER: usize = 16 * 1024;
/// Terminal output replayed to a viewer who joins without `after`.
const REPLAY_WINDOW: i64 = 256 * 1024;
/// Consecutive PTY chunks are merged into frames up to this size.
const FRAME_MAX: usize = 64 * 1024;
/// How long a viewer waits for the recorder to catch up with live output.
const CATCH_UP: Duration = Duration::from_secs(3);
/// How often a viewer re-reads its session's status from the database, a
/// fallback for changes the live feed did not bring: often while the
/// session opens, rarely once open (a thousand viewers must not mean a
/// thousand queries a second).
const STATUS_POLL: Duration = Duration::from_secs(1);
const STATUS_POLL_OPEN: Duration = Duration::from_secs(10);
/// Messages still forwarded after the session ended, before closing.
const LINGER: Duration = Duration::from_millis(300);
const PAGE: i64 = 256;
/// How long a joiner waits for the runner's snapshot before falling back
/// to replaying the recording.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(3);
/// Input one viewer may send: a sustained rate and a burst. A viewer over
/// it is slowed down (its socket is read later), so one flooding
/// controller cannot starve the others.
const INPUT_RATE: f64 = 1024.0 * 1024.0;
const INPUT_BURST: f64 = 1024.0 * 1024.0;

#[derive(Deserialize)]
pub(crate) struct WsQuery {
    after: Option<u64>,
    /// `view` or `control` (owner and admins only; an admin who does not
    /// own the session watches read-only unless asking for control).
    mode: Option<String>,
    /// Start with a snapshot of the screen instead of recorded output.
    snapshot: Option<bool>,
}

fn too_many_viewers(max: usize) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "too_many_viewers",
        format!("this session already has {max} viewers, the most it accepts"),
    )
}

pub(crate) async fn upgrade(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let session = sessions::load(&st.db, id, &user).await?;
    let owner = session.owner_id == user.id;
    let mode = match q.mode.as_deref() {
        None if owner => ViewMode::Control,
        None => ViewMode::View,
        Some("view") => ViewMode::View,
        Some("control") => ViewMode::Control,
        Some(_) => {
            return Err(ApiError::invalid(
                "mode",
                "mode must be \"view\" or \"control\"",
            ))
        }
    };
    let snapshot = q.snapshot.unwrap_or(!owner);
    let viewer = Viewer::new(st, user, session.id, mode, None, q.after, snapshot)?;
    Ok(viewer.upgrade(ws))
}

/// `GET /ws/join/{token}`: a viewer who came through a share link.
pub(crate) async fn join(
    State(st): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Path(token): Path<String>,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let share = shares::resolve(&st.db, &token).await?;
    let user = match user {
        Ok(user) => user,
        Err(_) if share.mode == ViewMode::View && st.settings.sharing.anonymous_view => AuthUser {
            id: Uuid::nil(),
            username: "anonymous".into(),
            is_admin: false,
            credential: Credential::Token,
        },
        Err(err) => return Err(err),
    };
    let session = share.session;
    let viewer = Viewer::new(st, user, session, share.mode, Some(share), q.after, true)?;
    Ok(viewer.upgrade(ws))
}

/// One attached viewer.
pub(crate) struct Viewer {
    st: AppState,
    user: AuthUser,
    session: Uuid,
    mode: ViewMode,
    /// The link this viewer came through, if any.
    share: Option<Share>,
    after: Option<u64>,
    /// Start with a snapshot of the screen (when `after` is not given).
    snapshot: bool,
    /// Highest output seq sent to this viewer.
    last_sent: u64,
    status: SessionStatus,
    error_sent: bool,
    /// The session just opened: check with the runner that nothing
    /// published before the live feed was bound went missing.
    needs_sync: bool,
    /// Set when the viewer must leave: the reason, and who caused it.
    ended: Option<(String, Option<String>)>,
    budget: InputBudget,
    _attendance: Attendance,
}

impl Viewer {
    fn new(
        st: AppState,
        user: AuthUser,
        session: Uuid,
        mode: ViewMode,
        share: Option<Share>,
        after: Option<u64>,
        snapshot: bool,
    ) -> Result<Self, ApiError> {
        let max = st.settings.sharing.max_viewers;
        let attendee = Attendee {
            user: user.username.clone(),
            mode,
        };
        let attendance = st
            .presence
            .attend(session, attendee, max)
            .ok_or_else(|| too_many_viewers(max))?;
        Ok(Self {
            st,
            user,
            session,
            mode,
            share,
            after,
            snapshot,
            last_sent: 0,
            status: SessionStatus::Pending,
            error_sent: false,
            needs_sync: false,
            ended: None,
            budget: InputBudget::new(),
            _attendance: attendance,
        })
    }

    fn upgrade(self, ws: WebSocketUpgrade) -> Response {
        let span = tracing::info_span!(
            "viewer",
            session_id = %self.session,
            user = %self.user.username,
            mode = ?self.mode,
            share = ?self.share.as_ref().map(|s| s.id),
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

/// A token bucket over the bytes of a viewer's input.
struct InputBudget {
    tokens: f64,
    at: Instant,
}

impl InputBudget {
    fn new() -> Self {
        Self {
            tokens: INPUT_BURST,
            at: Instant::now(),
        }
    }

    /// How long to wait before `bytes` more may be sent.
    fn take(&mut self, bytes: usize) -> Duration {
        let now = Instant::now();
        let earned = now.duration_since(self.at).as_secs_f64() * INPUT_RATE;
        self.tokens = (self.tokens + earned).min(INPUT_BURST) - bytes as f64;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / INPUT_RATE)
        }
    }
}

/// Why the socket stopped.
#[derive(Debug)]
struct Gone;

enum Step {
    Client(Option<Message>),
    Live(Result<Arc<Report>, RecvError>),
    Poll,
    Linger,
    Expired,
    Shutdown,
}

impl Viewer {
    /// Runs the viewer over any message sink and stream (a real socket, or
    /// channels in tests).
    pub(crate) async fn serve<Si, St, E1, E2>(mut self, mut sink: Si, mut stream: St)
    where
        Si: Sink<Message, Error = E1> + Unpin,
        St: Stream<Item = Result<Message, E2>> + Unpin,
    {
        let reason = match self.run(&mut sink, &mut stream).await {
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

    async fn run<Si, St, E1, E2>(&mut self, sink: &mut Si, stream: &mut St) -> Result<String, Gone>
    where
        Si: Sink<Message, Error = E1> + Unpin,
        St: Stream<Item = Result<Message, E2>> + Unpin,
    {
        let mut sub = self.st.fanout.subscribe(self.session).await;
        let Some(row) = self.load_status().await else {
            self.send_event(
                sink,
                &Event::error(ErrorKind::Runtime, "the session is unavailable"),
            )
            .await?;
            return Ok("unavailable".into());
        };
        self.status = row.status;
        let connected = Event::Connected {
            session: self.session,
            runner: row.runner.clone(),
            mode: self.mode,
            status: row.status,
        };
        self.send_event(sink, &connected).await?;
        // An open session is asked where its output stands (a snapshot
        // carries the runner's seq): the recording may trail live output by
        // a moment, and a viewer must not miss what was published just
        // before it subscribed when nothing follows it.
        let mut backlog: VecDeque<Arc<Report>> = VecDeque::new();
        // A joiner asks even while the recording still says `connecting`
        // (the recorder trails by a moment): the runner answers as soon as
        // the shell is open, and a joiner must start from the screen, not
        // from a replayed tail of bytes.
        let ask = match row.status {
            SessionStatus::Open => true,
            SessionStatus::Pending | SessionStatus::Connecting => self.snapshot,
            _ => false,
        };
        let snapshot = if ask {
            self.take_snapshot(&mut sub, &mut backlog).await
        } else {
            None
        };
        let synced = match &snapshot {
            Some(Event::Snapshot { seq, .. }) => Some(*seq),
            _ => None,
        };
        self.last_sent = match (self.after, snapshot) {
            (Some(n), _) => n,
            (None, Some(snapshot)) if self.snapshot => {
                self.send_event(sink, &snapshot).await?;
                synced.unwrap_or(0)
            }
            (None, _) => self.replay_start().await,
        };
        if let Some(seq) = synced.filter(|s| *s > self.last_sent) {
            self.catch_up(seq).await;
        }
        self.replay(sink, None).await?;
        if !self.status.is_live() {
            self.send_final(sink, &row).await?;
            return Ok(format!("session {}", self.status.as_str()));
        }

        let mut poll = tokio::time::interval(STATUS_POLL);
        let mut linger: Option<Instant> = None;
        let expires = self.share.as_ref().map(|s| s.expires_at);
        loop {
            let step = match backlog.pop_front() {
                Some(report) => Step::Live(Ok(report)),
                None => {
                    let until =
                        linger.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
                    tokio::select! {
                        _ = self.st.shutdown.cancelled() => Step::Shutdown,
                        msg = stream.next() => Step::Client(msg.and_then(Result::ok)),
                        live = sub.rx.recv() => Step::Live(live),
                        _ = poll.tick() => Step::Poll,
                        _ = tokio::time::sleep_until(until), if linger.is_some() => Step::Linger,
                        _ = sleep_until_utc(expires), if expires.is_some() => Step::Expired,
                    }
                }
            };
            match step {
                Step::Shutdown => return Ok("server shutting down".into()),
                Step::Linger => return Ok(format!("session {}", self.status.as_str())),
                Step::Expired => {
                    self.ended = Some(("the share link expired".into(), None));
                }
                Step::Client(None) | Step::Client(Some(Message::Close(_))) => return Err(Gone),
                Step::Client(Some(msg)) => self.on_client(sink, msg).await?,
                Step::Live(Err(RecvError::Lagged(missed))) => {
                    tracing::debug!(missed, "viewer lagged; resyncing from the recording");
                    self.replay(sink, None).await?;
                }
                Step::Live(Err(RecvError::Closed)) => return Ok("live feed closed".into()),
                Step::Live(Ok(report)) => {
                    if let Some(held) = self.on_live(sink, &mut sub, &report).await? {
                        backlog.push_front(held);
                    }
                }
                Step::Poll => {
                    self.poll_status(sink).await?;
                    let every = if self.status == SessionStatus::Open {
                        STATUS_POLL_OPEN
                    } else {
                        STATUS_POLL
                    };
                    if poll.period() != every {
                        poll = tokio::time::interval_at(Instant::now() + every, every);
                    }
                }
            }
            if std::mem::take(&mut self.needs_sync) {
                self.sync(sink, &mut sub, &mut backlog).await?;
            }
            if let Some((reason, by)) = self.ended.take() {
                let closed = Event::Closed {
                    reason: reason.clone(),
                    by,
                };
                self.send_event(sink, &closed).await?;
                return Ok(reason);
            }
            if !self.status.is_live() && linger.is_none() {
                linger = Some(Instant::now() + LINGER);
            }
        }
    }

    async fn send<Si: Sink<Message, Error = E> + Unpin, E>(
        &self,
        sink: &mut Si,
        msg: Message,
    ) -> Result<(), Gone> {
        sink.send(msg).await.map_err(|_| Gone)
    }

    async fn send_event<Si: Sink<Message, Error = E> + Unpin, E>(
        &self,
        sink: &mut Si,
        event: &Event,
    ) -> Result<(), Gone> {
        let text = serde_json::to_string(event).unwrap_or_default();
        self.send(sink, Message::Text(text.into())).await
    }

    // ---- client → server --------------------------------------------------

    async fn on_client<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        msg: Message,
    ) -> Result<(), Gone> {
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                let err = Event::error(
                    ErrorKind::Protocol,
                    "binary frames are not accepted; send JSON text frames with an \"action\"",
                );
                return self.send_event(sink, &err).await;
            }
            _ => return Ok(()),
        };
        let action = match ClientAction::parse(text.as_str(), MAX_ACTION) {
            Ok(a) => a,
            Err(e) => {
                return self
                    .send_event(sink, &Event::error(ErrorKind::Protocol, e.to_string()))
                    .await
            }
        };
        if let Err(err) = self.act(action, sink).await {
            let kind = match err.code {
                "not_supported" | "invalid_field" => ErrorKind::Protocol,
                _ => ErrorKind::Runtime,
            };
            return self
                .send_event(sink, &Event::error(kind, err.message))
                .await;
        }
        Ok(())
    }

    async fn act<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        action: ClientAction,
        sink: &mut Si,
    ) -> Result<(), ApiError> {
        let _ = sink;
        if self.mode == ViewMode::View {
            if let Some(what) = refused_when_viewing(&action) {
                return Err(ApiError::not_supported(
                    "action",
                    format!("{what} refused: you are watching this session read-only"),
                ));
            }
        }
        let (st, id) = (&self.st, self.session);
        match action {
            ClientAction::Input { data } if !data.is_empty() => {
                let wait = self.budget.take(data.len());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                st.broker
                    .publish_input(id, data.as_bytes(), &self.user.username)
                    .await?;
                let typed = Typed {
                    session: id,
                    user: (!self.user.id.is_nil()).then_some(self.user.id),
                    username: self.user.username.clone(),
                    share: self.share.as_ref().map(|s| s.id),
                    data: data.into_bytes(),
                };
                st.inputs.record(typed).await;
            }
            ClientAction::Input { .. } | ClientAction::Ack { .. } => {}
            ClientAction::Resize { cols, rows } => {
                st.broker
                    .publish_control(id, &Control::Resize { cols, rows }, true)
                    .await?
            }
            ClientAction::Cancel { run } => {
                st.broker
                    .publish_control(id, &Control::Cancel { run }, true)
                    .await?
            }
            ClientAction::Run {
                command,
                task,
                script,
                script_id,
            } => {
                let req = RunRequest {
                    command,
                    script,
                    task,
                    script_id,
                    ..Default::default()
                };
                runs::start_run(st, id, &self.user, &req, true).await?;
            }
            // Someone who joined by a link leaves; only the owner (or an
            // admin) ends the session for everybody.
            ClientAction::Close if self.share.is_some() => {
                self.ended = Some(("left".into(), Some(self.user.username.clone())));
            }
            ClientAction::Close => sessions::end_session(st, id, &self.user).await?,
        }
        Ok(())
    }

    /// Makes sure everything the runner published so far reaches this
    /// viewer: asks for its seq, waits for the recorder to have it, and
    /// replays what the live feed did not bring.
    async fn sync<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        sub: &mut Subscription,
        backlog: &mut VecDeque<Arc<Report>>,
    ) -> Result<(), Gone> {
        let seq = match self.take_snapshot(sub, backlog).await {
            Some(Event::Snapshot { seq, .. }) => seq,
            _ => return Ok(()),
        };
        // What the feed already brought is in the backlog, in order.
        let in_backlog = backlog.iter().any(
            |r| matches!(r.as_ref(), Report::Output { meta, .. } if meta.seq == self.last_sent + 1),
        );
        if seq > self.last_sent && !in_backlog {
            self.catch_up(seq).await;
            self.replay(sink, Some(seq)).await?;
        }
        Ok(())
    }

    /// Asks the runner for the current screen and waits for it, keeping the
    /// live reports that arrive meanwhile in `backlog`.
    async fn take_snapshot(
        &self,
        sub: &mut Subscription,
        backlog: &mut VecDeque<Arc<Report>>,
    ) -> Option<Event> {
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
                    tracing::info!("no snapshot in time; replaying the recording instead");
                    return None;
                }
            };
            if let Report::Event(Event::Snapshot {
                request: Some(r),
                seq,
                cols,
                rows,
                data,
            }) = report.as_ref()
            {
                if *r == request {
                    return Some(Event::Snapshot {
                        request: None,
                        seq: *seq,
                        cols: *cols,
                        rows: *rows,
                        data: data.clone(),
                    });
                }
                continue;
            }
            backlog.push_back(report);
        }
    }

    // ---- live → client ----------------------------------------------------

    /// Sends one live report (merging PTY output queued behind it). Returns a
    /// report taken from the queue that could not be merged.
    async fn on_live<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        sub: &mut Subscription,
        report: &Report,
    ) -> Result<Option<Arc<Report>>, Gone> {
        let (meta, data) = match report {
            Report::Event(event) => {
                self.on_event(sink, event).await?;
                return Ok(None);
            }
            Report::Output { meta, data } => (meta, data),
        };
        if meta.seq <= self.last_sent {
            return Ok(None);
        }
        if meta.seq > self.last_sent + 1 {
            self.catch_up(meta.seq - 1).await;
            self.replay(sink, Some(meta.seq - 1)).await?;
        }
        if meta.stream != OutStream::Pty {
            self.send_chunk(sink, meta.seq, meta.stream, meta.run, data)
                .await?;
            return Ok(None);
        }
        // The frame is built in place (seq header first, patched at the
        // end): one copy of the bytes per viewer, not two.
        let mut frame = Vec::with_capacity(8 + data.len().max(FRAME_MAX / 4));
        frame.extend_from_slice(&[0u8; 8]);
        frame.extend_from_slice(data);
        let mut seq = meta.seq;
        let mut held = None;
        while frame.len() < FRAME_MAX + 8 {
            match sub.rx.try_recv() {
                Ok(next) => match next.as_ref() {
                    Report::Output { meta, data }
                        if meta.stream == OutStream::Pty && meta.seq == seq + 1 =>
                    {
                        frame.extend_from_slice(data);
                        seq = meta.seq;
                    }
                    _ => {
                        held = Some(next);
                        break;
                    }
                },
                Err(TryRecvError::Lagged(_))
                | Err(TryRecvError::Empty)
                | Err(TryRecvError::Closed) => break,
            }
        }
        frame[..8].copy_from_slice(&seq.to_be_bytes());
        self.send(sink, Message::Binary(frame.into())).await?;
        self.last_sent = seq;
        Ok(held)
    }

    async fn on_event<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        event: &Event,
    ) -> Result<(), Gone> {
        match event {
            // Snapshots answer one joiner's request and are sent by
            // `take_snapshot`; revocations are for the proxies.
            Event::HostKey { .. } | Event::Connected { .. } | Event::Snapshot { .. } => {
                return Ok(())
            }
            Event::Revoked { share, by } => {
                if self.share.as_ref().is_some_and(|s| s.id == *share) {
                    let reason = "the share link was revoked".to_owned();
                    self.ended = Some((reason, Some(by.clone())));
                }
                return Ok(());
            }
            Event::Presence { viewers } => {
                self.st.presence.note_total(self.session, viewers.len());
            }
            Event::Status { status, .. } => {
                if !self.status.is_live() {
                    return Ok(());
                }
                if *status == SessionStatus::Open && self.status != SessionStatus::Open {
                    self.needs_sync = true;
                }
                self.status = *status;
            }
            Event::Closed { .. } if self.status.is_live() => self.status = SessionStatus::Closed,
            Event::Error { run: None, .. } => self.error_sent = true,
            _ => {}
        }
        self.send_event(sink, event).await
    }

    async fn send_chunk<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        seq: u64,
        stream: OutStream,
        run: Option<Uuid>,
        data: &[u8],
    ) -> Result<(), Gone> {
        let chunk = Event::Chunk {
            run: run.unwrap_or_default(),
            stream,
            seq,
            data: String::from_utf8_lossy(data).into_owned(),
        };
        self.send_event(sink, &chunk).await?;
        self.last_sent = seq;
        Ok(())
    }

    // ---- the recording ----------------------------------------------------

    /// The seq after which a viewer without `after` starts: at most the last
    /// REPLAY_WINDOW bytes of terminal output.
    async fn replay_start(&self) -> u64 {
        let first: Result<Option<i64>, _> = sqlx::query_scalar(
            "SELECT min(seq) FROM (SELECT seq, sum(length(data)) OVER (ORDER BY seq DESC) AS total \
             FROM output_chunks WHERE session_id = $1 AND stream = 'pty') t WHERE total <= $2",
        )
        .bind(self.session)
        .bind(REPLAY_WINDOW)
        .fetch_one(&self.st.db)
        .await;
        match first {
            Ok(Some(seq)) => u64::try_from(seq - 1).unwrap_or(0),
            Ok(None) => 0,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the recording");
                0
            }
        }
    }

    /// Waits (briefly) until the recorder has every chunk up to `upto`.
    async fn catch_up(&self, upto: u64) {
        let deadline = Instant::now() + CATCH_UP;
        let want = upto.saturating_sub(self.last_sent) as i64;
        while Instant::now() < deadline {
            let have: Result<i64, _> = sqlx::query_scalar(
                "SELECT count(*) FROM output_chunks WHERE session_id = $1 AND seq > $2 AND seq <= $3",
            )
            .bind(self.session)
            .bind(self.last_sent as i64)
            .bind(upto as i64)
            .fetch_one(&self.st.db)
            .await;
            if have.is_ok_and(|n| n >= want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(session_id = %self.session, from = self.last_sent, upto, "recording incomplete; the viewer skips ahead");
    }

    /// Sends recorded output after `last_sent`, up to `upto` if given.
    async fn replay<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        upto: Option<u64>,
    ) -> Result<(), Gone> {
        let upto = upto.map_or(i64::MAX, |u| u as i64);
        loop {
            let rows: Vec<(i64, String, Option<Uuid>, Vec<u8>)> = match sqlx::query_as(
                "SELECT seq, stream, run_id, data FROM output_chunks \
                 WHERE session_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
            )
            .bind(self.session)
            .bind(self.last_sent as i64)
            .bind(upto)
            .bind(PAGE)
            .fetch_all(&self.st.db)
            .await
            {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the recording");
                    return Ok(());
                }
            };
            let full = rows.len() as i64 == PAGE;
            let mut frame: Vec<u8> = Vec::new();
            let mut frame_seq = 0u64;
            for (seq, stream, run, data) in rows {
                let seq = seq as u64;
                let stream = OutStream::parse(&stream).unwrap_or(OutStream::Pty);
                if stream == OutStream::Pty {
                    frame.extend_from_slice(&data);
                    frame_seq = seq;
                    if frame.len() >= FRAME_MAX {
                        self.flush(sink, &mut frame, frame_seq).await?;
                    }
                } else {
                    self.flush(sink, &mut frame, frame_seq).await?;
                    self.send_chunk(sink, seq, stream, run, &data).await?;
                }
            }
            self.flush(sink, &mut frame, frame_seq).await?;
            if !full {
                return Ok(());
            }
        }
    }

    async fn flush<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        frame: &mut Vec<u8>,
        seq: u64,
    ) -> Result<(), Gone> {
        if frame.is_empty() {
            return Ok(());
        }
        self.send(sink, Message::Binary(encode_frame(seq, frame).into()))
            .await?;
        frame.clear();
        self.last_sent = seq;
        Ok(())
    }

    // ---- status -----------------------------------------------------------

    async fn load_status(&self) -> Option<StatusRow> {
        let row: Result<Option<StatusTuple>, _> =
            sqlx::query_as("SELECT status, runner, error_kind, error FROM sessions WHERE id = $1")
                .bind(self.session)
                .fetch_optional(&self.st.db)
                .await;
        match row {
            Ok(Some((status, runner, error_kind, error))) => Some(StatusRow {
                status: SessionStatus::parse(&status).unwrap_or(SessionStatus::Failed),
                runner,
                error_kind,
                error,
            }),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the session status");
                None
            }
        }
    }

    /// Catches status changes the live feed did not bring (they happened
    /// before this viewer subscribed, or while the broker was away).
    async fn poll_status<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
    ) -> Result<(), Gone> {
        let Some(row) = self.load_status().await else {
            return Ok(());
        };
        if rank(row.status) <= rank(self.status) {
            return Ok(());
        }
        if row.status.is_live() {
            if row.status == SessionStatus::Open {
                self.needs_sync = true;
            }
            self.status = row.status;
            let event = Event::Status {
                status: row.status,
                runner: row.runner,
                message: None,
            };
            return self.send_event(sink, &event).await;
        }
        self.send_final(sink, &row).await
    }

    /// The error (if any) and the final status of an ended session.
    async fn send_final<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        row: &StatusRow,
    ) -> Result<(), Gone> {
        if let (Some(message), false) = (&row.error, self.error_sent) {
            let kind = row
                .error_kind
                .as_deref()
                .and_then(|k| serde_json::from_value(serde_json::Value::String(k.to_owned())).ok())
                .unwrap_or(ErrorKind::Runtime);
            self.error_sent = true;
            self.send_event(sink, &Event::error(kind, message.clone()))
                .await?;
        }
        self.status = row.status;
        let event = Event::Status {
            status: row.status,
            runner: row.runner.clone(),
            message: row.error.clone(),
        };
        self.send_event(sink, &event).await
    }
}

/// What a read-only viewer may not do, by name.
fn refused_when_viewing(action: &ClientAction) -> Option<&'static str> {
    match action {
        ClientAction::Input { .. } => Some("input"),
        ClientAction::Resize { .. } => Some("resize"),
        ClientAction::Run { .. } => Some("run"),
        ClientAction::Cancel { .. } => Some("cancel"),
        ClientAction::Ack { .. } | ClientAction::Close => None,
    }
}

/// Sleeps until a wall-clock instant (a share link's expiry).
async fn sleep_until_utc(at: Option<DateTime<Utc>>) {
    let left = at
        .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
        .unwrap_or(Duration::from_secs(86_400));
    tokio::time::sleep(left).await;
}

type StatusTuple = (String, Option<String>, Option<String>, Option<String>);

struct StatusRow {
    status: SessionStatus,
    runner: Option<String>,
    error_kind: Option<String>,
    error: Option<String>,
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
    fn a_flooding_viewer_is_slowed_down_not_cut_off() {
        let mut budget = InputBudget::new();
        assert_eq!(
            budget.take(INPUT_BURST as usize),
            Duration::ZERO,
            "a burst is free"
        );
        let wait = budget.take(512 * 1024);
        assert!(
            wait >= Duration::from_millis(490) && wait <= Duration::from_millis(510),
            "{wait:?}"
        );
        budget.at -= Duration::from_secs(10);
        assert_eq!(budget.take(1024), Duration::ZERO, "the budget refills");
    }

    #[test]
    fn view_mode_refuses_what_changes_the_session() {
        let input = ClientAction::Input { data: "x".into() };
        assert_eq!(refused_when_viewing(&input), Some("input"));
        assert_eq!(refused_when_viewing(&ClientAction::Ack { seq: 1 }), None);
        assert_eq!(refused_when_viewing(&ClientAction::Close), None);
    }

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

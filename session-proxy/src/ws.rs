//! The console WebSocket of one session: `GET /ws/sessions/{id}[?after=N]`.
//!
//! Order of business: subscribe to the live feed, then replay the recording
//! from the database up to where live output takes over, then stream live.
//! Every output message has a per-session `seq`; the viewer sends each seq
//! once, in order, filling any gap (lag, reconnect) from the recording.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use shellway_common::event::ViewMode;
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
use crate::api::AppState;
use crate::auth::AuthUser;
use crate::broker::Report;
use crate::error::ApiError;
use crate::fanout::Subscription;

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
const STATUS_POLL: Duration = Duration::from_secs(1);
/// Messages still forwarded after the session ended, before closing.
const LINGER: Duration = Duration::from_millis(300);
const PAGE: i64 = 256;

#[derive(Deserialize)]
pub(crate) struct WsQuery {
    after: Option<u64>,
}

pub(crate) async fn upgrade(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let session = sessions::load(&st.db, id, &user).await?;
    let span = tracing::info_span!("viewer", session_id = %id, user = %user.username);
    span.in_scope(|| tracing::info!("viewer attached"));
    let viewer = Viewer {
        st,
        user,
        session: session.id,
        after: q.after,
        last_sent: 0,
        status: SessionStatus::Pending,
        error_sent: false,
    };
    Ok(ws
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let (sink, stream) = socket.split();
            viewer.serve(sink, stream).instrument(span)
        }))
}

/// One attached viewer.
pub(crate) struct Viewer {
    st: AppState,
    user: AuthUser,
    session: Uuid,
    after: Option<u64>,
    /// Highest output seq sent to this viewer.
    last_sent: u64,
    status: SessionStatus,
    error_sent: bool,
}

/// Why the socket stopped.
#[derive(Debug)]
struct Gone;

enum Step {
    Client(Option<Message>),
    Live(Result<Arc<Report>, RecvError>),
    Poll,
    Linger,
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
            mode: ViewMode::Control,
            status: row.status,
        };
        self.send_event(sink, &connected).await?;
        self.last_sent = match self.after {
            Some(n) => n,
            None => self.replay_start().await,
        };
        self.replay(sink, None).await?;
        if !self.status.is_live() {
            self.send_final(sink, &row).await?;
            return Ok(format!("session {}", self.status.as_str()));
        }

        let mut poll = tokio::time::interval(STATUS_POLL);
        let mut linger: Option<Instant> = None;
        let mut held: Option<Arc<Report>> = None;
        loop {
            let step = match held.take() {
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
                    }
                }
            };
            match step {
                Step::Shutdown => return Ok("server shutting down".into()),
                Step::Linger => return Ok(format!("session {}", self.status.as_str())),
                Step::Client(None) | Step::Client(Some(Message::Close(_))) => return Err(Gone),
                Step::Client(Some(msg)) => self.on_client(sink, msg).await?,
                Step::Live(Err(RecvError::Lagged(missed))) => {
                    tracing::debug!(missed, "viewer lagged; resyncing from the recording");
                    self.replay(sink, None).await?;
                }
                Step::Live(Err(RecvError::Closed)) => return Ok("live feed closed".into()),
                Step::Live(Ok(report)) => {
                    held = self.on_live(sink, &mut sub, &report).await?;
                }
                Step::Poll => self.poll_status(sink).await?,
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
        if let Err(err) = self.act(action).await {
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

    async fn act(&self, action: ClientAction) -> Result<(), ApiError> {
        let (st, id) = (&self.st, self.session);
        match action {
            ClientAction::Input { data } if !data.is_empty() => {
                st.broker
                    .publish_input(id, data.as_bytes(), &self.user.username)
                    .await?
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
            } => {
                let req = RunRequest {
                    command,
                    script,
                    task,
                    ..Default::default()
                };
                runs::start_run(st, id, &self.user, &req, true).await?;
            }
            ClientAction::Close => sessions::end_session(st, id, &self.user).await?,
        }
        Ok(())
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
        let mut frame = data.to_vec();
        let mut seq = meta.seq;
        let mut held = None;
        while frame.len() < FRAME_MAX {
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
        self.send(sink, Message::Binary(encode_frame(seq, &frame).into()))
            .await?;
        self.last_sent = seq;
        Ok(held)
    }

    async fn on_event<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        event: &Event,
    ) -> Result<(), Gone> {
        match event {
            Event::HostKey { .. } | Event::Connected { .. } => return Ok(()),
            Event::Status { status, .. } => {
                if !self.status.is_live() {
                    return Ok(());
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

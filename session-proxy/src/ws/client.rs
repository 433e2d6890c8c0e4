//! What a viewer sends, read on a task of its own: input, resize and
//! cancel go to the runner the moment they arrive, whatever the output side
//! is doing (a flood the browser cannot draw must never hold up Ctrl-C).
//! Acknowledgements move the viewer's window; errors and a link viewer's
//! leaving go to the output side to be told or acted on.

use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::{Stream, StreamExt};
use shellway_common::event::ViewMode;
use shellway_common::{BrowserEvent, ClientAction, Control, ErrorKind};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::inputs::Typed;
use crate::service::runs::{self, RunRequest};
use crate::service::{sessions, ServiceError};
use crate::state::AppState;

/// Largest client frame accepted by the parser.
const MAX_ACTION: usize = 256 * 1024;
/// Input one viewer may send: a sustained rate and a burst. A viewer over
/// it is slowed down (its socket is read later), so one flooding
/// controller cannot starve the others.
const INPUT_RATE: f64 = 1024.0 * 1024.0;
const INPUT_BURST: f64 = 1024.0 * 1024.0;

/// What the reading side hands the output side.
#[derive(Debug)]
pub(super) enum FromClient {
    /// Tell the client this (an error about what it sent).
    Event(BrowserEvent),
    /// The viewer leaves (a link viewer's `close`).
    Leave { reason: String, by: String },
    /// The viewer typed an interrupt (Ctrl-C, Ctrl-Z, Ctrl-\\): output
    /// still waiting for it is of no interest any more.
    Interrupted,
}

/// Keys that interrupt what the terminal is doing.
const INTERRUPTS: [u8; 3] = [0x03, 0x1a, 0x1c];

/// The reading side of one viewer.
pub(super) struct ClientSide {
    pub(super) st: AppState,
    pub(super) user: AuthUser,
    pub(super) session: Uuid,
    pub(super) mode: ViewMode,
    /// The link this viewer came through, if any.
    pub(super) share: Option<Uuid>,
    pub(super) acked: watch::Sender<u64>,
    pub(super) out: mpsc::Sender<FromClient>,
}

impl ClientSide {
    /// Reads until the client goes away (or the output side does).
    pub(super) async fn run<St, E>(self, mut stream: St)
    where
        St: Stream<Item = Result<Message, E>> + Unpin,
    {
        let mut budget = InputBudget::new();
        while let Some(Ok(msg)) = stream.next().await {
            let reply = match msg {
                Message::Text(text) => self.on_text(text.as_str(), &mut budget).await,
                Message::Binary(_) => Some(FromClient::Event(BrowserEvent::error(
                    ErrorKind::Protocol,
                    "binary frames are not accepted; send JSON text frames with an \"action\"",
                ))),
                Message::Close(_) => break,
                _ => None,
            };
            if let Some(reply) = reply {
                if self.out.send(reply).await.is_err() {
                    break;
                }
            }
        }
    }

    async fn on_text(&self, text: &str, budget: &mut InputBudget) -> Option<FromClient> {
        let action = match ClientAction::parse(text, MAX_ACTION) {
            Ok(a) => a,
            Err(e) => {
                return Some(FromClient::Event(BrowserEvent::error(
                    ErrorKind::Protocol,
                    e.to_string(),
                )))
            }
        };
        match self.act(action, budget).await {
            Ok(reply) => reply,
            Err(Refusal::ReadOnly(what)) => Some(FromClient::Event(BrowserEvent::error(
                ErrorKind::Protocol,
                format!("{what} refused: you are watching this session read-only"),
            ))),
            Err(Refusal::Service(err)) => Some(FromClient::Event(crate::error::ws_event(err))),
        }
    }

    async fn act(
        &self,
        action: ClientAction,
        budget: &mut InputBudget,
    ) -> Result<Option<FromClient>, Refusal> {
        if self.mode == ViewMode::View {
            if let Some(what) = refused_when_viewing(&action) {
                return Err(Refusal::ReadOnly(what));
            }
        }
        let (st, id) = (&self.st, self.session);
        match action {
            ClientAction::Ack { seq } => {
                self.acked.send_if_modified(|acked| {
                    let newer = seq > *acked;
                    *acked = (*acked).max(seq);
                    newer
                });
            }
            ClientAction::Input { data } if !data.is_empty() => {
                let wait = budget.take(data.len());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                st.broker
                    .publish_input(id, data.as_bytes(), &self.user.username)
                    .await
                    .map_err(ServiceError::from)?;
                if data.bytes().any(|b| INTERRUPTS.contains(&b)) {
                    // Best effort: a full channel means the output side is
                    // busy with this viewer's messages anyway.
                    let _ = self.out.try_send(FromClient::Interrupted);
                }
                let typed = Typed {
                    session: id,
                    user: (!self.user.id.is_nil()).then_some(self.user.id),
                    username: self.user.username.clone(),
                    share: self.share,
                    data: data.into_bytes(),
                };
                st.inputs.record(typed).await;
            }
            ClientAction::Input { .. } => {}
            ClientAction::Resize { cols, rows } => st
                .broker
                .publish_control(id, &Control::Resize { cols, rows }, true)
                .await
                .map_err(ServiceError::from)?,
            ClientAction::Cancel { run } => st
                .broker
                .publish_control(id, &Control::Cancel { run }, true)
                .await
                .map_err(ServiceError::from)?,
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
                runs::start(st, id, &self.user, &req, true).await?;
            }
            // Someone who joined by a link leaves; only the owner (or an
            // admin) ends the session for everybody.
            ClientAction::Close if self.share.is_some() => {
                return Ok(Some(FromClient::Leave {
                    reason: "left".into(),
                    by: self.user.username.clone(),
                }));
            }
            ClientAction::Close => sessions::end_now(st, id, &self.user).await?,
        }
        Ok(None)
    }
}

/// Why an action was not done.
#[derive(Debug)]
enum Refusal {
    /// A read-only viewer tried to change the session.
    ReadOnly(&'static str),
    Service(ServiceError),
}

impl From<ServiceError> for Refusal {
    fn from(err: ServiceError) -> Self {
        Self::Service(err)
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
}

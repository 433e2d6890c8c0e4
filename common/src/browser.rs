//! What a browser receives as JSON text frames (`event`), apart from the
//! binary output frames: see docs/protocol.md, "WebSocket".
//!
//! A [`BrowserEvent`] is not a runner's [`Event`]: the broker carries
//! things a browser must never see (a host key being pinned, a share link
//! being revoked), and the proxy makes some events of its own (`connected`,
//! `chunk`, `link`). [`BrowserEvent::from_runner`] is the one way from the
//! one to the other, and it is an allow-list: an event reaches a browser
//! only if it is named there, so a variant added to [`Event`] stays on the
//! broker until someone decides it may go out.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::control::RunKind;
use crate::event::{ErrorKind, Event, RunStatus, SessionStatus, ViewMode, Viewer};
use crate::output::Stream;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BrowserEvent {
    /// First frame on every WebSocket.
    Connected {
        session: Uuid,
        runner: Option<String>,
        mode: ViewMode,
        status: SessionStatus,
    },
    Status {
        status: SessionStatus,
        runner: Option<String>,
        message: Option<String>,
    },
    /// The current screen: `data` paints it as it is after output `seq`;
    /// live output continues with `seq + 1`.
    Snapshot {
        seq: u64,
        cols: u16,
        rows: u16,
        data: String,
    },
    Resized {
        seq: u64,
        index: u32,
        cols: u16,
        rows: u16,
    },
    Queued {
        run: Uuid,
        kind: RunKind,
        command: String,
        steps: u32,
    },
    Started {
        run: Uuid,
        kind: RunKind,
        command: String,
        steps: u32,
    },
    /// Exec output of a run (the WebSocket form of an `output` message).
    Chunk {
        run: Uuid,
        stream: Stream,
        seq: u64,
        data: String,
    },
    Progress {
        run: Uuid,
        current: u32,
        total: u32,
        step: String,
    },
    Canceling {
        run: Uuid,
    },
    Completed {
        run: Uuid,
        status: RunStatus,
        exit_code: Option<i32>,
        exit_signal: Option<String>,
        failed_step: Option<u32>,
        duration_ms: u64,
    },
    Presence {
        viewers: Vec<Viewer>,
    },
    Error {
        #[serde(rename = "type")]
        kind: ErrorKind,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<Uuid>,
    },
    Closed {
        reason: String,
        by: Option<String>,
    },
    /// The path between the session and this viewer through the broker was
    /// interrupted, or is back. The session itself goes on; after
    /// `restored` the viewer gets what it missed. Made by the proxy that
    /// serves the viewer.
    Link {
        state: LinkState,
        message: String,
    },
}

/// The state a `link` event announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Interrupted,
    Restored,
}

impl BrowserEvent {
    /// What a browser may see of a runner's event; `None` for what stays
    /// between the runners, the proxies and the recorder. Only the variants
    /// named here go out.
    pub fn from_runner(event: &Event) -> Option<Self> {
        let out = match event.clone() {
            Event::Status {
                status,
                runner,
                message,
            } => Self::Status {
                status,
                runner,
                message,
            },
            Event::Snapshot {
                seq,
                cols,
                rows,
                data,
                ..
            } => Self::Snapshot {
                seq,
                cols,
                rows,
                data,
            },
            Event::Resized {
                seq,
                index,
                cols,
                rows,
            } => Self::Resized {
                seq,
                index,
                cols,
                rows,
            },
            Event::Queued {
                run,
                kind,
                command,
                steps,
            } => Self::Queued {
                run,
                kind,
                command,
                steps,
            },
            Event::Started {
                run,
                kind,
                command,
                steps,
            } => Self::Started {
                run,
                kind,
                command,
                steps,
            },
            Event::Progress {
                run,
                current,
                total,
                step,
            } => Self::Progress {
                run,
                current,
                total,
                step,
            },
            Event::Canceling { run } => Self::Canceling { run },
            Event::Completed {
                run,
                status,
                exit_code,
                exit_signal,
                failed_step,
                duration_ms,
            } => Self::Completed {
                run,
                status,
                exit_code,
                exit_signal,
                failed_step,
                duration_ms,
            },
            Event::Presence { viewers } => Self::Presence { viewers },
            Event::Error { kind, message, run } => Self::Error { kind, message, run },
            Event::Closed { reason, by } => Self::Closed { reason, by },
            _ => return None,
        };
        Some(out)
    }

    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Error {
            kind,
            message: message.into(),
            run: None,
        }
    }

    /// The `link` event of `state`, worded for a person.
    pub fn link(state: LinkState) -> Self {
        let message = match state {
            LinkState::Interrupted => {
                "connection to the session interrupted (message broker unreachable); \
                 the session keeps running and its output is kept"
            }
            LinkState::Restored => "connection to the session restored",
        };
        Self::Link {
            state,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn run() -> Uuid {
        Uuid::from_u128(7)
    }

    /// One of each runner event, with what a browser must get from it.
    fn cases() -> Vec<(Event, Option<Value>)> {
        let r = run();
        vec![
            (
                Event::Status {
                    status: SessionStatus::Open,
                    runner: Some("r1".into()),
                    message: None,
                },
                Some(json!({"event": "status", "status": "open", "runner": "r1", "message": null})),
            ),
            (
                Event::HostKey {
                    key: "ssh-ed25519 AAAA".into(),
                    fingerprint: "SHA256:x".into(),
                },
                None,
            ),
            (
                Event::Snapshot {
                    request: Some(Uuid::from_u128(9)),
                    seq: 5,
                    cols: 80,
                    rows: 24,
                    data: "$ ".into(),
                },
                Some(json!({"event": "snapshot", "seq": 5, "cols": 80, "rows": 24, "data": "$ "})),
            ),
            (
                Event::Resized {
                    seq: 3,
                    index: 1,
                    cols: 100,
                    rows: 30,
                },
                Some(json!({"event": "resized", "seq": 3, "index": 1, "cols": 100, "rows": 30})),
            ),
            (
                Event::Queued {
                    run: r,
                    kind: RunKind::Command,
                    command: "ls".into(),
                    steps: 1,
                },
                Some(
                    json!({"event": "queued", "run": r, "kind": "command", "command": "ls", "steps": 1}),
                ),
            ),
            (
                Event::Started {
                    run: r,
                    kind: RunKind::Batch,
                    command: "batch (2 steps)".into(),
                    steps: 2,
                },
                Some(
                    json!({"event": "started", "run": r, "kind": "batch", "command": "batch (2 steps)", "steps": 2}),
                ),
            ),
            (
                Event::Progress {
                    run: r,
                    current: 1,
                    total: 2,
                    step: "ls".into(),
                },
                Some(
                    json!({"event": "progress", "run": r, "current": 1, "total": 2, "step": "ls"}),
                ),
            ),
            (
                Event::Canceling { run: r },
                Some(json!({"event": "canceling", "run": r})),
            ),
            (
                Event::Completed {
                    run: r,
                    status: RunStatus::Failed,
                    exit_code: Some(2),
                    exit_signal: None,
                    failed_step: Some(1),
                    duration_ms: 12,
                },
                Some(
                    json!({"event": "completed", "run": r, "status": "failed", "exit_code": 2,
                    "exit_signal": null, "failed_step": 1, "duration_ms": 12}),
                ),
            ),
            (
                Event::Presence {
                    viewers: vec![Viewer {
                        user: "ann".into(),
                        mode: ViewMode::View,
                    }],
                },
                Some(json!({"event": "presence", "viewers": [{"user": "ann", "mode": "view"}]})),
            ),
            (
                Event::Revoked {
                    share: Uuid::from_u128(3),
                    by: "admin".into(),
                },
                None,
            ),
            (
                Event::error(ErrorKind::Ssh, "refused"),
                Some(json!({"event": "error", "type": "ssh", "message": "refused"})),
            ),
            (
                Event::Closed {
                    reason: "idle".into(),
                    by: None,
                },
                Some(json!({"event": "closed", "reason": "idle", "by": null})),
            ),
        ]
    }

    #[test]
    fn browsers_get_exactly_the_allowed_events_in_their_documented_shape() {
        for (event, expected) in cases() {
            let out = BrowserEvent::from_runner(&event);
            let json = out
                .as_ref()
                .map(|e| serde_json::to_value(e).unwrap_or_default());
            assert_eq!(json, expected, "{event:?}");
        }
    }

    #[test]
    fn what_stays_internal_never_reaches_a_browser() {
        let key = Event::HostKey {
            key: "ssh-ed25519 AAAA-secret-looking".into(),
            fingerprint: "SHA256:x".into(),
        };
        assert_eq!(BrowserEvent::from_runner(&key), None);
        let revoked = Event::Revoked {
            share: Uuid::from_u128(3),
            by: "admin".into(),
        };
        assert_eq!(BrowserEvent::from_runner(&revoked), None);
    }

    #[test]
    fn events_the_proxy_makes_round_trip() {
        for event in [
            BrowserEvent::link(LinkState::Interrupted),
            BrowserEvent::link(LinkState::Restored),
            BrowserEvent::Connected {
                session: Uuid::from_u128(1),
                runner: None,
                mode: ViewMode::Control,
                status: SessionStatus::Pending,
            },
            BrowserEvent::Chunk {
                run: run(),
                stream: Stream::Stderr,
                seq: 4,
                data: "oops\n".into(),
            },
            BrowserEvent::error(ErrorKind::Protocol, "unknown action \"dance\""),
        ] {
            let json = serde_json::to_string(&event).unwrap_or_default();
            let back: BrowserEvent = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back, event);
        }
        let link =
            serde_json::to_value(BrowserEvent::link(LinkState::Interrupted)).unwrap_or_default();
        assert_eq!(link["state"], "interrupted");
    }
}

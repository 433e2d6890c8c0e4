//! Events on the broker: what runners report on the events exchange (and
//! the few a proxy publishes there for the others, `revoked`, or for the
//! viewers of a session it ended, `status`, `error`). Browsers get
//! [`crate::browser::BrowserEvent`]s, made from these by an allow-list.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::control::RunKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The session moved to a new status.
    Status {
        status: SessionStatus,
        runner: Option<String>,
        message: Option<String>,
    },
    /// The runner saw this server key (recorded; pinned under `tofu`).
    HostKey {
        key: String,
        fingerprint: String,
    },
    /// The current screen, for a late joiner, before live output: `data`
    /// is terminal output that paints the screen as it is after output
    /// `seq` (live output continues with `seq + 1`). `request` pairs it with
    /// the `Control::Snapshot` that asked; clients may ignore it.
    Snapshot {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<Uuid>,
        seq: u64,
        cols: u16,
        rows: u16,
        data: String,
    },
    /// The PTY was resized after output `seq` (0: before any output):
    /// output up to `seq` was written at the old size. `index` counts the
    /// session's resizes from 1 (the recorder's idempotency key). Viewers
    /// may ignore it: their own size follows their window.
    Resized {
        seq: u64,
        index: u32,
        cols: u16,
        rows: u16,
    },
    /// The runner accepted a run; it starts when the runs ahead of it in
    /// the session are done (`started`).
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
    /// A share link was revoked: its viewers are disconnected. Published by
    /// the proxy that revoked it; never forwarded to clients.
    Revoked {
        share: Uuid,
        by: String,
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
}

impl Event {
    /// The `<kind>` part of the routing key `<session>.<kind>`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::HostKey { .. } => "host_key",
            Self::Snapshot { .. } => "snapshot",
            Self::Resized { .. } => "resized",
            Self::Queued { .. } => "queued",
            Self::Started { .. } => "started",
            Self::Progress { .. } => "progress",
            Self::Canceling { .. } => "canceling",
            Self::Completed { .. } => "completed",
            Self::Presence { .. } => "presence",
            Self::Revoked { .. } => "revoked",
            Self::Error { .. } => "error",
            Self::Closed { .. } => "closed",
        }
    }

    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Error {
            kind,
            message: message.into(),
            run: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewMode {
    /// May type, resize and run.
    Control,
    /// Read-only.
    View,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    pub user: String,
    pub mode: ViewMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Pending,
    Connecting,
    Open,
    Closed,
    Failed,
    Lost,
    Rejected,
}

impl SessionStatus {
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Connecting,
        Self::Open,
        Self::Closed,
        Self::Failed,
        Self::Lost,
        Self::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Connecting => "connecting",
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Failed => "failed",
            Self::Lost => "lost",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// A live session may still produce output.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Pending | Self::Connecting | Self::Open)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Ok,
    Failed,
    Error,
    Canceled,
    Lost,
}

impl RunStatus {
    pub const ALL: [Self; 7] = [
        Self::Queued,
        Self::Running,
        Self::Ok,
        Self::Failed,
        Self::Error,
        Self::Canceled,
        Self::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Error => "error",
            Self::Canceled => "canceled",
            Self::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The `type` of an `error` event: what went wrong, in the user's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Connecting, authenticating or host-key verification failed.
    Ssh,
    /// A job host could not be reached: no TCP connection, or no SSH
    /// server answered in time (sessions people open report `ssh`).
    Unreachable,
    /// Something failed while the session was running.
    Runtime,
    /// Not allowed.
    Auth,
    /// The client sent something the protocol does not allow.
    Protocol,
    /// No runner could take the session.
    Capacity,
    /// The runner owning the session disappeared.
    Lost,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_event_uses_type_field() {
        let e = Event::error(ErrorKind::Protocol, "unknown action \"dance\"");
        let json = serde_json::to_string(&e).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"event":"error","type":"protocol","message":"unknown action \"dance\""}"#
        );
        let back: Event = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, e);
        assert_eq!(back.kind(), "error");
    }

    #[test]
    fn statuses_round_trip_as_strings() {
        for s in SessionStatus::ALL {
            assert_eq!(SessionStatus::parse(s.as_str()), Some(s));
        }
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
        }
        assert!(SessionStatus::Open.is_live());
        assert!(!SessionStatus::Lost.is_live());
    }

    #[test]
    fn resized_event_round_trips_with_its_seq() {
        let e = Event::Resized {
            seq: 42,
            index: 2,
            cols: 97,
            rows: 30,
        };
        let json = serde_json::to_string(&e).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"event":"resized","seq":42,"index":2,"cols":97,"rows":30}"#
        );
        let back: Event = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, e);
        assert_eq!(back.kind(), "resized");
    }

    #[test]
    fn completed_event_round_trips() {
        let e = Event::Completed {
            run: Uuid::now_v7(),
            status: RunStatus::Failed,
            exit_code: Some(3),
            exit_signal: None,
            failed_step: Some(2),
            duration_ms: 12,
        };
        let json = serde_json::to_string(&e).unwrap_or_default();
        let back: Event = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, e);
    }
}

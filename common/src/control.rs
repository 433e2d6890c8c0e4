//! What a proxy tells the runner that owns a session, on the session's input
//! queue. Keystrokes travel as raw bytes (message type `input`); everything
//! else is one of these, as JSON (message type `control`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Control {
    Resize {
        cols: u16,
        rows: u16,
    },
    Run(RunSpec),
    /// Cancel one run, or the current one when `run` is absent.
    Cancel {
        run: Option<Uuid>,
    },
    /// End the session: close the SSH connection.
    Close {
        reason: String,
        by: Option<String>,
    },
    /// Render the current screen for a late joiner; answered by an
    /// `Event::Snapshot` carrying the same `request`.
    Snapshot {
        request: Uuid,
    },
    /// The complete list of one proxy's viewers of this session. The runner
    /// merges the lists of all proxies into `Event::Presence`; a list that is
    /// not refreshed within `PRESENCE_TTL` is dropped (its proxy died).
    Presence {
        proxy: String,
        viewers: Vec<crate::event::Viewer>,
    },
    /// From the recorder: these output seqs (inclusive ranges) are stored.
    /// The runner keeps output until it is, and publishes again after a
    /// reconnect what is not.
    Recorded {
        seqs: Vec<[u64; 2]>,
    },
}

/// `seqs` as inclusive ranges of consecutive numbers, in order.
pub fn seq_ranges(mut seqs: Vec<u64>) -> Vec<[u64; 2]> {
    seqs.sort_unstable();
    seqs.dedup();
    let mut ranges: Vec<[u64; 2]> = Vec::new();
    for seq in seqs {
        match ranges.last_mut() {
            Some(last) if last[1] + 1 == seq => last[1] = seq,
            _ => ranges.push([seq, seq]),
        }
    }
    ranges
}

/// How often a proxy re-sends its viewer lists.
pub const PRESENCE_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a proxy's viewer list counts without a refresh.
pub const PRESENCE_TTL: std::time::Duration = std::time::Duration::from_secs(16);

/// One run (command, task or batch) to execute in the session, step by step.
/// Runs of a session execute one at a time, in the order they arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    pub run: Uuid,
    pub kind: RunKind,
    /// What people see: the command, the task name or `batch (3 steps)`.
    pub label: String,
    /// Shell command lines; a batch stops at the first failing step.
    pub steps: Vec<String>,
    pub by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Command,
    Task,
    Batch,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Task => "task",
            Self::Batch => "batch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_seqs_travel_as_ranges() {
        assert_eq!(
            seq_ranges(vec![7, 3, 4, 5, 9, 4, 10]),
            vec![[3, 5], [7, 7], [9, 10]]
        );
        assert!(seq_ranges(Vec::new()).is_empty());
        let c = Control::Recorded {
            seqs: vec![[1, 40], [42, 42]],
        };
        let json = serde_json::to_string(&c).unwrap_or_default();
        assert_eq!(json, r#"{"op":"recorded","seqs":[[1,40],[42,42]]}"#);
    }

    #[test]
    fn control_messages_are_tagged_by_op() {
        let c = Control::Resize {
            cols: 120,
            rows: 40,
        };
        let json = serde_json::to_string(&c).unwrap_or_default();
        assert_eq!(json, r#"{"op":"resize","cols":120,"rows":40}"#);
        let run = Control::Run(RunSpec {
            run: Uuid::nil(),
            kind: RunKind::Batch,
            label: "batch".into(),
            steps: vec!["cd /tmp".into(), "ls".into()],
            by: "alice".into(),
        });
        let json = serde_json::to_string(&run).unwrap_or_default();
        assert!(json.starts_with(r#"{"op":"run","run":"#), "{json}");
        let back: Control = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, run);
    }
}

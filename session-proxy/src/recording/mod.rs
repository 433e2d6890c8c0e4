//! Recordings beyond the raw output the recorder stores: resizes and run
//! markers (`store::recordings`), reading a recording back in bounded pages
//! (`store::recording_pages`), writing it as asciicast v2 (`asciicast`), and how long and
//! how much of it is kept (`retention`, the size cap in `store::recordings`).

pub(crate) mod asciicast;
pub(crate) mod retention;

use std::time::Duration;

/// How much recorded output is kept, and for how long. The default keeps
/// everything for ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingPolicy {
    /// Recordings of sessions that ended longer ago than this are deleted
    /// (the session and its runs stay in the logs).
    pub retention: Option<Duration>,
    /// Output bytes stored per session; later output is not stored (only
    /// its sequence numbers), and the recording says so.
    pub max_bytes: Option<u64>,
    /// How often the retention sweep looks for expired recordings.
    pub sweep_every: Duration,
}

impl Default for RecordingPolicy {
    fn default() -> Self {
        Self {
            retention: None,
            max_bytes: None,
            sweep_every: Duration::from_secs(3600),
        }
    }
}

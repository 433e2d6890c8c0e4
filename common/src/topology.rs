//! Names of every exchange and queue, derived from one prefix.
//!
//! The prefix (default `shellway`) lets several independent deployments, or
//! parallel test runs, share one RabbitMQ without seeing each other.

use uuid::Uuid;

/// AMQP message `type` of raw terminal input (body = bytes to write).
pub const KIND_INPUT: &str = "input";
/// AMQP message `type` of a JSON [`crate::Control`] message.
pub const KIND_CONTROL: &str = "control";
/// AMQP message `type` of raw output (body = bytes, meta in headers).
pub const KIND_OUTPUT: &str = "output";
/// AMQP message `type` of a JSON [`crate::Event`].
pub const KIND_EVENT: &str = "event";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new("shellway")
    }
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Durable queue of session-open requests; runners compete for them.
    pub fn requests(&self) -> String {
        format!("{}.requests", self.prefix)
    }

    /// Exchange that receives requests whose TTL ran out (nobody took them).
    pub fn rejected_exchange(&self) -> String {
        format!("{}.rejected", self.prefix)
    }

    /// Queue bound to [`Self::rejected_exchange`], consumed by proxies.
    pub fn rejected(&self) -> String {
        format!("{}.rejected", self.prefix)
    }

    /// Direct exchange for input to one session (routing key = session id).
    pub fn input_exchange(&self) -> String {
        format!("{}.input", self.prefix)
    }

    /// Per-session input queue, consumed exclusively by the owning runner.
    pub fn input_queue(&self, session: Uuid) -> String {
        format!("{}.in.{session}", self.prefix)
    }

    /// Topic exchange of everything runners report; key `<session>.<kind>`.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// Per-session, per-proxy output queue feeding that proxy's viewers.
    pub fn out_queue(&self, session: Uuid, proxy: &str) -> String {
        format!("{}.out.{session}.{proxy}", self.prefix)
    }

    /// Durable queue of the recorder, bound to every event.
    pub fn record_queue(&self) -> String {
        format!("{}.record", self.prefix)
    }

    /// What proxies ask of runners (host-key scans, vault re-seals); runners
    /// compete for them (`scan.rs`, `reseal.rs`).
    pub fn scans(&self) -> String {
        format!("{}.scans", self.prefix)
    }

    /// A proxy's queue of scan replies (exclusive, auto-delete).
    pub fn scan_replies(&self, proxy: &str) -> String {
        format!("{}.scan-replies.{proxy}", self.prefix)
    }

    /// Fanout exchange of runner heartbeats.
    pub fn runners_exchange(&self) -> String {
        format!("{}.runners", self.prefix)
    }

    /// Per-proxy queue of heartbeats (exclusive, auto-delete).
    pub fn heartbeat_queue(&self, proxy: &str) -> String {
        format!("{}.runners.{proxy}", self.prefix)
    }
}

/// Routing key of one event of a session.
pub fn event_key(session: Uuid, kind: &str) -> String {
    format!("{session}.{kind}")
}

/// Binding key that matches every event of one session.
pub fn session_binding(session: Uuid) -> String {
    format!("{session}.*")
}

/// Parses the session id out of an event routing key.
pub fn session_of_key(key: &str) -> Option<Uuid> {
    key.split_once('.')
        .and_then(|(id, _)| Uuid::parse_str(id).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_share_the_prefix() {
        let t = Topology::new("t1");
        let s = Uuid::nil();
        assert_eq!(t.requests(), "t1.requests");
        assert_eq!(
            t.input_queue(s),
            "t1.in.00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            t.out_queue(s, "p1"),
            "t1.out.00000000-0000-0000-0000-000000000000.p1"
        );
    }

    #[test]
    fn routing_keys_round_trip_the_session() {
        let s = Uuid::now_v7();
        assert_eq!(session_of_key(&event_key(s, "output")), Some(s));
        assert_eq!(session_of_key("garbage"), None);
        assert_eq!(session_of_key("nope.output"), None);
    }
}

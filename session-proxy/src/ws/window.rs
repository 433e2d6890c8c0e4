//! Flow control of one viewer: output sent but not yet acknowledged.
//!
//! A client that takes part (`?flow=true`) acknowledges the highest seq it has
//! drawn; the proxy sends it no more than `limit` bytes beyond that. A client
//! that does not take part has no window: the socket's own backpressure
//! holds it, and it is fed from the recording when it falls behind.

use std::collections::VecDeque;

#[derive(Debug)]
pub(super) struct Window {
    limit: Option<usize>,
    /// Output sent and not acknowledged: (last seq of a frame, its bytes).
    inflight: VecDeque<(u64, usize)>,
    bytes: usize,
}

impl Window {
    pub(super) fn new(limit: Option<usize>) -> Self {
        Self {
            limit,
            inflight: VecDeque::new(),
            bytes: 0,
        }
    }

    pub(super) fn is_flow_controlled(&self) -> bool {
        self.limit.is_some()
    }

    /// Notes output up to `seq` (of `bytes`) as sent.
    pub(super) fn sent(&mut self, seq: u64, bytes: usize) {
        if self.limit.is_some() {
            self.inflight.push_back((seq, bytes));
            self.bytes += bytes;
        }
    }

    /// Everything up to `seq` has been drawn.
    pub(super) fn ack(&mut self, seq: u64) {
        while let Some(&(sent, bytes)) = self.inflight.front() {
            if sent > seq {
                break;
            }
            self.inflight.pop_front();
            self.bytes -= bytes;
        }
    }

    /// Output sent and not yet acknowledged.
    pub(super) fn unacked(&self) -> usize {
        self.bytes
    }

    /// Bytes that may be sent now (unbounded without flow control).
    pub(super) fn room(&self) -> usize {
        self.limit
            .map_or(usize::MAX, |limit| limit.saturating_sub(self.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_open_the_window_by_the_bytes_they_cover() {
        let mut w = Window::new(Some(100));
        assert_eq!(w.room(), 100);
        w.sent(1, 40);
        w.sent(3, 50);
        assert_eq!(w.room(), 10);
        w.ack(2);
        assert_eq!(w.room(), 50, "seq 1 drawn; the frame ending at 3 is not");
        w.ack(3);
        assert_eq!(w.room(), 100);
        w.sent(4, 150);
        assert_eq!(w.room(), 0, "a frame may overshoot; then nothing more");
        w.ack(10);
        assert_eq!(w.room(), 100, "an ack beyond what was sent is harmless");
    }

    #[test]
    fn without_flow_control_there_is_no_limit() {
        let mut w = Window::new(None);
        w.sent(1, 1 << 30);
        assert_eq!(w.room(), usize::MAX);
        assert!(!w.is_flow_controlled());
    }
}

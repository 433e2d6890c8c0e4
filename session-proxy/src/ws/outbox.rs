//! What the live feed brought for one viewer and it has not been sent yet,
//! in order. The reports are shared with every other viewer of the session
//! (`Arc`), so holding them costs little; the viewer bounds how much output
//! it holds and skips ahead past that.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::bus::Report;

/// Events held behind output beyond this are dropped oldest first (a
/// client that reads nothing at all; output is skipped long before).
const MAX_EVENTS: usize = 4096;

/// How far back [`Recent`] looks (between one and two of these).
const RECENT: Duration = Duration::from_millis(250);

#[derive(Default)]
pub(super) struct Outbox {
    items: VecDeque<Arc<Report>>,
    output_bytes: usize,
    events: usize,
    recent: Recent,
}

/// Output that arrived lately, held or not: a flood in progress shows here
/// even at a moment the viewer has caught up (what the program printed
/// before a Ctrl-C is still on its way from the host).
#[derive(Default)]
struct Recent {
    start: Option<Instant>,
    current: usize,
    previous: usize,
}

impl Recent {
    fn roll(&mut self, now: Instant) {
        let Some(start) = self.start else {
            self.start = Some(now);
            return;
        };
        let age = now.saturating_duration_since(start);
        if age >= 2 * RECENT {
            (self.previous, self.current) = (0, 0);
            self.start = Some(now);
        } else if age >= RECENT {
            self.previous = std::mem::take(&mut self.current);
            self.start = Some(start + RECENT);
        }
    }

    fn note(&mut self, bytes: usize, now: Instant) {
        self.roll(now);
        self.current += bytes;
    }

    fn bytes(&mut self, now: Instant) -> usize {
        self.roll(now);
        self.previous + self.current
    }
}

impl Outbox {
    pub(super) fn push(&mut self, report: Arc<Report>) {
        match report.as_ref() {
            Report::Output { data, .. } => {
                self.output_bytes += data.len();
                self.recent.note(data.len(), Instant::now());
            }
            _ => self.events += 1,
        }
        self.items.push_back(report);
        if self.events > MAX_EVENTS {
            if let Some(i) = self.items.iter().position(|r| !is_output(r)) {
                self.items.remove(i);
                self.events -= 1;
                tracing::warn!("a viewer reads nothing; an event was dropped for it");
            }
        }
    }

    pub(super) fn front(&self) -> Option<&Arc<Report>> {
        self.items.front()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Report> {
        self.items.iter().map(Arc::as_ref)
    }

    pub(super) fn pop(&mut self) -> Option<Arc<Report>> {
        let report = self.items.pop_front()?;
        self.forget(&report);
        Some(report)
    }

    /// Puts back a report taken with `pop`, to be sent first.
    pub(super) fn unpop(&mut self, report: Arc<Report>) {
        match report.as_ref() {
            Report::Output { data, .. } => self.output_bytes += data.len(),
            _ => self.events += 1,
        }
        self.items.push_front(report);
    }

    fn forget(&mut self, report: &Report) {
        match report {
            Report::Output { data, .. } => self.output_bytes -= data.len(),
            _ => self.events -= 1,
        }
    }

    /// Output bytes held.
    pub(super) fn output_bytes(&self) -> usize {
        self.output_bytes
    }

    /// Output that arrived in the last quarter to half second.
    pub(super) fn recent_output(&mut self) -> usize {
        self.recent.bytes(Instant::now())
    }

    /// Reports held.
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops the held output, keeping the events in order.
    pub(super) fn drop_output(&mut self) {
        self.items.retain(|r| !is_output(r));
        self.output_bytes = 0;
    }
}

fn is_output(report: &Report) -> bool {
    matches!(report, Report::Output { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shellway_common::{ErrorKind, Event, OutputMeta, Stream};

    fn output(seq: u64, n: usize) -> Arc<Report> {
        Arc::new(Report::Output {
            meta: OutputMeta {
                seq,
                stream: Stream::Pty,
                run: None,
            },
            data: vec![b'x'; n].into(),
        })
    }

    fn event() -> Arc<Report> {
        Arc::new(Report::Event(Event::error(ErrorKind::Runtime, "e")))
    }

    #[test]
    fn recent_output_forgets_what_came_long_ago() {
        let t0 = Instant::now();
        let mut r = Recent::default();
        r.note(100, t0);
        r.note(10, t0 + RECENT);
        assert_eq!(r.bytes(t0 + RECENT), 110);
        assert_eq!(r.bytes(t0 + 2 * RECENT), 10);
        assert_eq!(r.bytes(t0 + 4 * RECENT), 0);
    }

    #[test]
    fn dropped_output_still_counts_as_recent() {
        let mut o = Outbox::default();
        o.push(output(1, 100));
        o.drop_output();
        assert_eq!((o.output_bytes(), o.recent_output()), (0, 100));
    }

    #[test]
    fn counts_output_bytes_and_skipping_keeps_the_events() {
        let mut o = Outbox::default();
        o.push(output(1, 10));
        o.push(event());
        o.push(output(2, 20));
        assert_eq!((o.output_bytes(), o.len()), (30, 3));
        let first = o.pop().unwrap_or_else(|| panic!("empty"));
        assert_eq!(o.output_bytes(), 20);
        o.unpop(first);
        assert_eq!(o.output_bytes(), 30);
        o.drop_output();
        assert_eq!((o.output_bytes(), o.len()), (0, 1));
        assert!(matches!(o.pop().as_deref(), Some(Report::Event(_))));
        assert!(o.is_empty());
    }
}

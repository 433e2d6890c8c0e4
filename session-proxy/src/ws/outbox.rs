//! What the live feed brought for one viewer and it has not been sent yet,
//! in order. The reports are shared with every other viewer of the session
//! (`Arc`), so holding them costs little; the viewer bounds how much output
//! it holds and skips ahead past that.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::bus::Report;

/// Events held behind output beyond this are dropped oldest first (a
/// client that reads nothing at all; output is skipped long before).
const MAX_EVENTS: usize = 4096;

#[derive(Default)]
pub(super) struct Outbox {
    items: VecDeque<Arc<Report>>,
    output_bytes: usize,
    events: usize,
}

impl Outbox {
    pub(super) fn push(&mut self, report: Arc<Report>) {
        match report.as_ref() {
            Report::Output { data, .. } => self.output_bytes += data.len(),
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

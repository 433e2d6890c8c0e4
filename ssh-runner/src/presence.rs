//! Who watches a session, across proxies. Each proxy sends the complete
//! list of its own viewers (on every change and every `PRESENCE_REFRESH`);
//! the runner, the one place every proxy's messages meet, merges them and
//! publishes the result. A list not refreshed within `PRESENCE_TTL` is
//! dropped: its proxy died and took its viewers with it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shellway_common::event::Viewer;

#[derive(Default)]
pub(crate) struct Board {
    proxies: BTreeMap<String, (Vec<Viewer>, Instant)>,
    published: Vec<Viewer>,
}

impl Board {
    /// Records one proxy's list; returns the merged list if it changed.
    pub(crate) fn update(
        &mut self,
        proxy: String,
        viewers: Vec<Viewer>,
        now: Instant,
    ) -> Option<Vec<Viewer>> {
        if viewers.is_empty() {
            self.proxies.remove(&proxy);
        } else {
            self.proxies.insert(proxy, (viewers, now));
        }
        self.changed()
    }

    /// Whether anyone watches the session, on any proxy.
    pub(crate) fn watched(&self) -> bool {
        !self.published.is_empty()
    }

    /// The merged list as last published.
    pub(crate) fn current(&self) -> &[Viewer] {
        &self.published
    }

    /// Drops lists older than `ttl`; returns the merged list if it changed.
    pub(crate) fn expire(&mut self, now: Instant, ttl: Duration) -> Option<Vec<Viewer>> {
        self.proxies
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) <= ttl);
        self.changed()
    }

    fn changed(&mut self) -> Option<Vec<Viewer>> {
        let merged: Vec<Viewer> = self
            .proxies
            .values()
            .flat_map(|(viewers, _)| viewers.iter().cloned())
            .collect();
        if merged == self.published {
            return None;
        }
        self.published = merged.clone();
        Some(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shellway_common::event::ViewMode;

    fn v(user: &str, mode: ViewMode) -> Viewer {
        Viewer {
            user: user.into(),
            mode,
        }
    }

    #[test]
    fn lists_of_several_proxies_are_merged_and_only_changes_reported() {
        let mut board = Board::default();
        let t = Instant::now();
        let a = vec![v("alice", ViewMode::Control)];
        assert_eq!(board.update("p1".into(), a.clone(), t), Some(a.clone()));
        assert_eq!(board.update("p1".into(), a.clone(), t), None);
        let merged = board.update("p2".into(), vec![v("bob", ViewMode::View)], t);
        assert_eq!(
            merged,
            Some(vec![
                v("alice", ViewMode::Control),
                v("bob", ViewMode::View)
            ])
        );
        assert_eq!(
            board.update("p1".into(), vec![], t),
            Some(vec![v("bob", ViewMode::View)])
        );
    }

    #[test]
    fn a_silent_proxy_loses_its_viewers() {
        let mut board = Board::default();
        let t = Instant::now();
        board.update("p1".into(), vec![v("alice", ViewMode::Control)], t);
        let ttl = Duration::from_secs(16);
        assert_eq!(board.expire(t + Duration::from_secs(10), ttl), None);
        assert_eq!(board.expire(t + Duration::from_secs(17), ttl), Some(vec![]));
    }
}

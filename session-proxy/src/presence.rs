//! This proxy's viewers of each session, told to the session's runner.
//!
//! The runner merges the lists of every proxy into the `presence` event all
//! viewers get (see `ssh-runner/src/presence.rs`). Lists are complete, so
//! the newest always wins; one task sends them in order, on every change
//! and every `PRESENCE_REFRESH` (which also lets the runner drop the list of
//! a proxy that died).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use shellway_common::control::PRESENCE_REFRESH;
use shellway_common::event::Viewer;
use shellway_common::Control;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::Broker;

#[derive(Clone)]
pub(crate) struct Presence {
    inner: Arc<Inner>,
}

struct Inner {
    proxy_id: String,
    next: AtomicU64,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    local: HashMap<Uuid, BTreeMap<u64, Viewer>>,
    /// This proxy's viewers through each share link.
    links: HashMap<Uuid, usize>,
    /// The session-wide count from the latest `presence` event seen here.
    totals: HashMap<Uuid, usize>,
    dirty: HashSet<Uuid>,
}

/// Who takes a seat: the last seats of a session are kept for its owner
/// and administrators, so link viewers cannot lock them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seat {
    Owner,
    Admin,
    Link(Uuid),
}

/// Limits on the viewers of one session (see docs/configuration.md).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seats {
    /// Viewers one session accepts, owner included.
    pub max: usize,
    /// Of those, seats only the owner and administrators may take.
    pub reserved: usize,
    /// Viewers one share link admits (counted per proxy).
    pub per_link: usize,
}

/// Why a viewer was refused a seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NoSeat {
    #[error("this session already has {0} viewers, the most it accepts")]
    Full(usize),
    #[error("this session has no room for more viewers through links ({0} seats are kept for its owner)")]
    Reserved(usize),
    #[error("this link already has {0} viewers, the most one link admits")]
    LinkFull(usize),
}

/// One attached viewer; dropping it removes the viewer.
pub(crate) struct Attendance {
    inner: Arc<Inner>,
    session: Uuid,
    key: u64,
    link: Option<Uuid>,
}

impl Drop for Attendance {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if let Some(viewers) = state.local.get_mut(&self.session) {
            viewers.remove(&self.key);
        }
        if let Some(link) = self.link {
            if let Some(n) = state.links.get_mut(&link) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    state.links.remove(&link);
                }
            }
        }
        state.dirty.insert(self.session);
        drop(state);
        self.inner.changed.notify_one();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Presence {
    pub(crate) fn new(proxy_id: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                proxy_id,
                next: AtomicU64::new(0),
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
        }
    }

    /// Adds a viewer unless the session has no seat for it: `max` viewers
    /// in all (as far as this proxy knows: its own, or the runner's latest
    /// total if larger), the last `reserved` of them for the owner and
    /// administrators, and `per_link` through one link.
    pub(crate) fn attend(
        &self,
        session: Uuid,
        viewer: Viewer,
        seat: Seat,
        seats: Seats,
    ) -> Result<Attendance, NoSeat> {
        let mut state = self.inner.lock();
        let here = state.local.get(&session).map_or(0, BTreeMap::len);
        let total = state.totals.get(&session).copied().unwrap_or(0).max(here);
        if total >= seats.max {
            return Err(NoSeat::Full(seats.max));
        }
        let link = match seat {
            Seat::Owner | Seat::Admin => None,
            Seat::Link(link) => {
                if total >= seats.max.saturating_sub(seats.reserved) {
                    return Err(NoSeat::Reserved(seats.reserved));
                }
                if state.links.get(&link).copied().unwrap_or(0) >= seats.per_link {
                    return Err(NoSeat::LinkFull(seats.per_link));
                }
                *state.links.entry(link).or_default() += 1;
                Some(link)
            }
        };
        let key = self.inner.next.fetch_add(1, Ordering::Relaxed);
        state.local.entry(session).or_default().insert(key, viewer);
        // Counted at once, so a burst of joins cannot overshoot `max`.
        state.totals.insert(session, total + 1);
        state.dirty.insert(session);
        drop(state);
        self.inner.changed.notify_one();
        Ok(Attendance {
            inner: self.inner.clone(),
            session,
            key,
            link,
        })
    }

    /// Notes the session-wide viewer count from a `presence` event.
    pub(crate) fn note_total(&self, session: Uuid, total: usize) {
        self.inner.lock().totals.insert(session, total);
    }

    /// Sends changed lists (and, every refresh, all lists) until shutdown.
    pub(crate) async fn run(self, broker: Broker, shutdown: CancellationToken) {
        let mut refresh = tokio::time::interval(PRESENCE_REFRESH);
        loop {
            let everything = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.inner.changed.notified() => false,
                _ = refresh.tick() => true,
            };
            for (session, viewers) in self.take_changes(everything) {
                let control = Control::Presence {
                    proxy: self.inner.proxy_id.clone(),
                    viewers,
                };
                if let Err(err) = broker.publish_control(session, &control, false).await {
                    tracing::debug!(session_id = %session, error = %err, "cannot send presence");
                }
            }
        }
    }

    fn take_changes(&self, everything: bool) -> Vec<(Uuid, Vec<Viewer>)> {
        let mut state = self.inner.lock();
        let mut sessions: Vec<Uuid> = state.dirty.drain().collect();
        if everything {
            sessions.extend(state.local.keys().copied());
            sessions.sort();
            sessions.dedup();
        }
        let mut out = Vec::with_capacity(sessions.len());
        for session in sessions {
            let viewers: Vec<Viewer> = state
                .local
                .get(&session)
                .map(|v| v.values().cloned().collect())
                .unwrap_or_default();
            if viewers.is_empty() {
                state.local.remove(&session);
                state.totals.remove(&session);
            }
            out.push((session, viewers));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shellway_common::event::ViewMode;

    fn viewer(user: &str) -> Viewer {
        Viewer {
            user: user.into(),
            mode: ViewMode::View,
        }
    }

    fn seats(max: usize) -> Seats {
        Seats {
            max,
            reserved: 0,
            per_link: max,
        }
    }

    #[test]
    fn viewers_are_bounded_and_leaving_is_reported() {
        let p = Presence::new("p1".into());
        let s = Uuid::now_v7();
        let a = p.attend(s, viewer("a"), Seat::Owner, seats(2));
        let b = p.attend(s, viewer("b"), Seat::Admin, seats(2));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(
            p.attend(s, viewer("c"), Seat::Admin, seats(2)).err(),
            Some(NoSeat::Full(2)),
            "third viewer refused"
        );
        let changes = p.take_changes(false);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].1.len(), 2);
        drop(a);
        let changes = p.take_changes(false);
        assert_eq!(changes[0].1, vec![viewer("b")]);
        p.note_total(s, 1);
        assert!(
            p.attend(s, viewer("c"), Seat::Owner, seats(2)).is_ok(),
            "room again"
        );
    }

    #[test]
    fn link_viewers_leave_the_reserved_seats_to_the_owner() {
        let p = Presence::new("p1".into());
        let s = Uuid::now_v7();
        let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
        let limits = Seats {
            max: 4,
            reserved: 1,
            per_link: 2,
        };
        let a = p.attend(s, viewer("a"), Seat::Link(one), limits);
        let b = p.attend(s, viewer("b"), Seat::Link(one), limits);
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(
            p.attend(s, viewer("c"), Seat::Link(one), limits).err(),
            Some(NoSeat::LinkFull(2))
        );
        let c = p.attend(s, viewer("c"), Seat::Link(two), limits);
        assert!(c.is_ok(), "another link has room");
        assert_eq!(
            p.attend(s, viewer("d"), Seat::Link(two), limits).err(),
            Some(NoSeat::Reserved(1)),
            "the last seat is not for links"
        );
        let owner = p.attend(s, viewer("owner"), Seat::Owner, limits);
        assert!(owner.is_ok(), "the owner gets the kept seat");
        drop(a);
        drop(owner);
        // The runner's next presence event tells the new total.
        p.note_total(s, 2);
        assert!(
            p.attend(s, viewer("e"), Seat::Link(one), limits).is_ok(),
            "a seat of link one was given back"
        );
    }

    #[test]
    fn other_proxies_viewers_count_against_the_limit() {
        let p = Presence::new("p1".into());
        let s = Uuid::now_v7();
        p.note_total(s, 5);
        assert!(p.attend(s, viewer("a"), Seat::Owner, seats(5)).is_err());
        assert!(p.attend(s, viewer("a"), Seat::Owner, seats(6)).is_ok());
    }
}

//! The runner's capacity: a semaphore with one permit per session, and the
//! ids of the sessions holding one (reported in heartbeats).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

#[derive(Clone)]
pub(crate) struct Slots {
    permits: Arc<Semaphore>,
    held: Arc<Mutex<HashSet<Uuid>>>,
}

/// A permit not yet tied to a session (the request is still being read).
pub(crate) struct Permit(OwnedSemaphorePermit);

/// One session's place on this runner; freed when dropped.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    session: Uuid,
    held: Arc<Mutex<HashSet<Uuid>>>,
}

impl Slots {
    pub(crate) fn new(capacity: u32) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(capacity as usize)),
            held: Arc::default(),
        }
    }

    pub(crate) fn try_take(&self) -> Option<Permit> {
        self.permits.clone().try_acquire_owned().ok().map(Permit)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.permits.available_permits() == 0
    }

    /// Resolves once a permit is free (without taking it).
    pub(crate) async fn wait_free(&self) {
        // The semaphore is never closed, so acquiring cannot fail.
        if let Ok(permit) = self.permits.acquire().await {
            drop(permit);
        }
    }

    /// Ties a permit to a session.
    pub(crate) fn hold(&self, permit: Permit, session: Uuid) -> Slot {
        if let Ok(mut held) = self.held.lock() {
            held.insert(session);
        }
        Slot {
            _permit: permit.0,
            session,
            held: self.held.clone(),
        }
    }

    /// The sessions held right now.
    pub(crate) fn sessions(&self) -> Vec<Uuid> {
        self.held
            .lock()
            .map(|held| held.iter().copied().collect())
            .unwrap_or_default()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(&self.session);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn a_full_runner_gives_no_permit_until_a_session_ends() {
        let slots = Slots::new(2);
        let a = slots.try_take().map(|p| slots.hold(p, Uuid::now_v7()));
        assert!(!slots.is_full());
        let b = slots.try_take().map(|p| slots.hold(p, Uuid::now_v7()));
        assert!(a.is_some() && b.is_some());
        assert!(slots.is_full());
        assert!(slots.try_take().is_none());
        assert!(slots.wait_free().now_or_never().is_none());
        assert_eq!(slots.sessions().len(), 2);

        drop(a);
        assert_eq!(slots.sessions().len(), 1);
        assert!(slots.wait_free().now_or_never().is_some());
        // Waiting for a free permit does not take it.
        assert!(slots.try_take().is_some());
    }

    #[test]
    fn an_unused_permit_goes_back() {
        let slots = Slots::new(1);
        let p = slots.try_take();
        assert!(slots.is_full());
        drop(p);
        assert!(!slots.is_full());
        assert!(slots.sessions().is_empty());
    }
}

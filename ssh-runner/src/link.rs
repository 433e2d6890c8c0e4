//! The runner's current broker connection, shared with every session:
//! `None` while the broker is unreachable. The runner's main loop replaces
//! it after a reconnect; sessions watch it to consume their input queue
//! again and to re-publish what the broker did not confirm.

use tokio::sync::watch;

use crate::broker::Broker;

/// Read side, one per session.
#[derive(Clone)]
pub(crate) struct Link {
    rx: watch::Receiver<Option<Broker>>,
}

/// Write side, held by the runner's main loop.
pub(crate) struct LinkOwner {
    tx: watch::Sender<Option<Broker>>,
}

pub(crate) fn new() -> (LinkOwner, Link) {
    let (tx, rx) = watch::channel(None);
    (LinkOwner { tx }, Link { rx })
}

impl LinkOwner {
    pub(crate) fn set(&self, broker: Option<Broker>) {
        self.tx.send_replace(broker);
    }
}

impl Link {
    /// The connection in use now, if any.
    pub(crate) fn current(&self) -> Option<Broker> {
        self.rx.borrow().clone()
    }

    /// Waits until a connection newer than `generation` is up. Never
    /// resolves once the runner has stopped replacing connections.
    pub(crate) async fn newer_than(&self, generation: u64) -> Broker {
        let mut rx = self.rx.clone();
        let newer = |b: &Option<Broker>| b.as_ref().is_some_and(|b| b.generation() > generation);
        loop {
            let found = rx.wait_for(newer).await.map(|b| b.clone());
            match found {
                Ok(Some(broker)) => return broker,
                Ok(None) => {}
                Err(_) => std::future::pending().await,
            }
        }
    }
}

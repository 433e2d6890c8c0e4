//! The input audit: every input sent to a session's PTY, with who typed it
//! (`session_input`). Written in batches off the keystroke path; a full
//! queue slows the typist down rather than dropping a record.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const QUEUE: usize = 4096;
const BATCH: usize = 512;
const RETRY: Duration = Duration::from_secs(1);
const LINGER: Duration = Duration::from_millis(100);

pub(crate) struct Typed {
    pub(crate) session: Uuid,
    pub(crate) user: Option<Uuid>,
    pub(crate) username: String,
    pub(crate) share: Option<Uuid>,
    pub(crate) data: Vec<u8>,
}

#[derive(Clone)]
pub(crate) struct InputLog {
    tx: mpsc::Sender<Typed>,
}

impl InputLog {
    pub(crate) fn new(
        db: PgPool,
        tracker: &tokio_util::task::TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tracker.spawn(write(db, rx, shutdown));
        Self { tx }
    }

    pub(crate) async fn record(&self, typed: Typed) {
        if self.tx.send(typed).await.is_err() {
            tracing::warn!("input audit writer stopped; an input was not recorded");
        }
    }
}

async fn write(db: PgPool, mut rx: mpsc::Receiver<Typed>, shutdown: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
            // Shutdown drains what is queued before the writer ends.
            _ = shutdown.cancelled(), if rx.is_empty() => return,
        };
        if n == 0 {
            return;
        }
        // Typing comes a key at a time: gather a moment's worth into one
        // insert, written after the echo rather than racing it for the CPU.
        if !shutdown.is_cancelled() {
            tokio::time::sleep(LINGER).await;
            let room = BATCH.saturating_sub(batch.len());
            if room > 0 {
                while let Ok(t) = rx.try_recv() {
                    batch.push(t);
                    if batch.len() >= BATCH {
                        break;
                    }
                }
            }
        }
        while let Err(err) = crate::store::inputs::insert(&db, &batch).await {
            tracing::error!(error = %err, rows = batch.len(), "cannot write the input audit; retrying");
            if shutdown.is_cancelled() {
                return;
            }
            tokio::time::sleep(RETRY).await;
        }
        batch.clear();
    }
}

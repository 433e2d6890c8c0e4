//! Running jobs: the per-job [`driver`] that starts hosts by the job's
//! strategy and learns how they ended, and the one Postgres listener per
//! proxy ([`Jobs::listen`]) that tells drivers and WebSockets that a job
//! changed (the recorder, which may be another proxy's, announces run
//! completions and session ends of job hosts with `pg_notify`).

pub(crate) mod driver;

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::store;

/// Job changes a slow listener may fall behind by before it is told it
/// lagged (it then re-reads the job, which is all a change means).
const CHANGES_BUFFER: usize = 1024;
/// How often the proxy looks for running jobs whose driver went silent.
const ADOPT_EVERY: Duration = Duration::from_secs(5);
/// How long a driver may be silent before another proxy takes its job.
pub(crate) const DRIVER_STALE: Duration = Duration::from_secs(15);

/// This proxy's jobs: who drives them and who hears of their changes.
#[derive(Clone)]
pub(crate) struct Jobs {
    pub proxy_id: String,
    changes: broadcast::Sender<Uuid>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("proxy_id", &self.proxy_id)
            .finish()
    }
}

impl Jobs {
    pub(crate) fn new(proxy_id: String, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        Self {
            proxy_id,
            changes,
            tracker,
            shutdown,
        }
    }

    /// Ids of jobs that changed, from now on.
    pub(crate) fn changes(&self) -> broadcast::Receiver<Uuid> {
        self.changes.subscribe()
    }

    /// Drives `job` on this proxy until it ends.
    pub(crate) fn drive(&self, st: crate::state::AppState, job: Uuid) {
        let shutdown = self.shutdown.clone();
        self.tracker
            .spawn(async move { driver::drive(st, job, shutdown).await });
    }

    /// Forwards the database's job notifications to [`Self::changes`]
    /// until shutdown, reconnecting after a failure.
    pub(crate) async fn listen(self, db: PgPool) {
        loop {
            match self.listen_once(&db).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "job notifications interrupted; listening again");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    async fn listen_once(&self, db: &PgPool) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(db).await?;
        listener.listen(store::jobs::CHANNEL).await?;
        loop {
            let note = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                note = listener.recv() => note?,
            };
            if let Ok(job) = note.payload().parse::<Uuid>() {
                // Nobody listening is fine.
                let _ = self.changes.send(job);
            }
        }
    }

    /// Takes over running jobs whose driver went silent (its proxy
    /// stopped), until shutdown.
    pub(crate) async fn adopt(self, st: crate::state::AppState) {
        let mut tick = tokio::time::interval(ADOPT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let stale = DRIVER_STALE.as_secs_f64();
            let orphans = match store::jobs::orphaned(&st.db, stale).await {
                Ok(jobs) => jobs,
                Err(err) => {
                    tracing::debug!(error = %err, "cannot look for orphaned jobs");
                    continue;
                }
            };
            for job in orphans {
                if matches!(
                    store::jobs::take(&st.db, job, &self.proxy_id, stale).await,
                    Ok(true)
                ) {
                    tracing::info!(job_id = %job, "taking over a job whose driver went silent");
                    self.drive(st.clone(), job);
                }
            }
        }
    }
}

/// Waits for a notification about `job` from [`Jobs::changes`] (a lagged
/// receiver counts as one: something may have changed).
pub(crate) async fn changed(changes: &mut broadcast::Receiver<Uuid>, job: Uuid) {
    loop {
        match changes.recv().await {
            Ok(id) if id == job => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

//! The retention policy: recordings of sessions that ended longer ago than
//! `SHELLWAY_RECORDING_RETENTION_DAYS` are deleted by a periodic sweep, in
//! small batches (each its own short statement, so neither the recorder
//! nor a reader waits behind one huge delete), and each deletion is in the
//! audit trail. The session and its runs stay in the logs.

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::RecordingPolicy;
use crate::store;

/// Sweeps every `policy.sweep_every` until `shutdown`; does nothing when
/// recordings are kept for ever.
pub(crate) async fn run(db: PgPool, policy: RecordingPolicy, shutdown: CancellationToken) {
    let Some(keep) = policy.retention else {
        return;
    };
    let mut every = tokio::time::interval(policy.sweep_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match store::retention::sweep(&db, keep, &shutdown).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "deleted expired recordings"),
            Err(err) => {
                tracing::warn!(error = %err, "recording retention sweep failed; retrying later")
            }
        }
    }
}

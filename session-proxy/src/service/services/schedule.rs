//! The scheduled status refresh: every interval, each service's dots are
//! polled again unless a poll (by any proxy, or a person) is that recent.
//! A service whose every host was unreachable last time waits twice as
//! long each time (up to [`MAX_BACKOFF`]), and is back to the interval as
//! soon as one host answers. Polls run as the administrator who registered
//! the service, and are recorded and audited like any run.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::{AuthUser, Credential};
use crate::service::Role;
use crate::state::AppState;
use crate::store;

/// The longest a service waits between polls when unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The next wait after `failures` polls in a row found nothing reachable.
pub(crate) fn backoff(every: Duration, failures: u32) -> Duration {
    every
        .saturating_mul(1u32 << failures.min(10))
        .min(MAX_BACKOFF.max(every))
}

/// The registering administrator, still an enabled administrator.
async fn poller(st: &AppState, service: Uuid) -> Option<AuthUser> {
    let row = store::services::get(&st.db, service).await.ok()??;
    let user = store::users::get(&st.db, row.created_by?).await.ok()??;
    if user.disabled_at.is_some() || Role::parse(&user.role) != Some(Role::Admin) {
        return None;
    }
    Some(AuthUser {
        id: user.id,
        username: user.username,
        role: Role::Admin,
        credential: Credential::Token,
    })
}

/// Polls every service's dots every `every` (zero: never) until shutdown.
pub(crate) async fn run(st: AppState, every: Duration, shutdown: CancellationToken) {
    if every.is_zero() {
        return;
    }
    // Per service: polls in a row with no host reachable, next poll due.
    let mut waits: HashMap<Uuid, (u32, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let services = match store::services::list(&st.db).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::debug!(error = %err, "scheduled service status: cannot list services");
                continue;
            }
        };
        let now = Instant::now();
        waits.retain(|id, _| services.iter().any(|s| s.id == *id));
        for row in services {
            if waits.get(&row.id).is_some_and(|(_, due)| *due > now) {
                continue;
            }
            let Some(user) = poller(&st, row.id).await else {
                continue;
            };
            let polled = tokio::select! {
                _ = shutdown.cancelled() => return,
                polled = super::panel::status(&st, &user, row.id, every) => polled,
            };
            let failures = match polled {
                Ok(s)
                    if s.hosts.iter().all(|h| h.state == "unreachable") && !s.hosts.is_empty() =>
                {
                    waits.get(&row.id).map_or(0, |(f, _)| *f) + 1
                }
                Ok(_) => 0,
                Err(err) => {
                    tracing::debug!(service_id = %row.id, error = %err, "scheduled service status failed");
                    waits.get(&row.id).map_or(0, |(f, _)| *f) + 1
                }
            };
            if failures == 0 {
                waits.remove(&row.id);
            } else {
                // The tick itself is one interval of the wait.
                let due = now + backoff(every, failures) - every / 2;
                waits.insert(row.id, (failures, due));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_services_wait_twice_as_long_each_time_up_to_ten_minutes() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(30), 0), s(30));
        assert_eq!(backoff(s(30), 1), s(60));
        assert_eq!(backoff(s(30), 3), s(240));
        assert_eq!(backoff(s(30), 9), s(600));
        assert_eq!(backoff(s(30), 99), s(600));
        assert_eq!(backoff(s(900), 2), s(900));
    }
}

//! How a job's hosts start and end: the strategy (`parallel` up to a
//! concurrency, `rolling` by batches), the failure threshold that stops
//! it, and how a host's session and run read as its outcome. Pure rules,
//! applied by [`crate::jobs::driver`].

use shellway_common::api::jobs::JobRequest;

use super::ServiceError;
use crate::store::{self, jobs::JobRow};

/// Hosts running at once by default under `parallel`.
const DEFAULT_CONCURRENCY: u32 = 10;

/// How hosts start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// Up to `concurrency` hosts at once.
    Parallel { concurrency: u32 },
    /// `batch` hosts at a time, the next batch once the last has ended.
    Rolling { batch: Amount },
}

/// `N` hosts or `N%` of the job's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Amount {
    Count(u32),
    Percent(u32),
}

impl Amount {
    pub(crate) fn parse(field: &'static str, s: &str) -> Result<Self, ServiceError> {
        let bad = || ServiceError::invalid(field, format!("{field} is N or N% (got {s:?})"));
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => match p.parse::<u32>() {
                Ok(p) if p <= 100 => Ok(Self::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse::<u32>().map(Self::Count).map_err(|_| bad()),
        }
    }

    /// The amount among `total` hosts (a percentage rounds down).
    pub(crate) fn of(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n as usize,
            Self::Percent(p) => total * p as usize / 100,
        }
    }

    pub(crate) fn as_string(self) -> String {
        match self {
            Self::Count(n) => n.to_string(),
            Self::Percent(p) => format!("{p}%"),
        }
    }
}

/// A job's strategy and stop rule, as the driver applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub strategy: Strategy,
    /// Stop starting hosts once failures are more than this.
    pub max_failures: Option<Amount>,
}

impl Plan {
    pub(crate) fn of(row: &JobRow) -> Result<Self, ServiceError> {
        let strategy = match row.strategy.as_str() {
            "rolling" => Strategy::Rolling {
                batch: Amount::parse("batch", row.batch.as_deref().unwrap_or("1"))?,
            },
            _ => Strategy::Parallel {
                concurrency: row.concurrency.max(1) as u32,
            },
        };
        let max_failures = match &row.max_failures {
            Some(m) => Some(Amount::parse("max_failures", m)?),
            None if !row.keep_going => Some(Amount::Count(0)),
            None => None,
        };
        Ok(Self {
            strategy,
            max_failures,
        })
    }

    /// Whether `failures` among `total` hosts stop the job from starting more.
    pub(crate) fn must_stop(&self, failures: usize, total: usize) -> bool {
        self.max_failures.is_some_and(|m| failures > m.of(total))
    }

    /// How many more hosts of `total` may start while `running` run.
    pub(crate) fn room(&self, running: usize, total: usize) -> usize {
        match self.strategy {
            Strategy::Parallel { concurrency } => (concurrency as usize).saturating_sub(running),
            Strategy::Rolling { .. } if running > 0 => 0,
            // A batch of 0 (a small percentage) still moves: one host.
            Strategy::Rolling { batch } => batch.of(total).max(1),
        }
    }
}

/// How a running host ended, from its session and run (`None`: not yet).
pub(crate) fn outcome(p: &store::jobs::Progress) -> Option<store::jobs::Outcome> {
    use store::jobs::Outcome;
    let session = p.session_status.as_deref();
    let session_error = || p.error.clone();
    if matches!(session, Some("failed" | "rejected")) {
        let status = if p.error_kind.as_deref() == Some("unreachable") {
            "unreachable"
        } else {
            "failed"
        };
        return Some(Outcome {
            status,
            error: session_error().or_else(|| Some("the session failed".into())),
            ..Default::default()
        });
    }
    let ended = |status| Outcome {
        status,
        exit_code: p.exit_code,
        exit_signal: p.exit_signal.clone(),
        failed_step: p.failed_step,
        duration_ms: p.duration_ms,
        error: None,
    };
    match p.run_status.as_deref() {
        Some("ok") => Some(ended("ok")),
        Some("failed") => Some(ended("failed")),
        Some("canceled") if p.cancel_requested => Some(ended("canceled")),
        Some("canceled") => Some(Outcome {
            error: session_error().or_else(|| Some("the session ended before the run".into())),
            ..ended("failed")
        }),
        Some("error") => Some(Outcome {
            error: session_error().or_else(|| Some("the run could not execute".into())),
            ..ended("failed")
        }),
        Some("lost") => Some(Outcome {
            error: session_error().or_else(|| Some("the runner was lost".into())),
            ..ended("failed")
        }),
        _ => None,
    }
}

/// The strategy and stop rule a request asks for.
pub(crate) fn strategy_of(
    req: &JobRequest,
) -> Result<(Strategy, Option<Amount>, bool), ServiceError> {
    let strategy = match req.strategy.as_deref().unwrap_or("parallel") {
        "parallel" => {
            let concurrency = req.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
            if !(1..=100).contains(&concurrency) {
                return Err(ServiceError::invalid(
                    "concurrency",
                    "concurrency is 1 to 100",
                ));
            }
            if req.batch.is_some() {
                return Err(ServiceError::invalid(
                    "batch",
                    "batch is for the rolling strategy",
                ));
            }
            Strategy::Parallel { concurrency }
        }
        "rolling" => {
            let batch = Amount::parse("batch", req.batch.as_deref().unwrap_or("1"))?;
            if batch == Amount::Count(0) {
                return Err(ServiceError::invalid(
                    "batch",
                    "a batch has at least one host",
                ));
            }
            Strategy::Rolling { batch }
        }
        other => {
            return Err(ServiceError::invalid(
                "strategy",
                format!("unknown strategy {other:?} (use parallel or rolling)"),
            ))
        }
    };
    let max_failures = req
        .max_failures
        .as_deref()
        .map(|m| Amount::parse("max_failures", m))
        .transpose()?;
    Ok((strategy, max_failures, req.keep_going.unwrap_or(true)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn progress() -> store::jobs::Progress {
        store::jobs::Progress {
            host_id: Uuid::nil(),
            session_id: Some(Uuid::nil()),
            run_id: Some(Uuid::nil()),
            cancel_requested: false,
            never_started: false,
            session_status: Some("open".into()),
            error_kind: None,
            error: None,
            run_status: Some("running".into()),
            exit_code: None,
            exit_signal: None,
            failed_step: None,
            duration_ms: None,
        }
    }

    #[test]
    fn a_host_ends_as_its_run_or_its_session_says() {
        assert_eq!(outcome(&progress()), None);
        let ok = store::jobs::Progress {
            run_status: Some("ok".into()),
            exit_code: Some(0),
            ..progress()
        };
        assert_eq!(outcome(&ok).map(|o| o.status), Some("ok"));
        let unreachable = store::jobs::Progress {
            session_status: Some("failed".into()),
            error_kind: Some("unreachable".into()),
            error: Some("cannot connect to 127.0.0.1:1: refused".into()),
            run_status: Some("canceled".into()),
            ..progress()
        };
        let o = outcome(&unreachable).unwrap_or_default();
        assert_eq!(o.status, "unreachable");
        assert!(o.error.unwrap_or_default().contains("cannot connect"));
        let auth = store::jobs::Progress {
            error_kind: Some("ssh".into()),
            ..unreachable
        };
        assert_eq!(outcome(&auth).map(|o| o.status), Some("failed"));
        let canceled = store::jobs::Progress {
            run_status: Some("canceled".into()),
            cancel_requested: true,
            ..progress()
        };
        assert_eq!(outcome(&canceled).map(|o| o.status), Some("canceled"));
        let cut = store::jobs::Progress {
            cancel_requested: false,
            ..canceled
        };
        assert_eq!(outcome(&cut).map(|o| o.status), Some("failed"));
    }

    #[test]
    fn amounts_are_counts_or_percentages() {
        assert_eq!(Amount::parse("batch", "3").ok(), Some(Amount::Count(3)));
        assert_eq!(
            Amount::parse("batch", "25%").ok(),
            Some(Amount::Percent(25))
        );
        assert!(Amount::parse("batch", "101%").is_err());
        assert!(Amount::parse("batch", "-1").is_err());
        assert!(Amount::parse("batch", "x").is_err());
        assert_eq!(Amount::Percent(25).of(12), 3);
    }

    #[test]
    fn plans_bound_what_runs_and_when_to_stop() {
        let parallel = Plan {
            strategy: Strategy::Parallel { concurrency: 3 },
            max_failures: None,
        };
        assert_eq!(parallel.room(1, 10), 2);
        assert_eq!(parallel.room(5, 10), 0);
        assert!(!parallel.must_stop(10, 10));
        let rolling = Plan {
            strategy: Strategy::Rolling {
                batch: Amount::Count(2),
            },
            max_failures: Some(Amount::Count(1)),
        };
        assert_eq!(rolling.room(0, 10), 2);
        assert_eq!(rolling.room(1, 10), 0);
        let tenth = Plan {
            strategy: Strategy::Rolling {
                batch: Amount::Percent(10),
            },
            max_failures: None,
        };
        assert_eq!(tenth.room(0, 5), 1);
        assert_eq!(tenth.room(0, 40), 4);
        assert!(!rolling.must_stop(1, 10));
        assert!(rolling.must_stop(2, 10));
    }
}

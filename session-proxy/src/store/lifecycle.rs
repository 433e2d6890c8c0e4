//! The two state machines: which status a session and a run may move to
//! from the one they are in. Pure functions, the one place these rules
//! live; `store::sessions` and `store::runs` apply them under a row lock,
//! so whoever reports late (a runner, the liveness judge, the reaper, an
//! API call) cannot move a session or run back.
//!
//! Session: `pending → connecting → open → closed | failed | lost`, and
//! `pending → rejected` (no runner took the request). A session may skip
//! `connecting` (its report can be lost to a broker outage), and any live
//! session may end. Every ending is final: a `lost` session whose runner
//! comes back is told to close, it is never restored.
//!
//! Run: `queued → running → ok | failed | error | canceled | lost`; a
//! queued run may end without starting (the broker refused it, its session
//! ended). Every ending is final.

use shellway_common::{RunStatus, SessionStatus};

/// A status change the state machine refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {entity} cannot go from {from} to {to}")]
pub(crate) struct IllegalTransition {
    pub entity: &'static str,
    pub from: &'static str,
    pub to: &'static str,
}

/// Whether a session may go from `from` to `to`.
pub(crate) fn session(from: SessionStatus, to: SessionStatus) -> Result<(), IllegalTransition> {
    use SessionStatus::*;
    let legal = match from {
        Pending => matches!(to, Connecting | Open | Closed | Failed | Lost | Rejected),
        Connecting => matches!(to, Open | Closed | Failed | Lost),
        Open => matches!(to, Closed | Failed | Lost),
        Closed | Failed | Lost | Rejected => false,
    };
    legal.then_some(()).ok_or(IllegalTransition {
        entity: "session",
        from: from.as_str(),
        to: to.as_str(),
    })
}

/// Whether a run may go from `from` to `to`.
pub(crate) fn run(from: RunStatus, to: RunStatus) -> Result<(), IllegalTransition> {
    use RunStatus::*;
    let legal = match from {
        Queued => to != Queued,
        Running => !matches!(to, Queued | Running),
        Ok | Failed | Error | Canceled | Lost => false,
    };
    legal.then_some(()).ok_or(IllegalTransition {
        entity: "run",
        from: from.as_str(),
        to: to.as_str(),
    })
}

/// The live session statuses, as the store's SQL wants them.
pub(crate) fn live_sessions() -> Vec<String> {
    SessionStatus::ALL
        .into_iter()
        .filter(|s| s.is_live())
        .map(|s| s.as_str().to_owned())
        .collect()
}

/// Runs that have not ended (they can still be lost).
pub(crate) fn unfinished_runs() -> Vec<String> {
    RunStatus::ALL
        .into_iter()
        .filter(|from| run(*from, RunStatus::Lost).is_ok())
        .map(|s| s.as_str().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunStatus as R;
    use SessionStatus as S;

    /// Every pair of statuses, with whether the machine allows it: a new
    /// status or edge makes this table fail until it is decided here.
    #[test]
    fn every_session_transition_is_decided() {
        let legal = [
            (S::Pending, S::Connecting),
            (S::Pending, S::Open),
            (S::Pending, S::Closed),
            (S::Pending, S::Failed),
            (S::Pending, S::Lost),
            (S::Pending, S::Rejected),
            (S::Connecting, S::Open),
            (S::Connecting, S::Closed),
            (S::Connecting, S::Failed),
            (S::Connecting, S::Lost),
            (S::Open, S::Closed),
            (S::Open, S::Failed),
            (S::Open, S::Lost),
        ];
        let mut checked = 0;
        for from in S::ALL {
            for to in S::ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(
                    session(from, to).is_ok(),
                    expected,
                    "{} -> {}",
                    from.as_str(),
                    to.as_str()
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 49);
    }

    #[test]
    fn an_ended_session_never_opens_again() {
        for from in [S::Closed, S::Failed, S::Lost, S::Rejected] {
            for to in S::ALL {
                let err = session(from, to).err();
                assert_eq!(
                    err.map(|e| (e.from, e.to)),
                    Some((from.as_str(), to.as_str()))
                );
            }
        }
        assert_eq!(
            session(S::Closed, S::Open).map_err(|e| e.to_string()),
            Err("a session cannot go from closed to open".to_owned())
        );
        assert!(session(S::Open, S::Connecting).is_err(), "no going back");
        assert!(session(S::Connecting, S::Pending).is_err(), "no going back");
        assert!(session(S::Connecting, S::Rejected).is_err(), "it was taken");
    }

    #[test]
    fn every_run_transition_is_decided() {
        let ended = [R::Ok, R::Failed, R::Error, R::Canceled, R::Lost];
        let mut legal = vec![(R::Queued, R::Running)];
        for to in ended {
            legal.push((R::Queued, to));
            legal.push((R::Running, to));
        }
        for from in R::ALL {
            for to in R::ALL {
                assert_eq!(
                    run(from, to).is_ok(),
                    legal.contains(&(from, to)),
                    "{} -> {}",
                    from.as_str(),
                    to.as_str()
                );
            }
        }
        assert_eq!(legal.len(), 11);
    }

    #[test]
    fn the_sql_lists_follow_the_machines() {
        assert_eq!(live_sessions(), ["pending", "connecting", "open"]);
        assert_eq!(unfinished_runs(), ["queued", "running"]);
    }
}

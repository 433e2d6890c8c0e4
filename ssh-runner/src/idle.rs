//! The idle timeout of a session: one nobody watches and nobody types into
//! (a closed browser tab, a forgotten reload) is warned in its terminal,
//! then closed. The runner is the one place that sees both the input and
//! the merged viewers of every proxy, so the clock lives here; its length
//! comes with the session request (the proxy's configuration).

use std::time::Duration;

use tokio::time::Instant;

/// The warning comes this long before the close…
const WARN_BEFORE: Duration = Duration::from_secs(60);

/// What the clock asks of the session when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleStep {
    /// Write the warning: the session closes in `left`.
    Warn { idle: Duration, left: Duration },
    /// End the session.
    Close,
}

#[derive(Debug)]
pub(crate) struct IdleClock {
    timeout: Duration,
    /// When the session last had a viewer or input.
    since: Instant,
    watched: bool,
    warned: bool,
}

impl IdleClock {
    /// A clock for `timeout`; `None` when sessions never time out.
    pub(crate) fn new(timeout: Option<Duration>, now: Instant) -> Option<Self> {
        timeout.filter(|t| !t.is_zero()).map(|timeout| Self {
            timeout,
            since: now,
            watched: false,
            warned: false,
        })
    }

    /// Someone typed, resized or ran something, or a run is going.
    pub(crate) fn activity(&mut self, now: Instant) {
        self.since = now;
        self.warned = false;
    }

    /// Whether anyone watches, from the merged presence of all proxies.
    /// The clock is stopped while someone does and restarts when the last
    /// viewer leaves.
    pub(crate) fn watched(&mut self, watched: bool, now: Instant) {
        if watched || self.watched {
            self.activity(now);
        }
        self.watched = watched;
    }

    /// The lead of the warning: a minute, or half the timeout when it is
    /// shorter than two minutes.
    fn warn_before(&self) -> Duration {
        WARN_BEFORE.min(self.timeout / 2)
    }

    /// When the clock next needs looking at, if it runs.
    pub(crate) fn due(&self) -> Option<Instant> {
        if self.watched {
            return None;
        }
        let close = self.since + self.timeout;
        Some(if self.warned {
            close
        } else {
            close - self.warn_before()
        })
    }

    /// What is due at `now`, if anything.
    pub(crate) fn check(&mut self, now: Instant) -> Option<IdleStep> {
        let due = self.due()?;
        if now < due {
            return None;
        }
        if self.warned {
            return Some(IdleStep::Close);
        }
        self.warned = true;
        let idle = now.saturating_duration_since(self.since);
        let left = (self.since + self.timeout).saturating_duration_since(now);
        Some(IdleStep::Warn { idle, left })
    }
}

/// The line written into the terminal (and so into the recording).
pub(crate) fn warning(idle: Duration, left: Duration) -> String {
    format!(
        "\r\n\x1b[33m[shellway] No viewer and no input for {}: this session closes in {} \
         unless someone attaches or types.\x1b[0m\r\n",
        human(idle),
        human(left)
    )
}

fn human(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match s {
        0..=119 => format!("{s} s"),
        _ => format!("{} min", (s + 30) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn an_unwatched_session_is_warned_a_minute_ahead_then_closed() {
        let t = Instant::now();
        let mut clock = IdleClock::new(Some(secs(1800)), t).unwrap_or_else(|| panic!("a clock"));
        assert_eq!(clock.due(), Some(t + secs(1740)));
        assert_eq!(clock.check(t + secs(1000)), None);
        assert_eq!(
            clock.check(t + secs(1740)),
            Some(IdleStep::Warn {
                idle: secs(1740),
                left: secs(60)
            })
        );
        assert_eq!(clock.due(), Some(t + secs(1800)));
        assert_eq!(clock.check(t + secs(1799)), None);
        assert_eq!(clock.check(t + secs(1800)), Some(IdleStep::Close));
    }

    #[test]
    fn input_or_a_viewer_restarts_the_clock() {
        let t = Instant::now();
        let mut clock = IdleClock::new(Some(secs(4)), t).unwrap_or_else(|| panic!("a clock"));
        assert_eq!(clock.due(), Some(t + secs(2)), "half a short timeout");
        assert!(matches!(
            clock.check(t + secs(2)),
            Some(IdleStep::Warn { .. })
        ));
        clock.activity(t + secs(3));
        assert_eq!(clock.due(), Some(t + secs(5)), "warned again after input");
        clock.watched(true, t + secs(4));
        assert_eq!(clock.due(), None, "never while someone watches");
        assert_eq!(clock.check(t + secs(100)), None);
        clock.watched(false, t + secs(100));
        assert_eq!(
            clock.due(),
            Some(t + secs(102)),
            "from when the last one left"
        );
    }

    #[test]
    fn zero_or_no_timeout_means_never() {
        assert!(IdleClock::new(None, Instant::now()).is_none());
        assert!(IdleClock::new(Some(Duration::ZERO), Instant::now()).is_none());
    }

    #[test]
    fn the_warning_says_how_long_in_words() {
        let w = warning(secs(1740), secs(60));
        assert!(
            w.contains("for 29 min") && w.contains("closes in 60 s"),
            "{w}"
        );
    }
}

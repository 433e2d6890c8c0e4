//! What one host's run of a panel command came to, read for people: a
//! status poll into one state per unit, a journal into lines, a refused
//! `sudo -n` into the sudoers line it lacks.

use super::status::{self, UnitState};

/// How one host's run ended, with its output (from the job's results).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostRun {
    /// The job's per-host status: `ok`, `failed`, `unreachable`, `canceled`, ….
    pub status: String,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Why it did not run (the SSH error of an unreachable host).
    pub error: Option<String>,
}

impl HostRun {
    fn why(&self) -> String {
        let stderr = self.stderr.trim();
        match (&self.error, stderr.is_empty()) {
            (Some(e), _) => e.clone(),
            (None, false) => stderr.to_owned(),
            (None, true) => match self.exit_code {
                Some(code) => format!("exit {code}"),
                None => format!("the run ended {}", self.status),
            },
        }
    }
}

/// The states of `count` units polled in one `systemctl show` on a host.
pub(crate) fn states(run: &HostRun, count: usize) -> Vec<UnitState> {
    if run.status == "unreachable" {
        return vec![UnitState::failed("unreachable", run.why()); count];
    }
    // `systemctl show` prints what it knows even when it exits non-zero;
    // with nothing on stdout the poll itself failed.
    if run.stdout.trim().is_empty() {
        return vec![UnitState::failed("unknown", run.why()); count];
    }
    status::parse_show(&run.stdout, count)
}

/// A journal's lines (no trailing empty line).
pub(crate) fn lines(run: &HostRun) -> Vec<String> {
    run.stdout.lines().map(str::to_owned).collect()
}

/// Why the run is not a success, for people; `None` when it is one. A
/// `sudo -n` that wanted a password names the sudoers line to install.
pub(crate) fn problem(run: &HostRun, login: &str, sudoers_line: Option<&str>) -> Option<String> {
    if run.status == "ok" {
        return None;
    }
    if let Some(line) = sudoers_line {
        if status::sudo_wants_password(&run.stderr) {
            return Some(status::sudo_refused(login, line));
        }
    }
    Some(run.why())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: &str, code: Option<i32>, stdout: &str, stderr: &str) -> HostRun {
        HostRun {
            status: status.into(),
            exit_code: code,
            stdout: stdout.into(),
            stderr: stderr.into(),
            error: None,
        }
    }

    #[test]
    fn an_unreachable_host_makes_every_unit_amber_with_the_ssh_error() {
        let r = HostRun {
            error: Some("connection refused".into()),
            ..run("unreachable", None, "", "")
        };
        let s = states(&r, 2);
        assert_eq!(s.len(), 2);
        assert!(s
            .iter()
            .all(|u| u.state == "unreachable" && status::dot(&u.state) == "amber"));
        assert_eq!(s[0].error.as_deref(), Some("connection refused"));
    }

    #[test]
    fn a_poll_that_printed_nothing_is_unknown_with_its_stderr() {
        let r = run(
            "failed",
            Some(1),
            "",
            "System has not been booted with systemd\n",
        );
        let s = states(&r, 1);
        assert_eq!(s[0].state, "unknown");
        assert_eq!(
            s[0].error.as_deref(),
            Some("System has not been booted with systemd")
        );
        let r = run("failed", Some(3), "ActiveState=failed\n", "");
        assert_eq!(states(&r, 1)[0].state, "failed");
    }

    #[test]
    fn sudo_wanting_a_password_names_the_missing_line() {
        let line = "deploy ALL=(root) NOPASSWD: /usr/bin/systemctl restart -- a.service";
        let r = run("failed", Some(1), "", "sudo: a password is required\n");
        let p = problem(&r, "deploy", Some(line)).unwrap_or_default();
        assert!(p.contains(line), "{p}");
        let r = run("failed", Some(1), "", "Job for a.service failed.\n");
        assert_eq!(
            problem(&r, "deploy", Some(line)).as_deref(),
            Some("Job for a.service failed.")
        );
        assert_eq!(
            problem(&run("ok", Some(0), "", ""), "deploy", Some(line)),
            None
        );
        assert_eq!(
            problem(&run("failed", Some(5), "", ""), "d", None).as_deref(),
            Some("exit 5")
        );
    }
}

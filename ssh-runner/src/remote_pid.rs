//! Finding and signalling a run's processes on the host.
//!
//! sshd refuses `signal` channel requests in some setups (OpenSSH skips
//! post-auth privilege separation for root logins and then ignores them),
//! and closing an exec channel does not stop a program that is not
//! writing. So every step runs as `exec <shell> -c '<marker>; <step>'`: the
//! shell first writes `SHELLWAY-PID <pid>` on stderr, and since sshd starts
//! each exec in a new session, that pid is the process group of everything
//! the step starts. Cancel signals the group with `kill` on a second exec
//! channel, besides sending the `signal` request.

use shellway_common::script::shell_quote;

const MARKER: &str = "SHELLWAY-PID ";
/// The marker line is short; stderr that does not start with it within
/// this many bytes is passed on as it is.
const HEAD_LIMIT: usize = 64;

/// The command line sent for one step, run by `shell` (a path).
pub(crate) fn wrap(shell: &str, step: &str) -> String {
    let script = format!("echo {MARKER}$$ >&2; {step}");
    format!("exec {} -c {}", shell_quote(shell), shell_quote(&script))
}

/// The command that sends `signal` (e.g. `INT`) to the step's processes.
pub(crate) fn kill_group(pid: u32, signal: &str) -> String {
    format!("kill -s {signal} -- -{pid} 2>/dev/null; true")
}

/// Takes the marker off the start of a step's stderr.
#[derive(Default)]
pub(crate) struct StderrHead {
    head: Vec<u8>,
    done: bool,
    pid: Option<u32>,
}

impl StderrHead {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Feeds stderr bytes; returns what is real stderr (may be empty).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.done {
            return bytes.to_vec();
        }
        self.head.extend_from_slice(bytes);
        let Some(end) = self.head.iter().position(|&b| b == b'\n') else {
            if self.head.len() > HEAD_LIMIT {
                return self.give_up();
            }
            return Vec::new();
        };
        let line = String::from_utf8_lossy(&self.head[..end]).into_owned();
        match line
            .strip_prefix(MARKER)
            .and_then(|p| p.trim().parse().ok())
        {
            Some(pid) => {
                self.pid = Some(pid);
                self.done = true;
                self.head.split_off(end + 1)
            }
            None => self.give_up(),
        }
    }

    /// Stderr held back when the step ends before a newline.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        if self.done {
            return Vec::new();
        }
        self.give_up()
    }

    fn give_up(&mut self) -> Vec<u8> {
        self.done = true;
        std::mem::take(&mut self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_taken_off_and_the_rest_kept() {
        let mut h = StderrHead::default();
        assert!(h.feed(b"SHELLWAY-PID 12").is_empty());
        assert_eq!(h.feed(b"34\nreal error\n"), b"real error\n");
        assert_eq!(h.pid(), Some(1234));
        assert_eq!(h.feed(b"more"), b"more");
    }

    #[test]
    fn stderr_without_the_marker_passes_through() {
        let mut h = StderrHead::default();
        assert_eq!(h.feed(b"csh: syntax error\n"), b"csh: syntax error\n");
        assert_eq!(h.pid(), None);
        let mut h = StderrHead::default();
        assert!(h.feed(b"no newline").is_empty());
        assert_eq!(h.finish(), b"no newline");
    }

    #[test]
    fn steps_are_quoted_whole() {
        let cmd = wrap("/bin/sh", "echo 'a b' && cd /tmp");
        assert!(cmd.starts_with("exec /bin/sh -c '"), "{cmd}");
        let cmd = wrap("/usr/bin/bash", "if true; then\n  ls\nfi");
        assert_eq!(
            cmd,
            "exec /usr/bin/bash -c 'echo SHELLWAY-PID $$ >&2; if true; then\n  ls\nfi'"
        );
        assert_eq!(
            kill_group(42, "TERM"),
            "kill -s TERM -- -42 2>/dev/null; true"
        );
    }
}

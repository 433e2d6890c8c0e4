//! Every command a service panel sends to a host, built here from argv:
//! each word is a checked unit name, a fixed word or a number, and each is
//! shell-quoted by us. Nothing a person typed reaches a shell as text.
//! The sudoers lines that allow exactly these commands are built here too,
//! so the two cannot drift apart.

use shellway_common::script::shell_quote;

use super::unit::{Unit, UnitAction};

/// Where `sudo` finds systemctl (its `secure_path`) on merged-/usr systems;
/// sudoers names commands by absolute path.
pub(crate) const SYSTEMCTL_PATH: &str = "/usr/bin/systemctl";
/// The properties a status poll reads, in the order the parser expects
/// nothing of (each block is read by key).
pub(crate) const STATUS_PROPERTIES: &str =
    "LoadState,ActiveState,SubState,UnitFileState,MainPID,ActiveEnterTimestamp";
/// Most journal lines one request asks for.
pub(crate) const MAX_LOG_LINES: u32 = 5000;
/// Journal lines when none are asked for.
pub(crate) const DEFAULT_LOG_LINES: u32 = 100;

/// A command as words; [`Argv::line`] is what the host's shell gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Argv(Vec<String>);

impl Argv {
    fn of<I: IntoIterator<Item = S>, S: Into<String>>(words: I) -> Self {
        Self(words.into_iter().map(Into::into).collect())
    }

    /// The words, each quoted for a POSIX shell, joined by spaces.
    pub(crate) fn line(&self) -> String {
        self.0
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[cfg(test)]
    pub(crate) fn words(&self) -> &[String] {
        &self.0
    }
}

/// `[sudo -n] systemctl <verb> -- <unit>` for an action that changes the
/// unit; `None` for status and logs (see [`status`] and [`logs`]).
pub(crate) fn change(unit: &Unit, action: UnitAction, sudo: bool) -> Option<Argv> {
    if !action.changes() {
        return None;
    }
    let mut words = Vec::with_capacity(6);
    if sudo {
        words.extend(["sudo", "-n"]);
    }
    words.extend(["systemctl", action.as_str(), "--", unit.as_str()]);
    Some(Argv::of(words))
}

/// One poll for all the units of a host: `systemctl show` prints one
/// block per unit, in the order given, separated by blank lines.
pub(crate) fn status(units: &[&Unit]) -> Argv {
    let mut words = vec!["systemctl", "show", "-p", STATUS_PROPERTIES, "--"];
    words.extend(units.iter().map(|u| u.as_str()));
    Argv::of(words)
}

/// The longest a follow of a journal lasts: the host's `timeout` ends it
/// even if nobody cancels it (and whatever becomes of the proxy).
pub(crate) const FOLLOW_LIMIT_S: u32 = 3600;

/// The last `lines` journal lines of `unit`, and with `follow` the new
/// ones as they come (until canceled, at most [`FOLLOW_LIMIT_S`]; in the
/// foreground so a cancel's signal to the run's process group reaches
/// it). Reading the journal needs no sudo: the login belongs to the
/// `systemd-journal` (or `adm`) group instead.
pub(crate) fn logs(unit: &Unit, lines: u32, follow: bool) -> Argv {
    let n = lines.clamp(1, MAX_LOG_LINES).to_string();
    let limit = FOLLOW_LIMIT_S.to_string();
    let mut words = Vec::with_capacity(12);
    if follow {
        words.extend(["timeout", "--foreground", limit.as_str()]);
    }
    words.extend(["journalctl", "-u", unit.as_str()]);
    if follow {
        words.push("-f");
    }
    words.extend(["-n", n.as_str(), "--no-pager", "-o", "short-iso"]);
    Argv::of(words)
}

/// A word as sudoers takes it in a command's arguments: `\`, `,`, `:`
/// and `=` are special there and get a backslash.
fn sudoers_word(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        if "\\,:=".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The sudoers line that lets `login` run exactly this change, no more.
pub(crate) fn sudoers_line(login: &str, unit: &Unit, action: UnitAction) -> String {
    format!(
        "{login} ALL=(root) NOPASSWD: {SYSTEMCTL_PATH} {} -- {}",
        action.as_str(),
        sudoers_word(unit.as_str())
    )
}

/// One sudoers line per allowed action that changes the unit (status and
/// logs need none); never `ALL` as the command.
pub(crate) fn sudoers(login: &str, unit: &Unit, actions: &[UnitAction]) -> Vec<String> {
    actions
        .iter()
        .filter(|a| a.changes())
        .map(|a| sudoers_line(login, unit, *a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str) -> Unit {
        Unit::parse(name).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn changes_are_argv_with_the_unit_after_a_double_dash() {
        let u = unit("nginx");
        let line = |a, sudo| change(&u, a, sudo).map(|c| c.line());
        assert_eq!(
            line(UnitAction::Restart, true).as_deref(),
            Some("sudo -n systemctl restart -- nginx.service")
        );
        assert_eq!(
            line(UnitAction::Stop, false).as_deref(),
            Some("systemctl stop -- nginx.service")
        );
        assert_eq!(line(UnitAction::Status, true), None);
        assert_eq!(line(UnitAction::Logs, true), None);
    }

    #[test]
    fn unit_names_that_look_odd_to_a_shell_are_quoted() {
        let u = unit("dev-disk-by\\x2duuid.device");
        assert_eq!(
            change(&u, UnitAction::Start, false).map(|c| c.line()),
            Some("systemctl start -- 'dev-disk-by\\x2duuid.device'".into())
        );
        let line = status(&[&unit("a"), &unit("getty@tty1")]).line();
        assert_eq!(
            line,
            "systemctl show -p LoadState,ActiveState,SubState,UnitFileState,MainPID,ActiveEnterTimestamp \
             -- a.service getty@tty1.service"
        );
    }

    #[test]
    fn every_word_reaches_the_shell_as_one_literal_word() {
        // What a POSIX shell makes of the line is exactly the argv.
        let u = unit("we\\ird:x@y.service");
        for argv in [
            change(&u, UnitAction::Reload, true).unwrap_or_else(|| panic!("a change")),
            status(&[&u, &unit("b")]),
            logs(&u, 7, true),
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s\\n' {}", argv.line()))
                .output()
                .unwrap_or_else(|e| panic!("{e}"));
            let words: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            assert_eq!(words, argv.words());
        }
    }

    #[test]
    fn logs_lines_are_bounded() {
        let u = unit("nginx");
        assert_eq!(
            logs(&u, 50, false).line(),
            "journalctl -u nginx.service -n 50 --no-pager -o short-iso"
        );
        assert_eq!(
            logs(&u, 0, true).line(),
            "timeout --foreground 3600 journalctl -u nginx.service -f -n 1 --no-pager -o short-iso"
        );
        assert!(logs(&u, 1_000_000, false).line().contains("-n 5000 "));
    }

    #[test]
    fn sudoers_allows_each_change_exactly_and_nothing_else() {
        let actions = [
            UnitAction::Status,
            UnitAction::Restart,
            UnitAction::Stop,
            UnitAction::Logs,
        ];
        let lines = sudoers("deploy", &unit("nginx"), &actions);
        assert_eq!(
            lines,
            vec![
                "deploy ALL=(root) NOPASSWD: /usr/bin/systemctl restart -- nginx.service",
                "deploy ALL=(root) NOPASSWD: /usr/bin/systemctl stop -- nginx.service",
            ]
        );
        for line in &lines {
            let command = line.split("NOPASSWD: ").nth(1).unwrap_or_default();
            assert!(!command.contains("ALL"), "{line}");
            assert!(!command.contains('*'), "{line}");
        }
        assert_eq!(
            sudoers_line("ops", &unit("a\\x2db:c.mount"), UnitAction::Start),
            "ops ALL=(root) NOPASSWD: /usr/bin/systemctl start -- a\\\\x2db\\:c.mount"
        );
    }
}

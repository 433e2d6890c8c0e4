//! Reading what hosts answer: `systemctl show` blocks into status dots,
//! and `sudo -n` refusals into an error that names the missing line.

use std::collections::HashMap;

/// A unit's state on a host, as the panel shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UnitState {
    pub state: String,
    pub active_state: Option<String>,
    pub sub_state: Option<String>,
    pub unit_file_state: Option<String>,
    pub main_pid: Option<u32>,
    pub since: Option<String>,
    pub error: Option<String>,
}

impl UnitState {
    /// A unit whose host did not answer (`unreachable`) or whose poll
    /// failed (`unknown`), with why.
    pub(crate) fn failed(state: &str, error: impl Into<String>) -> Self {
        Self {
            state: state.to_owned(),
            error: Some(error.into()),
            ..Self::default()
        }
    }
}

/// `active` green, `inactive` grey, `failed` red, anything on its way or
/// unknown (`activating`, `deactivating`, `reloading`, `unreachable`, …)
/// amber.
pub(crate) fn dot(state: &str) -> &'static str {
    match state {
        "active" => "green",
        "inactive" | "not-found" => "grey",
        "failed" => "red",
        _ => "amber",
    }
}

/// One `Key=Value` block of `systemctl show`.
fn block(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn some(v: Option<&&str>) -> Option<String> {
    v.filter(|s| !s.is_empty()).map(|s| (*s).to_owned())
}

fn state_of(b: &HashMap<&str, &str>) -> UnitState {
    let active = some(b.get("ActiveState"));
    let not_found = b.get("LoadState") == Some(&"not-found");
    let state = match (&active, not_found) {
        (Some(a), false) => a.clone(),
        (Some(a), true) if a != "inactive" => a.clone(),
        (_, true) => "not-found".into(),
        (None, false) => "unknown".into(),
    };
    UnitState {
        state,
        active_state: active,
        sub_state: some(b.get("SubState")),
        unit_file_state: some(b.get("UnitFileState")),
        // systemd says 0 when there is no main process.
        main_pid: b
            .get("MainPID")
            .and_then(|p| p.parse().ok())
            .filter(|p| *p != 0),
        since: some(b.get("ActiveEnterTimestamp")),
        error: not_found.then(|| "the unit is not installed on this host".to_owned()),
    }
}

/// `systemctl show` output for `count` units: one state per unit, in the
/// order asked. A block missing from the output is `unknown`.
pub(crate) fn parse_show(out: &str, count: usize) -> Vec<UnitState> {
    let blocks: Vec<&str> = out.split("\n\n").filter(|b| !b.trim().is_empty()).collect();
    (0..count)
        .map(|i| match blocks.get(i) {
            Some(b) => state_of(&block(b)),
            None => UnitState::failed("unknown", "systemctl said nothing about this unit"),
        })
        .collect()
}

/// Whether stderr is `sudo -n` refusing for want of a password.
pub(crate) fn sudo_wants_password(stderr: &str) -> bool {
    stderr.contains("sudo: a password is required")
        || stderr.contains("sudo: a terminal is required")
}

/// The error people see when `sudo -n` refused: the line to install.
pub(crate) fn sudo_refused(login: &str, line: &str) -> String {
    format!(
        "sudo asked for a password: {login} may not run this without one. \
         Install this sudoers line on the host (visudo -f /etc/sudoers.d/shellway): {line}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "\
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled
MainPID=4242
ActiveEnterTimestamp=Thu 2026-12-03 23:00:00 UTC

LoadState=loaded
ActiveState=inactive
SubState=dead
UnitFileState=disabled
MainPID=0
ActiveEnterTimestamp=

ActiveState=failed
SubState=failed
LoadState=loaded
MainPID=0
UnitFileState=enabled
ActiveEnterTimestamp=

LoadState=loaded
ActiveState=activating
SubState=start-pre
MainPID=0

LoadState=not-found
ActiveState=inactive
SubState=dead
MainPID=0
";

    #[test]
    fn blocks_become_dots_in_the_order_asked() {
        let states = parse_show(SHOW, 6);
        let got: Vec<(&str, &str)> = states
            .iter()
            .map(|s| (s.state.as_str(), dot(&s.state)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("active", "green"),
                ("inactive", "grey"),
                ("failed", "red"),
                ("activating", "amber"),
                ("not-found", "grey"),
                ("unknown", "amber"),
            ]
        );
        assert_eq!(states[0].main_pid, Some(4242));
        assert_eq!(states[0].unit_file_state.as_deref(), Some("enabled"));
        assert_eq!(
            states[0].since.as_deref(),
            Some("Thu 2026-12-03 23:00:00 UTC")
        );
        assert_eq!(states[1].main_pid, None);
        assert_eq!(states[1].since, None);
        assert!(states[4].error.is_some());
        assert_eq!(dot("unreachable"), "amber");
        assert_eq!(dot("reloading"), "amber");
        assert_eq!(dot("deactivating"), "amber");
    }

    #[test]
    fn odd_output_is_unknown_not_a_panic() {
        for out in [
            "",
            "\n\n\n",
            "garbage",
            "=\n==\nActiveState",
            "MainPID=-1\n",
        ] {
            let states = parse_show(out, 2);
            assert_eq!(states.len(), 2);
            assert!(states.iter().all(|s| s.main_pid.is_none()));
        }
    }

    #[test]
    fn a_sudo_password_prompt_is_recognised_and_named() {
        assert!(sudo_wants_password("sudo: a password is required\n"));
        assert!(!sudo_wants_password(
            "Failed to restart x.service: Access denied"
        ));
        let msg = sudo_refused(
            "deploy",
            "deploy ALL=(root) NOPASSWD: /usr/bin/systemctl restart -- x.service",
        );
        assert!(
            msg.contains("NOPASSWD: /usr/bin/systemctl restart -- x.service"),
            "{msg}"
        );
    }
}

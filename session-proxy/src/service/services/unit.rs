//! What a service panel may name and do: systemd unit names and the
//! actions of the allowlist.

/// Longest unit name systemd accepts (`UNIT_NAME_MAX`).
const MAX_UNIT: usize = 256;

/// The unit types systemd knows; a name without one is a `.service`.
const SUFFIXES: [&str; 11] = [
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".slice",
    ".scope",
    ".device",
];

/// A unit name checked to hold only systemd's unit-name characters, so it
/// is one plain word wherever it goes (a command line, a sudoers line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unit(String);

impl Unit {
    /// `nginx` → `nginx.service`; anything but `A-Z a-z 0-9 : _ . \ @ -`,
    /// a leading `-` or `.`, or a name without a stem is refused.
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        let name = name.trim();
        let plain = |c: char| c.is_ascii_alphanumeric() || ":_.\\@-".contains(c);
        if name.is_empty() || !name.chars().all(plain) {
            return Err(format!(
                "a unit name is 1-{MAX_UNIT} characters of A-Z, a-z, 0-9, ':', '_', '.', '\\', '@' or '-'"
            ));
        }
        if name.starts_with(['-', '.']) {
            return Err("a unit name does not start with '-' or '.'".into());
        }
        let full = match SUFFIXES.iter().find(|s| name.ends_with(*s)) {
            Some(s) if name.len() == s.len() => {
                return Err("a unit name needs a name before its type".into())
            }
            Some(_) => name.to_owned(),
            None => format!("{name}.service"),
        };
        if full.len() > MAX_UNIT {
            return Err(format!("a unit name is at most {MAX_UNIT} characters"));
        }
        Ok(Self(full))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// What people may do to a unit (a service's allowlist is a set of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum UnitAction {
    Status,
    Start,
    Stop,
    Restart,
    Reload,
    Enable,
    Disable,
    Logs,
}

impl UnitAction {
    pub(crate) const ALL: [UnitAction; 8] = [
        Self::Status,
        Self::Start,
        Self::Stop,
        Self::Restart,
        Self::Reload,
        Self::Enable,
        Self::Disable,
        Self::Logs,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Reload => "reload",
            Self::Enable => "enable",
            Self::Disable => "disable",
            Self::Logs => "logs",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether it changes the unit: run through `systemctl <verb>` and,
    /// with `use_sudo`, through `sudo -n`. Status and logs only read.
    pub(crate) fn changes(self) -> bool {
        !matches!(self, Self::Status | Self::Logs)
    }
}

/// An allowlist as given: each name known, no duplicates, sorted.
pub(crate) fn parse_actions(names: &[String]) -> Result<Vec<UnitAction>, String> {
    let mut actions = Vec::with_capacity(names.len());
    for name in names {
        let action = UnitAction::parse(name.trim()).ok_or_else(|| {
            format!(
                "unknown action {name:?}: actions are {}",
                UnitAction::ALL.map(UnitAction::as_str).join(", ")
            )
        })?;
        actions.push(action);
    }
    if actions.is_empty() {
        return Err("allow at least one action".into());
    }
    actions.sort();
    actions.dedup();
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_get_their_type_and_keep_systemd_characters_only() {
        let ok = |n: &str| {
            Unit::parse(n)
                .map(|u| u.0)
                .unwrap_or_else(|e| panic!("{n}: {e}"))
        };
        assert_eq!(ok("nginx"), "nginx.service");
        assert_eq!(ok(" nginx.service "), "nginx.service");
        assert_eq!(ok("getty@tty1.service"), "getty@tty1.service");
        assert_eq!(ok("app@"), "app@.service");
        assert_eq!(ok("backup.timer"), "backup.timer");
        assert_eq!(
            ok("dev-disk-by\\x2duuid.device"),
            "dev-disk-by\\x2duuid.device"
        );
        assert_eq!(ok("sys:fs.mount"), "sys:fs.mount");
        for bad in [
            "",
            "nginx; rm -rf /",
            "a b",
            "$(id)",
            "`id`",
            "x'y",
            "x\"y",
            "a/b",
            "ünit",
            "x\ny",
            "-f",
            "--help",
            ".service",
            ".hidden",
            "*",
            "a|b",
            "a>b",
        ] {
            assert!(Unit::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Unit::parse(&"a".repeat(248)).is_ok());
        assert!(Unit::parse(&"a".repeat(249)).is_err());
    }

    #[test]
    fn allowlists_are_known_actions_sorted_without_duplicates() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_actions(&names(&["restart", "status", "restart"])),
            Ok(vec![UnitAction::Status, UnitAction::Restart])
        );
        assert!(parse_actions(&names(&["restart", "kill"])).is_err());
        assert!(parse_actions(&[]).is_err());
        assert!(UnitAction::Restart.changes());
        assert!(!UnitAction::Logs.changes());
    }
}

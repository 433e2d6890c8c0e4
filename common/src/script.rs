//! Batch scripts and the one place where text is made safe for a shell.
//!
//! A batch script is one step a line; blank lines and `#` comments are
//! skipped; `cd` persists from one step to the next; the batch stops at
//! the first step that fails.

/// Most steps a batch may have.
pub const MAX_STEPS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("the script has no steps (only blank lines and comments)")]
    Empty,
    #[error("the script has {0} steps; at most {MAX_STEPS} are allowed")]
    TooLong(usize),
    #[error("line {0} contains a NUL byte")]
    Nul(usize),
}

/// Splits a script into its steps.
pub fn parse_script(script: &str) -> Result<Vec<String>, ScriptError> {
    let mut steps = Vec::new();
    for (i, line) in script.lines().enumerate() {
        if line.contains('\0') {
            return Err(ScriptError::Nul(i + 1));
        }
        let step = line.trim();
        if step.is_empty() || step.starts_with('#') {
            continue;
        }
        steps.push(step.to_owned());
    }
    match steps.len() {
        0 => Err(ScriptError::Empty),
        n if n > MAX_STEPS => Err(ScriptError::TooLong(n)),
        _ => Ok(steps),
    }
}

/// If a step is a plain `cd`, the directory it goes to (`None` = home).
pub fn cd_target(step: &str) -> Option<Option<&str>> {
    let rest = step.strip_prefix("cd")?;
    if rest.is_empty() {
        return Some(None);
    }
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim();
    // Compound lines (`cd x && make`) run as ordinary steps.
    if rest.contains([';', '&', '|', '\n', '`', '$', '(', ')', '<', '>']) {
        return None;
    }
    Some(if rest.is_empty() { None } else { Some(rest) })
}

/// Quotes a string as one POSIX shell word.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b));
    if safe {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The command line that runs `step` inside working directory `cwd`.
pub fn in_directory(cwd: Option<&str>, step: &str) -> String {
    match cwd {
        Some(dir) => format!("cd {} && {step}", shell_quote(dir)),
        None => step.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_skip_blanks_and_comments() {
        let s = "# deploy\ncd /srv\n\n  ./deploy.sh --fast  \n# done\n";
        assert_eq!(
            parse_script(s),
            Ok(vec!["cd /srv".to_owned(), "./deploy.sh --fast".to_owned()])
        );
        assert_eq!(parse_script("# only\n\n"), Err(ScriptError::Empty));
        assert_eq!(parse_script("ls\n\0rm"), Err(ScriptError::Nul(2)));
        let long = "true\n".repeat(MAX_STEPS + 1);
        assert_eq!(
            parse_script(&long),
            Err(ScriptError::TooLong(MAX_STEPS + 1))
        );
    }

    #[test]
    fn recognises_plain_cd_only() {
        assert_eq!(cd_target("cd /srv"), Some(Some("/srv")));
        assert_eq!(cd_target("cd"), Some(None));
        assert_eq!(cd_target("cdrecord x"), None);
        assert_eq!(cd_target("cd /srv && make"), None);
        assert_eq!(cd_target("cd $(evil)"), None);
    }

    #[test]
    fn quoting_neutralises_metacharacters() {
        assert_eq!(shell_quote("/srv/app"), "/srv/app");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("x'; rm -rf / #"), r"'x'\''; rm -rf / #'");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(shell_quote("`id`"), "'`id`'");
        assert_eq!(in_directory(Some("/my dir"), "ls"), "cd '/my dir' && ls");
        assert_eq!(in_directory(None, "ls"), "ls");
    }
}

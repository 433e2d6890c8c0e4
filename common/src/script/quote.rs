//! The one place where text is made safe for a shell.

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

/// The shell word for a `cd` target taken literally, except that a leading
/// `~` or `~/` means the home directory, as in a shell. `~user` stays
/// literal.
pub fn cd_word(dir: &str) -> String {
    match dir.strip_prefix('~') {
        Some("") => "\"$HOME\"".to_owned(),
        Some(rest) if rest.starts_with('/') => {
            let rest = rest.trim_start_matches('/');
            if rest.is_empty() {
                "\"$HOME\"/".to_owned()
            } else {
                format!("\"$HOME\"/{}", shell_quote(rest))
            }
        }
        _ => shell_quote(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_neutralises_metacharacters() {
        assert_eq!(shell_quote("/srv/app"), "/srv/app");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("x'; rm -rf / #"), r"'x'\''; rm -rf / #'");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(shell_quote("`id`"), "'`id`'");
        assert_eq!(shell_quote("a\nb"), "'a\nb'");
        assert_eq!(shell_quote("~"), "'~'");
    }

    #[test]
    fn a_leading_tilde_is_home_and_nothing_else_expands() {
        assert_eq!(cd_word("~"), "\"$HOME\"");
        assert_eq!(cd_word("~/"), "\"$HOME\"/");
        assert_eq!(cd_word("~/src/app"), "\"$HOME\"/src/app");
        assert_eq!(cd_word("~/my dir"), "\"$HOME\"/'my dir'");
        assert_eq!(cd_word("~/$(reboot)"), "\"$HOME\"/'$(reboot)'");
        assert_eq!(cd_word("~/x'; rm -rf /"), r#""$HOME"/'x'\''; rm -rf /'"#);
        assert_eq!(cd_word("~/~"), "\"$HOME\"/'~'");
        // Only a leading tilde, and not `~user`.
        assert_eq!(cd_word("~root"), "'~root'");
        assert_eq!(cd_word("/srv/~"), "'/srv/~'");
        assert_eq!(cd_word("a~"), "'a~'");
        assert_eq!(cd_word("$HOME"), "'$HOME'");
        assert_eq!(cd_word("/srv"), "/srv");
    }
}

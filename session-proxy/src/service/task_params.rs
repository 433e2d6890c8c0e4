//! Task parameters: the one place a value from a person reaches a remote
//! shell inside a saved command. A task declares each parameter with a
//! pattern; `{{name}}` in its command becomes the value, checked against
//! the whole pattern and single-quoted for the shell — never pasted raw.

use std::collections::BTreeMap;

use regex_automata::meta::Regex;
use shellway_common::api::library::TaskParam;
// The one shell quoting (`'…'`, each `'` as `'\''`; plain words as they
// are): the shell reads a value back literally.
use shellway_common::script::shell_quote;

use super::ServiceError;

/// Most parameters a task declares.
const MAX_PARAMS: usize = 16;
/// Longest pattern.
const MAX_PATTERN: usize = 256;
/// Longest value.
const MAX_VALUE: usize = 1024;
/// Bytes the compiled pattern may take (a bound on what a pattern costs).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

fn name_ok(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The pattern as it is enforced: the whole value must match.
fn compile(pattern: &str) -> Result<Regex, String> {
    let anchored = format!("^(?:{pattern})$");
    Regex::builder()
        .configure(Regex::config().nfa_size_limit(Some(PATTERN_SIZE_LIMIT)))
        .build(&anchored)
        .map_err(|e| e.to_string())
}

/// The `{{name}}` references in `command`, in order.
fn references(command: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = command[from..].find("{{").map(|i| from + i) {
        let rest = &command[open + 2..];
        let Some(close) = rest.find("}}") else { break };
        let name = &rest[..close];
        if name_ok(name) {
            out.push((open, open + 2 + close + 2, name));
            from = open + 2 + close + 2;
        } else {
            from = open + 2;
        }
    }
    out
}

/// Checks a task's declared parameters against its command: names valid
/// and distinct, patterns that compile, every reference declared.
pub(crate) fn check(params: &[TaskParam], command: &str) -> Result<(), ServiceError> {
    let bad = |m: String| ServiceError::invalid("params", m);
    if params.len() > MAX_PARAMS {
        return Err(bad(format!("at most {MAX_PARAMS} parameters")));
    }
    for (i, p) in params.iter().enumerate() {
        if !name_ok(&p.name) {
            return Err(bad(format!(
                "parameter name {:?}: 1-32 of A-Z a-z 0-9 _, not starting with a digit",
                p.name
            )));
        }
        if params[..i].iter().any(|q| q.name == p.name) {
            return Err(bad(format!("parameter {:?} is declared twice", p.name)));
        }
        if p.pattern.is_empty() || p.pattern.len() > MAX_PATTERN {
            return Err(bad(format!(
                "parameter {:?}: a pattern of 1-{MAX_PATTERN} characters",
                p.name
            )));
        }
        compile(&p.pattern)
            .map_err(|e| bad(format!("parameter {:?}: bad pattern: {e}", p.name)))?;
    }
    for (_, _, name) in references(command) {
        if !params.iter().any(|p| p.name == name) {
            return Err(ServiceError::invalid(
                "command",
                format!("the command uses {{{{{name}}}}}, which is not a declared parameter"),
            ));
        }
    }
    Ok(())
}

/// The command with each `{{name}}` replaced by its value, shell-quoted,
/// after every value was checked: each declared parameter given, none
/// unknown, each matching its whole pattern.
pub(crate) fn render(
    command: &str,
    declared: &[TaskParam],
    values: &BTreeMap<String, String>,
) -> Result<String, ServiceError> {
    let field = |name: &str| format!("task.params.{name}");
    if let Some(unknown) = values
        .keys()
        .find(|k| !declared.iter().any(|p| &p.name == *k))
    {
        return Err(ServiceError::invalid(
            field(unknown),
            format!("the task has no parameter {unknown:?}"),
        ));
    }
    for p in declared {
        let value = values.get(&p.name).ok_or_else(|| {
            ServiceError::invalid(field(&p.name), format!("give a value for {:?}", p.name))
        })?;
        let fits = value.len() <= MAX_VALUE
            && !value.contains('\0')
            && compile(&p.pattern).is_ok_and(|re| re.is_match(value));
        if !fits {
            return Err(ServiceError::invalid(
                field(&p.name),
                format!("{:?} must match {} (whole value)", p.name, p.pattern),
            ));
        }
    }
    let mut out = String::with_capacity(command.len());
    let mut at = 0;
    for (start, end, name) in references(command) {
        out.push_str(&command[at..start]);
        // Checked above: every reference is declared and given.
        out.push_str(&shell_quote(values.get(name).map_or("", String::as_str)));
        at = end;
    }
    out.push_str(&command[at..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, pattern: &str) -> TaskParam {
        TaskParam {
            name: name.into(),
            pattern: pattern.into(),
            description: String::new(),
        }
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn values_are_quoted_never_pasted() {
        let declared = [param("msg", ".*")];
        let hostile = r#"'; rm -rf / #$(id)`id`"\"#;
        let cmd =
            render("echo {{msg}}", &declared, &values(&[("msg", hostile)])).unwrap_or_default();
        assert_eq!(cmd, r#"echo ''\''; rm -rf / #$(id)`id`"\'"#);
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn values_must_match_the_whole_pattern() {
        let declared = [param("unit", "[a-z]+")];
        let ok = render(
            "systemctl status {{unit}}",
            &declared,
            &values(&[("unit", "nginx")]),
        );
        assert_eq!(ok.ok().as_deref(), Some("systemctl status nginx"));
        // A pattern is anchored: a match inside the value is not enough.
        for bad in ["nginx; id", "", "NGINX", "a\nb"] {
            let err = render("x {{unit}}", &declared, &values(&[("unit", bad)]));
            assert!(err.is_err(), "{bad:?} accepted");
        }
        assert!(render("x {{unit}}", &declared, &values(&[])).is_err());
        let extra = values(&[("unit", "a"), ("other", "b")]);
        assert!(render("x {{unit}}", &declared, &extra).is_err());
    }

    #[test]
    fn declarations_are_checked_when_saved() {
        assert!(check(&[param("unit", "[a-z]+")], "restart {{unit}}").is_ok());
        assert!(check(&[param("unit", "([a-z]")], "x").is_err());
        assert!(check(&[param("9x", "a")], "x").is_err());
        assert!(check(&[param("a", "a"), param("a", "b")], "x").is_err());
        assert!(check(&[], "echo {{undeclared}}").is_err());
        // Not a reference: left as it is.
        assert!(check(&[], "awk '{{print $1}}'").is_ok());
        assert_eq!(
            render(
                "awk '{{ print }}' {{a}}",
                &[param("a", "x")],
                &values(&[("a", "x")])
            )
            .ok(),
            Some("awk '{{ print }}' x".to_owned())
        );
    }
}

//! What one step of a batch leaves to the next, and the command line of
//! each step.
//!
//! Every step runs in a fresh shell on its own exec channel, so nothing a
//! step does to its shell survives by itself. Three kinds of step are
//! recognised and carried forward by the runner instead: a plain `cd DIR`
//! (the directory, resolved with `pwd`), `export NAME=value …` (the values
//! as the host's shell computed them) and a function definition (its
//! text). Each later step runs after a prelude that restores them, values
//! quoted; everything else a step does stays in its own shell.

use super::lexer::{tokenize, Tok};
use super::nesting::Nesting;
use super::quote::{cd_word, shell_quote};

/// Largest prelude (directory, exports and functions) a batch may build:
/// it is sent again with every step, and a command line has limits.
pub const MAX_STATE: usize = 32 * 1024;

/// What kind of step this is, for what it leaves to later steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind<'a> {
    /// A plain `cd` (`None`: home).
    Cd(Option<&'a str>),
    /// `export` of these names, and nothing else.
    Export(Vec<String>),
    /// The definition of this function, and nothing else.
    Function(String),
    Command,
}

/// If a step is a plain `cd`, the directory it goes to (`None` = home).
/// The target is taken literally, but for a leading `~` (see `cd_word`).
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

pub fn classify(step: &str) -> StepKind<'_> {
    if let Some(dir) = cd_target(step) {
        return StepKind::Cd(dir);
    }
    let Ok(tokens) = tokenize(step) else {
        return StepKind::Command;
    };
    let words: Vec<&Tok> = tokens.iter().map(|t| &t.tok).collect();
    if let Some(names) = export_names(&words) {
        return StepKind::Export(names);
    }
    match function_name(&words) {
        Some(name) => StepKind::Function(name),
        None => StepKind::Command,
    }
}

/// A shell variable name.
fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A name a function may have here (bash allows more; this is the
/// portable set and `-`).
fn is_function_name(s: &str) -> bool {
    is_name(s.split('-').collect::<String>().as_str()) && !s.starts_with('-')
}

/// `export A=1 B="$A x" C`: the names, if the step is only that.
fn export_names(tokens: &[&Tok]) -> Option<Vec<String>> {
    let mut words = Vec::new();
    for tok in tokens {
        match tok {
            Tok::Word(w) => words.push(w.as_str()),
            Tok::Newline => {}
            Tok::Op(_) => return None,
        }
    }
    let (first, rest) = words.split_first()?;
    if *first != "export" || rest.is_empty() {
        return None;
    }
    rest.iter()
        .map(|word| {
            let name = word.split_once('=').map_or(*word, |(name, _)| name);
            is_name(name).then(|| name.to_owned())
        })
        .collect()
}

/// `name() { … }`, `function name { … }`: the name, if the step is one
/// definition and nothing after it.
fn function_name(tokens: &[&Tok]) -> Option<String> {
    let significant: Vec<&Tok> = tokens
        .iter()
        .copied()
        .filter(|t| **t != Tok::Newline)
        .collect();
    let word = |i: usize| match significant.get(i) {
        Some(Tok::Word(w)) => Some(w.as_str()),
        _ => None,
    };
    let op = |i: usize| match significant.get(i) {
        Some(Tok::Op(o)) => Some(*o),
        _ => None,
    };
    let (name, header_len) = if word(0) == Some("function") {
        let parens = op(2) == Some("(") && op(3) == Some(")");
        (word(1)?, if parens { 4 } else { 2 })
    } else if op(1) == Some("(") && op(2) == Some(")") {
        (word(0)?, 3)
    } else {
        return None;
    };
    if !is_function_name(name) || matches!(name, "if" | "while" | "until" | "for" | "case") {
        return None;
    }
    // The body: it must close exactly at the last token.
    let mut nesting = Nesting::new();
    let mut seen = 0usize;
    let mut opened = false;
    for tok in tokens {
        let token = super::lexer::Token {
            tok: (*tok).clone(),
            line: 1,
            end_line: 1,
        };
        nesting.feed(&token).ok()?;
        if **tok == Tok::Newline {
            continue;
        }
        seen += 1;
        if seen <= header_len {
            continue;
        }
        if nesting.depth() > 0 {
            opened = true;
        } else if seen < significant.len() || !opened {
            return None;
        }
    }
    (opened && nesting.depth() == 0).then(|| name.to_owned())
}

/// What a step's standard output tells the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// The working directory, from `pwd`.
    Cwd,
    /// The values of these names, each `=value` or empty (unset),
    /// NUL-terminated, after anything else.
    Exports(Vec<String>),
}

/// One step, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The shell script to run: the prelude, then the step.
    pub command: String,
    /// Capture standard output for the state instead of showing it.
    pub capture: Option<Capture>,
    /// The step defines this function (kept if it succeeds).
    pub defines: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the directory, exported variables and functions carried between steps exceed {} KiB", MAX_STATE / 1024)]
    TooLarge,
}

/// What a batch has carried forward so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchState {
    cwd: Option<String>,
    exports: Vec<(String, String)>,
    functions: Vec<(String, String)>,
}

impl BatchState {
    /// The lines that restore the state before a step.
    fn prelude(&self) -> String {
        let mut out = String::new();
        if let Some(dir) = &self.cwd {
            out.push_str(&format!("cd {} || exit\n", shell_quote(dir)));
        }
        for (name, value) in &self.exports {
            out.push_str(&format!("export {name}={}\n", shell_quote(value)));
        }
        for (_, definition) in &self.functions {
            out.push_str(definition);
            out.push('\n');
        }
        out
    }

    /// The command line of `step` and what to capture from it.
    pub fn plan(&self, step: &str) -> Planned {
        let prelude = self.prelude();
        let (body, capture, defines) = match classify(step) {
            StepKind::Cd(dir) => {
                let dir = dir.map(cd_word).unwrap_or_default();
                let body = format!("cd {dir} >/dev/null && pwd");
                (body, Some(Capture::Cwd), None)
            }
            StepKind::Export(names) => {
                let values: Vec<String> = names
                    .iter()
                    .map(|n| format!("\"${{{n}+=}}${{{n}-}}\""))
                    .collect();
                let body = format!("{{ {step}\n}} && printf '%s\\0' {}", values.join(" "));
                (body, Some(Capture::Exports(names)), None)
            }
            StepKind::Function(name) => (step.to_owned(), None, Some(name)),
            StepKind::Command => (step.to_owned(), None, None),
        };
        Planned {
            command: format!("{prelude}{body}"),
            capture,
            defines,
        }
    }

    /// Takes in what a step that succeeded leaves behind.
    pub fn absorb(
        &mut self,
        planned: &Planned,
        step: &str,
        stdout: &[u8],
    ) -> Result<(), StateError> {
        if stdout.len() > MAX_STATE {
            return Err(StateError::TooLarge);
        }
        match &planned.capture {
            Some(Capture::Cwd) => {
                let dir = String::from_utf8_lossy(stdout);
                let dir = dir.trim_end_matches('\n');
                if !dir.is_empty() {
                    self.cwd = Some(dir.to_owned());
                }
            }
            Some(Capture::Exports(names)) => {
                let fields: Vec<&[u8]> = stdout.split(|b| *b == 0).collect();
                // The last piece follows the last NUL: ours end there.
                let ours = fields.len().saturating_sub(1).saturating_sub(names.len());
                for (name, field) in names.iter().zip(&fields[ours..]) {
                    self.exports.retain(|(n, _)| n != name);
                    if let Some(value) = field.strip_prefix(b"=") {
                        let value = String::from_utf8_lossy(value).into_owned();
                        self.exports.push((name.clone(), value));
                    }
                }
            }
            None => {}
        }
        if let Some(name) = &planned.defines {
            match self.functions.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = step.to_owned(),
                None => self.functions.push((name.clone(), step.to_owned())),
            }
        }
        if self.prelude().len() > MAX_STATE {
            return Err(StateError::TooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_plain_cd_only() {
        assert_eq!(cd_target("cd /srv"), Some(Some("/srv")));
        assert_eq!(cd_target("cd"), Some(None));
        assert_eq!(cd_target("cd ~"), Some(Some("~")));
        assert_eq!(cd_target("cdrecord x"), None);
        assert_eq!(cd_target("cd /srv && make"), None);
        assert_eq!(cd_target("cd $(evil)"), None);
        assert_eq!(cd_target("cd /a\ncd /b"), None);
    }

    #[test]
    fn exports_functions_and_the_rest_are_told_apart() {
        assert_eq!(classify("cd /tmp"), StepKind::Cd(Some("/tmp")));
        assert_eq!(
            classify("export A=1 B=\"$A two\" C"),
            StepKind::Export(vec!["A".into(), "B".into(), "C".into()])
        );
        assert_eq!(
            classify("export PATH=\"$PATH:/opt/bin\""),
            StepKind::Export(vec!["PATH".into()])
        );
        assert_eq!(
            classify("export A=$(date; echo x)"),
            StepKind::Export(vec!["A".into()])
        );
        for other in [
            "export",
            "export -n A",
            "export A=1; rm x",
            "export A=1 && make",
            "export 'A'=1",
            "export 1A=2",
            "exports A=1",
            "A=1",
            "export A=1 > /tmp/x",
        ] {
            assert_eq!(classify(other), StepKind::Command, "{other}");
        }
        assert_eq!(
            classify("greet() {\n  echo \"hi $1\"\n}"),
            StepKind::Function("greet".into())
        );
        assert_eq!(
            classify("function deploy-app {\n  make\n}"),
            StepKind::Function("deploy-app".into())
        );
        assert_eq!(
            classify("function f() ( cd /x; ls )"),
            StepKind::Function("f".into())
        );
        assert_eq!(classify("f()\n{\n  ls\n}"), StepKind::Function("f".into()));
        for other in [
            "f() { ls; }; f",
            "f() { ls; } && echo x",
            "f()",
            "echo f() {",
            "if() { ls; }",
        ] {
            assert_eq!(classify(other), StepKind::Command, "{other}");
        }
    }

    #[test]
    fn later_steps_get_the_directory_exports_and_functions_quoted() {
        let mut state = BatchState::default();
        let cd = state.plan("cd ~/my app");
        assert_eq!(cd.command, "cd \"$HOME\"/'my app' >/dev/null && pwd");
        assert_eq!(
            state.absorb(&cd, "cd ~/my app", b"/home/u/my app\n"),
            Ok(())
        );
        let export = state.plan("export A=1 B");
        assert_eq!(
            export.command,
            "cd '/home/u/my app' || exit\n{ export A=1 B\n} && printf '%s\\0' \"${A+=}${A-}\" \"${B+=}${B-}\""
        );
        // B was unset; A's value came back with a quote and a newline.
        state
            .absorb(&export, "export A=1 B", b"noise\0=it's\nmultiline\0\0")
            .unwrap_or_else(|e| panic!("{e}"));
        let f = "f() {\n  echo \"$A\"\n}";
        let def = state.plan(f);
        assert_eq!(def.defines.as_deref(), Some("f"));
        state.absorb(&def, f, b"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            state.plan("f").command,
            "cd '/home/u/my app' || exit\nexport A='it'\\''s\nmultiline'\nf() {\n  echo \"$A\"\n}\nf"
        );
        // Re-exporting replaces; an unset name goes away.
        let again = state.plan("export A");
        state
            .absorb(&again, "export A", b"\0")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!state.plan("ls").command.contains("export A"));
    }

    #[test]
    fn the_state_is_bounded() {
        let mut state = BatchState::default();
        let export = state.plan("export BIG");
        let mut big = b"=".to_vec();
        big.extend(vec![b'x'; MAX_STATE]);
        big.push(0);
        assert_eq!(
            state.absorb(&export, "export BIG", &big),
            Err(StateError::TooLarge)
        );
    }

    #[test]
    fn hostile_exports_stay_values() {
        let mut state = BatchState::default();
        let export = state.plan("export X");
        state
            .absorb(&export, "export X", b"='; reboot; echo '$(id)`id`\0")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            state.plan("true").command,
            "export X=''\\''; reboot; echo '\\''$(id)`id`'\ntrue"
        );
    }
}

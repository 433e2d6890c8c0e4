//! Batch scripts: splitting a script into steps, what steps carry forward,
//! and the one place where text is made safe for a shell.
//!
//! A step is a complete shell command: usually one line, but a line that
//! ends with `\`, `&&`, `||` or `|` goes on, and a compound command (`if …
//! fi`, `for`/`while`/`until … done`, `case … esac`, `{ … }`, `( … )`, a
//! function definition) runs to its closing keyword, nested ones included.
//! Quotes, `$(…)`, here-documents and comments are understood well enough
//! that keywords inside them do not count. Blank lines and `#` comment
//! lines between steps are skipped. What a step leaves to the next is in
//! [`state`]; the batch stops at the first step that fails.

mod lexer;
mod nesting;
mod quote;
pub mod state;

pub use quote::{cd_word, shell_quote};
pub use state::{cd_target, BatchState, Planned};

use lexer::Tok;
use nesting::Nesting;

/// Most steps a batch may have.
pub const MAX_STEPS: usize = 500;
/// Largest script, in bytes.
pub const MAX_SCRIPT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("the script has no steps (only blank lines and comments)")]
    Empty,
    #[error("the script has {0} steps; at most {MAX_STEPS} are allowed")]
    TooLong(usize),
    #[error("the script is {0} bytes; at most {MAX_SCRIPT} are allowed")]
    TooLarge(usize),
    #[error("line {0} contains a NUL byte")]
    Nul(usize),
    #[error("line {line}: {what} is never closed")]
    Unterminated { line: usize, what: &'static str },
    #[error("line {line}: the here-document ending with `{delimiter}` is never ended")]
    UnterminatedHeredoc { line: usize, delimiter: String },
    #[error("line {line} ends with `{what}` but no line follows")]
    DanglingContinuation { line: usize, what: String },
    #[error("line {line}: `{opener}` is never closed (expected `{closer}`)")]
    Unclosed {
        line: usize,
        opener: &'static str,
        closer: &'static str,
    },
    #[error("line {line}: `{word}` {context}")]
    Unexpected {
        line: usize,
        word: String,
        context: &'static str,
    },
    #[error("line {line}: a function definition has no body")]
    NoFunctionBody { line: usize },
    #[error("line {line}: quotes and substitutions are nested more than {max} deep")]
    TooDeep { line: usize, max: usize },
}

/// Splits a script into its steps, or says which line is wrong.
pub fn parse_script(script: &str) -> Result<Vec<String>, ScriptError> {
    if script.len() > MAX_SCRIPT {
        return Err(ScriptError::TooLarge(script.len()));
    }
    if let Some(i) = script.lines().position(|l| l.contains('\0')) {
        return Err(ScriptError::Nul(i + 1));
    }
    let text = script.replace("\r\n", "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let step_text = |first: usize, last: usize| {
        let last = last.min(lines.len());
        lines[first - 1..last].join("\n").trim().to_owned()
    };
    let mut steps = Vec::new();
    let mut nesting = Nesting::new();
    let mut first_line = None;
    for token in lexer::tokenize(&text)? {
        if first_line.is_none() {
            if token.tok == Tok::Newline {
                continue;
            }
            first_line = Some(token.line);
        }
        nesting.feed(&token)?;
        if token.tok == Tok::Newline && nesting.complete() {
            if let Some(first) = first_line.take() {
                steps.push(step_text(first, token.end_line));
            }
        }
    }
    if let Some(first) = first_line {
        nesting.finish()?;
        steps.push(step_text(first, lines.len()));
    }
    match steps.len() {
        0 => Err(ScriptError::Empty),
        n if n > MAX_STEPS => Err(ScriptError::TooLong(n)),
        _ => Ok(steps),
    }
}

/// A step as one line for progress reports: its first line, with `…` when
/// it has more (or is very long).
pub fn summary(step: &str) -> String {
    const MAX: usize = 200;
    let first = step.lines().next().unwrap_or_default().trim_end();
    let more = step.contains('\n');
    if first.chars().count() > MAX {
        let cut: String = first.chars().take(MAX).collect();
        return format!("{cut} …");
    }
    if more {
        format!("{first} …")
    } else {
        first.to_owned()
    }
}

#[cfg(test)]
mod tests;

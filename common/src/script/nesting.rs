//! Which compound commands are open at each token: `if … fi`, loops,
//! `case … esac`, `{ … }`, `( … )`, function definitions, and lines that
//! continue (`&&`, `||`, `|` at the end). Reserved words count only where a
//! command may start, as in the shell: `echo fi` closes nothing.

use super::lexer::{Tok, Token};
use super::ScriptError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    If,
    /// `for`, `select`, `while`, `until`: closed by `done`.
    Loop,
    Case(CaseAt),
    Brace,
    Paren,
}

/// Where a `case` is in its grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaseAt {
    /// `case WORD`: the word is next.
    Subject,
    /// `in` is next.
    In,
    /// A pattern list (`a|b)`), or `esac`.
    Pattern,
    /// The commands of an item, up to `;;`.
    Body,
}

impl Frame {
    fn opener(self) -> &'static str {
        match self {
            Self::If => "if",
            Self::Loop => "for/while/until",
            Self::Case(_) => "case",
            Self::Brace => "{",
            Self::Paren => "(",
        }
    }

    fn closer(self) -> &'static str {
        match self {
            Self::If => "fi",
            Self::Loop => "done",
            Self::Case(_) => "esac",
            Self::Brace => "}",
            Self::Paren => ")",
        }
    }
}

/// Progress through a function definition's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Header {
    #[default]
    None,
    /// A word where a command starts: maybe a function's name.
    Name,
    /// `name (`: a `)` next makes it a definition.
    Open,
    /// `function`: the name is next.
    Keyword,
    /// `function name`: `()` or the body next.
    Named,
    /// The header is complete; the body (a compound command) is next,
    /// possibly after newlines.
    Body,
}

#[derive(Debug, Default)]
pub(crate) struct Nesting {
    stack: Vec<(Frame, usize)>,
    /// A command may start at the next word.
    command_start: bool,
    /// The line ended with `&&`, `||` or `|` (on this line): it goes on.
    continues: Option<(&'static str, usize)>,
    header: Header,
    /// Where the function header began.
    header_line: usize,
    /// Inside `[[ … ]]`, where `(`, `<` and `||` are not structure.
    test: bool,
    /// The next word is a redirection's target, not a command.
    redirect_target: bool,
    line: usize,
}

impl Nesting {
    pub(crate) fn new() -> Self {
        Self {
            command_start: true,
            ..Self::default()
        }
    }

    /// True when everything opened so far is closed: a newline here ends
    /// the command.
    pub(crate) fn complete(&self) -> bool {
        self.stack.is_empty()
            && self.continues.is_none()
            && !self.test
            && matches!(self.header, Header::None | Header::Name)
    }

    /// How many compound commands are open.
    pub(crate) fn depth(&self) -> usize {
        self.stack.len()
    }

    /// The error for a script that ends here.
    pub(crate) fn finish(&self) -> Result<(), ScriptError> {
        if let Some((frame, line)) = self.stack.last() {
            return Err(ScriptError::Unclosed {
                line: *line,
                opener: frame.opener(),
                closer: frame.closer(),
            });
        }
        if self.test {
            return Err(ScriptError::Unclosed {
                line: self.line,
                opener: "[[",
                closer: "]]",
            });
        }
        if let Some((op, line)) = self.continues {
            return Err(ScriptError::DanglingContinuation {
                line,
                what: op.into(),
            });
        }
        if !matches!(self.header, Header::None | Header::Name) {
            return Err(ScriptError::NoFunctionBody {
                line: self.header_line,
            });
        }
        Ok(())
    }

    pub(crate) fn feed(&mut self, token: &Token) -> Result<(), ScriptError> {
        self.line = token.line;
        match &token.tok {
            Tok::Newline => self.newline(),
            Tok::Word(word) => self.word(word),
            Tok::Op(op) => self.op(op),
        }
    }

    fn top(&self) -> Option<Frame> {
        self.stack.last().map(|(f, _)| *f)
    }

    fn set_case(&mut self, at: CaseAt) {
        if let Some((frame, _)) = self.stack.last_mut() {
            *frame = Frame::Case(at);
        }
    }

    fn newline(&mut self) -> Result<(), ScriptError> {
        self.redirect_target = false;
        self.header = match self.header {
            Header::Named | Header::Body => Header::Body,
            _ => Header::None,
        };
        if !matches!(self.top(), Some(Frame::Case(CaseAt::Subject | CaseAt::In))) {
            self.command_start = true;
        }
        Ok(())
    }

    fn unexpected(&self, word: &str, context: &'static str) -> ScriptError {
        ScriptError::Unexpected {
            line: self.line,
            word: word.into(),
            context,
        }
    }

    fn word(&mut self, word: &str) -> Result<(), ScriptError> {
        self.continues = None;
        if self.test {
            self.test = word != "]]";
            return Ok(());
        }
        if std::mem::take(&mut self.redirect_target) {
            return Ok(());
        }
        match self.top() {
            Some(Frame::Case(CaseAt::Subject)) => {
                self.set_case(CaseAt::In);
                return Ok(());
            }
            Some(Frame::Case(CaseAt::In)) => {
                if word != "in" {
                    return Err(self.unexpected(word, "where `case … in` needs `in`"));
                }
                self.set_case(CaseAt::Pattern);
                return Ok(());
            }
            Some(Frame::Case(CaseAt::Pattern)) => {
                if word == "esac" {
                    self.stack.pop();
                    self.command_start = false;
                }
                return Ok(());
            }
            _ => {}
        }
        if self.header == Header::Keyword {
            self.header = Header::Named;
            self.command_start = true;
            return Ok(());
        }
        if !self.command_start {
            self.header = Header::None;
            return Ok(());
        }
        self.reserved(word)
    }

    /// A word where a command may start.
    fn reserved(&mut self, word: &str) -> Result<(), ScriptError> {
        let body_starts = matches!(
            word,
            "{" | "if" | "for" | "select" | "while" | "until" | "case"
        );
        if self.header == Header::Body && !body_starts {
            self.header = Header::None;
        }
        if body_starts {
            self.header = Header::None;
        }
        let line = self.line;
        match word {
            "if" => self.stack.push((Frame::If, line)),
            "then" | "elif" | "else" => {
                if self.top() != Some(Frame::If) {
                    return Err(self.unexpected(word, "outside an `if`"));
                }
            }
            "fi" | "done" | "}" | "esac" => {
                let expected = match word {
                    "fi" => Frame::If,
                    "done" => Frame::Loop,
                    "}" => Frame::Brace,
                    _ => Frame::Case(CaseAt::Body),
                };
                let matches = match self.top() {
                    Some(Frame::Case(_)) => expected == Frame::Case(CaseAt::Body),
                    top => top == Some(expected),
                };
                if !matches {
                    return Err(self.unexpected(word, "without a matching opening keyword"));
                }
                self.stack.pop();
                self.command_start = false;
                return Ok(());
            }
            "for" | "select" => {
                self.stack.push((Frame::Loop, line));
                self.command_start = false;
                return Ok(());
            }
            "while" | "until" => self.stack.push((Frame::Loop, line)),
            "do" => {
                if self.top() != Some(Frame::Loop) {
                    return Err(self.unexpected(word, "outside a `for`, `while` or `until`"));
                }
            }
            "case" => {
                self.stack.push((Frame::Case(CaseAt::Subject), line));
                self.command_start = false;
                return Ok(());
            }
            "{" => self.stack.push((Frame::Brace, line)),
            "!" | "time" => {}
            "[[" => {
                self.test = true;
                self.command_start = false;
                return Ok(());
            }
            "function" => {
                self.header = Header::Keyword;
                self.header_line = line;
                self.command_start = false;
                return Ok(());
            }
            _ => {
                self.header = Header::Name;
                self.header_line = line;
                self.command_start = false;
                return Ok(());
            }
        }
        self.command_start = true;
        Ok(())
    }

    fn op(&mut self, op: &'static str) -> Result<(), ScriptError> {
        if self.test {
            return Ok(());
        }
        self.continues = matches!(op, "&&" | "||" | "|" | "|&").then_some((op, self.line));
        let header = std::mem::take(&mut self.header);
        match op {
            "|" if self.top() == Some(Frame::Case(CaseAt::Pattern)) => {
                self.continues = None;
            }
            ";" | "&" | "&&" | "||" | "|" | "|&" => self.command_start = true,
            ";;" | ";&" | ";;&" => {
                if self.top() != Some(Frame::Case(CaseAt::Body)) {
                    return Err(self.unexpected(op, "outside a `case`"));
                }
                self.set_case(CaseAt::Pattern);
            }
            "(" => {
                if self.top() == Some(Frame::Case(CaseAt::Pattern)) {
                    // The optional `(` before a pattern.
                    return Ok(());
                }
                if matches!(header, Header::Name | Header::Named) {
                    self.header = Header::Open;
                }
                self.stack.push((Frame::Paren, self.line));
                self.command_start = true;
            }
            ")" => match self.top() {
                Some(Frame::Case(CaseAt::Pattern)) => {
                    self.set_case(CaseAt::Body);
                    self.command_start = true;
                }
                Some(Frame::Paren) => {
                    self.stack.pop();
                    if header == Header::Open {
                        self.header = Header::Body;
                        self.command_start = true;
                    } else {
                        self.command_start = false;
                    }
                }
                _ => return Err(self.unexpected(op, "without a matching `(`")),
            },
            // Redirections: the next word is a file name (or a
            // here-document's delimiter), not a command.
            _ => {
                self.header = header;
                self.redirect_target = true;
            }
        }
        Ok(())
    }
}

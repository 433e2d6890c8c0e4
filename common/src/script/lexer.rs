//! Just enough of the shell's lexical rules to find where a command ends:
//! words (with their quoting intact), operators and newlines, each with
//! the line it starts on. Quotes, `$(…)`, `${…}`, backticks, comments,
//! `\` line continuations and here-document bodies are consumed whole, so
//! a keyword inside them is never mistaken for structure.

use super::ScriptError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A word as written (quotes included): `"if"` is not the keyword `if`.
    Word(String),
    Op(&'static str),
    /// The end of a line; here-document bodies that follow it belong to it.
    Newline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    /// 1-based line the token starts on.
    pub(crate) line: usize,
    /// Line the token ends on (a newline's here-document bodies included).
    pub(crate) end_line: usize,
}

/// Operators, longest first so `;;&` wins over `;;` and `;`.
const OPERATORS: [&str; 22] = [
    ";;&", "<<<", "<<-", "&>>", ";;", ";&", "&&", "||", "|&", "<<", "<&", "<>", ">>", ">&", ">|",
    "&>", ";", "&", "|", "<", ">", "(",
];

/// Deepest nesting of quotes and substitutions inside one another (the
/// lexer recurses into them; hostile input must not exhaust the stack).
const MAX_DEPTH: usize = 64;

/// A here-document announced on the current line, read after its newline.
struct Heredoc {
    delimiter: String,
    strip_tabs: bool,
    line: usize,
}

pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, ScriptError> {
    let mut lexer = Lexer {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
        tokens: Vec::new(),
        heredocs: Vec::new(),
        delimiter_next: None,
        depth: 0,
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: usize,
    tokens: Vec<Token>,
    heredocs: Vec<Heredoc>,
    /// The next word is a here-document delimiter (`true`: `<<-`).
    delimiter_next: Option<bool>,
    /// How deep quotes and substitutions are nested here.
    depth: usize,
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn push(&mut self, tok: Tok, line: usize) {
        let end_line = self.line;
        self.tokens.push(Token {
            tok,
            line,
            end_line,
        });
    }

    fn run(&mut self) -> Result<(), ScriptError> {
        while let Some(b) = self.peek(0) {
            match b {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\\' if self.peek(1) == Some(b'\n') => self.continuation()?,
                b'\n' => self.newline()?,
                b'#' => self.comment(),
                b')' => {
                    self.pos += 1;
                    self.push(Tok::Op(")"), self.line);
                }
                b'<' | b'>' if self.peek(1) == Some(b'(') => self.word()?,
                b';' | b'&' | b'|' | b'<' | b'>' | b'(' => self.operator(),
                _ => self.word()?,
            }
        }
        // A script that does not end with a newline still ends its line.
        if !self.heredocs.is_empty() {
            self.newline()?;
        }
        Ok(())
    }

    /// `\` at the end of a line joins the next line to it.
    fn continuation(&mut self) -> Result<(), ScriptError> {
        let line = self.line;
        self.pos += 2;
        self.line += 1;
        if self.text[self.pos..].trim().is_empty() {
            return Err(ScriptError::DanglingContinuation {
                line,
                what: "\\".into(),
            });
        }
        Ok(())
    }

    fn comment(&mut self) {
        while let Some(b) = self.peek(0) {
            if b == b'\n' {
                break;
            }
            self.pos += 1;
        }
    }

    fn operator(&mut self) {
        let rest = &self.text[self.pos..];
        let op = OPERATORS
            .iter()
            .find(|op| rest.starts_with(**op))
            .copied()
            .unwrap_or(";");
        self.pos += op.len();
        if op == "<<" || op == "<<-" {
            self.delimiter_next = Some(op == "<<-");
        }
        self.push(Tok::Op(op), self.line);
    }

    fn newline(&mut self) -> Result<(), ScriptError> {
        let line = self.line;
        if self.peek(0) == Some(b'\n') {
            self.pos += 1;
            self.line += 1;
        }
        let mut last = line;
        for doc in std::mem::take(&mut self.heredocs) {
            last = self.heredoc_body(&doc)?;
        }
        self.tokens.push(Token {
            tok: Tok::Newline,
            line,
            end_line: last,
        });
        Ok(())
    }

    /// Skips a here-document's body through its delimiter line; the line
    /// number of that line.
    fn heredoc_body(&mut self, doc: &Heredoc) -> Result<usize, ScriptError> {
        while self.pos < self.bytes.len() {
            let rest = &self.text[self.pos..];
            let (body_line, len) = match rest.find('\n') {
                Some(end) => (&rest[..end], end + 1),
                None => (rest, rest.len()),
            };
            let this_line = self.line;
            self.pos += len;
            if len > body_line.len() {
                self.line += 1;
            }
            let candidate = if doc.strip_tabs {
                body_line.trim_start_matches('\t')
            } else {
                body_line
            };
            if candidate.trim_end_matches('\r') == doc.delimiter {
                return Ok(this_line);
            }
        }
        Err(ScriptError::UnterminatedHeredoc {
            line: doc.line,
            delimiter: doc.delimiter.chars().take(64).collect(),
        })
    }

    fn word(&mut self) -> Result<(), ScriptError> {
        let start = self.pos;
        let line = self.line;
        if matches!(self.peek(0), Some(b'<' | b'>')) {
            // Process substitution `<(…)`: a word of its own.
            self.pos += 1;
            self.paren_group(line, "`<(`")?;
        }
        while let Some(b) = self.peek(0) {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' => {
                    break
                }
                b'\\' => self.escape()?,
                b'\'' => self.single_quote()?,
                b'"' => self.double_quote()?,
                b'`' => self.backtick()?,
                b'$' => self.dollar()?,
                _ => self.pos += 1,
            }
        }
        let raw = self.text[start..self.pos].to_owned();
        if let Some(strip_tabs) = self.delimiter_next.take() {
            let delimiter = raw.replace(['\'', '"', '\\'], "");
            self.heredocs.push(Heredoc {
                delimiter,
                strip_tabs,
                line,
            });
        }
        self.push(Tok::Word(raw), line);
        Ok(())
    }

    /// `\x`: the next character is literal (a newline: the line goes on).
    fn escape(&mut self) -> Result<(), ScriptError> {
        match self.peek(1) {
            None => {
                return Err(ScriptError::DanglingContinuation {
                    line: self.line,
                    what: "\\".into(),
                })
            }
            Some(b'\n') => self.line += 1,
            Some(_) => {}
        }
        self.pos += 2;
        Ok(())
    }

    fn unterminated(line: usize, what: &'static str) -> ScriptError {
        ScriptError::Unterminated { line, what }
    }

    fn single_quote(&mut self) -> Result<(), ScriptError> {
        let line = self.line;
        self.pos += 1;
        while let Some(b) = self.peek(0) {
            self.pos += 1;
            match b {
                b'\'' => return Ok(()),
                b'\n' => self.line += 1,
                _ => {}
            }
        }
        Err(Self::unterminated(line, "a single quote (')"))
    }

    /// Runs `scan` one nesting level deeper, refusing to go too deep.
    fn nested(
        &mut self,
        scan: impl FnOnce(&mut Self) -> Result<(), ScriptError>,
    ) -> Result<(), ScriptError> {
        if self.depth >= MAX_DEPTH {
            return Err(ScriptError::TooDeep {
                line: self.line,
                max: MAX_DEPTH,
            });
        }
        self.depth += 1;
        let scanned = scan(self);
        self.depth -= 1;
        scanned
    }

    fn double_quote(&mut self) -> Result<(), ScriptError> {
        self.nested(Self::double_quote_inner)
    }

    fn double_quote_inner(&mut self) -> Result<(), ScriptError> {
        let line = self.line;
        self.pos += 1;
        while let Some(b) = self.peek(0) {
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => self.escape()?,
                b'`' => self.backtick()?,
                b'$' => self.dollar()?,
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
        }
        Err(Self::unterminated(line, "a double quote (\")"))
    }

    fn backtick(&mut self) -> Result<(), ScriptError> {
        let line = self.line;
        self.pos += 1;
        while let Some(b) = self.peek(0) {
            match b {
                b'`' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => self.escape()?,
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
        }
        Err(Self::unterminated(line, "a backtick (`)"))
    }

    /// `$(…)`, `$((…))`, `${…}` or a plain `$`.
    fn dollar(&mut self) -> Result<(), ScriptError> {
        let line = self.line;
        match self.peek(1) {
            Some(b'(') => {
                self.pos += 1;
                self.paren_group(line, "`$(`")
            }
            Some(b'{') => {
                self.pos += 1;
                self.brace_group(line)
            }
            _ => {
                self.pos += 1;
                Ok(())
            }
        }
    }

    /// From a `(` to its matching `)`: shell code, with quotes and
    /// comments of its own.
    fn paren_group(&mut self, line: usize, what: &'static str) -> Result<(), ScriptError> {
        self.nested(|lexer| lexer.paren_group_inner(line, what))
    }

    fn paren_group_inner(&mut self, line: usize, what: &'static str) -> Result<(), ScriptError> {
        let mut depth = 0usize;
        let mut word_start = true;
        while let Some(b) = self.peek(0) {
            let starts_word = word_start;
            word_start = matches!(b, b' ' | b'\t' | b'\n' | b';' | b'(' | b'|' | b'&');
            match b {
                b'(' => {
                    depth += 1;
                    self.pos += 1;
                }
                b')' => {
                    self.pos += 1;
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                b'#' if starts_word => self.comment(),
                b'\\' => self.escape()?,
                b'\'' => self.single_quote()?,
                b'"' => self.double_quote()?,
                b'`' => self.backtick()?,
                b'$' => self.dollar()?,
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
        }
        Err(Self::unterminated(line, what))
    }

    /// From `${`'s brace to the matching `}`.
    fn brace_group(&mut self, line: usize) -> Result<(), ScriptError> {
        self.nested(|lexer| lexer.brace_group_inner(line))
    }

    fn brace_group_inner(&mut self, line: usize) -> Result<(), ScriptError> {
        let mut depth = 0usize;
        while let Some(b) = self.peek(0) {
            match b {
                b'{' => {
                    depth += 1;
                    self.pos += 1;
                }
                b'}' => {
                    self.pos += 1;
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                b'\\' => self.escape()?,
                b'\'' => self.single_quote()?,
                b'"' => self.double_quote()?,
                b'`' => self.backtick()?,
                b'$' => self.dollar()?,
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
        }
        Err(Self::unterminated(line, "`${`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        tokenize(text)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    fn w(s: &str) -> Tok {
        Tok::Word(s.into())
    }

    #[test]
    fn words_keep_their_quotes_and_operators_split_them() {
        assert_eq!(
            toks("echo 'a b' \"if\" x;y&&z|w\n"),
            vec![
                w("echo"),
                w("'a b'"),
                w("\"if\""),
                w("x"),
                Tok::Op(";"),
                w("y"),
                Tok::Op("&&"),
                w("z"),
                Tok::Op("|"),
                w("w"),
                Tok::Newline
            ]
        );
        assert_eq!(
            toks("case x in a) b;;& esac"),
            vec![
                w("case"),
                w("x"),
                w("in"),
                w("a"),
                Tok::Op(")"),
                w("b"),
                Tok::Op(";;&"),
                w("esac")
            ]
        );
    }

    #[test]
    fn substitutions_and_expansions_are_one_word() {
        assert_eq!(
            toks("x=$(echo \"fi)\" ; done) ${y:-}} $((1+(2))) `a b`\n"),
            vec![
                w("x=$(echo \"fi)\" ; done)"),
                w("${y:-}}"),
                w("$((1+(2)))"),
                w("`a b`"),
                Tok::Newline
            ]
        );
        assert_eq!(
            toks("diff <(ls a) >(cat)"),
            vec![w("diff"), w("<(ls a)"), w(">(cat)")]
        );
    }

    #[test]
    fn comments_end_at_the_line_and_only_start_words() {
        assert_eq!(
            toks("echo a#b # if then\nfi"),
            vec![w("echo"), w("a#b"), Tok::Newline, w("fi")]
        );
        assert_eq!(toks("echo $(ls # )\n)"), vec![w("echo"), w("$(ls # )\n)")]);
    }

    #[test]
    fn lines_are_counted_through_quotes_and_continuations() {
        let t = tokenize("a 'x\ny' \\\nb\nc").unwrap_or_else(|e| panic!("{e}"));
        let lines: Vec<(Tok, usize)> = t.into_iter().map(|t| (t.tok, t.line)).collect();
        assert_eq!(
            lines,
            vec![
                (w("a"), 1),
                (w("'x\ny'"), 1),
                (w("b"), 3),
                (Tok::Newline, 3),
                (w("c"), 4)
            ]
        );
    }

    #[test]
    fn heredoc_bodies_belong_to_their_line() {
        let t = tokenize("cat <<EOF >x; cat <<-'E2'\nif\n\tEOF\nEOF\n\tfi\n\tE2\nls\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let newline = t
            .iter()
            .find(|t| t.tok == Tok::Newline)
            .map(|t| (t.line, t.end_line));
        assert_eq!(newline, Some((1, 6)));
        assert_eq!(t.iter().filter(|t| t.tok == w("if")).count(), 0);
        assert_eq!(
            t.last().map(|t| (t.tok.clone(), t.line)),
            Some((Tok::Newline, 7))
        );
        // `<<<` is a here-string, not a here-document.
        assert_eq!(
            toks("cat <<< EOF\nls"),
            vec![w("cat"), Tok::Op("<<<"), w("EOF"), Tok::Newline, w("ls")]
        );
    }

    #[test]
    fn unterminated_things_name_the_line_they_start_on() {
        let err = |s: &str| tokenize(s).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            err("ls\necho 'abc\n\n"),
            "line 2: a single quote (') is never closed"
        );
        assert_eq!(
            err("echo \"a\\\"\n"),
            "line 1: a double quote (\") is never closed"
        );
        assert_eq!(err("x=$(ls\n"), "line 1: `$(` is never closed");
        assert_eq!(err("echo `ls"), "line 1: a backtick (`) is never closed");
        assert_eq!(err("a\nb ${x"), "line 2: `${` is never closed");
        assert_eq!(
            err("cat <<EOF\nbody\nEOF \n"),
            "line 1: the here-document ending with `EOF` is never ended"
        );
        assert_eq!(
            err("ls \\\n  \n"),
            "line 1 ends with `\\` but no line follows"
        );
    }
}

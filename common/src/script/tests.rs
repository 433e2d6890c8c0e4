//! Splitting scripts into steps: the cases people write, and the ones that
//! try to confuse the splitter.

use super::*;

fn steps(script: &str) -> Vec<String> {
    parse_script(script).unwrap_or_else(|e| panic!("{script:?}: {e}"))
}

fn error(script: &str) -> String {
    match parse_script(script) {
        Ok(steps) => panic!("{script:?} parsed as {steps:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn steps_skip_blanks_and_comments() {
    let s = "# deploy\ncd /srv\n\n  ./deploy.sh --fast  \n# done\n";
    assert_eq!(steps(s), vec!["cd /srv", "./deploy.sh --fast"]);
    assert_eq!(parse_script("# only\n\n"), Err(ScriptError::Empty));
    assert_eq!(parse_script("ls\n\0rm"), Err(ScriptError::Nul(2)));
    let long = "true\n".repeat(MAX_STEPS + 1);
    assert_eq!(
        parse_script(&long),
        Err(ScriptError::TooLong(MAX_STEPS + 1))
    );
    let large = "#".repeat(MAX_SCRIPT + 1);
    assert_eq!(
        parse_script(&large),
        Err(ScriptError::TooLarge(MAX_SCRIPT + 1))
    );
    assert_eq!(steps("ls\r\npwd\r\n"), vec!["ls", "pwd"]);
}

#[test]
fn a_multi_line_if_is_one_step() {
    let s = "cd /srv\nif [ -d x ]; then\n  echo yes\nelif true\nthen\n  echo maybe\nelse\n  echo no\nfi\nls";
    assert_eq!(
        steps(s),
        vec![
            "cd /srv",
            "if [ -d x ]; then\n  echo yes\nelif true\nthen\n  echo maybe\nelse\n  echo no\nfi",
            "ls"
        ]
    );
}

#[test]
fn nested_blocks_close_at_their_own_keywords() {
    let s = "for h in a b; do\n  if [ \"$h\" = a ]; then\n    while false; do :; done\n    until true\n    do :\n    done\n  fi\ndone\necho end";
    let got = steps(s);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].ends_with("done"), "{got:?}");
    assert_eq!(got[1], "echo end");
    assert_eq!(
        steps("{ echo a\n  ( cd /tmp\n    ls )\n}\necho b"),
        vec!["{ echo a\n  ( cd /tmp\n    ls )\n}", "echo b"]
    );
}

#[test]
fn case_items_with_double_semicolons_and_keyword_patterns() {
    let s = "case \"$1\" in\n  start|up) echo s;;\n  (fi) echo f ;;\n  done) echo d;;&\n  *) if true; then echo x; fi\n     ;;\nesac\nls";
    let got = steps(s);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with("case") && got[0].ends_with("esac"));
    assert_eq!(
        steps("case x in a) ls;; esac; echo y"),
        vec!["case x in a) ls;; esac; echo y"]
    );
    // The last item needs no `;;`.
    assert_eq!(steps("case x in\n*) ls\nesac\npwd").len(), 2);
    assert_eq!(steps("case x in esac\nls").len(), 2);
}

#[test]
fn lines_ending_in_a_backslash_or_an_operator_go_on() {
    assert_eq!(
        steps("./configure \\\n  --prefix=/opt \\\n  --quiet\nmake"),
        vec!["./configure \\\n  --prefix=/opt \\\n  --quiet", "make"]
    );
    assert_eq!(
        steps("make &&\n  make install ||\n  echo failed |\n  tee log\nls"),
        vec![
            "make &&\n  make install ||\n  echo failed |\n  tee log",
            "ls"
        ]
    );
    // A backslash inside quotes or escaped is no continuation.
    assert_eq!(steps("echo '\\'\necho \\\\\nls").len(), 3);
}

#[test]
fn keywords_in_quotes_comments_and_arguments_do_not_count() {
    let s = "echo \"if then\" 'fi' done\necho $(echo fi) `echo done` ${x:-esac}\necho x # if\ngrep -q '{' f\nls";
    assert_eq!(steps(s).len(), 5);
    assert_eq!(
        steps("if true; then echo 'fi'; echo \"fi\"; echo \\fi\nfi").len(),
        1
    );
    assert_eq!(steps("echo }\necho {\necho {a,b}").len(), 3);
    assert_eq!(steps("for f in if then fi; do echo $f; done").len(), 1);
}

#[test]
fn here_documents_are_part_of_their_step() {
    let s = "cat > /tmp/x <<EOF\nif this were code\nfi\nEOF\ncat <<-'END'\n\tdone\n\tEND\nls";
    assert_eq!(
        steps(s),
        vec![
            "cat > /tmp/x <<EOF\nif this were code\nfi\nEOF",
            "cat <<-'END'\n\tdone\n\tEND",
            "ls"
        ]
    );
    assert_eq!(
        steps("if true; then\n  cat <<EOF\nfi\nEOF\nfi\nls"),
        vec!["if true; then\n  cat <<EOF\nfi\nEOF\nfi", "ls"]
    );
}

#[test]
fn functions_span_their_body_even_after_a_newline() {
    assert_eq!(
        steps("greet() {\n  echo hi \"$1\"\n}\ngreet you"),
        vec!["greet() {\n  echo hi \"$1\"\n}", "greet you"]
    );
    assert_eq!(steps("f()\n{\n  ls\n}\nf").len(), 2);
    assert_eq!(steps("function g {\n  ls\n}\ng").len(), 2);
    assert_eq!(steps("function h\n{\n ls\n}\nh").len(), 2);
    assert_eq!(steps("arr=(a b\n c)\necho ${arr[1]}").len(), 2);
}

#[test]
fn bash_tests_and_arithmetic_are_not_structure() {
    assert_eq!(steps("[[ $x == a || $y < b ]] && echo ok\nls").len(), 2);
    assert_eq!(
        steps("if [[ $x =~ ^(fi|done)$ ]]; then echo m; fi").len(),
        1
    );
    assert_eq!(steps("(( i = (1 + 2) * 3 ))\necho $(( i > 2 ))").len(), 2);
    assert_eq!(
        steps("for ((i=0; i<3; i++)); do echo $i; done\nls").len(),
        2
    );
    assert_eq!(steps("diff <(ls a) <(ls b)\nls").len(), 2);
}

#[test]
fn unterminated_blocks_name_their_line() {
    assert_eq!(
        error("ls\nif true; then\n  echo x\n"),
        "line 2: `if` is never closed (expected `fi`)"
    );
    assert_eq!(
        error("for x in a; do\n  if true; then :; fi\n"),
        "line 1: `for/while/until` is never closed (expected `done`)"
    );
    assert_eq!(
        error("case x in\n a) ls;;\n"),
        "line 1: `case` is never closed (expected `esac`)"
    );
    assert_eq!(
        error("ls\n{ echo a\n"),
        "line 2: `{` is never closed (expected `}`)"
    );
    assert_eq!(error("(ls\n"), "line 1: `(` is never closed (expected `)`)");
    assert_eq!(
        error("ls\nf() {\n  ls\n"),
        "line 2: `{` is never closed (expected `}`)"
    );
    assert_eq!(
        error("make &&\n"),
        "line 1 ends with `&&` but no line follows"
    );
    assert_eq!(
        error("make \\"),
        "line 1 ends with `\\` but no line follows"
    );
    assert_eq!(
        error("make &&\n\n\n"),
        "line 1 ends with `&&` but no line follows"
    );
    assert_eq!(
        error("echo 'it''s\n"),
        "line 1: a single quote (') is never closed"
    );
    assert_eq!(
        error("cat <<EOF\nno end\n"),
        "line 1: the here-document ending with `EOF` is never ended"
    );
    assert_eq!(
        error("[[ -f x\n"),
        "line 1: `[[` is never closed (expected `]]`)"
    );
}

#[test]
fn stray_closers_name_their_line() {
    assert_eq!(
        error("ls\nfi\n"),
        "line 2: `fi` without a matching opening keyword"
    );
    assert_eq!(
        error("echo a\ndone"),
        "line 2: `done` without a matching opening keyword"
    );
    assert_eq!(
        error("if true; then\n done\nfi"),
        "line 2: `done` without a matching opening keyword"
    );
    assert_eq!(error("then ls"), "line 1: `then` outside an `if`");
    assert_eq!(error("ls )"), "line 1: `)` without a matching `(`");
    assert_eq!(error("ls ;; pwd"), "line 1: `;;` outside a `case`");
    assert_eq!(
        error("case x on\nesac"),
        "line 1: `on` where `case … in` needs `in`"
    );
}

#[test]
fn one_line_steps_are_kept_as_written() {
    assert_eq!(
        steps("  if true; then echo a; fi  \n  export A=1  "),
        vec!["if true; then echo a; fi", "export A=1"]
    );
}

#[test]
fn summaries_are_one_line() {
    assert_eq!(summary("ls -l"), "ls -l");
    assert_eq!(summary("if true; then\n  ls\nfi"), "if true; then …");
    let long = "x".repeat(300);
    assert_eq!(summary(&long).chars().count(), 202);
}

#[test]
fn hostile_scripts_end_in_clear_errors_quickly() {
    let deep = format!("echo {}", "$(".repeat(20_000));
    assert!(error(&deep).contains("nested more than 64 deep"));
    let parens = "(".repeat(30_000);
    assert_eq!(error(&parens), "line 1: `(` is never closed (expected `)`)");
    let blocks = "if true; then\n".repeat(3_000);
    assert_eq!(
        error(&blocks),
        "line 3000: `if` is never closed (expected `fi`)"
    );
    let closers = "fi\n".repeat(10);
    assert_eq!(
        error(&closers),
        "line 1: `fi` without a matching opening keyword"
    );
    let quotes = "'".repeat(30_001);
    assert_eq!(error(&quotes), "line 1: a single quote (') is never closed");
    let heredocs = "cat <<A <<B <<C\nA\nB\n";
    assert_eq!(
        error(heredocs),
        "line 1: the here-document ending with `C` is never ended"
    );
    // Control characters and odd bytes are just text.
    assert_eq!(steps("echo \u{1b}[31mred\u{7}\necho é ✓").len(), 2);
}

//! Batch scripts against a real sshd: steps that span lines, what carries
//! from one step to the next (`cd`, `export`, functions), bash where the
//! host has it, and progress and failed-step numbers that still add up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::{TestEnv, WsClient, WAIT};
use uuid::Uuid;

async fn start(env: &TestEnv, session: Uuid, body: Value) -> String {
    let (status, reply) = env
        .api
        .post(&format!("/api/sessions/{session}/runs"), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "start run: {reply}");
    reply["id"].as_str().unwrap().to_owned()
}

/// Runs `script` as an ad-hoc batch; its `completed` event.
async fn batch(env: &TestEnv, session: Uuid, ws: &mut WsClient, script: &str) -> (String, Value) {
    let id = start(env, session, json!({"script": script})).await;
    let done = ws
        .wait_event("completed", WAIT, |e| {
            e["event"] == "completed" && e["run"] == id.as_str()
        })
        .await;
    (id, done)
}

fn stdout(ws: &WsClient, run: &str) -> String {
    stream(ws, run, "stdout")
}

fn stream(ws: &WsClient, run: &str, stream: &str) -> String {
    ws.events
        .iter()
        .filter(|e| e["event"] == "chunk" && e["run"] == run && e["stream"] == stream)
        .map(|e| e["data"].as_str().unwrap_or_default())
        .collect()
}

/// `(current, total, step)` of each progress event of `run`.
fn progress(ws: &WsClient, run: &str) -> Vec<(u64, u64, String)> {
    ws.events
        .iter()
        .filter(|e| e["event"] == "progress" && e["run"] == run)
        .map(|e| {
            (
                e["current"].as_u64().unwrap(),
                e["total"].as_u64().unwrap(),
                e["step"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_line_if_runs_as_one_step() {
    let env = TestEnv::start().await;
    let (session, mut ws) = env.open_shell().await;
    let script = "cd /tmp\n\
                  if [ \"$(pwd)\" = /tmp ]; then\n  \
                    echo in-tmp\n\
                  else\n  \
                    echo elsewhere\n\
                  fi\n\
                  for n in 1 2; do\n  echo \"n=$n\"\ndone\n\
                  case once in\n  once) echo matched ;;\n  *) echo fallthrough ;;\nesac";
    let (id, done) = batch(&env, session, &mut ws, script).await;
    assert_eq!(
        done["status"],
        "ok",
        "{done} {}",
        stream(&ws, &id, "stderr")
    );
    assert_eq!(stdout(&ws, &id), "in-tmp\nn=1\nn=2\nmatched\n");
    let steps = progress(&ws, &id);
    assert_eq!(
        steps,
        vec![
            (1, 4, "cd /tmp".to_owned()),
            (2, 4, "if [ \"$(pwd)\" = /tmp ]; then …".to_owned()),
            (3, 4, "for n in 1 2; do …".to_owned()),
            (4, 4, "case once in …".to_owned()),
        ]
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_persist_to_later_steps_and_their_values_stay_values() {
    let env = TestEnv::start().await;
    let (session, mut ws) = env.open_shell().await;
    let script = "export GREETING=\"hello world\" EMPTY=\n\
                  export TRICKY='$(echo pwned); it'\"'\"'s `id`'\n\
                  export PATH=\"$PATH:/opt/shellway-test\"\n\
                  export BASED_ON=\"$GREETING!\"\n\
                  echo \"$GREETING|$EMPTY|${UNSET-unset}\"\n\
                  printf '%s\\n' \"$TRICKY\"\n\
                  echo \"${PATH##*:} $BASED_ON\"\n\
                  GREETING=changed-in-a-step-only\n\
                  echo \"$GREETING\"";
    let (id, done) = batch(&env, session, &mut ws, script).await;
    assert_eq!(
        done["status"],
        "ok",
        "{done} {}",
        stream(&ws, &id, "stderr")
    );
    assert_eq!(
        stdout(&ws, &id),
        "hello world||unset\n$(echo pwned); it's `id`\n/opt/shellway-test hello world!\nhello world\n"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_run_in_bash_when_the_host_has_it() {
    let env = TestEnv::start().await;
    let (session, mut ws) = env.open_shell().await;
    assert!(
        std::path::Path::new("/bin/bash").exists(),
        "the test host has bash"
    );
    let script = "[[ -n \"x\" && 2 -gt 1 ]] && echo double-brackets\n\
                  arr=(a b c); echo \"array of ${#arr[@]}\"\n\
                  [ -n \"$BASH_VERSION\" ] && echo bash-here";
    let (id, done) = batch(&env, session, &mut ws, script).await;
    assert_eq!(
        done["status"],
        "ok",
        "{done} {}",
        stream(&ws, &id, "stderr")
    );
    assert_eq!(stdout(&ws, &id), "double-brackets\narray of 3\nbash-here\n");
    // A single command runs in bash too.
    let id = start(
        &env,
        session,
        json!({"command": "[[ a == a ]] && echo one-command"}),
    )
    .await;
    let done = ws
        .wait_event("completed", WAIT, |e| {
            e["event"] == "completed" && e["run"] == id.as_str()
        })
        .await;
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(stdout(&ws, &id), "one-command\n");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_defined_in_one_step_can_be_called_in_later_ones() {
    let env = TestEnv::start().await;
    let (session, mut ws) = env.open_shell().await;
    let script = "greet() {\n  echo \"hi $1 from $(basename \"$PWD\")\"\n}\n\
                  cd /tmp\n\
                  greet you\n\
                  function twice\n{\n  greet \"$1\"; greet \"$1\"\n}\n\
                  twice again";
    let (id, done) = batch(&env, session, &mut ws, script).await;
    assert_eq!(
        done["status"],
        "ok",
        "{done} {}",
        stream(&ws, &id, "stderr")
    );
    assert_eq!(
        stdout(&ws, &id),
        "hi you from tmp\nhi again from tmp\nhi again from tmp\n"
    );
    assert_eq!(progress(&ws, &id).len(), 5);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cd_to_a_tilde_goes_home_and_persists() {
    let env = TestEnv::start().await;
    let (session, mut ws) = env.open_shell().await;
    let home = env.sshd.dir.join("home");
    std::fs::create_dir_all(home.join("my dir")).unwrap();
    let script = "cd /tmp\ncd ~\npwd\ncd ~/my dir\npwd\ncd\npwd";
    let (id, done) = batch(&env, session, &mut ws, script).await;
    assert_eq!(
        done["status"],
        "ok",
        "{done} {}",
        stream(&ws, &id, "stderr")
    );
    let home = home.display().to_string();
    assert_eq!(stdout(&ws, &id), format!("{home}\n{home}/my dir\n{home}\n"));
    // Only a leading `~` expands: `~nobody-here` is a literal name.
    let (id, done) = batch(&env, session, &mut ws, "cd /tmp\ncd ~nobody-here\npwd").await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["failed_step"], 2, "{done}");
    assert!(stream(&ws, &id, "stderr").contains("~nobody-here"));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_multi_line_step_is_numbered_as_one_step() {
    let env = TestEnv::start().await;
    let (session, mut ws) = env.open_shell().await;
    let script = "# heredoc, continuation, a failing block\n\
                  cat <<'EOF'\nif this were code\nfi\nEOF\n\
                  echo one \\\n  two\n\
                  if true; then\n  echo before\n  false\nfi\n\
                  echo never";
    let (id, done) = batch(&env, session, &mut ws, script).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["failed_step"], 3, "{done}");
    assert_eq!(done["exit_code"], 1, "{done}");
    assert_eq!(stdout(&ws, &id), "if this were code\nfi\none two\nbefore\n");
    let numbers: Vec<(u64, u64)> = progress(&ws, &id)
        .into_iter()
        .map(|(c, t, _)| (c, t))
        .collect();
    assert_eq!(numbers, vec![(1, 4), (2, 4), (3, 4)]);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unterminated_block_is_refused_at_submit_naming_its_line() {
    let env = TestEnv::start().await;
    let (session, _ws) = env.open_shell().await;
    let (status, reply) = env
        .api
        .post(
            &format!("/api/sessions/{session}/runs"),
            json!({"script": "ls\nfor f in *; do\n  echo \"$f\"\n"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["field"], "script");
    assert_eq!(
        reply["error"]["message"],
        "line 2: `for/while/until` is never closed (expected `done`)"
    );
    let (status, reply) = env
        .api
        .post(
            "/api/scripts",
            json!({"name": "broken", "body": "echo 'oops\nls"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["field"], "body");
    assert_eq!(
        reply["error"]["message"],
        "line 1: a single quote (') is never closed"
    );
    let detail = env.api.session(session).await;
    assert_eq!(detail["runs"], json!([]), "nothing ran");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_script_run_is_logged_by_its_name() {
    let env = TestEnv::start().await;
    let (session, mut ws) = env.open_shell().await;
    let body = "echo a\nif true; then\n  echo b\nfi\necho c";
    let (status, script) = env
        .api
        .post("/api/scripts", json!({"name": "deploy", "body": body}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{script}");
    let (_, listed) = env.api.get("/api/scripts").await;
    assert_eq!(listed[0]["steps"], 3, "{listed}");
    let over_http = start(&env, session, json!({"script_id": script["id"]})).await;
    ws.wait_event("completed", WAIT, |e| {
        e["event"] == "completed" && e["run"] == over_http.as_str()
    })
    .await;
    // The console sends a saved script by id over the WebSocket.
    ws.send(json!({"action": "run", "script_id": script["id"]}))
        .await;
    let started = ws
        .wait_event("started", WAIT, |e| {
            e["event"] == "started" && e["run"] != over_http.as_str()
        })
        .await;
    assert_eq!(started["command"], "script: deploy (3 steps)");
    let over_ws = started["run"].as_str().unwrap().to_owned();
    let runs = shellway_tests::eventually("both runs recorded as done", WAIT, || async {
        let d = env.api.session(session).await;
        let runs = d["runs"].as_array()?.clone();
        (runs.len() == 2 && runs.iter().all(|r| r["status"] == "ok")).then_some(runs)
    })
    .await;
    for run in &runs {
        assert_eq!(run["command"], "script: deploy (3 steps)", "{run}");
        assert_eq!(run["kind"], "batch");
    }
    assert!(runs.iter().any(|r| r["id"] == over_ws.as_str()));
    env.finish().await;
}

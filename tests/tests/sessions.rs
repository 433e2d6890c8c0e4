//! One session as a user drives it: shell, resize, runs, cancel, and the
//! errors a user must be able to tell apart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::{TestEnv, TestEnvOptions, WsClient, WAIT};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

fn is_completed(run: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e: &Value| e["event"] == "completed" && e["run"] == run
}

async fn run(env: &TestEnv, session: Uuid, body: Value) -> String {
    let (status, reply) = env
        .api
        .post(&format!("/api/sessions/{session}/runs"), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "start run: {reply}");
    reply["id"].as_str().unwrap().to_owned()
}

/// Exec output of one run and stream, joined, from the WebSocket events.
fn chunks(ws: &WsClient, run: &str, stream: &str) -> String {
    ws.events
        .iter()
        .filter(|e| e["event"] == "chunk" && e["run"] == run && e["stream"] == stream)
        .map(|e| e["data"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_session_echoes_what_is_typed() {
    let env = TestEnv::start().await;
    let (_, mut ws) = env.open_shell().await;
    ws.type_text("echo hel''lo\r").await;
    // The shell joins the quotes: seeing `hello` proves the shell ran it,
    // not just that the terminal echoed our keystrokes.
    ws.wait_output("hello", WAIT).await;
    // The harness gives sessions their own home (see tests/src/sshd.rs).
    ws.type_text("echo home-is-$HOME\r").await;
    ws.wait_output(
        &format!("home-is-{}", env.sshd.dir.join("home").display()),
        WAIT,
    )
    .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_changes_what_stty_size_reports() {
    let env = TestEnv::start().await;
    let (_, mut ws) = env.open_shell().await;
    ws.send(json!({"action": "resize", "cols": 132, "rows": 43}))
        .await;
    // Resize and input travel the same ordered queue, so stty runs after it.
    ws.type_text("stty size\r").await;
    ws.wait_output("43 132", WAIT).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_report_exit_codes_and_keep_stderr_apart() {
    let env = TestEnv::start().await;
    let (session, mut ws) = env.open_shell().await;

    let ok = run(&env, session, json!({"command": "echo out; echo err >&2"})).await;
    let done = ws.wait_event("completed", WAIT, is_completed(&ok)).await;
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(done["exit_code"], 0);
    assert_eq!(chunks(&ws, &ok, "stdout"), "out\n");
    assert_eq!(chunks(&ws, &ok, "stderr"), "err\n");

    let bad = run(&env, session, json!({"command": "echo oops >&2; exit 3"})).await;
    let done = ws.wait_event("completed", WAIT, is_completed(&bad)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["exit_code"], 3);
    assert_eq!(chunks(&ws, &bad, "stderr"), "oops\n");
    assert_eq!(chunks(&ws, &bad, "stdout"), "");

    // A command killed by a signal reports the signal, not an exit code.
    let killed = run(&env, session, json!({"command": "kill -TERM $$"})).await;
    let done = ws
        .wait_event("completed", WAIT, is_completed(&killed))
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["exit_signal"], "TERM", "{done}");

    // The session detail shows the runs with their outcome.
    let detail = shellway_tests::eventually("runs recorded", WAIT, || async {
        let d = env.api.session(session).await;
        let runs = d["runs"].as_array()?;
        (runs.len() == 3
            && runs
                .iter()
                .all(|r| r["status"] != "running" && r["status"] != "queued"))
        .then_some(d)
    })
    .await;
    let runs = detail["runs"].as_array().unwrap();
    let by_id = |id: &str| runs.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(by_id(&ok)["exit_code"], 0);
    assert_eq!(by_id(&bad)["exit_code"], 3);
    assert_eq!(by_id(&bad)["status"], "failed");
    assert!(by_id(&bad)["output_tail"]
        .as_str()
        .unwrap()
        .contains("oops"));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stops_at_the_first_failing_step_and_cd_persists() {
    let env = TestEnv::start().await;
    let (session, mut ws) = env.open_shell().await;
    let script = "# setup\ncd /tmp\npwd\nfalse\necho never";
    let id = run(&env, session, json!({"script": script})).await;
    let done = ws.wait_event("completed", WAIT, is_completed(&id)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["failed_step"], 3, "{done}");
    assert_eq!(chunks(&ws, &id, "stdout"), "/tmp\n");
    let steps: Vec<_> = ws
        .events
        .iter()
        .filter(|e| e["event"] == "progress" && e["run"] == id.as_str())
        .map(|e| (e["current"].as_u64().unwrap(), e["total"].as_u64().unwrap()))
        .collect();
    assert_eq!(steps, vec![(1, 4), (2, 4), (3, 4)]);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_a_long_sleep_within_two_seconds() {
    let env = TestEnv::start().await;
    let (session, mut ws) = env.open_shell().await;
    // A duration no other test uses, to find the process on the host.
    let id = run(&env, session, json!({"command": "sleep 613"})).await;
    ws.wait_event("started", WAIT, |e| {
        e["event"] == "started" && e["run"] == id.as_str()
    })
    .await;
    let asked = Instant::now();
    ws.send(json!({"action": "cancel"})).await;
    let done = ws.wait_event("completed", WAIT, is_completed(&id)).await;
    let took = asked.elapsed();
    assert_eq!(done["status"], "canceled", "{done}");
    assert!(took < Duration::from_secs(2), "cancel took {took:?}");
    // And the program is gone from the host, not just from our view.
    shellway_tests::eventually(
        "the remote sleep to end",
        Duration::from_secs(5),
        || async {
            let ps = tokio::process::Command::new("ps")
                .args(["-eo", "args"])
                .output()
                .await
                .unwrap();
            let running = String::from_utf8_lossy(&ps.stdout)
                .lines()
                .any(|l| l.trim() == "sleep 613");
            (!running).then_some(())
        },
    )
    .await;
    env.finish().await;
}

/// Opens a session on `host` and returns the first `error` event.
async fn open_and_expect_error(env: &TestEnv, host: Value) -> (Uuid, Value) {
    let host = env.api.create_host(host).await;
    let id = env.api.open_session(host).await;
    let mut ws = env.attach(id).await;
    let err = ws
        .wait_event("error", WAIT, |e| e["event"] == "error")
        .await;
    (id, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_mismatch_names_both_fingerprints() {
    let env = TestEnv::start().await;
    // Pin the user key's public half: a real key, but not the server's.
    let wrong = std::fs::read_to_string(env.sshd.user_key.with_extension("pub")).unwrap();
    let wrong: String = wrong
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let host = env.host_json_with("pinned-wrong", &env.sshd.user_key, "strict", &[&wrong]);
    let (session, err) = open_and_expect_error(&env, host).await;
    assert_eq!(err["type"], "ssh", "{err}");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("mismatch"), "{msg}");
    assert_eq!(
        msg.matches("SHA256:").count(),
        2,
        "both fingerprints named: {msg}"
    );
    let detail = shellway_tests::eventually("session failed", WAIT, || async {
        let d = env.api.session(session).await;
        (d["status"] == "failed").then_some(d)
    })
    .await;
    assert_eq!(detail["status"], "failed");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tofu_pins_the_first_key_seen() {
    let env = TestEnv::start().await;
    let host_json = env.host_json_with("tofu-host", &env.sshd.user_key, "tofu", &[]);
    let host = env.api.create_host(host_json).await;
    let id = env.api.open_session(host).await;
    let mut ws = env.attach(id).await;
    ws.wait_open().await;
    let pinned = shellway_tests::eventually("host key pinned", WAIT, || async {
        let (_, h) = env.api.get(&format!("/api/hosts/{host}")).await;
        let keys = h["host_keys"].as_array()?.clone();
        (!keys.is_empty()).then_some(keys)
    })
    .await;
    assert_eq!(pinned, vec![Value::String(env.sshd.host_key.clone())]);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_server_rejects_is_an_authentication_error() {
    let env = TestEnv::start().await;
    let host = env.host_json_with(
        "stranger",
        &env.sshd.stranger_key,
        "strict",
        &[&env.sshd.host_key],
    );
    let (_, err) = open_and_expect_error(&env, host).await;
    assert_eq!(err["type"], "ssh", "{err}");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("authentication failed"), "{msg}");
    assert!(
        !msg.contains("PRIVATE KEY"),
        "no key material in errors: {msg}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_host_fails_within_the_connect_timeout() {
    let env = TestEnv::start().await;
    let mut host = env.host_json("nowhere");
    host["port"] = json!(shellway_tests::sshd::free_port());
    let asked = Instant::now();
    let (_, err) = open_and_expect_error(&env, host).await;
    assert_eq!(err["type"], "ssh", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("cannot connect"),
        "{err}"
    );
    assert!(asked.elapsed() < env.opts.connect_timeout + Duration::from_secs(3));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_protocol_errors_and_the_connection_stays_up() {
    let env = TestEnv::start().await;
    let (_, mut ws) = env.open_shell().await;
    let bad: [Message; 5] = [
        Message::Text(r#"{"action":"dance"}"#.into()),
        Message::Text("not json at all".into()),
        Message::Text(r#"{"action":"resize","cols":"wide"}"#.into()),
        Message::Text(format!(r#"{{"action":"input","data":"{}"}}"#, "x".repeat(512 << 10)).into()),
        Message::Binary(vec![1, 2, 3].into()),
    ];
    for (i, frame) in bad.into_iter().enumerate() {
        ws.events.clear();
        ws.send_raw(frame).await;
        let err = ws
            .wait_event("protocol error", WAIT, |e| e["event"] == "error")
            .await;
        assert_eq!(err["type"], "protocol", "frame {i}: {err}");
        assert!(!err["message"].as_str().unwrap().is_empty());
    }
    // Still connected and still a working terminal.
    ws.type_text("echo st''ill-here\r").await;
    ws.wait_output("still-here", WAIT).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_host_fields_are_refused_naming_the_field() {
    let env = TestEnv::start().await;
    let cases = [
        ("port", json!(0)),
        ("port", json!(70000)),
        ("name", json!("web; rm -rf /")),
        ("host_key_policy", json!("sometimes")),
        ("host_keys", json!(["not a key"])),
        ("username", json!("root$(reboot)")),
        ("hostname", json!("bad host")),
    ];
    for (field, value) in cases {
        let mut host = env.host_json("valid-name");
        host[field] = value.clone();
        let (status, body) = env.api.post("/api/hosts", host).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}={value}: {body}"
        );
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_refused() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let anon = shellway_tests::Api::new(env.base.clone(), None);
    for path in ["/api/hosts", "/api/sessions", "/api/me"] {
        let (status, body) = anon.get(path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    let (status, _) = anon
        .post("/api/sessions", json!({"host_id": Uuid::now_v7()}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bogus = shellway_tests::Api::new(env.base.clone(), Some("sw_not_a_real_token".into()));
    assert_eq!(bogus.get("/api/hosts").await.0, StatusCode::UNAUTHORIZED);
    let ws =
        WsClient::try_connect(&env.base, &format!("/ws/sessions/{}", Uuid::now_v7()), None).await;
    assert!(
        ws.is_err(),
        "websocket upgrade without credentials must fail"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_authentication_and_the_off_policy_work() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    // An ssh-agent holding the accepted key, seen only by this runner.
    let dir = std::env::temp_dir().join(shellway_tests::unique("swt-agent-"));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("agent.sock");
    let mut agent = tokio::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ssh-agent (openssh-client) runs");
    shellway_tests::eventually("the agent socket", WAIT, || async {
        sock.exists().then_some(())
    })
    .await;
    let added = tokio::process::Command::new("ssh-add")
        .arg(&env.sshd.user_key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .await
        .unwrap();
    assert!(added.status.success(), "ssh-add: {added:?}");
    let mut runner = env
        .runner_command("agent-runner")
        .env("SSH_AUTH_SOCK", &sock)
        .spawn()
        .unwrap();

    // `off` accepts whatever key the server shows, even against a wrong pin.
    let mut host = env.host_json("via-agent");
    host["auth_method"] = json!("agent");
    host["key_path"] = Value::Null;
    host["host_key_policy"] = json!("off");
    host["host_keys"] =
        json!([
            std::fs::read_to_string(format!("{}.pub", env.sshd.stranger_key.display()))
                .unwrap()
                .trim()
        ]);
    let host = env.api.create_host(host).await;
    let id = env.api.open_session(host).await;
    let mut ws = env.attach(id).await;
    ws.wait_open().await;
    assert_eq!(env.api.session(id).await["runner"], "agent-runner");
    ws.type_text("echo agent-$((5*5))\r").await;
    ws.wait_output("agent-25", WAIT).await;
    runner.start_kill().unwrap();
    runner.wait().await.unwrap();
    agent.start_kill().unwrap();
    let _ = agent.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_tasks_and_scripts_run_in_a_session() {
    let env = TestEnv::start().await;
    let (session, mut ws) = env.open_shell().await;
    let (status, task) = env
        .api
        .post(
            "/api/tasks",
            json!({"name": "five", "label": "Print five", "command": "echo task-$((2+3))"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let (status, script) = env
        .api
        .post(
            "/api/scripts",
            json!({"name": "two-of-three", "body": "# demo\necho a\nfalse\necho b"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{script}");

    let by_id = run(&env, session, json!({"task_id": task["id"]})).await;
    let done = ws.wait_event("completed", WAIT, is_completed(&by_id)).await;
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(chunks(&ws, &by_id, "stdout"), "task-5\n");
    // By name over the WebSocket too.
    ws.send(json!({"action": "run", "task": "five"})).await;
    let started = ws
        .wait_event("started", WAIT, |e| {
            e["event"] == "started" && e["kind"] == "task" && e["run"] != by_id.as_str()
        })
        .await;
    assert_eq!(started["command"], "five");

    let batch = run(&env, session, json!({"script_id": script["id"]})).await;
    let done = ws.wait_event("completed", WAIT, is_completed(&batch)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["failed_step"], 2, "{done}");

    // Bad input: clear errors, nothing run.
    let (status, reply) = env
        .api
        .post("/api/tasks", json!({"name": "x", "command": " "}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply["error"]["field"], "command");
    let (status, _) = env
        .api
        .post("/api/tasks", json!({"name": "five", "command": "true"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, reply) = env
        .api
        .post(
            &format!("/api/sessions/{session}/runs"),
            json!({"task": "no-such-task"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    let bob = env.add_user("bob").await;
    let (status, _) = bob
        .post("/api/tasks", json!({"name": "y", "command": "true"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, list) = bob.get("/api/scripts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["steps"], 3);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_a_host_key_shows_it_for_pinning() {
    let env = TestEnv::start().await;
    let (status, reply) = env
        .api
        .post(
            "/api/hosts/scan",
            json!({"hostname": "127.0.0.1", "port": env.sshd.port}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["key"], env.sshd.host_key.as_str());
    assert!(reply["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("SHA256:"));
    let (status, reply) = env
        .api
        .post(
            "/api/hosts/scan",
            json!({"hostname": "bad host; rm -rf /", "port": 22}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply["error"]["field"], "hostname");
    let closed = shellway_tests::sshd::free_port();
    let (status, reply) = env
        .api
        .post(
            "/api/hosts/scan",
            json!({"hostname": "127.0.0.1", "port": closed}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{reply}");
    assert_eq!(reply["error"]["code"], "ssh");
    env.finish().await;
}

/// Messages of `queue` the broker has delivered and not had acknowledged.
async fn unacknowledged(env: &TestEnv, queue: &str) -> Option<u64> {
    let vhost = match env.amqp_url.rsplit_once('/') {
        Some((_, v)) if !v.is_empty() => v.replace("%2f", "/").replace("%2F", "/"),
        _ => "/".to_owned(),
    };
    let args = [
        "-p",
        &vhost,
        "list_queues",
        "name",
        "messages_unacknowledged",
    ];
    shellway_tests::rabbitmqctl(&args)
        .await
        .lines()
        .find_map(|line| {
            let mut cols = line.split_whitespace();
            (cols.next() == Some(queue)).then(|| cols.next()?.parse().ok())?
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystrokes_are_acknowledged_once_typing_stops() {
    let env = TestEnv::start().await;
    let (id, mut ws) = env.open_shell().await;
    // One message per keystroke, fewer than a batch: only the quiet after
    // them gets them acknowledged.
    for key in "echo acked-$((6*7))\r".chars() {
        ws.type_text(&key.to_string()).await;
    }
    ws.wait_output("acked-42", WAIT).await;
    let queue = env.topology().input_queue(id);
    shellway_tests::eventually("the typed input to be acknowledged", WAIT, || async {
        (unacknowledged(&env, &queue).await == Some(0)).then_some(())
    })
    .await;
    env.finish().await;
}

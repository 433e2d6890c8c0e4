//! Shellway as a distributed system: several runners, runners dying, no
//! runner at all, recording without viewers, and a proxy restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use shellway_tests::{eventually, TestEnv, TestEnvOptions, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_both_take_sessions() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 2,
        runner_capacity: 2,
        ..Default::default()
    })
    .await;
    let host = env.add_host().await;
    let mut sockets = Vec::new();
    let mut runners = HashSet::new();
    // Four sessions, capacity two each: both runners must serve.
    for _ in 0..4 {
        let id = env.api.open_session(host).await;
        let mut ws = env.attach(id).await;
        ws.wait_open().await;
        let detail = env.api.session(id).await;
        runners.insert(detail["runner"].as_str().unwrap().to_owned());
        sockets.push(ws);
    }
    assert_eq!(runners.len(), 2, "sessions were spread over {runners:?}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_runner_takes_no_more_sessions() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 1,
        runner_capacity: 1,
        request_ttl: Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let host = env.add_host().await;
    let first = env.api.open_session(host).await;
    env.attach(first).await.wait_open().await;
    let second = env.api.open_session(host).await;
    let mut ws = env.attach(second).await;
    let err = ws
        .wait_event("capacity error", WAIT, |e| e["event"] == "error")
        .await;
    assert_eq!(err["type"], "capacity", "{err}");
    // Once the first session ends, the runner serves again.
    env.api.delete(&format!("/api/sessions/{first}")).await;
    eventually("first session closed", WAIT, || async {
        (env.api.session(first).await["status"] == "closed").then_some(())
    })
    .await;
    let third = env.api.open_session(host).await;
    env.attach(third).await.wait_open().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_runner_the_request_fails_with_a_capacity_error() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        request_ttl: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    let host = env.add_host().await;
    let id = env.api.open_session(host).await;
    let mut ws = env.attach(id).await;
    let err = ws
        .wait_event("capacity error", WAIT, |e| e["event"] == "error")
        .await;
    assert_eq!(err["type"], "capacity", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("no runner"),
        "{err}"
    );
    eventually("session rejected", WAIT, || async {
        (env.api.session(id).await["status"] == "rejected").then_some(())
    })
    .await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_runner_mid_session_marks_the_session_lost() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let mut runner = env.spawn_runner_process("doomed-runner");
    let (id, mut ws) = env.open_shell().await;
    assert_eq!(env.api.session(id).await["runner"], "doomed-runner");
    runner.start_kill().unwrap();
    runner.wait().await.unwrap();
    let err = ws
        .wait_event("lost error", WAIT, |e| e["event"] == "error")
        .await;
    assert_eq!(err["type"], "lost", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("doomed-runner"),
        "{err}"
    );
    eventually("session lost", WAIT, || async {
        (env.api.session(id).await["status"] == "lost").then_some(())
    })
    .await;
    env.finish().await;
}

/// Produces `lines` numbered lines in the shell, without anyone watching.
const COUNT: usize = 3000;

fn expected_lines() -> String {
    (1..=COUNT).map(|i| format!("line-{i:05}\r\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_produced_with_no_viewer_is_recorded_complete_and_in_order() {
    let env = TestEnv::start().await;
    let (id, mut ws) = env.open_shell().await;
    // Type the command, see it arrive, then leave: nobody watches while
    // it runs (it waits a second before printing).
    ws.type_text(&format!("stty -echo; sleep 1; for i in $(seq 1 {COUNT}); do printf 'line-%05d\\n' $i; done; echo DONE-''MARK\r")).await;
    ws.wait_output("stty -echo; sleep 1", WAIT).await;
    drop(ws);
    let text = env.wait_recorded(id, "DONE-MARK").await;
    assert!(
        text.contains(&expected_lines()),
        "recording misses or reorders lines"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_restart_mid_session_loses_no_recorded_output() {
    // The proxy (and so the recorder) runs as a process we can kill.
    let mut env = TestEnv::start_with(TestEnvOptions {
        proxy_process: true,
        ..Default::default()
    })
    .await;
    let (id, mut ws) = env.open_shell().await;
    ws.type_text(&format!("stty -echo; sleep 1; for i in $(seq 1 {COUNT}); do printf 'line-%05d\\n' $i; [ $((i % 100)) = 0 ] && sleep 0.05; done; echo DONE-''MARK\r")).await;
    ws.wait_output("line-00001", WAIT).await;
    // Kill the proxy hard while the loop runs (about 1.5 s: a pause every
    // 100 lines, not a fork per line, which takes 20 s on a loaded machine),
    // then bring it back.
    env.kill_proxy_process().await;
    env.start_proxy().await;
    let text = env.wait_recorded(id, "DONE-MARK").await;
    assert!(
        text.contains(&expected_lines()),
        "recording lost output across the restart"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_viewer_gets_exactly_what_it_missed() {
    let env = TestEnv::start().await;
    let (id, mut ws) = env.open_shell().await;
    ws.type_text("echo fir''st\r").await;
    ws.wait_output("first", WAIT).await;
    let seen = ws.last_seq;
    let before = ws.screen.clone();
    drop(ws);
    // Output produced while disconnected.
    let mut other = env.attach(id).await;
    other.type_text("echo sec''ond\r").await;
    other.wait_output("second", WAIT).await;
    drop(other);
    let mut resumed = shellway_tests::WsClient::connect(
        &env.base,
        &format!("/ws/sessions/{id}?after={seen}"),
        env.token(),
    )
    .await;
    resumed.last_seq = seen;
    resumed.wait_output("second", WAIT).await;
    // Everything after `seen`, nothing before it: the concatenation is the
    // recording itself.
    let mut all = before;
    all.extend_from_slice(&resumed.screen);
    let recorded = env.wait_recorded(id, "second\r\n").await;
    assert!(
        recorded.as_bytes().starts_with(&all),
        "resumed stream differs from the recording"
    );
    assert!(
        !String::from_utf8_lossy(&resumed.screen).contains("first\r\n"),
        "duplicated output"
    );
    env.finish().await;
}

/// Closes every broker connection whose name contains `needle`, the way a
/// broker restart or a network cut would; returns how many it closed.
async fn cut_broker_connections(needle: &str) -> usize {
    let listing =
        shellway_tests::rabbitmqctl(&["list_connections", "pid", "client_properties"]).await;
    let mut closed = 0;
    for line in listing.lines().filter(|l| l.contains(needle)) {
        let pid = line.split_whitespace().next().unwrap();
        shellway_tests::rabbitmqctl(&["close_connection", pid, "cut by a test"]).await;
        closed += 1;
    }
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_reconnects_to_rabbitmq_by_itself() {
    let mut env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let runner = env.start_runner().await;
    let (_, mut ws) = env.open_shell().await;
    ws.type_text("echo before-$((1+1))\r").await;
    ws.wait_output("before-2", WAIT).await;
    let cut = eventually("the runner's broker connection", WAIT, || async {
        let n = cut_broker_connections(&runner).await;
        (n > 0).then_some(n)
    })
    .await;
    assert!(cut >= 1);
    // New sessions are served once the runner is back.
    let (id, mut again) = env.open_shell().await;
    assert_eq!(env.api.session(id).await["runner"], runner.as_str());
    again.type_text("echo after-$((2+2))\r").await;
    again.wait_output("after-4", WAIT).await;
    // The session that was open during the cut goes on too.
    ws.type_text("echo still-$((3+3))\r").await;
    ws.wait_output("still-6", WAIT).await;
    env.finish().await;
}

/// Recorded output is stored lz4-compressed (migration 0004): on terminal
/// text a fifth of pglz's database CPU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_terminal_text_is_stored_lz4_compressed() {
    let env = TestEnv::start().await;
    let (id, mut ws) = env.open_shell().await;
    ws.type_text("yes 'shellway records terminal text' | head -c 300000; echo; echo END-''MARK\r")
        .await;
    ws.wait_output("END-MARK", WAIT).await;
    env.wait_recorded(id, "END-MARK").await;
    let pool = env.db().await;
    let methods: Vec<(Option<String>,)> = sqlx::query_as(
        "SELECT pg_column_compression(data) FROM output_chunks \
         WHERE session_id = $1 AND octet_length(data) > 8192",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .expect("read compression methods");
    assert!(!methods.is_empty(), "no chunk over 8 KiB was recorded");
    assert!(
        methods.iter().all(|(m,)| m.as_deref() == Some("lz4")),
        "compression of the recorded chunks: {methods:?}"
    );
    env.finish().await;
}

//! Flow control end to end: output a browser cannot draw as fast as it
//! comes never holds up input, and a viewer far behind skips to the
//! present. Real Chromium, proxy, runner, RabbitMQ, Postgres and sshd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use shellway_tests::browser::Browser;
use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
use shellway_tests::interrupt::ctrl_c_during_yes;
use shellway_tests::{Frame, TestEnv, TestEnvOptions, WsClient, WAIT};
use uuid::Uuid;

async fn login_and_connect(b: &Browser, env: &TestEnv) {
    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    b.click("#connect").await;
    b.badge_is("CONNECTED").await;
}

/// Before flow control, Ctrl-C reached the proxy 86 s after the key press
/// (or never, under an endless `yes`), and xterm.js dropped data. The page
/// is slowed down 8× so that it draws slower than the host prints even on
/// a busy machine (that is when it matters). How fast the prompt comes
/// back is a benchmark figure (docs/benchmarks.md); here it must come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_yes_in_the_console_and_the_prompt_comes_back() {
    let env = TestEnv::start().await;
    env.add_host().await;
    let b = Browser::start().await;
    login_and_connect(&b, &env).await;
    // A page that draws slower than the host prints, as on a slow laptop.
    b.throttle_cpu(8.0).await;
    let report = ctrl_c_during_yes(&b, 5, Duration::from_secs(2), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "Ctrl-C → prompt: {:?}; longest main-thread task {:.0} ms",
        report.latencies, report.longest_task_ms
    );
    assert!(
        !report.errors.iter().any(|e| e.contains("discarded")),
        "xterm.js dropped output: {:?}",
        report.errors
    );
    b.quit().await;
    env.finish().await;
}

fn small_window() -> TestEnvOptions {
    TestEnvOptions {
        sharing: session_proxy::Sharing {
            window: 64 * 1024,
            skip: 512 * 1024,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// What a flow-controlled client has been shown: the latest snapshot and
/// the output after it.
#[derive(Default)]
struct Shown {
    screen: String,
    output_bytes: usize,
    snapshots: usize,
}

impl Shown {
    /// Takes the next frame (acknowledging everything first if `ack`);
    /// false when nothing came within `wait`.
    async fn next(&mut self, ws: &mut WsClient, ack: bool, wait: Duration) -> bool {
        if ack {
            ws.send(json!({"action": "ack", "seq": ws.last_seq})).await;
        }
        match ws.next(wait).await {
            Some(Frame::Output(_, data)) => {
                self.output_bytes += data.len();
                self.screen.push_str(&String::from_utf8_lossy(&data));
            }
            Some(Frame::Event(e)) if e["event"] == "snapshot" => {
                self.snapshots += 1;
                self.screen = e["data"].as_str().unwrap_or_default().to_owned();
            }
            Some(Frame::Event(_)) => {}
            Some(Frame::Closed) | None => return false,
        }
        true
    }
}

/// A shell whose viewer takes part in flow control, with `setup` typed
/// and everything up to `shown` acknowledged.
async fn flow_controlled_shell(env: &TestEnv, setup: &str, shown: &str) -> (Uuid, WsClient) {
    let host = env.add_host().await;
    let id = env.api.open_session(host).await;
    let mut ws = WsClient::connect(
        &env.base,
        &format!("/ws/sessions/{id}?flow=true"),
        env.token(),
    )
    .await;
    ws.wait_open().await;
    ws.type_text(&format!("{setup}\r")).await;
    ws.wait_output(shown, WAIT).await;
    ws.send(json!({"action": "ack", "seq": ws.last_seq})).await;
    (id, ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_controlled_viewer_gets_a_window_beyond_its_acks_then_a_snapshot() {
    let env = TestEnv::start_with(small_window()).await;
    let (id, mut ws) =
        flow_controlled_shell(&env, "PS1='P$ '; echo ready-$((6*7))", "ready-42").await;

    // Two MB of output, and no ack: the window's worth arrives, no more.
    ws.type_text("head -c 1500000 /dev/zero | base64; echo flood-$((2*3))-done\r")
        .await;
    let mut shown = Shown::default();
    while shown.next(&mut ws, false, Duration::from_secs(2)).await {}
    assert!(
        shown.output_bytes <= 64 * 1024 + 64 * 1024,
        "{} bytes arrived beyond the last ack (window 64 KiB)",
        shown.output_bytes
    );
    assert!(shown.output_bytes > 0, "nothing arrived at all");

    // Acknowledging as a browser does: far more than `skip` was waiting, so
    // the viewer was skipped ahead to the screen as it is, and the rest of
    // the flood follows.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !shown.screen.contains("flood-6-done") {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            shown.next(&mut ws, true, left).await,
            "the flood never ended on screen"
        );
    }
    assert!(
        shown.snapshots >= 1,
        "a viewer 2 MB behind was not skipped ahead"
    );
    assert!(
        shown.output_bytes < 1_500_000,
        "{} bytes of output were sent to a viewer far behind",
        shown.output_bytes
    );
    // The recording kept every byte the viewer skipped.
    let recorded: usize = env.recording(id).await.iter().map(|r| r.2.len()).sum();
    assert!(recorded > 2_000_000, "recorded only {recorded} bytes");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_reaches_the_host_while_the_viewer_reads_nothing() {
    let env = TestEnv::start().await;
    let host = env.add_host().await;
    let id = env.api.open_session(host).await;
    // A client that stops reading: its socket fills up and stays full.
    let mut stuck = WsClient::connect_small_buffer(
        &env.base,
        &format!("/ws/sessions/{id}"),
        env.token(),
        16 * 1024,
    )
    .await;
    stuck.wait_open().await;
    stuck.type_text("yes flooding\r").await;
    let mut watcher = env.attach(id).await;
    watcher.wait_output("flooding\r\nflooding", WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Ctrl-C from the stuck client, which has not read for a second.
    stuck.type_text("\u{3}").await;
    stuck.type_text("echo stopped-$((5*5))\r").await;
    let recorded = shellway_tests::eventually("the shell back at its prompt", WAIT, || async {
        let pty: Vec<u8> = env
            .recording(id)
            .await
            .into_iter()
            .flat_map(|r| r.2)
            .collect();
        let text = String::from_utf8_lossy(&pty).into_owned();
        text.contains("stopped-25").then_some(text)
    })
    .await;
    assert!(recorded.contains("^C"), "the interrupt reached the shell");
    drop(stuck);
    env.finish().await;
}

/// Ctrl-C during a flood: what waits for a viewer far behind is dropped at
/// once and the viewer is shown the screen as it is (here the skip
/// threshold is so high that nothing else would skip it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_skips_a_flow_controlled_viewer_to_the_present_at_once() {
    let env = TestEnv::start_with(TestEnvOptions {
        sharing: session_proxy::Sharing {
            window: 64 * 1024,
            skip: 256 * 1024 * 1024,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (_, mut ws) = flow_controlled_shell(&env, "PS1='P-$((5*5))$ '", "P-25$ ").await;
    ws.type_text("yes flood\r").await;
    // The window's worth arrives; nothing is acknowledged, so output piles
    // up for this viewer while `yes` runs.
    let mut shown = Shown::default();
    while shown.next(&mut ws, false, Duration::from_secs(1)).await {}
    assert_eq!(shown.snapshots, 0, "skipped before any interrupt");
    ws.type_text("\u{3}").await;
    let snap = ws
        .wait_event("a snapshot after Ctrl-C", WAIT, |e| {
            e["event"] == "snapshot"
        })
        .await;
    assert!(snap["data"].as_str().unwrap_or_default().contains("flood"));
    // From there on, drawing what comes brings the prompt back.
    let mut shown = Shown {
        screen: snap["data"].as_str().unwrap_or_default().to_owned(),
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !shown.screen.contains("^C") || !shown.screen.contains("P-25$ ") {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            shown.next(&mut ws, true, left).await,
            "no prompt after Ctrl-C"
        );
    }
    env.finish().await;
}

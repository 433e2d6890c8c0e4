//! Figures of a terminal in use while output floods: a neighbour session's
//! flood must not slow this one's echo, and Ctrl-C during `yes` in the
//! real console must bring the prompt back at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::peers::shellway_open;
use super::report::{Report, Row};
use super::term::{Got, Term};
use super::{echo, pct, ready};
use shellway_tests::browser::Browser;
use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
use shellway_tests::interrupt::ctrl_c_during_yes;
use shellway_tests::{Api, TestEnv};

/// Ctrl-C tries in the console.
const INTERRUPTS: usize = 10;

/// Echo in `sw` while another session of the same runner and proxy prints
/// `yes` as fast as it can (its viewer reading all of it); the growth of
/// p99 over `quiet_p99`.
pub(super) async fn echo_beside_a_flood(
    api: &Api,
    host: Uuid,
    sw: &mut Term,
    keystrokes: usize,
    quiet_p99: f64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (_, mut neighbour) = shellway_open(api, host).await?;
    ready(&mut neighbour).await?;
    neighbour.send("yes 'neighbour flood line'\r").await?;
    let stop = Arc::new(AtomicBool::new(false));
    let reading = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut bytes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match neighbour.recv(Duration::from_secs(5)).await {
                    Got::Bytes(b) => bytes += b.len() as u64,
                    Got::Closed | Got::Nothing => break,
                    _ => {}
                }
            }
            let _ = neighbour.send("\x03").await;
            neighbour.close().await;
            bytes
        })
    };
    // Let the flood get going first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    let times = echo(sw, keystrokes).await?;
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let flooded = reading.await?;
    let p99 = pct(&times, 99.0);
    report.push(Row::plain(
        "echo p99 growth while a neighbour session floods (ms)",
        p99 - quiet_p99,
        Some(("≤ 5 ms", 5.0)),
    ));
    report.note(format!(
        "echo beside a flood: p50 {:.2} ms, p99 {p99:.2} ms (quiet p99 {quiet_p99:.2} ms); the neighbour's viewer read {:.1} MB/s meanwhile",
        pct(&times, 50.0),
        flooded as f64 / 1e6 / secs
    ));
    Ok(())
}

/// Ctrl-C during `yes` in the real console (headless Chromium): from the
/// key press to the prompt on the cursor's line in xterm.js's buffer.
pub(super) async fn interrupt_in_console(env: &TestEnv, report: &mut Report) -> anyhow::Result<()> {
    let b = Browser::start().await;
    b.goto(&format!("{}/login", env.base)).await;
    b.type_into("#username", ADMIN).await;
    b.type_into("#password", ADMIN_PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_js("the console", "document.getElementById('connect')")
        .await;
    b.click("#connect").await;
    b.wait_js(
        "the console connected",
        "document.getElementById('badge').textContent === 'CONNECTED'",
    )
    .await;
    let probe = ctrl_c_during_yes(
        &b,
        INTERRUPTS,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    b.quit().await;
    let mut probe = probe?;
    probe.latencies.sort();
    report.push(Row::plain(
        "Ctrl-C during `yes` → prompt in the console, p95 (ms)",
        pct(&probe.latencies, 95.0),
        Some(("≤ 250 ms", 250.0)),
    ));
    report.push(Row::plain(
        "console main thread, longest task during the floods (ms)",
        probe.longest_task_ms,
        Some(("≤ 200 ms", 200.0)),
    ));
    let ms: Vec<String> = probe
        .latencies
        .iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
        .collect();
    let after: Vec<String> = probe
        .after
        .iter()
        .map(|a| {
            let arrived = a.arrived_ms.map_or("?".into(), |ms| format!("{ms:.0}"));
            format!("{} KiB/{} snap/{arrived} ms", a.bytes / 1024, a.snapshots)
        })
        .collect();
    report.note(format!(
        "after each Ctrl-C, handed to xterm.js before the prompt / snapshots / prompt reached the page: {}; longest task between a Ctrl-C and its prompt {:.0} ms",
        after.join(", "),
        probe.longest_task_after_ms
    ));
    report.note(format!(
        "Ctrl-C → prompt in the console, {INTERRUPTS} tries after 2 s of `yes` each (ms): {}; p50 {:.0}; page errors: {}",
        ms.join(", "),
        pct(&probe.latencies, 50.0),
        if probe.errors.is_empty() {
            "none".to_owned()
        } else {
            probe.errors.join(" | ")
        }
    ));
    Ok(())
}

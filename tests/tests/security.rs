//! The proxy's edges under hostile input: password hashing, brute force,
//! API tokens, accounts, headers, slow clients. See docs/security.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::{TestEnv, TestEnvOptions};

/// What a burst of logins may add to the proxy's resident memory.
const LOGIN_BURST_RSS_BOUND_KIB: u64 = 128 * 1024;

/// Resident memory of a process, KiB (VmRSS).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Samples the RSS of `pid` every 10 ms until `stop` fires; the highest.
fn watch_rss(
    pid: u32,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<u64>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let peak = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(rss_kib(pid).unwrap_or(0));
            tokio::select! {
                _ = &mut stopped => return peak,
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    });
    (stop, peak)
}

/// Sends `n` logins at once (`body(i)`, `headers(i)`) and returns each
/// answer's status, failing the test on a request that gets no answer.
async fn login_burst(
    base: &str,
    n: usize,
    body: impl Fn(usize) -> Value,
    forwarded_for: impl Fn(usize) -> Option<String>,
) -> Vec<(StatusCode, Option<String>, Value)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let calls = (0..n).map(|i| {
        let mut req = http.post(format!("{base}/api/login")).json(&body(i));
        if let Some(xff) = forwarded_for(i) {
            req = req.header("x-forwarded-for", xff);
        }
        async move {
            let resp = req.send().await.expect("every login gets an answer");
            let status = resp.status();
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp.json::<Value>().await.unwrap_or(Value::Null);
            (status, retry, body)
        }
    });
    futures_util::future::join_all(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_logins_all_get_an_answer_and_keep_the_proxy_memory_bounded() {
    let env = TestEnv::start_with(TestEnvOptions {
        proxy_process: true,
        runners: 0,
        ..Default::default()
    })
    .await;
    let pid = env.proxy_pid().unwrap();
    // One failed login first: the baseline includes what any login costs.
    let warm = login_burst(
        &env.base,
        1,
        |_| json!({"username": "nobody-warm", "password": "x"}),
        |_| None,
    )
    .await;
    assert_eq!(warm[0].0, StatusCode::UNAUTHORIZED);
    let baseline = rss_kib(pid).unwrap();

    let (stop, peak) = watch_rss(pid);
    let started = Instant::now();
    let answers = login_burst(
        &env.base,
        200,
        |_| json!({"username": "nobody", "password": "not the password"}),
        |_| None,
    )
    .await;
    let took = started.elapsed();
    stop.send(()).unwrap();
    let peak = peak.await.unwrap();
    let after = rss_kib(pid).unwrap();
    let mut by_status = std::collections::BTreeMap::new();
    for (status, _, _) in &answers {
        *by_status.entry(status.as_u16()).or_insert(0) += 1;
    }
    eprintln!(
        "200 logins in {took:?}: {by_status:?}; RSS baseline {baseline} KiB, peak {peak} KiB (+{} KiB), after {after} KiB (+{} KiB)",
        peak.saturating_sub(baseline),
        after.saturating_sub(baseline)
    );
    for (status, _, body) in &answers {
        assert!(
            [200, 401, 429, 503].contains(&status.as_u16()),
            "unexpected answer {status}: {body}"
        );
    }
    assert!(
        peak <= baseline + LOGIN_BURST_RSS_BOUND_KIB,
        "RSS went from {baseline} KiB to {peak} KiB during the burst"
    );
    assert!(
        after <= baseline + LOGIN_BURST_RSS_BOUND_KIB,
        "RSS stayed at {after} KiB after the burst (baseline {baseline} KiB)"
    );
    env.finish().await;
}

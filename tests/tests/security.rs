//! Signing in under attack: bounded password hashing, brute-force
//! throttling, the password policy and what failed sign-ins may write.
//! See docs/security.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::env::{test_binary, ADMIN};
use shellway_tests::{eventually, try_login, TestEnv, TestEnvOptions, WAIT};

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

/// A burst's answers by status, and the proxy's RSS: peak and after.
struct Burst {
    statuses: std::collections::BTreeMap<u16, usize>,
    answers: Vec<(StatusCode, Option<String>, Value)>,
    peak: u64,
    after: u64,
}

async fn measured_burst(
    env: &TestEnv,
    body: impl Fn(usize) -> Value,
    forwarded_for: impl Fn(usize) -> Option<String>,
) -> Burst {
    let pid = env.proxy_pid().unwrap();
    let (stop, peak) = watch_rss(pid);
    let started = Instant::now();
    let answers = login_burst(&env.base, 200, body, forwarded_for).await;
    let took = started.elapsed();
    stop.send(()).unwrap();
    let peak = peak.await.unwrap();
    let after = rss_kib(pid).unwrap();
    let mut statuses = std::collections::BTreeMap::new();
    for (status, _, _) in &answers {
        *statuses.entry(status.as_u16()).or_insert(0) += 1;
    }
    eprintln!(
        "200 logins answered in {took:?}: {statuses:?}; RSS peak {peak} KiB, after {after} KiB"
    );
    for (status, _, body) in &answers {
        assert!(
            [200, 401, 429, 503].contains(&status.as_u16()),
            "unexpected answer {status}: {body}"
        );
    }
    Burst {
        statuses,
        answers,
        peak,
        after,
    }
}

/// The proxy as a process, and its RSS once one failed login has run.
async fn proxy_process(security: session_proxy::Security) -> (TestEnv, u64) {
    let env = TestEnv::start_with(TestEnvOptions {
        proxy_process: true,
        runners: 0,
        security,
        ..Default::default()
    })
    .await;
    let warm = try_login(&env.base, "nobody-warm", "x", &[]).await;
    assert_eq!(warm.status, StatusCode::UNAUTHORIZED);
    let baseline = rss_kib(env.proxy_pid().unwrap()).unwrap();
    eprintln!("RSS baseline {baseline} KiB");
    (env, baseline)
}

fn assert_bounded(burst: &Burst, baseline: u64) {
    assert!(
        burst.peak <= baseline + LOGIN_BURST_RSS_BOUND_KIB,
        "RSS went from {baseline} KiB to {} KiB during the burst",
        burst.peak
    );
    assert!(
        burst.after <= baseline + LOGIN_BURST_RSS_BOUND_KIB,
        "RSS stayed at {} KiB after the burst (baseline {baseline} KiB)",
        burst.after
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_logins_all_get_an_answer_and_keep_the_proxy_memory_bounded() {
    let (env, baseline) = proxy_process(TestEnvOptions::default().security).await;
    let burst = measured_burst(
        &env,
        |_| json!({"username": "nobody", "password": "not the password"}),
        |_| None,
    )
    .await;
    assert_bounded(&burst, baseline);
    // One username from one address: the throttle answers most of them.
    assert!(
        burst.statuses.get(&429).copied().unwrap_or(0) > 150,
        "{:?}",
        burst.statuses
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_from_many_addresses_is_held_to_a_few_hashes_at_once() {
    // Behind a trusted proxy, 200 different clients (as a botnet would be)
    // guessing 200 different usernames: no throttle applies, so only the
    // hashing bound keeps the proxy's memory in check.
    let mut security = TestEnvOptions::default().security;
    security.trusted_proxies = "127.0.0.1".parse().unwrap();
    security.hash_concurrency = 4;
    security.hash_wait = Duration::from_millis(500);
    let (env, baseline) = proxy_process(security).await;
    for round in 0..2 {
        let burst = measured_burst(
            &env,
            |i| json!({"username": format!("bot-{round}-{i}"), "password": "guess"}),
            |i| Some(format!("198.51.{round}.{i}")),
        )
        .await;
        assert_bounded(&burst, baseline);
        let busy: Vec<_> = burst
            .answers
            .iter()
            .filter(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
            .collect();
        assert!(
            !busy.is_empty(),
            "a flood past the hashing bound is told to come back"
        );
        for (_, retry, body) in busy {
            assert_eq!(body["error"]["code"], "busy", "{body}");
            assert!(retry.is_some(), "busy answers carry Retry-After");
        }
        assert!(
            burst.statuses.get(&401).copied().unwrap_or(0) >= 4,
            "{:?}",
            burst.statuses
        );
    }
    env.finish().await;
}

/// `n` wrong passwords for `user`; each must be an ordinary failure.
async fn fail_logins(base: &str, user: &str, n: usize, headers: &[(&str, &str)]) {
    for i in 0..n {
        let r = try_login(base, user, "wrong password", headers).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "failure {i}: {:?}",
            r.body
        );
    }
}

/// Waits until the block on `user` lifts: a wrong password is answered
/// 401 again (and counts as the next failure).
async fn wait_for_lift(base: &str, user: &str) {
    eventually("the block to lift", Duration::from_secs(70), || async {
        let r = try_login(base, user, "wrong password", &[]).await;
        (r.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failed_sign_ins_block_a_username_with_a_doubling_delay_even_for_the_right_password() {
    let env = TestEnv::start().await;
    env.add_user("carol").await;
    fail_logins(&env.base, "carol", 5, &[]).await;
    let blocked = try_login(&env.base, "carol", "carol-password", &[]).await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        blocked.body
    );
    assert_eq!(blocked.code(), "too_many_attempts");
    assert_eq!(blocked.retry_after, Some(1));
    assert!(blocked.cookie.is_none());

    // Audited once, when the block started; the admins see it.
    let db = env.db().await;
    let throttled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit WHERE action = 'login.throttled' AND target = 'carol'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(throttled, 1);
    let (status, list) = env.api.get("/api/login-throttles").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let carol = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "username" && t["key"] == "carol")
        .unwrap_or_else(|| panic!("carol is listed: {list}"));
    assert_eq!(carol["failures"], 5);
    assert!(carol["blocked_until"].is_string());

    // Each further failure doubles the delay: 2 s, then 4 s.
    wait_for_lift(&env.base, "carol").await;
    let r = try_login(&env.base, "carol", "carol-password", &[]).await;
    assert_eq!(
        (r.status, r.retry_after),
        (StatusCode::TOO_MANY_REQUESTS, Some(2))
    );
    wait_for_lift(&env.base, "carol").await;
    let r = try_login(&env.base, "carol", "carol-password", &[]).await;
    assert_eq!(
        (r.status, r.retry_after),
        (StatusCode::TOO_MANY_REQUESTS, Some(4))
    );

    // Once it lifts, the right password works and starts carol afresh.
    let ok = eventually("carol to sign in", Duration::from_secs(10), || async {
        let r = try_login(&env.base, "carol", "carol-password", &[]).await;
        (r.status == StatusCode::OK).then_some(r)
    })
    .await;
    assert!(ok.cookie.is_some());
    let (_, list) = env.api.get("/api/login-throttles").await;
    assert!(
        !list.as_array().unwrap().iter().any(|t| t["key"] == "carol"),
        "a success clears the username: {list}"
    );
    db.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_guessing_many_usernames_is_blocked_on_every_proxy() {
    let mut env = TestEnv::start().await;
    let other = env.start_extra_proxy().await;
    for i in 0..5 {
        fail_logins(&env.base, &format!("user{i}"), 1, &[]).await;
    }
    // A sixth username from the same address, on the other proxy; a forged
    // X-Forwarded-For from a peer nobody trusts changes nothing.
    for base in [&env.base, &other] {
        let r = try_login(base, "user5", "x", &[("x-forwarded-for", "203.0.113.1")]).await;
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{base}: {:?}",
            r.body
        );
        assert_eq!(r.code(), "too_many_attempts");
    }
    let (_, list) = env.api.get("/api/login-throttles").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "address" && t["key"] == "127.0.0.1"),
        "{list}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_count() {
    let mut env = TestEnv::start().await;
    env.opts.security.trusted_proxies = "127.0.0.1".parse().unwrap();
    let behind = env.start_extra_proxy().await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for i in 0..5 {
        fail_logins(&behind, &format!("user{i}"), 1, &from("198.51.100.7")).await;
    }
    let r = try_login(&behind, "user5", "x", &from("198.51.100.7")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    // Another client behind the same proxy is not blocked with it.
    let r = try_login(&behind, "user6", "x", &from("198.51.100.8")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    // An IPv6 client counts as its /64.
    for i in 0..5 {
        let ip = format!("2001:db8:0:1::{i}");
        let h = [("x-forwarded-for", ip.as_str())];
        fail_logins(&behind, &format!("v6user{i}"), 1, &h).await;
    }
    let r = try_login(&behind, "v6user5", "x", &from("2001:db8:0:1::99")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);

    // An admin clears an address (the IPv6 network's key has a '/').
    let (status, _) = env.api.get("/api/login-throttles").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = env
        .api
        .delete("/api/login-throttles/address/2001%3Adb8%3A0%3A1%3A%3A%2F64")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let r = try_login(&behind, "v6user5", "x", &from("2001:db8:0:1::99")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "cleared: {:?}", r.body);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_clears_a_throttle_and_the_person_signs_in_at_once() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    fail_logins(&env.base, "bob", 5, &[]).await;
    let r = try_login(&env.base, "bob", "bob-password", &[]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

    let (status, _) = bob.get("/api/login-throttles").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admins only");
    let (status, _) = bob.delete("/api/login-throttles/username/bob").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admins only");

    for path in [
        "/api/login-throttles/username/bob",
        "/api/login-throttles/address/127.0.0.1",
    ] {
        let (status, body) = env.api.delete(path).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{path}: {body}");
    }
    let r = try_login(&env.base, "bob", "bob-password", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let (status, _) = env.api.delete("/api/login-throttles/username/bob").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing left to clear");
    let db = env.db().await;
    let cleared: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit WHERE action = 'login.throttle_cleared' AND username = $1",
    )
    .bind(ADMIN)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(cleared, 2);
    db.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sign_in_writes_at_most_64_printable_characters_and_big_bodies_are_refused() {
    let env = TestEnv::start().await;
    let db = env.db().await;
    let name = format!("evil\u{1b}[31m\r\n{}", "x".repeat(5_000));
    let r = try_login(&env.base, &name, "x", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let target: String = sqlx::query_scalar(
        "SELECT target FROM audit WHERE action = 'login.failed' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(target.chars().count(), 64, "{target:?}");
    assert!(target.starts_with("evil[31m"), "{target:?}");
    assert!(!target.chars().any(char::is_control), "{target:?}");

    let rows = |db: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let before = rows(db.clone()).await;
    let r = try_login(&env.base, &"u".repeat(2_000_000), "x", &[]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.code(), "too_large");
    assert_eq!(rows(db.clone()).await, before, "nothing written for it");
    db.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_passwords_need_twelve_characters_and_must_not_be_the_username() {
    let env = TestEnv::start().await;
    for (username, password) in [
        ("erin", "eleven-char"),
        ("erin-the-admin", "Erin-The-Admin"),
    ] {
        let (status, body) = env
            .api
            .post(
                "/api/users",
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{password}: {body}"
        );
        assert_eq!(body["error"]["field"], "password");
    }
    let (status, body) = env
        .api
        .post(
            "/api/users",
            json!({"username": "erin", "password": "twelve-chars"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    env.finish().await;
}

/// Runs the proxy binary with `args` against the test database until it
/// exits; its exit status and everything it printed.
async fn run_proxy_binary(env: &TestEnv, args: &[&str], password: &str) -> (bool, String) {
    let out = tokio::process::Command::new(test_binary("shellway-test-proxy"))
        .args(args)
        .env("SHELLWAY_DATABASE_URL", &env.db_url)
        .env("SHELLWAY_AMQP_URL", &env.amqp_url)
        .env("SHELLWAY_AMQP_PREFIX", &env.prefix)
        .env("SHELLWAY_LISTEN", "127.0.0.1:0")
        .env("SHELLWAY_ADMIN_USERNAME", "root")
        .env("SHELLWAY_ADMIN_PASSWORD", password)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("the proxy exits")
        .expect("the proxy runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_admin_and_create_admin_refuse_a_weak_password() {
    let env = TestEnv::start().await;
    let (ok, out) = run_proxy_binary(&env, &["serve"], "short").await;
    assert!(
        !ok,
        "the proxy must not start with a weak bootstrap password: {out}"
    );
    assert!(out.contains("at least 12 characters"), "{out}");
    let (ok, out) = run_proxy_binary(&env, &["create-admin", "--username", "root"], "ROOT").await;
    assert!(!ok && out.contains("at least 12 characters"), "{out}");
    let (ok, out) = run_proxy_binary(
        &env,
        &["create-admin", "--username", "rootroot-root"],
        "RootRoot-Root",
    )
    .await;
    assert!(!ok && out.contains("not be the username"), "{out}");
    let r = try_login(&env.base, "root", "ROOT", &[]).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "no weak admin was created"
    );
    let (ok, out) = run_proxy_binary(
        &env,
        &["create-admin", "--username", "root"],
        "a long enough password",
    )
    .await;
    assert!(ok, "{out}");
    let r = try_login(&env.base, "root", "a long enough password", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_from_an_address_with_failures_does_not_block_it_further() {
    let env = TestEnv::start().await;
    env.add_user("bob").await;
    fail_logins(&env.base, "mallory", 5, &[]).await;
    // The address's block lifts; bob signs in from it, twice in a row.
    let first = eventually("the address block to lift", WAIT, || async {
        let r = try_login(&env.base, "bob", "bob-password", &[]).await;
        (r.status != StatusCode::TOO_MANY_REQUESTS).then_some(r)
    })
    .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let second = try_login(&env.base, "bob", "bob-password", &[]).await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    env.finish().await;
}

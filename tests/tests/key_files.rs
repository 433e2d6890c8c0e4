//! Key files (`key_path`): a runner reads only regular files of at most
//! 64 KiB under its key directory, off its async runtime and within the
//! connect timeout; anything else fails the session fast, with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::rss::rss_kib;
use shellway_tests::{ScratchDir, TestEnv, TestEnvOptions, WAIT};
use tokio::process::Child;
use uuid::Uuid;

/// An environment with no runner: the test starts one as a process.
async fn without_runner() -> TestEnv {
    TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await
}

/// A runner process (to measure and kill) reading keys from `keys`.
fn runner_process(env: &TestEnv, keys: &Path) -> Child {
    env.runner_command(&shellway_tests::unique("keys-"))
        .env("SHELLWAY_RUNNER_KEY_DIR", keys)
        .spawn()
        .unwrap()
}

fn host_with_key(env: &TestEnv, key: &Path) -> Value {
    env.host_json_with(
        &shellway_tests::unique("k"),
        key,
        "strict",
        &[&env.sshd.host_key],
    )
}

/// Opens a session with `key` and waits for it to open.
async fn open_with(env: &TestEnv, key: &Path) -> Uuid {
    let host = env.api.create_host(host_with_key(env, key)).await;
    let id = env.api.open_session(host).await;
    env.attach(id).await.wait_open().await;
    id
}

/// Opens a session with `key`, expects it to fail; its error event and
/// how long the failure took from the request.
async fn fail_with(env: &TestEnv, key: &Path) -> (Value, Duration) {
    let host = env.api.create_host(host_with_key(env, key)).await;
    let asked = Instant::now();
    let id = env.api.open_session(host).await;
    let mut ws = env.attach(id).await;
    let err = ws
        .wait_event("error", WAIT, |e| e["event"] == "error")
        .await;
    (err, asked.elapsed())
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", path.display());
}

/// A key directory with a usable key and every kind of bad file.
struct Keys {
    dir: ScratchDir,
    /// Outside the key directory.
    elsewhere: ScratchDir,
}

impl Keys {
    fn new(env: &TestEnv) -> Self {
        let dir = ScratchDir::new("shellway-keys-").unwrap();
        let elsewhere = ScratchDir::new("shellway-elsewhere-").unwrap();
        std::fs::copy(&env.sshd.user_key, dir.join("good")).unwrap();
        std::fs::copy(&env.sshd.user_key, elsewhere.join("valid")).unwrap();
        mkfifo(&dir.join("fifo"));
        std::fs::create_dir(dir.join("a-directory")).unwrap();
        std::fs::write(dir.join("big"), vec![b'k'; 1024 * 1024]).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("valid"), dir.join("link-out")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("link-zero")).unwrap();
        Self { dir, elsewhere }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_files_fail_fast_with_their_reason_and_the_runner_stays_small() {
    let env = without_runner().await;
    let keys = Keys::new(&env);
    let mut runner = runner_process(&env, &keys.dir);
    let pid = runner.id().unwrap();
    open_with(&env, &keys.path("good")).await;
    let before = rss_kib(pid).unwrap();

    let outside = "is outside the runner's key directory";
    let mut cases: Vec<(PathBuf, &str)> = vec![
        ("/dev/zero".into(), outside),
        (keys.path("link-zero"), outside),
        (keys.path("link-out"), outside),
        (keys.elsewhere.join("valid"), outside),
        (
            keys.path("fifo"),
            "is a FIFO (named pipe), not a regular file",
        ),
        (
            keys.path("a-directory"),
            "is a directory, not a regular file",
        ),
        (keys.path("big"), "is larger than 64 KiB"),
        (keys.path("missing"), "no such file"),
    ];
    // A device inside the key directory, where the system lets us make
    // one (root): the file type check, not the location, refuses it.
    let made = std::process::Command::new("mknod")
        .arg(keys.path("zero"))
        .args(["c", "1", "5"])
        .status();
    if made.is_ok_and(|s| s.success()) {
        cases.push((keys.path("zero"), "is a device, not a regular file"));
    }
    for (path, reason) in &cases {
        let (err, took) = fail_with(&env, path).await;
        assert_eq!(err["type"], "ssh", "{err}");
        let message = err["message"].as_str().unwrap();
        let expected = format!("cannot use the private key {}: it {reason}", path.display());
        let expected = expected.replace("it no such file", "no such file");
        assert!(message.starts_with(&expected), "{message} / {expected}");
        assert!(
            took < env.opts.connect_timeout,
            "{} took {took:?}",
            path.display()
        );
        eprintln!("{}: refused in {took:?}", path.display());
    }
    // Still serving, and no bigger for it (reading /dev/zero grew a
    // runner by gigabytes).
    open_with(&env, &keys.path("good")).await;
    let after = rss_kib(pid).unwrap();
    eprintln!("runner RSS {before} KiB before the bad keys, {after} KiB after");
    assert!(
        after < before + 32 * 1024,
        "runner RSS went from {before} KiB to {after} KiB"
    );
    runner.start_kill().unwrap();
    runner.wait().await.unwrap();
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_keys_do_not_stall_the_runner() {
    let env = without_runner().await;
    let keys = ScratchDir::new("shellway-keys-").unwrap();
    std::fs::copy(&env.sshd.user_key, keys.join("good")).unwrap();
    let mut runner = runner_process(&env, &keys);
    // More FIFOs than the runner has worker threads (the machine's cores):
    // a runner that opened them on its runtime would serve nothing more.
    let fifos = 2 * std::thread::available_parallelism().map_or(2, |n| n.get()) + 2;
    let mut pending = Vec::new();
    for i in 0..fifos {
        let fifo = keys.join(format!("fifo-{i}"));
        mkfifo(&fifo);
        let host = env.api.create_host(host_with_key(&env, &fifo)).await;
        let id = env.api.open_session(host).await;
        pending.push((id, env.attach(id).await));
    }
    // Opens while the FIFOs wait for a writer that never comes.
    open_with(&env, &keys.join("good")).await;
    for (id, mut ws) in pending {
        let err = ws
            .wait_event("error", env.opts.connect_timeout, |e| e["event"] == "error")
            .await;
        let message = err["message"].as_str().unwrap();
        assert!(message.contains("FIFO"), "{id}: {message}");
    }
    runner.start_kill().unwrap();
    runner.wait().await.unwrap();
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_refuses_key_paths_that_are_plainly_wrong() {
    let env = without_runner().await;
    for bad in ["keys/id", "/keys/../etc/shadow", "/keys/id\u{0}", ""] {
        let mut host = env.host_json("bad-key");
        host["key_path"] = json!(bad);
        let (status, reply) = env.api.post("/api/hosts", host).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {reply}");
        assert_eq!(reply["error"]["field"], "key_path", "{bad:?}: {reply}");
    }
    env.finish().await;
}

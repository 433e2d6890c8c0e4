//! Jobs against real sshd servers: one command on many hosts, each host on
//! its own connection through the runners, with per-host results that
//! never mix, strategies that hold their bounds, cancel, rerun and
//! grouping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::api::id_of;
use shellway_tests::sshd::free_port;
use shellway_tests::{eventually, Frame, Sshd, TestEnv, WsClient, WAIT};
use uuid::Uuid;

/// A host entry for `sshd` named `name`, labelled `labels`.
fn host_on(sshd: &Sshd, name: &str, labels: Value) -> Value {
    json!({
        "name": name,
        "hostname": "127.0.0.1",
        "port": sshd.port,
        "username": sshd.username,
        "auth_method": "key_path",
        "key_path": sshd.user_key.display().to_string(),
        "host_key_policy": "strict",
        "host_keys": [sshd.host_key],
        "labels": labels,
    })
}

async fn add_host(env: &TestEnv, host: Value) -> Uuid {
    env.api.create_host(host).await
}

/// Starts a job as the admin; its id.
async fn start(env: &TestEnv, body: Value) -> Uuid {
    let (status, reply) = env.api.post("/api/jobs", body).await;
    assert_eq!(status, StatusCode::CREATED, "start job: {reply}");
    id_of(&reply)
}

/// Waits until the job has ended; its detail.
async fn finished(env: &TestEnv, job: Uuid) -> Value {
    eventually("the job to end", Duration::from_secs(60), || async {
        let (_, job) = env.api.get(&format!("/api/jobs/{job}")).await;
        let running = job["host_results"].as_array().is_none_or(|hs| {
            hs.iter()
                .any(|h| h["status"] == "queued" || h["status"] == "running")
        });
        (job["status"] != "running" && !running).then_some(job)
    })
    .await
}

fn host_result(job: &Value, host: Uuid) -> &Value {
    job["host_results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host_id"] == host.to_string())
        .unwrap_or_else(|| panic!("host {host} not in {job}"))
}

async fn output(env: &TestEnv, job: Uuid, host: Uuid, stream: &str) -> String {
    let url = format!(
        "{}/api/jobs/{job}/hosts/{host}/output?stream={stream}",
        env.base
    );
    let reply = reqwest::Client::new()
        .get(url)
        .bearer_auth(env.token())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    reply.text().await.unwrap()
}

/// A command that prints which sshd port it runs behind, on stdout, and a
/// line on stderr; it fails behind `fail_port`.
fn port_command(fail_port: u16) -> String {
    format!(
        "port=$(echo $SSH_CONNECTION | cut -d' ' -f4); echo \"out $port\"; \
         echo \"err $port\" >&2; test \"$port\" != {fail_port}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_twelve_hosts_reports_each_host_apart() {
    let env = TestEnv::start().await;
    let other = Sshd::start().await;
    let mut good = Vec::new();
    for i in 0..10 {
        let name = format!("web{i}");
        good.push(add_host(&env, host_on(&env.sshd, &name, json!({"role": "web"}))).await);
    }
    // The runner reads keys from its key directory only.
    let key = env.key_dir().join(format!("other-{}", other.port));
    std::fs::copy(&other.user_key, &key).unwrap();
    let mut on_other = host_on(&other, "web-other", json!({"role": "web"}));
    on_other["key_path"] = json!(key.display().to_string());
    let failing = add_host(&env, on_other).await;
    let mut dead = host_on(&env.sshd, "web-dead", json!({"role": "web"}));
    dead["port"] = json!(free_port());
    let dead = add_host(&env, dead).await;
    // Not a web host: not targeted.
    add_host(&env, host_on(&env.sshd, "db0", json!({"role": "db"}))).await;

    let targets = json!({"labels": {"role": "web"}});
    let (status, preview) = env
        .api
        .post("/api/jobs/preview", json!({"targets": targets}))
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], 12, "{preview}");

    let job = start(
        &env,
        json!({"targets": targets, "command": port_command(other.port), "concurrency": 5}),
    )
    .await;
    let done = finished(&env, job).await;
    assert_eq!(done["status"], "done", "{done}");
    for &h in &good {
        let r = host_result(&done, h);
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["exit_code"], 0, "{r}");
        assert_eq!(r["stdout_tail"], format!("out {}\n", env.sshd.port), "{r}");
        assert_eq!(r["stderr_tail"], format!("err {}\n", env.sshd.port), "{r}");
        assert!(r["duration_ms"].as_i64().is_some(), "{r}");
    }
    let r = host_result(&done, failing);
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["exit_code"], 1, "{r}");
    assert_eq!(
        output(&env, job, failing, "stdout").await,
        format!("out {}\n", other.port)
    );
    assert_eq!(
        output(&env, job, failing, "stderr").await,
        format!("err {}\n", other.port)
    );
    let r = host_result(&done, dead);
    assert_eq!(r["status"], "unreachable", "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot connect"),
        "{r}"
    );
    // Ten alike hosts are one group; the failed and the unreachable one
    // are groups of their own.
    let groups = done["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{groups:?}");
    assert_eq!(groups[0]["count"], 10);
    assert_eq!(groups[0]["status"], "ok");
    assert_eq!(groups[0]["stdout_tail"], format!("out {}\n", env.sshd.port));

    // Job hosts do not show as interactive sessions.
    let (_, sessions) = env.api.get("/api/sessions").await;
    assert_eq!(sessions.as_array().map(Vec::len), Some(0), "{sessions}");
    // The history lists the job with its counts.
    let (_, list) = env.api.get("/api/jobs").await;
    assert_eq!(list[0]["id"], job.to_string(), "{list}");
    assert_eq!(list[0]["counts"]["ok"], 10, "{list}");
    assert_eq!(list[0]["hosts"], 12, "{list}");
    env.finish().await;
}

/// A command that counts itself in while it runs, in `dir`: the most
/// seen running at once ends up in `dir/max`.
fn counting_command(dir: &str) -> String {
    format!(
        "d={dir}; touch $d/run.$$; n=$(ls $d | grep -c '^run\\.'); \
         ( flock 9; m=$(cat $d/max 2>/dev/null || echo 0); [ $n -gt $m ] && echo $n > $d/max ) 9>$d/lock; \
         sleep 0.4; rm $d/run.$$"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_never_runs_more_hosts_than_its_concurrency() {
    let env = TestEnv::start().await;
    let dir = tempfile_dir();
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.push(add_host(&env, host_on(&env.sshd, &format!("h{i}"), json!({}))).await);
    }
    let job = start(
        &env,
        json!({"targets": {"host_ids": ids}, "command": counting_command(&dir), "concurrency": 3}),
    )
    .await;
    let done = finished(&env, job).await;
    assert_eq!(done["status"], "done");
    assert_eq!(done["counts"]["ok"], 9, "{done}");
    let max: u32 = std::fs::read_to_string(format!("{dir}/max"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(max <= 3, "{max} hosts ran at once");
    assert!(max >= 2, "the hosts did not run side by side ({max})");
    let _ = std::fs::remove_dir_all(&dir);
    env.finish().await;
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("shellway-jobs-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_stops_at_the_failure_threshold_and_skips_the_rest() {
    let env = TestEnv::start().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(add_host(&env, host_on(&env.sshd, &format!("r{i}"), json!({}))).await);
    }
    let job = start(
        &env,
        json!({"targets": {"host_ids": ids}, "command": "exit 3",
               "strategy": "rolling", "batch": "2", "max_failures": "1"}),
    )
    .await;
    let done = finished(&env, job).await;
    let statuses: Vec<&str> = ids
        .iter()
        .map(|h| host_result(&done, *h)["status"].as_str().unwrap())
        .collect();
    // The first batch fails two hosts: more than one, so nothing else starts.
    assert_eq!(
        statuses,
        ["failed", "failed", "skipped", "skipped", "skipped", "skipped"]
    );
    assert_eq!(host_result(&done, ids[0])["exit_code"], 3);

    // Rerun-failed takes exactly the failed, unreachable and skipped
    // hosts, with the same options.
    let (status, again) = env
        .api
        .post(
            &format!("/api/jobs/{job}/rerun"),
            json!({"hosts": "failed"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let rerun = id_of(&again);
    let second = finished(&env, rerun).await;
    assert_eq!(second["rerun_of"], job.to_string());
    assert_eq!(second["strategy"], "rolling");
    assert_eq!(second["batch"], "2");
    assert_eq!(second["request"], done["request"]);
    assert_eq!(second["host_results"].as_array().unwrap().len(), 6);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_every_remote_process() {
    let env = TestEnv::start().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(add_host(&env, host_on(&env.sshd, &format!("c{i}"), json!({}))).await);
    }
    let sleep = format!("sleep 299.{}", rand::random::<u32>() % 1000 + 1000);
    let job = start(
        &env,
        json!({"targets": {"host_ids": ids}, "command": format!("{sleep}; echo after"),
               "concurrency": 2}),
    )
    .await;
    eventually("two sleeps running", WAIT, || async {
        (pgrep(&sleep) >= 2).then_some(())
    })
    .await;
    let (status, reply) = env
        .api
        .post(&format!("/api/jobs/{job}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{reply}");
    let done = finished(&env, job).await;
    assert_eq!(done["status"], "canceled", "{done}");
    let statuses: Vec<&str> = ids
        .iter()
        .map(|h| host_result(&done, *h)["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["canceled"; 4], "{done}");
    eventually("no sleep left", WAIT, || async {
        (pgrep(&sleep) == 0).then_some(())
    })
    .await;
    env.finish().await;
}

/// Processes whose whole command line is `command`.
fn pgrep(command: &str) -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-f", "-x", command])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_needs_the_job_grant_on_every_host() {
    let env = TestEnv::start().await;
    let alice = env.add_user("alice").await;
    let granted = add_host(&env, host_on(&env.sshd, "granted", json!({"team": "a"}))).await;
    let runs_only = add_host(&env, host_on(&env.sshd, "runs-only", json!({"team": "a"}))).await;
    let hidden = add_host(&env, host_on(&env.sshd, "hidden", json!({"team": "a"}))).await;
    env.grant(&alice, granted, &["job"]).await;
    env.grant(&alice, runs_only, &["run"]).await;

    let (status, reply) = alice
        .post(
            "/api/jobs",
            json!({"targets": {"host_ids": [hidden]}, "command": "true"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    let (status, reply) = alice
        .post(
            "/api/jobs",
            json!({"targets": {"host_ids": [runs_only]}, "command": "true"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    // An account of a granted host that no grant of hers covers reads as
    // one that does not exist.
    let two = add_host(&env, host_on(&env.sshd, "two-accounts", json!({}))).await;
    env.add_agent_account(two, "operator").await;
    env.grant_account(&alice, two, &env.sshd.username, &["job"])
        .await;
    let mut replies = Vec::new();
    for account in ["operator", "nobody"] {
        let (status, reply) = alice
            .post(
                "/api/jobs",
                json!({"targets": {"host_ids": [two]}, "account": account, "command": "true"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
        replies.push(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .replace(account, "X"),
        );
    }
    assert_eq!(replies[0], replies[1]);
    // Labels reach only the hosts the user may run jobs on.
    let (status, preview) = alice
        .post(
            "/api/jobs/preview",
            json!({"targets": {"labels": {"team": "a"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], 1, "{preview}");
    assert_eq!(preview["hosts"][0]["id"], granted.to_string());
    let (status, reply) = alice
        .post(
            "/api/jobs",
            json!({"targets": {"labels": {"team": "a"}}, "command": "echo hi"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let job = id_of(&reply);
    let done = eventually("alice's job to end", WAIT, || async {
        let (_, j) = alice.get(&format!("/api/jobs/{job}")).await;
        (j["status"] == "done").then_some(j)
    })
    .await;
    assert_eq!(host_result(&done, granted)["stdout_tail"], "hi\n");
    // Bob sees nothing of it.
    let bob = env.add_user("bob").await;
    let (status, _) = bob.get(&format!("/api/jobs/{job}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field() {
    let env = TestEnv::start().await;
    let host = env.add_host().await;
    let cases = [
        (json!({"targets": {}, "command": "true"}), "targets"),
        (
            json!({"targets": {"host_ids": [host]}, "command": "true", "concurrency": 0}),
            "concurrency",
        ),
        (
            json!({"targets": {"host_ids": [host]}, "command": "true", "concurrency": 101}),
            "concurrency",
        ),
        (
            json!({"targets": {"host_ids": [host]}, "command": "true", "strategy": "yolo"}),
            "strategy",
        ),
        (
            json!({"targets": {"host_ids": [host]}, "command": "true", "strategy": "rolling", "batch": "x"}),
            "batch",
        ),
        (json!({"targets": {"host_ids": [host]}}), "command"),
        (
            json!({"targets": {"host_ids": [host]}, "command": "x".repeat(70_000)}),
            "command",
        ),
        (
            json!({"targets": {"group": "web"}, "command": "true"}),
            "targets.group",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = env.api.post("/api/jobs", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {reply}");
        assert_eq!(reply["error"]["field"], field, "{body}: {reply}");
    }
    let (status, _) = env.api.get(&format!("/api/jobs/{}", Uuid::now_v7())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_parameters_with_shell_metacharacters_arrive_literally() {
    let env = TestEnv::start().await;
    let host = env.add_host().await;
    let (status, reply) = env
        .api
        .post(
            "/api/tasks",
            json!({"name": "say", "command": "printf '%s|' {{msg}} {{n}}",
                   "params": [{"name": "msg", "pattern": ".*"},
                              {"name": "n", "pattern": "[0-9]+"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let hostile = r#"a'b "c" $(touch /tmp/pwned) `id` ; echo x && \ $HOME *"#;
    let job = start(
        &env,
        json!({"targets": {"host_ids": [host]}, "task": {"name": "say",
               "params": {"msg": hostile, "n": "42"}}}),
    )
    .await;
    let done = finished(&env, job).await;
    let r = host_result(&done, host);
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["stdout_tail"], format!("{hostile}|42|"), "{r}");
    assert_eq!(done["kind"], "task");
    // A value outside its pattern is refused, naming the parameter.
    let (status, reply) = env
        .api
        .post(
            "/api/jobs",
            json!({"targets": {"host_ids": [host]}, "task": {"name": "say",
                   "params": {"msg": "x", "n": "4; id"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["field"], "task.params.n", "{reply}");
    // A pattern that does not compile, or an undeclared reference, is
    // refused when the task is saved.
    let (status, reply) = env
        .api
        .post(
            "/api/tasks",
            json!({"name": "bad", "command": "echo {{x}}", "params": [{"name": "x", "pattern": "(["}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["field"], "params", "{reply}");
    let (status, reply) = env
        .api
        .post(
            "/api/tasks",
            json!({"name": "bad", "command": "echo {{y}}"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouping_collapses_identical_outputs_and_keeps_different_ones_apart() {
    let env = TestEnv::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(add_host(&env, host_on(&env.sshd, &format!("g{i}"), json!({}))).await);
    }
    // The same output everywhere but an exit code that differs by nothing
    // host-specific: one group of five.
    let job = start(
        &env,
        json!({"targets": {"host_ids": ids}, "command": "echo same; echo warn >&2"}),
    )
    .await;
    let done = finished(&env, job).await;
    let groups = done["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["count"], 5);
    assert_eq!(groups[0]["stdout_tail"], "same\n");
    assert_eq!(groups[0]["stderr_tail"], "warn\n");
    // Output that differs by host (its session's own port) splits them.
    let job = start(
        &env,
        json!({"targets": {"host_ids": ids}, "command": "echo $SSH_CONNECTION | cut -d' ' -f2"}),
    )
    .await;
    let done = finished(&env, job).await;
    assert_eq!(done["groups"].as_array().unwrap().len(), 5, "{done}");

    // Whole outputs that differ only before their last 2 KiB (the tails
    // are the same) are still told apart.
    let job = start(
        &env,
        json!({"targets": {"host_ids": ids},
               "command": "echo $SSH_CONNECTION | cut -d' ' -f2; head -c 4096 /dev/zero | tr '\\0' x"}),
    )
    .await;
    let done = finished(&env, job).await;
    let groups = done["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 5, "{done}");
    assert_eq!(groups[0]["stdout_tail"], "x".repeat(2048));
    // Once a host ended a while ago its digests are kept, and reads use
    // them rather than reading the whole output again: made equal by hand,
    // the five hosts read as one group.
    let db = env.db().await;
    sqlx::query("UPDATE job_hosts SET ended_at = ended_at - interval '1 minute' WHERE job_id = $1")
        .bind(job)
        .execute(&db)
        .await
        .unwrap();
    let (_, again) = env.api.get(&format!("/api/jobs/{job}")).await;
    assert_eq!(again["groups"].as_array().unwrap().len(), 5, "{again}");
    let kept: Vec<(Option<String>,)> =
        sqlx::query_as("SELECT stdout_digest FROM job_hosts WHERE job_id = $1")
            .bind(job)
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(
        kept.iter()
            .all(|(d,)| d.as_ref().is_some_and(|d| d.len() == 64)),
        "{kept:?}"
    );
    sqlx::query("UPDATE job_hosts SET stdout_digest = 'same' WHERE job_id = $1")
        .bind(job)
        .execute(&db)
        .await
        .unwrap();
    let (_, kept) = env.api.get(&format!("/api/jobs/{job}")).await;
    assert_eq!(kept["groups"].as_array().unwrap().len(), 1, "{kept}");
    db.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_websocket_streams_each_hosts_status_and_output_apart() {
    let env = TestEnv::start().await;
    let a = add_host(&env, host_on(&env.sshd, "wa", json!({}))).await;
    let b = add_host(&env, host_on(&env.sshd, "wb", json!({}))).await;
    let job = start(
        &env,
        json!({"targets": {"host_ids": [a, b]},
               "command": "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.3; done; echo €"}),
    )
    .await;
    let mut ws = WsClient::connect(&env.base, &format!("/ws/jobs/{job}"), env.token()).await;
    let mut frames = Vec::new();
    loop {
        match ws.next(WAIT).await {
            Some(Frame::Event(v)) => {
                let end = v["type"] == "end";
                frames.push(v);
                if end {
                    break;
                }
            }
            other => panic!("unexpected {other:?} after {frames:?}"),
        }
    }
    assert_eq!(frames[0]["type"], "job", "{frames:?}");
    assert_eq!(frames.last().unwrap()["job"]["status"], "done");
    for host in [a, b] {
        let id = host.to_string();
        let statuses: Vec<&str> = frames
            .iter()
            .filter(|f| f["type"] == "host" && f["host"]["host_id"] == id.as_str())
            .map(|f| f["host"]["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses.last(), Some(&"ok"), "{statuses:?}");
        let stream = |name: &str| -> String {
            frames
                .iter()
                .filter(|f| {
                    f["type"] == "output" && f["host_id"] == id.as_str() && f["stream"] == name
                })
                .map(|f| f["data"].as_str().unwrap())
                .collect()
        };
        assert_eq!(stream("stdout"), "out1\nout2\nout3\n€\n");
        assert_eq!(stream("stderr"), "err1\nerr2\nerr3\n");
    }
    // Someone else's job: not found.
    let eve = env.add_user("eve").await;
    let denied =
        WsClient::try_connect(&env.base, &format!("/ws/jobs/{job}"), eve.token.as_deref()).await;
    assert!(denied.is_err());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_page_runs_a_job_shows_the_grid_and_reruns_the_failed_hosts() {
    use shellway_tests::browser::Browser;
    use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
    let env = TestEnv::start().await;
    let good = add_host(&env, host_on(&env.sshd, "page-ok", json!({"tier": "page"}))).await;
    let mut dead = host_on(&env.sshd, "page-dead", json!({"tier": "page"}));
    dead["port"] = json!(free_port());
    let dead = add_host(&env, dead).await;
    let b = Browser::start().await;
    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    b.goto(&format!("{}/jobs", env.base)).await;
    b.wait_js("the jobs form", "document.getElementById('job-form')")
        .await;
    b.type_into("#job-labels", "tier=page").await;
    b.wait_js(
        "the preview of two hosts",
        "document.getElementById('job-preview').textContent.startsWith('2 hosts')",
    )
    .await;
    b.type_into("#job-command", "echo from-the-page").await;
    b.click("#job-run").await;
    let tile = |id: Uuid, status: &str| {
        format!(
            "(document.querySelector('.job-tile[data-host=\"{id}\"]') || {{}}).dataset?.status === '{status}'"
        )
    };
    b.wait_js("the ok host green", &tile(good, "ok")).await;
    b.wait_js("the dead host unreachable", &tile(dead, "unreachable"))
        .await;
    let colour = b
        .js(
            "return getComputedStyle(document.querySelector('.job-tile.job-ok')).borderTopColor",
            json!([]),
        )
        .await;
    assert_eq!(colour, "rgb(63, 185, 80)");
    b.wait_js(
        "the grouped summary",
        "document.getElementById('job-groups').textContent.includes('1 host: ok')",
    )
    .await;
    // The host's own output pane.
    b.click(&format!(".job-tile[data-host=\"{good}\"]")).await;
    b.wait_js(
        "the host's stdout",
        "document.getElementById('job-stdout').textContent === 'from-the-page\\n'",
    )
    .await;
    b.screenshot("docs/screenshots/jobs.png").await;
    let first = b.js("return location.pathname", json!([])).await;
    // Rerun the failed host: a new job with that host only.
    b.click("#job-rerun").await;
    b.wait_js(
        "the rerun's page",
        &format!(
            "location.pathname !== {first} && document.querySelectorAll('.job-tile').length === 1"
        ),
    )
    .await;
    b.wait_js("the dead host again", &tile(dead, "unreachable"))
        .await;
    // The job history on the Logs page links both.
    b.goto(&format!("{}/logs", env.base)).await;
    b.wait_js(
        "two jobs in the Logs page",
        "document.querySelectorAll('#logs-jobs tr[data-job]').length === 2",
    )
    .await;
    b.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_host_group_targets_its_hosts_and_labels() {
    let env = TestEnv::start().await;
    let named = add_host(&env, host_on(&env.sshd, "named", json!({}))).await;
    let labelled = add_host(
        &env,
        host_on(&env.sshd, "labelled", json!({"env": "stage"})),
    )
    .await;
    add_host(&env, host_on(&env.sshd, "other", json!({"env": "prod"}))).await;
    let (status, group) = env
        .api
        .post(
            "/api/host-groups",
            json!({"name": "stage-and-named", "host_ids": [named], "labels": {"env": "stage"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let (status, reply) = env
        .api
        .post(
            "/api/host-groups",
            json!({"name": "stage-and-named", "host_ids": [named]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    let (status, preview) = env
        .api
        .post(
            "/api/jobs/preview",
            json!({"targets": {"group": "stage-and-named"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let mut names: Vec<&str> = preview["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["labelled", "named"]);
    let job = start(
        &env,
        json!({"targets": {"group": "stage-and-named"}, "command": "echo grouped"}),
    )
    .await;
    let done = finished(&env, job).await;
    assert_eq!(host_result(&done, labelled)["stdout_tail"], "grouped\n");
    assert_eq!(done["groups"][0]["count"], 2, "{done}");
    // Only administrators write groups; a user sees no host of it that
    // no grant gives them.
    let carol = env.add_user("carol").await;
    let (status, _) = carol
        .post(
            "/api/host-groups",
            json!({"name": "mine", "host_ids": [named]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, groups) = carol.get("/api/host-groups").await;
    assert_eq!(groups[0]["host_ids"], json!([]), "{groups}");
    let (status, preview) = carol
        .post(
            "/api/jobs/preview",
            json!({"targets": {"group": "stage-and-named"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], 0, "{preview}");
    let id = group["id"].as_str().unwrap();
    let (status, _) = env.api.delete(&format!("/api/host-groups/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_job_names_the_failed_step_one_host_cancels_and_everything_is_audited() {
    let env = TestEnv::start().await;
    let (status, script) = env
        .api
        .post(
            "/api/scripts",
            json!({"name": "steps", "body": "echo one\nfalse\necho never\n"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{script}");
    let a = add_host(&env, host_on(&env.sshd, "s1", json!({}))).await;
    let b = add_host(&env, host_on(&env.sshd, "s2", json!({}))).await;
    let job = start(
        &env,
        json!({"targets": {"host_ids": [a, b]}, "script_id": script["id"]}),
    )
    .await;
    let done = finished(&env, job).await;
    for h in [a, b] {
        let r = host_result(&done, h);
        assert_eq!(r["status"], "failed", "{r}");
        assert_eq!(r["failed_step"], 2, "{r}");
        assert_eq!(r["stdout_tail"], "one\n", "{r}");
    }
    assert_eq!(done["kind"], "script");

    // One host canceled, the other runs to its end.
    let sleep = format!("sleep 299.{}", rand::random::<u32>() % 1000 + 2000);
    let job2 = start(
        &env,
        json!({"targets": {"host_ids": [a, b]},
               "command": format!("{sleep}; echo after")}),
    )
    .await;
    eventually("both sleeps running", WAIT, || async {
        (pgrep(&sleep) >= 2).then_some(())
    })
    .await;
    let (status, reply) = env
        .api
        .post(&format!("/api/jobs/{job2}/hosts/{a}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{reply}");
    eventually("one sleep left", WAIT, || async {
        (pgrep(&sleep) == 1).then_some(())
    })
    .await;
    let (_, now) = env.api.get(&format!("/api/jobs/{job2}")).await;
    assert_eq!(host_result(&now, b)["status"], "running", "{now}");
    // Rerun an explicit selection: only that host.
    let (status, again) = env
        .api
        .post(&format!("/api/jobs/{job}/rerun"), json!({"hosts": [b]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let rerun = finished(&env, id_of(&again)).await;
    assert_eq!(rerun["host_results"].as_array().unwrap().len(), 1);
    assert_eq!(rerun["host_results"][0]["host_id"], b.to_string());
    let (status, reply) = env
        .api
        .post(
            &format!("/api/jobs/{job}/rerun"),
            json!({"hosts": [Uuid::now_v7()]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    env.api
        .post(&format!("/api/jobs/{job2}/cancel"), json!({}))
        .await;
    let ended = finished(&env, job2).await;
    assert_eq!(host_result(&ended, a)["status"], "canceled");
    assert_eq!(host_result(&ended, b)["status"], "canceled");

    let db = env.db().await;
    let actions: Vec<(String, String)> =
        sqlx::query_as("SELECT action, target FROM audit WHERE action LIKE 'job.%' ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    let expected = [
        ("job.start", job),
        ("job.start", job2),
        ("job.cancel", job2),
        ("job.rerun", id_of(&again)),
        ("job.cancel", job2),
    ];
    let got: Vec<(&str, String)> = actions
        .iter()
        .map(|(a, t)| (a.as_str(), t.clone()))
        .collect();
    let want: Vec<(&str, String)> = expected.iter().map(|(a, t)| (*a, t.to_string())).collect();
    assert_eq!(got, want);
    // Each host ran in a recorded session of its own, hidden from the
    // session list.
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE job_id = $1")
        .bind(job)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(sessions, 2);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_outlives_the_proxy_that_drove_it() {
    let mut env = TestEnv::start_with(shellway_tests::TestEnvOptions {
        proxy_process: true,
        ..Default::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(add_host(&env, host_on(&env.sshd, &format!("t{i}"), json!({}))).await);
    }
    let job = start(
        &env,
        json!({"targets": {"host_ids": ids}, "command": "sleep 2; echo done",
               "strategy": "rolling", "batch": "1"}),
    )
    .await;
    // Killed while the first host's command runs (not between a host's
    // claim and its request, where the host would end `failed`).
    let db = env.db().await;
    eventually("the first host's session open", WAIT, || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sessions WHERE job_id = $1 AND status = 'open'",
        )
        .bind(job)
        .fetch_one(&db)
        .await
        .unwrap();
        (open == 1).then_some(())
    })
    .await;
    // Its driver dies with the proxy; another proxy takes the job over
    // once the driver has been silent long enough.
    env.kill_proxy_process().await;
    env.start_proxy().await;
    let done = eventually("the job to end", Duration::from_secs(90), || async {
        let (_, j) = env.api.get(&format!("/api/jobs/{job}")).await;
        (j["status"] == "done").then_some(j)
    })
    .await;
    for h in &ids {
        let r = host_result(&done, *h);
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["stdout_tail"], "done\n", "{r}");
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_hosts_at_concurrency_twenty_all_end_ok() {
    let env = TestEnv::start().await;
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(add_host(&env, host_on(&env.sshd, &format!("c{i:03}"), json!({}))).await);
    }
    let started = std::time::Instant::now();
    let job = start(
        &env,
        json!({"targets": {"host_ids": ids}, "command": "uname -s; sleep 0.2", "concurrency": 20}),
    )
    .await;
    let done = finished(&env, job).await;
    println!(
        "measured: 100 hosts at concurrency 20 in {:?}",
        started.elapsed()
    );
    assert_eq!(done["counts"]["ok"], 100, "{}", done["counts"]);
    assert_eq!(done["groups"].as_array().unwrap().len(), 1);
    assert_eq!(done["groups"][0]["count"], 100);
    env.finish().await;
}

//! Service panels against real sshds whose hosts have a fake systemd
//! (`FakeSystemd`: `systemctl`, `journalctl` and `sudo` scripts on the
//! sessions' PATH that run a real background process per unit): status
//! dots, actions as jobs on several hosts, the allowlist, sudo without its
//! sudoers line, logs and follow, grants, validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::{
    api::id_of, eventually, Api, FakeSystemd, Sshd, TestEnv, TestEnvOptions, WAIT,
};
use uuid::Uuid;

/// A host entry for `sshd` (another than the environment's own), logging in
/// with the environment's key, which it is made to accept.
async fn host_on(env: &TestEnv, sshd: &Sshd, name: &str) -> Uuid {
    let accepted = std::fs::read_to_string(env.sshd.dir.join("user_ed25519.pub")).unwrap();
    std::fs::write(sshd.dir.join("authorized_keys"), accepted).unwrap();
    let mut spec = env.host_json(name);
    spec["port"] = json!(sshd.port);
    spec["host_keys"] = json!([sshd.host_key]);
    env.api.create_host(spec).await
}

async fn register(api: &Api, body: Value) -> Value {
    let (status, reply) = api.post("/api/services", body).await;
    assert_eq!(status, StatusCode::CREATED, "register: {reply}");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_is_registered_with_a_checked_unit_and_scoped_sudoers_lines() {
    let env = TestEnv::start().await;
    let host = env.add_host().await;
    let login = env.sshd.username.clone();
    let svc = register(
        &env.api,
        json!({"name": "Web", "unit": "nginx", "host_ids": [host],
               "actions": ["status", "restart", "stop", "logs"], "use_sudo": true}),
    )
    .await;
    assert_eq!(svc["unit"], "nginx.service");
    assert_eq!(svc["actions"], json!(["status", "stop", "restart", "logs"]));
    assert_eq!(svc["hosts"][0]["id"], json!(host));
    assert_eq!(
        svc["sudoers"],
        json!([
            format!("{login} ALL=(root) NOPASSWD: /usr/bin/systemctl stop -- nginx.service"),
            format!("{login} ALL=(root) NOPASSWD: /usr/bin/systemctl restart -- nginx.service"),
        ])
    );
    let id = id_of(&svc);
    let (status, got) = env.api.get(&format!("/api/services/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["sudoers"], svc["sudoers"]);

    // Unit names are systemd's characters only; actions come from the list.
    for (body, field) in [
        (
            json!({"name": "x", "unit": "nginx; rm -rf /", "host_ids": [host], "actions": ["status"]}),
            "unit",
        ),
        (
            json!({"name": "x", "unit": "$(id)", "host_ids": [host], "actions": ["status"]}),
            "unit",
        ),
        (
            json!({"name": "x", "unit": "--help", "host_ids": [host], "actions": ["status"]}),
            "unit",
        ),
        (
            json!({"name": "x", "unit": "a".repeat(300), "host_ids": [host], "actions": ["status"]}),
            "unit",
        ),
        (
            json!({"name": "x", "unit": "ok", "host_ids": [host], "actions": ["status", "kill"]}),
            "actions",
        ),
        (
            json!({"name": "x", "unit": "ok", "host_ids": [host], "actions": []}),
            "actions",
        ),
        (
            json!({"name": "x", "unit": "ok", "actions": ["status"]}),
            "host_ids",
        ),
        (
            json!({"name": "x", "unit": "ok", "host_ids": [Uuid::now_v7()], "actions": ["status"]}),
            "host_ids",
        ),
        (
            json!({"name": "x", "unit": "ok", "host_ids": [host], "actions": ["status"], "account": "a b"}),
            "account",
        ),
        (
            json!({"name": "", "unit": "ok", "host_ids": [host], "actions": ["status"]}),
            "name",
        ),
    ] {
        let (status, reply) = env.api.post("/api/services", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {reply}");
        assert_eq!(reply["error"]["field"], field, "{body}: {reply}");
    }
    let (status, reply) = env
        .api
        .post(
            "/api/services",
            json!({"name": "Web", "unit": "x", "host_ids": [host], "actions": ["status"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");

    // Changing it drops sudo: no lines; unknown services are 404s.
    let (status, changed) = env
        .api
        .put(
            &format!("/api/services/{id}"),
            json!({"name": "Web", "unit": "nginx.service", "host_ids": [host], "actions": ["status"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["sudoers"], json!([]));
    let nobody = Uuid::now_v7();
    for (status, reply) in [
        env.api.get(&format!("/api/services/{nobody}")).await,
        env.api.delete(&format!("/api/services/{nobody}")).await,
        env.api
            .put(
                &format!("/api/services/{nobody}"),
                json!({"name": "n", "unit": "n", "host_ids": [host], "actions": ["status"]}),
            )
            .await,
    ] {
        assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    }
    // Only administrators register services; a user without a grant on
    // its hosts does not see it.
    let bob = env.add_user("bob").await;
    let (status, _) = bob
        .post(
            "/api/services",
            json!({"name": "b", "unit": "b", "host_ids": [host], "actions": ["status"]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(bob.get("/api/services").await.1, json!([]));
    assert_eq!(
        bob.get(&format!("/api/services/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = env.api.delete(&format!("/api/services/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(env.api.get("/api/services").await.1, json!([]));
    env.finish().await;
}

/// The dots of a service, by host name: (state, dot, main pid, error).
async fn dots(api: &Api, service: Uuid) -> Vec<(String, String, String, Option<u64>, String)> {
    let (status, body) = api.get(&format!("/api/services/{service}/status")).await;
    assert_eq!(status, StatusCode::OK, "status: {body}");
    body["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host_name"].as_str().unwrap().to_owned(),
                h["state"].as_str().unwrap().to_owned(),
                h["dot"].as_str().unwrap().to_owned(),
                h["main_pid"].as_u64(),
                h["error"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_dots_show_active_inactive_failed_and_unreachable_hosts() {
    let env = TestEnv::start().await;
    let fake = FakeSystemd::install(&env.sshd);
    fake.add_unit("web.service");
    fake.add_unit("idle.service");
    fake.add_broken_unit("broken.service");
    assert!(fake
        .systemctl(&["start", "--", "web.service"])
        .status
        .success());
    assert!(!fake
        .systemctl(&["start", "--", "broken.service"])
        .status
        .success());
    let host = env.api.create_host(env.host_json("a-host")).await;
    let mut spec = env.host_json("b-closed");
    spec["port"] = json!(shellway_tests::sshd::free_port());
    let closed = env.api.create_host(spec).await;
    let actions = json!(["status"]);
    let web = id_of(
        &register(
            &env.api,
            json!({"name": "web", "unit": "web", "host_ids": [host, closed], "actions": actions}),
        )
        .await,
    );
    let idle = id_of(
        &register(
            &env.api,
            json!({"name": "idle", "unit": "idle", "host_ids": [host], "actions": actions}),
        )
        .await,
    );
    let broken = id_of(
        &register(
            &env.api,
            json!({"name": "broken", "unit": "broken", "host_ids": [host], "actions": actions}),
        )
        .await,
    );

    let got = dots(&env.api, web).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let (name, state, dot, pid, _) = &got[0];
    assert_eq!(
        (name.as_str(), state.as_str(), dot.as_str()),
        ("a-host", "active", "green")
    );
    assert_eq!(pid.map(|p| p as u32), fake.pid("web.service"));
    let (name, state, dot, _, error) = &got[1];
    assert_eq!(
        (name.as_str(), state.as_str(), dot.as_str()),
        ("b-closed", "unreachable", "amber")
    );
    assert!(!error.is_empty(), "an unreachable host says why");
    // One poll on the host read all three of its units.
    let shows: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("systemctl show"))
        .collect();
    assert_eq!(shows.len(), 1, "{shows:?}");
    for unit in ["web.service", "idle.service", "broken.service"] {
        assert!(shows[0].contains(unit), "{shows:?}");
    }
    // The other services' dots came with it: cached, not polled again.
    let (status, body) = env
        .api
        .get(&format!("/api/services/{idle}/status?max_age=60"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            body["hosts"][0]["state"].as_str(),
            body["hosts"][0]["dot"].as_str()
        ),
        (Some("inactive"), Some("grey"))
    );
    let got = dots(&env.api, broken).await;
    assert_eq!((got[0].1.as_str(), got[0].2.as_str()), ("failed", "red"));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_show_the_last_lines_of_the_unit_journal() {
    let env = TestEnv::start().await;
    let fake = FakeSystemd::install(&env.sshd);
    fake.add_unit("app.service");
    assert!(fake
        .systemctl(&["start", "--", "app.service"])
        .status
        .success());
    shellway_tests::eventually("five journal lines", shellway_tests::WAIT, || async {
        let text = std::fs::read_to_string(fake.log_path("app.service")).unwrap_or_default();
        (text.lines().count() >= 5).then_some(())
    })
    .await;
    let host = env.add_host().await;
    let svc = id_of(&register(&env.api, json!({"name": "app", "unit": "app", "host_ids": [host], "actions": ["status", "logs"]})).await);
    let (status, body) = env
        .api
        .get(&format!("/api/services/{svc}/logs?host={host}&lines=3"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lines: Vec<&str> = body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{body}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains(" app.service[") && l.contains(": tick ")),
        "{lines:?}"
    );
    assert!(fake
        .calls()
        .contains(&"journalctl -u app.service -n 3 --no-pager -o short-iso".to_owned()));
    for bad in ["lines=0", "lines=5001"] {
        let (status, body) = env
            .api
            .get(&format!("/api/services/{svc}/logs?{bad}"))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    // A service that does not allow logs refuses them.
    let quiet = id_of(
        &register(
            &env.api,
            json!({"name": "quiet", "unit": "app", "host_ids": [host], "actions": ["status"]}),
        )
        .await,
    );
    let (status, body) = env.api.get(&format!("/api/services/{quiet}/logs")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "action_not_allowed");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acting_on_a_host_needs_a_grant_of_service_there() {
    let env = TestEnv::start().await;
    let fake = FakeSystemd::install(&env.sshd);
    fake.add_unit("web.service");
    let host = env.add_host().await;
    // A second host of the service that bob is never granted.
    let hidden = env.add_host().await;
    let svc = id_of(&register(&env.api, json!({"name": "web", "unit": "web", "host_ids": [host, hidden], "actions": ["status", "restart", "logs"]})).await);
    let bob = env.add_user("bob").await;
    // No grant at all: the service does not exist for bob.
    for path in [
        format!("/api/services/{svc}/status"),
        format!("/api/services/{svc}/logs"),
    ] {
        let (status, body) = bob.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    // A grant to run commands there is not one to act on services.
    let grant = env.grant(&bob, host, &["run"]).await;
    let (_, list) = bob.get("/api/services").await;
    assert_eq!(list[0]["name"], "web");
    // Of its hosts, bob learns only of the one he may see.
    assert_eq!(list[0]["host_ids"], json!([host]), "{list}");
    assert_eq!(list[0]["hosts"].as_array().unwrap().len(), 1, "{list}");
    for path in [
        format!("/api/services/{svc}/status"),
        format!("/api/services/{svc}/logs"),
    ] {
        let (status, body) = bob.get(&path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_granted", "{path}: {body}");
    }
    let (status, body) = bob
        .post(
            &format!("/api/services/{svc}/actions"),
            json!({"action": "restart"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "not_granted", "{body}");
    assert_eq!(
        fake.calls(),
        Vec::<String>::new(),
        "nothing reached the host"
    );
    let (status, _) = env.api.delete(&format!("/api/grants/{grant}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    env.grant(&bob, host, &["service"]).await;
    let got = dots(&bob, svc).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, "inactive", "{got:?}");
    let (status, body) = bob
        .post(
            &format!("/api/services/{svc}/actions"),
            json!({"action": "restart", "hosts": [hidden]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // `service` alone keeps a longer run alive: the live-access re-check
    // (every 2 s) judges service jobs by the `service` grant.
    let (status, started) = bob
        .post(
            &format!("/api/services/{svc}/actions"),
            json!({"action": "logs", "follow": true}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let job = started["job_id"].as_str().unwrap().to_owned();
    let log = fake.log_path("web.service").display().to_string();
    eventually("journalctl -f on the host", WAIT, || async {
        (pgrep(&log) == 1).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let (_, r) = bob.get(&format!("/api/services/{svc}/actions/{job}")).await;
    assert_eq!(r["hosts"][0]["status"], "running", "{r}");
    assert_eq!(pgrep(&log), 1);
    let (status, _) = bob
        .post(&format!("/api/jobs/{job}/cancel"), json!({}))
        .await;
    assert!(status.is_success());
    eventually("journalctl -f to end", WAIT, || async {
        (pgrep(&log) == 0).then_some(())
    })
    .await;
    env.finish().await;
}

/// Starts `action` on the service's hosts (`hosts`: some of them) and waits
/// for each host's result.
async fn act(api: &Api, service: Uuid, body: Value) -> (Uuid, Value) {
    let (status, started) = api
        .post(&format!("/api/services/{service}/actions"), body.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}: {started}");
    let job = started["job_id"].as_str().unwrap().parse::<Uuid>().unwrap();
    let result = eventually("the action to finish", WAIT, || async {
        let (_, r) = api
            .get(&format!("/api/services/{service}/actions/{job}"))
            .await;
        (r["finished"] == true).then_some(r)
    })
    .await;
    (job, result)
}

fn pgrep(pattern: &str) -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_two_hosts_is_one_job_that_restarts_the_unit_on_both() {
    let env = TestEnv::start().await;
    let other = Sshd::start().await;
    let (fake_a, fake_b) = (
        FakeSystemd::install(&env.sshd),
        FakeSystemd::install(&other),
    );
    for fake in [&fake_a, &fake_b] {
        fake.add_unit("web.service");
        assert!(fake
            .systemctl(&["start", "--", "web.service"])
            .status
            .success());
    }
    let before = (
        fake_a.pid("web.service").unwrap(),
        fake_b.pid("web.service").unwrap(),
    );
    let a = env.api.create_host(env.host_json("web-a")).await;
    let b = host_on(&env, &other, "web-b").await;
    let svc = id_of(&register(&env.api, json!({"name": "web", "unit": "web", "host_ids": [a, b], "actions": ["status", "restart"]})).await);

    let (job, result) = act(&env.api, svc, json!({"action": "restart"})).await;
    let statuses: Vec<&str> = result["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "ok"], "{result}");
    let after = (
        fake_a.pid("web.service").unwrap(),
        fake_b.pid("web.service").unwrap(),
    );
    assert_ne!(after.0, before.0, "restarted on web-a");
    assert_ne!(after.1, before.1, "restarted on web-b");
    for fake in [&fake_a, &fake_b] {
        assert!(
            fake.calls()
                .contains(&"systemctl restart -- web.service".to_owned()),
            "{:?}",
            fake.calls()
        );
    }
    // It is a job like any other: in the history, kind `service`.
    let (_, detail) = env.api.get(&format!("/api/jobs/{job}")).await;
    assert_eq!(detail["kind"], "service", "{detail}");
    assert_eq!(detail["label"], "restart web.service", "{detail}");
    // The dots show the new main processes.
    let got = dots(&env.api, svc).await;
    let pids: Vec<Option<u32>> = got.iter().map(|d| d.3.map(|p| p as u32)).collect();
    assert_eq!(pids, [Some(after.0), Some(after.1)], "{got:?}");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit WHERE action = 'service.action' AND target = $1",
    )
    .bind(svc.to_string())
    .fetch_one(&env.db().await)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_outside_the_allowlist_are_refused_before_reaching_a_host() {
    let env = TestEnv::start().await;
    let fake = FakeSystemd::install(&env.sshd);
    fake.add_unit("web.service");
    let host = env.add_host().await;
    let svc = id_of(&register(&env.api, json!({"name": "web", "unit": "web", "host_ids": [host], "actions": ["status", "restart"]})).await);
    for action in ["stop", "disable", "logs"] {
        let (status, body) = env
            .api
            .post(
                &format!("/api/services/{svc}/actions"),
                json!({"action": action}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{action}: {body}");
        assert_eq!(body["error"]["code"], "action_not_allowed", "{body}");
    }
    let (status, body) = env
        .api
        .post(
            &format!("/api/services/{svc}/actions"),
            json!({"action": "kill"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("action")),
        "{body}"
    );
    let (status, body) = env
        .api
        .post(
            &format!("/api/services/{svc}/actions"),
            json!({"action": "restart", "hosts": [Uuid::now_v7()]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("hosts")),
        "{body}"
    );
    let (status, _) = env
        .api
        .post(
            &format!("/api/services/{}/actions", Uuid::now_v7()),
            json!({"action": "restart"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        fake.calls(),
        Vec::<String>::new(),
        "nothing reached the host"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sudo_without_its_sudoers_line_is_an_error_naming_the_line() {
    let env = TestEnv::start().await;
    let fake = FakeSystemd::install(&env.sshd);
    fake.add_unit("web.service");
    assert!(fake
        .systemctl(&["start", "--", "web.service"])
        .status
        .success());
    let before = fake.pid("web.service").unwrap();
    let host = env.add_host().await;
    let svc = register(&env.api, json!({"name": "web", "unit": "web", "host_ids": [host], "actions": ["status", "restart"], "use_sudo": true})).await;
    let line = svc["sudoers"][0].as_str().unwrap().to_owned();
    let svc = id_of(&svc);

    let (_, result) = act(&env.api, svc, json!({"action": "restart"})).await;
    let h = &result["hosts"][0];
    assert_eq!(h["status"], "failed", "{result}");
    assert!(
        h["stderr"]
            .as_str()
            .unwrap()
            .contains("sudo: a password is required"),
        "{result}"
    );
    let error = h["error"].as_str().unwrap();
    assert!(
        error.contains(&line),
        "the error names the missing line: {error}"
    );
    assert_eq!(
        fake.pid("web.service"),
        Some(before),
        "nothing was restarted"
    );

    // With exactly that line installed, the same action works.
    fake.allow_sudo(&line);
    let (_, result) = act(&env.api, svc, json!({"action": "restart"})).await;
    assert_eq!(result["hosts"][0]["status"], "ok", "{result}");
    assert!(result["hosts"][0].get("error").is_none(), "{result}");
    assert_ne!(fake.pid("web.service"), Some(before));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_logs_streams_new_lines_until_canceled() {
    let env = TestEnv::start().await;
    let fake = FakeSystemd::install(&env.sshd);
    fake.add_unit("app.service");
    assert!(fake
        .systemctl(&["start", "--", "app.service"])
        .status
        .success());
    let host = env.add_host().await;
    let svc = id_of(
        &register(
            &env.api,
            json!({"name": "app", "unit": "app", "host_ids": [host], "actions": ["logs"]}),
        )
        .await,
    );
    let (status, started) = env
        .api
        .post(
            &format!("/api/services/{svc}/actions"),
            json!({"action": "logs", "follow": true, "hosts": [host], "lines": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let job = started["job_id"].as_str().unwrap().to_owned();
    let ticks = |r: &Value| -> Vec<u64> {
        r["hosts"][0]["stdout"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.rsplit_once("tick ")
                    .and_then(|(_, n)| n.trim().parse().ok())
            })
            .collect()
    };
    // Lines keep coming: one seen, then at least three newer ones.
    let first = eventually("the first line", WAIT, || async {
        let (_, r) = env
            .api
            .get(&format!("/api/services/{svc}/actions/{job}"))
            .await;
        ticks(&r).first().copied()
    })
    .await;
    eventually("three newer lines", WAIT, || async {
        let (_, r) = env
            .api
            .get(&format!("/api/services/{svc}/actions/{job}"))
            .await;
        (ticks(&r).iter().filter(|t| **t > first).count() >= 3 && r["finished"] == false)
            .then_some(())
    })
    .await;
    let log = fake.log_path("app.service").display().to_string();
    assert_eq!(pgrep(&log), 1, "journalctl -f runs on the host");
    let (status, body) = env
        .api
        .post(&format!("/api/jobs/{job}/cancel"), json!({}))
        .await;
    assert!(status.is_success(), "{body}");
    let result = eventually("the follow to end", WAIT, || async {
        let (_, r) = env
            .api
            .get(&format!("/api/services/{svc}/actions/{job}"))
            .await;
        (r["finished"] == true).then_some(r)
    })
    .await;
    assert_eq!(result["hosts"][0]["status"], "canceled", "{result}");
    eventually("journalctl -f to be gone", WAIT, || async {
        (pgrep(&log) == 0).then_some(())
    })
    .await;
    assert!(
        fake.calls()
            .iter()
            .any(|c| c == "journalctl -u app.service -f -n 1 --no-pager -o short-iso"),
        "{:?}",
        fake.calls()
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_page_shows_dots_and_restarts_two_cells_with_feedback() {
    use shellway_tests::browser::Browser;
    use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
    let env = TestEnv::start().await;
    let other = Sshd::start().await;
    let (fake_a, fake_b) = (
        FakeSystemd::install(&env.sshd),
        FakeSystemd::install(&other),
    );
    for fake in [&fake_a, &fake_b] {
        fake.add_unit("web.service");
        assert!(fake
            .systemctl(&["start", "--", "web.service"])
            .status
            .success());
    }
    let before = (
        fake_a.pid("web.service").unwrap(),
        fake_b.pid("web.service").unwrap(),
    );
    let a = env.api.create_host(env.host_json("web-a")).await;
    let b = host_on(&env, &other, "web-b").await;
    register(&env.api, json!({"name": "web", "unit": "web", "host_ids": [a, b], "actions": ["status", "restart", "stop"]})).await;

    let br = Browser::start().await;
    br.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    br.goto(&format!("{}/services", env.base)).await;
    br.wait_js(
        "two green dots",
        "document.querySelectorAll('#services-grid tr[data-service=web] .dot.green').length === 2",
    )
    .await;
    for host in ["web-a", "web-b"] {
        br.click(&format!(
            "#services-grid tr[data-service=web] td[data-host={host}] input.cell-select"
        ))
        .await;
    }
    br.js(
        "document.getElementById('service-action').value = 'restart';",
        json!([]),
    )
    .await;
    br.click("#service-run").await;
    br.wait_js(
        "both hosts ok in the feedback",
        "document.querySelectorAll('#service-feedback .feedback-host[data-status=ok]').length === 2",
    )
    .await;
    assert_ne!(fake_a.pid("web.service").unwrap(), before.0);
    assert_ne!(fake_b.pid("web.service").unwrap(), before.1);
    // The feedback shows each host's output.
    br.js(
        "document.getElementById('service-action').value = 'status';",
        json!([]),
    )
    .await;
    br.click("#service-run").await;
    br.wait_js(
        "each host's systemctl output",
        "[...document.querySelectorAll('#service-feedback .feedback-host[data-status=ok] pre')].filter((p) => p.textContent.includes('ActiveState=active')).length === 2",
    )
    .await;
    br.screenshot("docs/screenshots/services.png").await;
    // Stop asks first, then the dots turn grey.
    br.js(
        "document.getElementById('service-action').value = 'stop';",
        json!([]),
    )
    .await;
    br.click("#service-run").await;
    br.accept_alert().await;
    br.wait_js(
        "two grey dots",
        "document.querySelectorAll('#services-grid tr[data-service=web] .dot.grey').length === 2",
    )
    .await;
    assert_eq!(
        (fake_a.pid("web.service"), fake_b.pid("web.service")),
        (None, None)
    );
    br.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_logs_in_the_page_streams_and_stops_when_leaving_it() {
    use shellway_tests::browser::Browser;
    use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
    let env = TestEnv::start().await;
    let fake = FakeSystemd::install(&env.sshd);
    fake.add_unit("app.service");
    assert!(fake
        .systemctl(&["start", "--", "app.service"])
        .status
        .success());
    let host = env.api.create_host(env.host_json("app-1")).await;
    register(
        &env.api,
        json!({"name": "app", "unit": "app", "host_ids": [host], "actions": ["status", "logs"]}),
    )
    .await;
    let br = Browser::start().await;
    br.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    br.goto(&format!("{}/services", env.base)).await;
    br.click("#services-grid tr[data-service=app] td[data-host=app-1] input.cell-select")
        .await;
    br.click("#service-logs").await;
    br.wait_js(
        "the last lines",
        "document.getElementById('service-log').textContent.includes('app.service[')",
    )
    .await;
    br.click("#service-follow").await;
    let log = fake.log_path("app.service").display().to_string();
    eventually("journalctl -f on the host", WAIT, || async {
        (pgrep(&log) == 1).then_some(())
    })
    .await;
    let seen = br
        .wait_js(
            "new lines streaming in",
            "(() => { const t = document.getElementById('service-log').textContent; const n = (t.match(/tick/g) || []).length; return n >= 4 ? t : ''; })()",
        )
        .await;
    assert!(seen.as_str().unwrap().contains("app.service["), "{seen}");
    // Leaving the page cancels the follow: the remote process ends.
    br.click("nav a[data-nav=hosts]").await;
    eventually(
        "journalctl -f to end after leaving the page",
        WAIT,
        || async { (pgrep(&log) == 0).then_some(()) },
    )
    .await;
    let (_, jobs) = env.api.get("/api/jobs").await;
    let follow = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["label"] == "follow logs app.service")
        .cloned()
        .unwrap();
    eventually("the follow job to end canceled", WAIT, || async {
        let (_, j) = env
            .api
            .get(&format!("/api/jobs/{}", follow["id"].as_str().unwrap()))
            .await;
        (j["status"] == "canceled").then_some(())
    })
    .await;
    br.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_polls_status_on_its_own_schedule() {
    let env = TestEnv::start_with(TestEnvOptions {
        service_status_every: std::time::Duration::from_secs(1),
        ..TestEnvOptions::default()
    })
    .await;
    let fake = FakeSystemd::install(&env.sshd);
    fake.add_unit("web.service");
    assert!(fake
        .systemctl(&["start", "--", "web.service"])
        .status
        .success());
    let host = env.add_host().await;
    let svc = id_of(
        &register(
            &env.api,
            json!({"name": "web", "unit": "web", "host_ids": [host], "actions": ["status"]}),
        )
        .await,
    );
    let db = env.db().await;
    let stored = |state: &'static str| {
        let db = db.clone();
        async move {
            let got: Option<String> =
                sqlx::query_scalar("SELECT state FROM service_status WHERE service_id = $1")
                    .bind(svc)
                    .fetch_optional(&db)
                    .await
                    .unwrap();
            (got.as_deref() == Some(state)).then_some(())
        }
    };
    // Nobody asks; the dots follow the unit anyway.
    eventually("a scheduled poll to see it active", WAIT, || {
        stored("active")
    })
    .await;
    assert!(fake
        .systemctl(&["stop", "--", "web.service"])
        .status
        .success());
    eventually("a scheduled poll to see it inactive", WAIT, || {
        stored("inactive")
    })
    .await;
    // What people read between polls is that cache.
    let (_, body) = env
        .api
        .get(&format!("/api/services/{svc}/status?max_age=3600"))
        .await;
    assert_eq!(body["hosts"][0]["state"], "inactive", "{body}");
    // The polls are jobs on record, but the job history shows them only
    // when asked: they would bury the jobs people ran.
    let (_, listed) = env.api.get("/api/jobs").await;
    assert_eq!(listed, json!([]), "{listed}");
    let (_, polls) = env.api.get("/api/jobs?polls=true&limit=200").await;
    let polls = polls.as_array().unwrap();
    assert!(polls.len() >= 2, "{polls:?}");
    assert!(polls.iter().all(|j| j["kind"] == "service"), "{polls:?}");
    env.finish().await;
}

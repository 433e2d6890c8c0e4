//! Service panels against real sshds whose hosts have a fake systemd
//! (`FakeSystemd`: `systemctl`, `journalctl` and `sudo` scripts on the
//! sessions' PATH that run a real background process per unit): status
//! dots, actions as jobs on several hosts, the allowlist, sudo without its
//! sudoers line, logs and follow, grants, validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::{api::id_of, Api, FakeSystemd, Sshd, TestEnv};
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

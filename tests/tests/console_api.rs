//! The API behind the console in daily use: errors a form can show, the
//! Logs filters and pages, runs reported as queued, and the idle timeout
//! of sessions nobody watches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::{TestEnv, TestEnvOptions, WsClient, WAIT};
use uuid::Uuid;

/// A raw request with the admin's token: `body` sent as is.
async fn raw(env: &TestEnv, path: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", env.base))
        .bearer_auth(env.token())
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("not our JSON error format ({status}): {text}"));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_bodies_get_our_error_format_naming_the_field() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let json = "application/json";

    // Connect with no host chosen: the browser sent an empty id.
    let (status, body) = raw(&env, "/api/sessions", json, r#"{"host_id": ""}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");
    assert_eq!(body["error"]["field"], "host_id");
    assert_eq!(body["error"]["message"], "host_id: not a valid id");

    // A wrong type.
    let (status, body) = raw(
        &env,
        "/api/sessions",
        json,
        &format!(r#"{{"host_id": "{}", "cols": "wide"}}"#, Uuid::nil()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "cols");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("cols: expected a whole number"),
        "{message}"
    );
    assert!(
        !message.contains("line 1"),
        "no parser positions: {message}"
    );

    // A missing field, and one that does not exist.
    let (status, body) = raw(&env, "/api/sessions", json, "{}").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "host_id");
    assert_eq!(body["error"]["message"], "host_id is required");
    let path = format!("/api/sessions/{}/runs", Uuid::nil());
    let (status, body) = raw(&env, &path, json, r#"{"colour": "red"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "colour");

    // Not JSON at all.
    let (status, body) = raw(&env, "/api/hosts", json, r#"{"name": "web1",}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_json");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the request body is not valid JSON"),
        "{message}"
    );
    assert!(!message.contains("Failed to"), "not axum's text: {message}");

    // JSON under another content type.
    let (status, body) = raw(&env, "/api/sessions", "text/plain", "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("application/json"));

    // A bad query string is ours too.
    let (status, body) = env.api.get("/api/sessions?host=web1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
    assert_eq!(body["error"]["field"], "host");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_host_without_a_pinned_key_is_refused_and_every_bad_field_is_listed() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let host = env.host_json_with("no-key", &env.sshd.user_key, "strict", &[]);
    let (status, body) = env.api.post("/api/hosts", host).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "host_keys");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Fetch host key"), "{message}");
    let (_, hosts) = env.api.get("/api/hosts").await;
    assert_eq!(hosts, json!([]), "nothing saved");

    let mut host = env.host_json("ok");
    host["name"] = json!("");
    host["port"] = json!(0);
    host["username"] = json!("-l");
    let (status, body) = env.api.post("/api/hosts", host).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "port", "username"], "{body}");
    assert_eq!(body["error"]["field"], "name", "the first one as before");

    let (status, body) = env
        .api
        .post("/api/tasks", json!({"name": "", "command": " "}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["fields"].as_array().map(Vec::len), Some(2));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_postgres_cannot_store_is_a_client_error_not_a_500() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let refused = |(status, body): (StatusCode, Value)| {
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_value", "{body}");
    };
    let login = r#"{"username": "ad\u0000min", "password": "whatever it is"}"#;
    refused(raw(&env, "/api/login", "application/json", login).await);
    for path in [
        "/api/sessions?q=df%00",
        "/api/sessions?owner=ad%00min",
        "/api/sessions?from=-200000-01-01T00:00:00Z",
    ] {
        refused(env.api.get(path).await);
    }
    let task = json!({"name": "t", "command": "true", "label": "a\u{0}b"});
    refused(env.api.post("/api/tasks", task).await);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_to_anyone_and_the_answers_are_its_types() {
    use shellway_common::api::{hosts::Host, sessions::Session};
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let served: Value = reqwest::get(format!("{}/api/openapi.json", env.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let committed: Value = serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    assert_eq!(served, committed);
    assert!(served["paths"]["/api/sessions/{id}"]["get"].is_object());

    let host = env.add_host().await;
    let (status, hosts) = env.api.get("/api/hosts").await;
    assert_eq!(status, StatusCode::OK);
    let hosts: Vec<Host> = serde_json::from_value(hosts).unwrap();
    assert_eq!(hosts.iter().map(|h| h.id).collect::<Vec<_>>(), [host]);
    let id = env.api.open_session(host).await;
    let session: Session = serde_json::from_value(env.api.session(id).await).unwrap();
    assert_eq!((session.id, session.host_id), (id, Some(host)));
    assert_eq!(session.ws_path, format!("/ws/sessions/{id}"));
    env.finish().await;
}

async fn open(api: &shellway_tests::Api, host: Uuid) -> Uuid {
    api.open_session(host).await
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_list_filters_by_host_owner_status_date_and_command_and_pages() {
    let env = TestEnv::start().await;
    let web = env.add_host().await;
    let db = env.add_host().await;
    let bob = env.add_user("bob").await;
    // Users reach only the hosts they are granted.
    env.grant(&bob, web, &["shell", "run"]).await;
    let a1 = open(&env.api, web).await;
    let a2 = open(&env.api, db).await;
    let b1 = open(&bob, web).await;
    let (status, body) = bob
        .post(
            &format!("/api/sessions/{b1}/runs"),
            json!({"command": "echo 100%_needle"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = env.api.delete(&format!("/api/sessions/{a2}")).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let list = |q: &'static str| {
        let api = env.api.clone();
        async move {
            let (status, body) = api.get(&format!("/api/sessions?{q}")).await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            ids(&body)
        }
    };
    let (a1, a2, b1) = (a1.to_string(), a2.to_string(), b1.to_string());
    let (a1, a2, b1) = (a1.as_str(), a2.as_str(), b1.as_str());
    assert_eq!(list("").await, [b1, a2, a1], "newest first");
    let on_web = format!("host={web}");
    let (_, body) = env.api.get(&format!("/api/sessions?{on_web}")).await;
    assert_eq!(ids(&body), [b1, a1]);
    assert_eq!(list("owner=bob").await, [b1]);
    assert_eq!(list("mine=true").await, [a2, a1], "an admin's own");
    assert_eq!(list("q=100%25_NEEDLE").await, [b1], "literal, any case");
    assert_eq!(list("q=1000").await, Vec::<String>::new());
    let ended = shellway_tests::eventually("the ended session listed", WAIT, || async {
        let (_, body) = env.api.get("/api/sessions?status=finished").await;
        let found = ids(&body);
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(ended, [a2]);
    assert_eq!(
        list("from=2000-01-01T00:00:00Z&to=2001-01-01T00:00:00Z")
            .await
            .len(),
        0
    );
    assert_eq!(list("from=2000-01-01T00:00:00Z").await.len(), 3);

    // Pages of two: the second starts after the last of the first.
    assert_eq!(list("limit=2").await, [b1, a2]);
    let (_, page2) = env
        .api
        .get(&format!("/api/sessions?limit=2&before={a2}"))
        .await;
    assert_eq!(ids(&page2), [a1]);
    for bad in ["limit=0", "limit=201", "status=asleep"] {
        let (status, body) = env.api.get(&format!("/api/sessions?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{bad}");
    }

    // Bob sees his own whatever he asks for.
    let (_, body) = bob.get("/api/sessions?owner=admin").await;
    assert_eq!(ids(&body), Vec::<String>::new());
    let (_, body) = bob.get("/api/sessions?status=live").await;
    assert_eq!(ids(&body), [b1]);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_reported_queued_until_the_one_before_it_is_done() {
    let env = TestEnv::start().await;
    let (_, mut ws) = env.open_shell().await;
    ws.send(json!({"action": "run", "command": "sleep 0.5; echo first"}))
        .await;
    ws.send(json!({"action": "run", "command": "echo second"}))
        .await;
    let second = ws
        .wait_event("the second run queued", WAIT, |e| {
            e["event"] == "queued" && e["command"] == "echo second"
        })
        .await;
    let second = second["run"].as_str().unwrap().to_owned();
    ws.wait_event("the second run done", WAIT, |e| {
        e["event"] == "completed" && e["run"] == second.as_str()
    })
    .await;
    let order: Vec<String> = ws
        .events
        .iter()
        .filter(|e| ["queued", "started", "completed"].contains(&e["event"].as_str().unwrap()))
        .map(|e| {
            let which = if e["run"] == second.as_str() { 2 } else { 1 };
            format!("{}{which}", e["event"].as_str().unwrap())
        })
        .collect();
    let at = |what: &str| {
        order
            .iter()
            .position(|e| e == what)
            .unwrap_or_else(|| panic!("no {what} in {order:?}"))
    };
    assert_eq!(order.len(), 6, "{order:?}");
    assert!(at("queued1") < at("started1"), "{order:?}");
    assert!(
        at("queued2") < at("completed1"),
        "queued while the first runs: {order:?}"
    );
    assert!(at("completed1") < at("started2"), "{order:?}");
    assert!(at("started2") < at("completed2"), "{order:?}");
    env.finish().await;
}

/// The idle timeout in tests: short, so the warning comes after 3 s and
/// leaves 3 s to attach in.
const IDLE: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwatched_idle_session_is_warned_then_closed_and_a_watched_one_is_not() {
    let env = TestEnv::start_with(TestEnvOptions {
        session_idle_timeout: IDLE,
        ..Default::default()
    })
    .await;
    let host = env.add_host().await;
    // Watched all along.
    let watched = env.api.open_session(host).await;
    let mut viewer = env.attach(watched).await;
    viewer.wait_open().await;
    // Opened after it, and never watched.
    let alone = env.api.open_session(host).await;

    shellway_tests::eventually("the idle session closed", WAIT, || async {
        let d = env.api.session(alone).await;
        (d["status"] == "closed").then_some(())
    })
    .await;
    let recorded: Vec<u8> = env
        .recording(alone)
        .await
        .into_iter()
        .flat_map(|(_, _, data)| data)
        .collect();
    let recorded = String::from_utf8_lossy(&recorded);
    assert!(
        recorded.contains("[shellway] No viewer and no input for ")
            && recorded.contains("this session closes in "),
        "the warning is in the recording: {recorded:?}"
    );
    let pool = env.db().await;
    let (reason,): (Value,) = sqlx::query_as(
        "SELECT detail->'reason' FROM audit WHERE action = 'session.closed' AND target = $1",
    )
    .bind(alone.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(reason, "idle", "closed {{reason: idle}}");

    // The watched one, older, is still open and answers.
    assert_eq!(env.api.session(watched).await["status"], "open");
    viewer.type_text("echo still-$((2*3))\r").await;
    viewer.wait_output("still-6", WAIT).await;

    // Someone who attaches after the warning sees it on the screen, and
    // the session stays open: one opened after it closes first.
    let late = env.api.open_session(host).await;
    shellway_tests::eventually("the warning on the unwatched session", WAIT, || async {
        let rec = env.recording(late).await;
        rec.iter()
            .any(|(_, _, d)| String::from_utf8_lossy(d).contains("No viewer"))
            .then_some(())
    })
    .await;
    let mut rescuer = WsClient::connect(
        &env.base,
        &format!("/ws/sessions/{late}?snapshot=true"),
        env.token(),
    )
    .await;
    let snapshot = rescuer
        .wait_event("the snapshot", WAIT, |e| e["event"] == "snapshot")
        .await;
    assert!(
        snapshot["data"].as_str().unwrap().contains("No viewer"),
        "{snapshot}"
    );
    let probe = env.api.open_session(host).await;
    shellway_tests::eventually("the probe session closed", WAIT, || async {
        (env.api.session(probe).await["status"] == "closed").then_some(())
    })
    .await;
    assert_eq!(env.api.session(late).await["status"], "open");
    rescuer.type_text("echo rescued\r").await;
    rescuer.wait_output("rescued", WAIT).await;
    env.finish().await;
}

//! The store's guarantees, shown in Postgres: a session's status only
//! moves forward whoever reports late, a change whose audit line cannot
//! be written does not happen, and what a viewer missed of a failure is
//! read back from the recording.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Connection, ConnectionProperties};
use reqwest::StatusCode;
use serde_json::json;
use shellway_common::{amqp, ErrorKind, Event, SessionStatus};
use shellway_tests::{eventually, TestEnv, WAIT};
use sqlx::PgPool;
use uuid::Uuid;

/// Publishes `events` for `session` as a runner would, each confirmed.
async fn report(env: &TestEnv, session: Uuid, events: &[Event]) {
    let conn = Connection::connect(&env.amqp_url, ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let exchange = env.topology().events_exchange();
    for event in events {
        let (key, body) = amqp::encode_event(session, event);
        ch.basic_publish(
            exchange.as_str().into(),
            key.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            amqp::event_properties(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");
    }
    let _ = conn.close(0, "done".into()).await;
}

async fn status_and_runner(db: &PgPool, session: Uuid) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, runner FROM sessions WHERE id = $1")
        .bind(session)
        .fetch_one(db)
        .await
        .expect("the session row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_open_after_closed_is_refused_in_the_database() {
    let env = TestEnv::start().await;
    let db = env.db().await;
    let (session, mut ws) = env.open_shell().await;
    let (status, _) = env.api.delete(&format!("/api/sessions/{session}")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    ws.wait_event("closed", WAIT, |e| e["event"] == "closed")
        .await;
    eventually("the session closed in the database", WAIT, || async {
        (status_and_runner(&db, session).await.0 == "closed").then_some(())
    })
    .await;
    let (_, runner) = status_and_runner(&db, session).await;

    // A runner that reports late: `open` (from another runner, even), then
    // an error whose audit line shows the recorder has handled both (it
    // handles a session's messages in order).
    let marker = format!("marker-{}", Uuid::now_v7());
    let late = [
        Event::Status {
            status: SessionStatus::Open,
            runner: Some("late-runner".into()),
            message: None,
        },
        Event::Status {
            status: SessionStatus::Connecting,
            runner: Some("late-runner".into()),
            message: None,
        },
        Event::error(ErrorKind::Runtime, marker.clone()),
    ];
    report(&env, session, &late).await;
    eventually("the recorder to reach the marker", WAIT, || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit WHERE action = 'session.error' AND target = $1 \
             AND detail->>'message' = $2",
        )
        .bind(session.to_string())
        .bind(&marker)
        .fetch_one(&db)
        .await
        .unwrap_or(0);
        (n == 1).then_some(())
    })
    .await;
    assert_eq!(
        status_and_runner(&db, session).await,
        ("closed".to_owned(), runner),
        "the late reports changed nothing"
    );
    let detail = env.api.session(session).await;
    assert_eq!(detail["status"], "closed", "{detail}");
    env.finish().await;
}

/// Makes every audit line with one of `actions` fail to be written.
async fn refuse_audit(db: &PgPool, actions: &[&str]) {
    sqlx::query(
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'audit refused by the test'; END $$",
    )
    .execute(db)
    .await
    .unwrap();
    let list = actions
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let trigger = format!(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit FOR EACH ROW \
         WHEN (NEW.action IN ({list})) EXECUTE FUNCTION refuse_audit()"
    );
    sqlx::query(sqlx::AssertSqlSafe(trigger))
        .execute(db)
        .await
        .unwrap();
}

async fn count(db: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_audit_line_cannot_be_written_does_not_happen() {
    let env = TestEnv::start().await;
    let db = env.db().await;
    let host = env.add_host().await;
    let sessions_before = count(&db, "SELECT count(*) FROM sessions").await;
    let hosts_before = count(&db, "SELECT count(*) FROM hosts").await;
    refuse_audit(&db, &["host.create", "host.delete", "session.open"]).await;

    let name = shellway_tests::unique("refused");
    let (status, body) = env.api.post("/api/hosts", env.host_json(&name)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error"]["code"], "internal", "{body}");
    assert!(!body.to_string().contains("refused by the test"), "{body}");
    assert_eq!(count(&db, "SELECT count(*) FROM hosts").await, hosts_before);

    let (status, body) = env.api.delete(&format!("/api/hosts/{host}")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let (status, _) = env.api.get(&format!("/api/hosts/{host}")).await;
    assert_eq!(status, StatusCode::OK, "the host is still there");

    let (status, body) = env
        .api
        .post("/api/sessions", json!({"host_id": host}))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(
        count(&db, "SELECT count(*) FROM sessions").await,
        sessions_before,
        "no session without its session.open line"
    );

    // The same changes go through once the audit takes them again.
    sqlx::query("DROP TRIGGER refuse_audit ON audit")
        .execute(&db)
        .await
        .unwrap();
    let (status, body) = env.api.post("/api/hosts", env.host_json(&name)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let audited = count(
        &db,
        "SELECT count(*) FROM audit WHERE action = 'host.create'",
    )
    .await;
    assert_eq!(audited, count(&db, "SELECT count(*) FROM hosts").await);
    env.finish().await;
}

/// A session can fail between a viewer's subscribing and its reading the
/// status (the runner's error published just before, the recording still
/// `pending`): the viewer still gets the error, from the recording, before
/// the failed status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_missed_the_error_of_a_failing_session_reads_it_from_the_recording() {
    let env = TestEnv::start_with(shellway_tests::TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let db = env.db().await;
    let host = env.add_host().await;
    let session = env.api.open_session(host).await;
    let mut ws = env.attach(session).await;
    ws.wait_event("connected", WAIT, |e| e["event"] == "connected")
        .await;
    // The error as the recorder stored it, never seen by this viewer…
    let message = "cannot decrypt the stored credential: sealed to another key";
    sqlx::query("UPDATE sessions SET error_kind = 'auth', error = $2 WHERE id = $1")
        .bind(session)
        .bind(message)
        .execute(&db)
        .await
        .unwrap();
    // …then the status that follows it.
    let failed = Event::Status {
        status: SessionStatus::Failed,
        runner: Some("gone-runner".into()),
        message: Some(message.into()),
    };
    report(&env, session, &[failed]).await;
    let error = ws
        .wait_event("error", WAIT, |e| e["event"] == "error")
        .await;
    assert_eq!(
        (error["type"].as_str(), error["message"].as_str()),
        (Some("auth"), Some(message))
    );
    ws.wait_event("failed status", WAIT, |e| e["status"] == "failed")
        .await;
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| ws.events.iter().position(pred);
    let error_at = at(&|e| e["event"] == "error");
    let failed_at = at(&|e| e["status"] == "failed");
    assert!(
        error_at.is_some() && error_at < failed_at,
        "{:?}",
        ws.events
    );
    db.close().await;
    env.finish().await;
}

//! `POST /api/hosts/scan` fetches a host key for pinning, through a
//! runner (the proxy never dials hosts); it must not work as a port
//! scanner: every way a peer can fail to speak SSH gets the same answer,
//! only admins may scan, and every scan is audited. With no runner to ask,
//! it answers `capacity` within a few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_common::scan::{SCAN_TAKE_TIMEOUT, SCAN_TIMEOUT};
use shellway_tests::{TestEnv, TestEnvOptions};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How a fake server treats each connection.
#[derive(Clone, Copy)]
enum Peer {
    /// Accepts and closes at once.
    Closes,
    /// Accepts and resets the connection (RST).
    Resets,
    /// Accepts and never says a word.
    Silent,
    /// Answers like a web server, then closes.
    Http,
    /// Sends an SSH identification line, then closes: it spoke SSH.
    SshThenCloses,
}

/// A loopback listener behaving as `peer`; its port and its task.
async fn fake_server(peer: Peer) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            match peer {
                Peer::Closes => drop(stream),
                Peer::Resets => {
                    stream.set_zero_linger().ok();
                    drop(stream);
                }
                Peer::Silent => held.push(stream),
                Peer::Http => {
                    let reply = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
                    stream.write_all(reply).await.ok();
                }
                Peer::SshThenCloses => {
                    stream.write_all(b"SSH-2.0-Fake_1.0\r\n").await.ok();
                }
            }
        }
    });
    (port, task)
}

async fn scan(env: &TestEnv, port: u16) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let (status, reply) = env
        .api
        .post(
            "/api/hosts/scan",
            json!({"hostname": "127.0.0.1", "port": port}),
        )
        .await;
    (status, reply, started.elapsed())
}

/// A proxy and one runner, which does the scans.
async fn with_runner() -> TestEnv {
    TestEnv::start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_without_ssh_gets_the_same_answer() {
    let env = with_runner().await;
    let closed = shellway_tests::sshd::free_port();
    let mut ports = vec![("closed", closed)];
    let mut servers = Vec::new();
    for (name, peer) in [
        ("closes", Peer::Closes),
        ("resets", Peer::Resets),
        ("silent", Peer::Silent),
        ("http", Peer::Http),
    ] {
        let (port, task) = fake_server(peer).await;
        ports.push((name, port));
        servers.push(task);
    }
    for (name, port) in &ports {
        let (status, reply, took) = scan(&env, *port).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{name}: {reply}");
        assert_eq!(
            reply,
            json!({"error": {"code": "ssh", "message": format!("no SSH server answered at 127.0.0.1:{port}")}}),
            "{name}"
        );
        assert!(
            took < SCAN_TIMEOUT + Duration::from_secs(3),
            "{name}: {took:?}"
        );
        eprintln!("{name}: answered in {took:?}");
    }
    for task in servers {
        task.abort();
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_spoke_ssh_gets_an_ssh_answer_and_sshd_its_key() {
    let env = with_runner().await;
    let (status, reply, _) = scan(&env, env.sshd.port).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["key"], env.sshd.host_key.as_str());
    let fingerprint = reply["fingerprint"].as_str().unwrap().to_owned();

    let (port, server) = fake_server(Peer::SshThenCloses).await;
    let (status, reply, _) = scan(&env, port).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "the SSH server at 127.0.0.1:{port} answered, but "
        )),
        "{message}"
    );
    server.abort();

    let closed = shellway_tests::sshd::free_port();
    scan(&env, closed).await;
    // Who scanned what, and what came of it.
    let db = env.db().await;
    let rows: Vec<(Option<String>, String, Value)> = sqlx::query_as(
        "SELECT username, target, detail FROM audit WHERE action = 'host.scan' ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    let sshd = format!("127.0.0.1:{}", env.sshd.port);
    let fake = format!("127.0.0.1:{port}");
    let closed = format!("127.0.0.1:{closed}");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0].0.as_deref(), Some("admin"));
    assert_eq!(rows[0].1, sshd);
    assert_eq!(
        rows[0].2,
        json!({"outcome": "key", "fingerprint": fingerprint})
    );
    assert_eq!(rows[1].1, fake);
    assert_eq!(rows[1].2["outcome"], "ssh_error");
    assert_eq!(rows[2].1, closed);
    assert_eq!(rows[2].2, json!({"outcome": "no_ssh_server"}));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_may_scan_and_refusals_are_audited() {
    let env = with_runner().await;
    let bob = env.add_user("bob").await;
    let scan = json!({"hostname": "127.0.0.1", "port": env.sshd.port});
    // No host of bob's at that address: as if there were none.
    let (status, reply) = bob.post("/api/hosts/scan", scan.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    assert!(reply.get("key").is_none());
    // A host he is granted: he knows of it, and still may not scan.
    let host = env.add_host().await;
    env.grant(&bob, host, &["shell"]).await;
    let (status, reply) = bob.post("/api/hosts/scan", scan).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    assert!(reply.get("key").is_none());
    let db = env.db().await;
    let rows: Vec<(Option<String>, Value)> =
        sqlx::query_as("SELECT username, detail FROM audit WHERE action = 'host.scan' ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    db.close().await;
    assert_eq!(
        rows,
        vec![
            (Some("bob".to_owned()), json!({"outcome": "hidden"})),
            (Some("bob".to_owned()), json!({"outcome": "forbidden"}))
        ]
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_runner_a_scan_answers_capacity_promptly() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let (status, reply, took) = scan(&env, env.sshd.port).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reply}");
    assert_eq!(reply["error"]["code"], "capacity", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no runner")),
        "{reply}"
    );
    assert!(reply.get("key").is_none());
    assert!(took >= SCAN_TAKE_TIMEOUT, "gave up early: {took:?}");
    assert!(
        took < SCAN_TAKE_TIMEOUT + Duration::from_secs(2),
        "{took:?}"
    );
    let db = env.db().await;
    let rows: Vec<(Value,)> = sqlx::query_as("SELECT detail FROM audit WHERE action = 'host.scan'")
        .fetch_all(&db)
        .await
        .unwrap();
    db.close().await;
    assert_eq!(rows, vec![(json!({"outcome": "no_runner"}),)]);
    env.finish().await;
}

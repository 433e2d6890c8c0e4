//! Shared sessions: share links, late join with a snapshot, presence,
//! attribution, revocation, kick, and viewers spread over two proxies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::{eventually, Api, Frame, TestEnv, TestEnvOptions, WsClient, WAIT};
use uuid::Uuid;

/// Creates a share link; returns (token, share id).
async fn share(api: &Api, session: Uuid, mode: &str) -> (String, String) {
    let (status, body) = api
        .post(
            &format!("/api/sessions/{session}/shares"),
            json!({"mode": mode, "expires_in": 600}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "share: {body}");
    assert_eq!(body["mode"], mode);
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 32, "a token of at least 128 bits: {token}");
    (token, body["id"].as_str().unwrap().to_owned())
}

async fn join(base: &str, token: &str, api: &Api) -> WsClient {
    join_path(base, &format!("/ws/join/{token}"), api).await
}

async fn join_path(base: &str, path: &str, api: &Api) -> WsClient {
    let mut ws = WsClient::connect(base, path, api.token.as_deref().unwrap()).await;
    ws.wait_event("connected", WAIT, |e| e["event"] == "connected")
        .await;
    ws
}

/// Opens a shell owned by `owner` (attached on `base`).
async fn open_shell_as(env: &TestEnv, owner: &Api, base: &str) -> (Uuid, WsClient) {
    let host = env.add_host().await;
    // Users reach only the hosts they are granted; sharing is granted too.
    env.grant(owner, host, &["shell", "share"]).await;
    let id = owner.open_session(host).await;
    let mut ws = WsClient::connect(
        base,
        &format!("/ws/sessions/{id}"),
        owner.token.as_deref().unwrap(),
    )
    .await;
    ws.wait_open().await;
    (id, ws)
}

fn is_protocol_error(e: &Value) -> bool {
    e["event"] == "error" && e["type"] == "protocol"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiners_on_another_proxy_watch_and_type_as_their_link_allows() {
    let mut env = TestEnv::start().await;
    let other_proxy = env.start_extra_proxy().await;
    let alice = env.add_user("alice").await;
    let bob = env.add_user("bob").await;
    let carol = env.add_user("carol").await;
    let (id, mut owner) = open_shell_as(&env, &alice, &env.base).await;

    let (view_token, _) = share(&alice, id, "view").await;
    let (control_token, _) = share(&alice, id, "control").await;
    let mut watcher = join(&other_proxy, &view_token, &bob).await;
    let mut helper = join(&other_proxy, &control_token, &carol).await;
    assert_eq!(watcher.events[0]["mode"], "view");
    assert_eq!(helper.events[0]["mode"], "control");

    // The control joiner types into the same PTY; everybody sees it.
    helper.type_text("echo typed-by-$((6*7))-carol\r").await;
    for ws in [&mut owner, &mut watcher, &mut helper] {
        ws.wait_output("typed-by-42-carol", WAIT).await;
    }

    // The view joiner is refused, and nothing reaches the PTY.
    watcher.type_text("echo bob-was-here-$((1+1))\r").await;
    let err = watcher
        .wait_event("input refused", WAIT, is_protocol_error)
        .await;
    assert!(
        err["message"].as_str().unwrap().contains("read-only"),
        "{err}"
    );
    watcher.events.clear();
    watcher
        .send(json!({"action": "resize", "cols": 50, "rows": 10}))
        .await;
    watcher
        .wait_event("resize refused", WAIT, is_protocol_error)
        .await;
    helper.type_text("echo after-$((2*3))-bob\r").await;
    owner.wait_output("after-6-bob", WAIT).await;
    let seen = String::from_utf8_lossy(&owner.screen).into_owned();
    assert!(
        !seen.contains("bob-was-here"),
        "view input reached the PTY: {seen}"
    );

    // Attribution: the input audit names who typed what.
    let db = env.db().await;
    let typed: Vec<(String, Vec<u8>)> = eventually("input audit rows", WAIT, || async {
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT username, data FROM session_input WHERE session_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&db)
        .await
        .unwrap();
        rows.iter()
            .any(|(_, d)| String::from_utf8_lossy(d).contains("after-"))
            .then_some(rows)
    })
    .await;
    let carols: String = typed
        .iter()
        .filter(|(u, _)| u == "carol")
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .collect();
    assert!(carols.contains("echo typed-by-$((6*7))-carol"), "{typed:?}");
    assert!(typed.iter().all(|(u, _)| u != "bob"), "{typed:?}");
    db.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_during_vim_gets_a_snapshot_of_the_screen() {
    let env = TestEnv::start().await;
    let (id, mut owner) = env.open_shell().await;
    let file = format!("/tmp/{}.txt", shellway_tests::unique("swt-vim-"));
    // The marker only exists in the file (the shell computes it), so only
    // a real picture of vim's screen contains it.
    owner
        .type_text(&format!(
            "printf 'first line\\nMARK-%s\\n' $((6*7)) > {file}; vi -n -u NONE {file}\r"
        ))
        .await;
    owner.wait_output("MARK-42", WAIT).await;
    let (token, _) = share(&env.api, id, "view").await;
    let mut joiner = WsClient::connect(&env.base, &format!("/ws/join/{token}"), env.token()).await;
    let snapshot = joiner
        .wait_event("snapshot", WAIT, |e| e["event"] == "snapshot")
        .await;
    let screen = snapshot["data"].as_str().unwrap();
    assert!(screen.contains("MARK-42"), "snapshot: {screen:?}");
    assert!(screen.contains("first line"), "snapshot: {screen:?}");
    assert_eq!(snapshot["cols"], 80);
    assert_eq!(snapshot["rows"], 24);
    assert!(
        joiner.screen.is_empty(),
        "no raw output before the snapshot"
    );
    // Live output continues right after the snapshot.
    let after = snapshot["seq"].as_u64().unwrap();
    owner.type_text(":q!\r").await;
    // Typed before vim has left the alternate screen, it would be vim's.
    owner.wait_output("\x1b[?1049l", WAIT).await;
    owner
        .type_text(&format!("rm -f {file}; echo gone-$((3+4))\r"))
        .await;
    joiner.wait_output("gone-7", WAIT).await;
    let first_live = joiner
        .events
        .iter()
        .position(|e| e["event"] == "snapshot")
        .unwrap();
    assert_eq!(first_live, 1, "connected, then the snapshot");
    assert!(joiner.last_seq > after);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_joins_and_leaves_across_proxies() {
    let mut env = TestEnv::start().await;
    let other_proxy = env.start_extra_proxy().await;
    let bob = env.add_user("bob").await;
    let (id, mut owner) = env.open_shell().await;
    let (token, _) = share(&env.api, id, "view").await;
    let joiner = join(&other_proxy, &token, &bob).await;
    let both = owner
        .wait_event("presence of two", WAIT, |e| {
            e["event"] == "presence" && e["viewers"].as_array().unwrap().len() == 2
        })
        .await;
    let viewers = both["viewers"].as_array().unwrap();
    assert!(
        viewers.contains(&json!({"user": "admin", "mode": "control"})),
        "{both}"
    );
    assert!(
        viewers.contains(&json!({"user": "bob", "mode": "view"})),
        "{both}"
    );
    // The live monitor shows them too.
    let listed = eventually("viewers in the session list", WAIT, || async {
        let (_, list) = env.api.get("/api/sessions?status=live").await;
        let row = list
            .as_array()?
            .iter()
            .find(|s| s["id"] == json!(id))?
            .clone();
        (row["viewers"].as_array()?.len() == 2).then_some(row)
    })
    .await;
    assert!(listed["runner"].is_string(), "{listed}");
    owner.events.clear();
    drop(joiner);
    let alone = owner
        .wait_event("presence of one", WAIT, |e| {
            e["event"] == "presence" && e["viewers"].as_array().unwrap().len() == 1
        })
        .await;
    assert_eq!(alone["viewers"][0]["user"], "admin");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_link_disconnects_its_viewers_and_bad_links_are_refused() {
    let mut env = TestEnv::start().await;
    let other_proxy = env.start_extra_proxy().await;
    let bob = env.add_user("bob").await;
    let (id, _owner) = env.open_shell().await;
    let (token, share_id) = share(&env.api, id, "view").await;
    let (other_token, _) = share(&env.api, id, "view").await;
    let mut revoked = join(&other_proxy, &token, &bob).await;
    let mut kept = join(&other_proxy, &other_token, &bob).await;

    let (status, _) = env.api.delete(&format!("/api/shares/{share_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let closed = revoked
        .wait_event("closed", WAIT, |e| e["event"] == "closed")
        .await;
    assert!(
        closed["reason"].as_str().unwrap().contains("revoked"),
        "{closed}"
    );
    assert_eq!(closed["by"], "admin");
    assert!(matches!(revoked.next(WAIT).await, Some(Frame::Closed)));
    // A viewer of another link stays.
    assert!(kept
        .next(Duration::from_millis(500))
        .await
        .is_none_or(|f| !matches!(f, Frame::Closed)));
    let listed = env.api.get(&format!("/api/sessions/{id}/shares")).await.1;
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == share_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["active"], false, "{row}");
    assert!(
        !listed.to_string().contains(&token),
        "tokens are never listed"
    );

    // Every kind of bad link gets its own clear refusal.
    let code = |(status, body): (StatusCode, Value)| {
        (
            status,
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let expect = [
        (token.clone(), StatusCode::FORBIDDEN, "share_revoked"),
        (
            "swl_not-a-token".to_owned(),
            StatusCode::NOT_FOUND,
            "share_malformed",
        ),
        (
            format!("swl_{}", "ab".repeat(32)),
            StatusCode::NOT_FOUND,
            "share_unknown",
        ),
    ];
    for (t, status, c) in expect {
        assert_eq!(
            code(bob.get(&format!("/api/join/{t}")).await),
            (status, c.to_owned()),
            "{t}"
        );
        let refused =
            WsClient::try_connect(&other_proxy, &format!("/ws/join/{t}"), bob.token.as_deref())
                .await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), status.as_u16(), "{t}")
            }
            Err(e) => panic!("unexpected error for {t}: {e}"),
            Ok(_) => panic!("{t} was accepted"),
        }
    }
    let (status, body) = env
        .api
        .post(
            &format!("/api/sessions/{id}/shares"),
            json!({"mode": "view", "expires_in": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = body["token"].as_str().unwrap();
    assert_eq!(
        code(bob.get(&format!("/api/join/{expired}")).await),
        (StatusCode::FORBIDDEN, "share_expired".to_owned())
    );
    // Links need a login (anonymous view links are off by default).
    let anonymous = Api::new(env.base.clone(), None);
    assert_eq!(
        anonymous.get(&format!("/api/join/{other_token}")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Bad share requests name the field.
    for (body, field) in [
        (json!({"mode": "admin"}), "mode"),
        (json!({"mode": "view", "expires_in": 0}), "expires_in"),
        (
            json!({"mode": "view", "expires_in": 10_000_000}),
            "expires_in",
        ),
    ] {
        let (status, reply) = env
            .api
            .post(&format!("/api/sessions/{id}/shares"), body)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
        assert_eq!(reply["error"]["field"], field);
    }
    // Someone else's session cannot be shared (or even seen).
    let (status, _) = bob
        .post(
            &format!("/api/sessions/{id}/shares"),
            json!({"mode": "view"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_accepts_a_bounded_number_of_viewers() {
    let env = TestEnv::start_with(TestEnvOptions {
        sharing: session_proxy::Sharing {
            max_viewers: 2,
            reserved_viewers: 0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let bob = env.add_user("bob").await;
    let (id, _owner) = env.open_shell().await;
    let (token, _) = share(&env.api, id, "view").await;
    let _second = join(&env.base, &token, &bob).await;
    let third = WsClient::try_connect(
        &env.base,
        &format!("/ws/join/{token}"),
        bob.token.as_deref(),
    )
    .await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("2 viewers"), "{body}");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a third viewer was accepted"),
    }
    env.finish().await;
}

/// A link's viewers could fill every seat and lock the owner out (64
/// sockets through one link were enough). The last seats are the owner's,
/// and one link admits a bounded number of viewers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_viewers_cannot_lock_the_owner_out() {
    let env = TestEnv::start_with(TestEnvOptions {
        sharing: session_proxy::Sharing {
            max_viewers: 5,
            reserved_viewers: 1,
            max_viewers_per_link: 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let bob = env.add_user("bob").await;
    let (id, _owner) = env.open_shell().await;
    let (one, _) = share(&env.api, id, "view").await;
    let (two, _) = share(&env.api, id, "view").await;
    let _a = join(&env.base, &one, &bob).await;
    let _b = join(&env.base, &one, &bob).await;
    let refused = |token: String| {
        let bob = &bob;
        let base = env.base.clone();
        async move {
            let path = format!("/ws/join/{token}");
            match WsClient::try_connect(&base, &path, bob.token.as_deref()).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    assert_eq!(resp.status().as_u16(), 429);
                    String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned()
                }
                Err(e) => panic!("unexpected error: {e}"),
                Ok(_) => panic!("a viewer over the limit was accepted"),
            }
        }
    };
    let body = refused(one.clone()).await;
    assert!(body.contains("this link already has 2 viewers"), "{body}");
    let _c = join(&env.base, &two, &bob).await;
    // Four of five seats taken: the last is the owner's.
    let body = refused(two).await;
    assert!(body.contains("kept for its owner"), "{body}");
    let mut owner_again = env.attach(id).await;
    owner_again.wait_open().await;
    env.finish().await;
}

/// `?after=0` through a view link replayed the whole recording, exec-run
/// output from before the link included: more than the owner shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_shows_nothing_from_before_it_was_made() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let (id, mut owner) = env.open_shell().await;
    let (status, body) = env
        .api
        .post(
            &format!("/api/sessions/{id}/runs"),
            json!({"command": "echo exec-before-$((6*7))"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    owner
        .wait_event("the run's output", WAIT, |e| {
            e["event"] == "chunk" && e["data"].as_str().unwrap_or("").contains("exec-before-42")
        })
        .await;
    owner
        .wait_event("the run's end", WAIT, |e| e["event"] == "completed")
        .await;
    eventually("the run recorded", WAIT, || async {
        let all = env.recording(id).await;
        all.iter()
            .any(|r| String::from_utf8_lossy(&r.2).contains("exec-before-42"))
            .then_some(())
    })
    .await;
    let (token, _) = share(&env.api, id, "view").await;

    for (i, path) in [
        format!("/ws/join/{token}?after=0"),
        format!("/ws/join/{token}"),
    ]
    .iter()
    .enumerate()
    {
        let mut joiner = join_path(&env.base, path, &bob).await;
        owner
            .type_text(&format!("echo after-link-{i}-$((7*7))\r"))
            .await;
        joiner
            .wait_output(&format!("after-link-{i}-49"), WAIT)
            .await;
        joiner.read_until_quiet(Duration::from_millis(500)).await;
        let seen = format!(
            "{}{}",
            String::from_utf8_lossy(&joiner.screen),
            serde_json::to_string(&joiner.events).unwrap()
        );
        assert!(
            !seen.contains("exec-before-42"),
            "{path} showed output from before the link"
        );
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_kick_ends_the_session_for_everybody_with_the_reason() {
    let mut env = TestEnv::start().await;
    let other_proxy = env.start_extra_proxy().await;
    let alice = env.add_user("alice").await;
    let bob = env.add_user("bob").await;
    let (id, mut owner) = open_shell_as(&env, &alice, &env.base).await;
    let (token, _) = share(&alice, id, "control").await;
    let mut joiner = join(&other_proxy, &token, &bob).await;
    // The admin watches read-only from the live monitor.
    let mut admin = WsClient::connect(&env.base, &format!("/ws/sessions/{id}"), env.token()).await;
    let connected = admin
        .wait_event("connected", WAIT, |e| e["event"] == "connected")
        .await;
    assert_eq!(connected["mode"], "view");
    admin.type_text("echo nope\r").await;
    admin.wait_event("refused", WAIT, is_protocol_error).await;

    let (status, _) = env.api.delete(&format!("/api/sessions/{id}")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for ws in [&mut owner, &mut joiner, &mut admin] {
        let closed = ws
            .wait_event("closed", WAIT, |e| e["event"] == "closed")
            .await;
        assert_eq!(closed["by"], "admin", "{closed}");
        assert!(
            closed["reason"].as_str().unwrap().contains("admin"),
            "{closed}"
        );
    }
    eventually("the session recorded as closed", WAIT, || async {
        (env.api.session(id).await["status"] == "closed").then_some(())
    })
    .await;
    let db = env.db().await;
    let (who,): (String,) =
        sqlx::query_as("SELECT username FROM audit WHERE action = 'session.end' AND target = $1")
            .bind(id.to_string())
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(who, "admin");
    db.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_of_a_dying_proxy_resume_on_another_without_loss() {
    let env = TestEnv::start().await;
    let (dying, dying_base) = env.spawn_proxy_process(&shellway_tests::unique("p")).await;
    let mut dying = Some(dying);
    let (id, mut steady) = env.open_shell().await;
    let mut moving =
        WsClient::connect(&dying_base, &format!("/ws/sessions/{id}"), env.token()).await;
    moving.wait_open().await;
    steady
        .type_text("stty -echo; for i in $(seq 1 300); do echo line-$i; sleep 0.01; done; echo END-$((1+1))\r")
        .await;
    steady.wait_output("line-20\r\n", WAIT).await;
    moving.wait_output("line-20\r\n", WAIT).await;
    // The proxy dies hard; its viewer comes back on the other proxy.
    let mut child = dying.take().unwrap();
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let seen = moving.last_seq;
    let before = std::mem::take(&mut moving.screen);
    let mut resumed = WsClient::connect(
        &env.base,
        &format!("/ws/sessions/{id}?after={seen}"),
        env.token(),
    )
    .await;
    resumed.last_seq = seen;
    resumed.wait_output("END-2", WAIT).await;
    steady.wait_output("END-2", WAIT).await;
    // The moved viewer's bytes are the recording, no gap, no duplicate.
    let recorded = eventually("recording up to END-2", WAIT, || async {
        let rows = env.recording(id).await;
        let upto = resumed.last_seq as i64;
        (rows.iter().filter(|r| r.0 <= upto).count() as i64 == upto).then(|| {
            rows.into_iter()
                .filter(|r| r.0 <= upto && r.1 == "pty")
                .flat_map(|r| r.2)
                .collect::<Vec<u8>>()
        })
    })
    .await;
    let mut all = before;
    all.extend_from_slice(&resumed.screen);
    assert_eq!(
        String::from_utf8_lossy(&all),
        String::from_utf8_lossy(&recorded),
        "what the moved viewer saw differs from the recording"
    );
    // The viewer on the surviving proxy never noticed.
    let text = String::from_utf8_lossy(&steady.screen).into_owned();
    for i in [1, 150, 300] {
        assert!(
            text.contains(&format!("line-{i}\r\n")),
            "steady viewer lost line-{i}"
        );
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_controller_does_not_starve_the_others() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 96; // 6 MiB, several seconds at one viewer's input budget
    const MARK: &str = "MARK-FROM-ALICE\n";
    let env = TestEnv::start().await;
    let alice = env.add_user("alice").await;
    let carol = env.add_user("carol").await;
    let (id, mut owner) = open_shell_as(&env, &alice, &env.base).await;
    let (control_token, _) = share(&alice, id, "control").await;
    let mut flooder = join(&env.base, &control_token, &carol).await;

    // Everything typed lands in one file, in the order the PTY got it.
    let total = CHUNK * CHUNKS + MARK.len();
    owner
        .type_text(&format!(
            "stty raw -echo; echo ready-$((3*3)); head -c {total} > flood.txt; stty sane; echo flood-$((1+1))-done\r"
        ))
        .await;
    owner.wait_output("ready-9", WAIT).await;

    let flood = tokio::spawn(async move {
        let chunk = "a".repeat(CHUNK);
        for _ in 0..CHUNKS {
            flooder.type_text(&chunk).await;
        }
        flooder
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    owner.type_text(MARK).await;
    owner
        .wait_output("flood-2-done", Duration::from_secs(120))
        .await;
    let _flooder = flood.await.unwrap();

    owner
        .type_text("echo offset=$(grep -bo MARK-FROM-ALICE flood.txt | cut -d: -f1)=$(wc -c < flood.txt)=checked-$((2*4))\r")
        .await;
    owner.wait_output("=checked-8", WAIT).await;
    let screen = String::from_utf8_lossy(&owner.screen).into_owned();
    let line = screen
        .rsplit("offset=")
        .next()
        .and_then(|l| l.split("=checked-8").next())
        .unwrap();
    let (offset, size) = line.split_once('=').unwrap();
    let (offset, size): (usize, usize) = (offset.parse().unwrap(), size.parse().unwrap());
    assert_eq!(
        size, total,
        "every byte of both controllers reached the PTY"
    );
    // Without a per-viewer budget the whole flood is queued ahead of the
    // owner's line, which lands at the very end. With it, the owner's
    // line lands about where the flood was after one second.
    assert!(
        offset < CHUNK * CHUNKS - 1024 * 1024,
        "the owner's input waited behind the flood: offset {offset} of {total}"
    );
    env.finish().await;
}

/// A viewer that stops reading falls behind the live feed, and the proxy
/// drops its live messages rather than hold them; when it reads again it
/// gets every byte it missed from the recording, in order, exactly once.
#[tokio::test]
async fn a_viewer_that_falls_behind_catches_up_without_losing_a_byte() {
    // More output than can wait anywhere on the way: the proxy's send
    // buffer grows to tcp_wmem's maximum at most, the client's receive
    // buffer is fixed small, and the live buffer holds 4 messages.
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().last().and_then(|v| v.parse().ok()))
        .unwrap_or(4 << 20);
    let must_drop = wmem_max + (2 << 20);
    let random = (must_drop + (2 << 20)) * 3 / 4; // base64 makes 4/3 of it
    let env = TestEnv::start_with(TestEnvOptions {
        sharing: session_proxy::Sharing {
            viewer_buffer: 4,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (id, mut owner) = env.open_shell().await;
    owner.type_text("echo ready-$((2+5))\r").await;
    owner.wait_output("ready-7", WAIT).await;
    owner.read_until_quiet(Duration::from_millis(500)).await;
    let (after, from) = (owner.last_seq, owner.screen.len());

    let path = format!("/ws/sessions/{id}?after={after}");
    let mut slow = WsClient::connect_small_buffer(&env.base, &path, env.token(), 64 * 1024).await;
    slow.wait_event("connected", WAIT, |e| e["event"] == "connected")
        .await;
    owner
        .type_text(&format!(
            "head -c {random} /dev/urandom | base64 -w 120; echo lag-$((40+2))-end\r"
        ))
        .await;
    owner
        .wait_output("lag-42-end", Duration::from_secs(180))
        .await;

    // Only now does the slow viewer read.
    slow.wait_output("lag-42-end", Duration::from_secs(180))
        .await;
    owner.read_until_quiet(Duration::from_millis(500)).await;
    slow.read_until_quiet(Duration::from_millis(500)).await;
    let missed = &owner.screen[from..];
    assert!(
        missed.len() > must_drop,
        "the output ({} bytes) fits in the buffers ({must_drop}): nothing was dropped",
        missed.len()
    );
    assert_eq!(slow.last_seq, owner.last_seq, "both saw the same last seq");
    assert!(
        slow.screen == missed,
        "the slow viewer got {} bytes after seq {after}, the owner {}",
        slow.screen.len(),
        missed.len()
    );
    env.finish().await;
}

//! Accounts: API tokens that expire and can be listed and revoked, changing
//! one's password, and admins disabling and deleting users.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::api::id_of;
use shellway_tests::{eventually, try_login, Api, CookieClient, TestEnv, WsClient, WAIT};
use uuid::Uuid;

fn when(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a time: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_are_listed_without_secrets_and_only_a_scoped_token_mints_more() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let (status, list) = bob.get("/api/tokens").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let tokens = list.as_array().unwrap();
    assert_eq!(tokens.len(), 1, "{list}");
    let t = &tokens[0];
    for field in [
        "id",
        "name",
        "created_at",
        "last_used_at",
        "expires_at",
        "scopes",
    ] {
        assert!(t.get(field).is_some(), "{field} in {t}");
    }
    assert!(
        t.get("token").is_none() && t.get("token_hash").is_none(),
        "{t}"
    );
    assert!(!list.to_string().contains(bob.token.as_deref().unwrap()));
    let ninety_days = Utc::now() + chrono::Duration::days(90);
    assert!(
        (when(&t["expires_at"]) - ninety_days).num_seconds().abs() < 120,
        "{t}"
    );
    assert!(t["last_used_at"].is_string(), "this very call used it");

    // A token mints no token unless it was given the scope.
    let (status, body) = bob.post("/api/tokens", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let cookie = CookieClient::sign_in(&env.base, "bob", "bob-password").await;
    let (status, body) = cookie
        .post(
            "/api/tokens",
            json!({"name": "minter", "expires_in": 3600, "scopes": ["tokens"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["scopes"], json!(["tokens"]));
    let minter = Api::new(&env.base, Some(body["token"].as_str().unwrap().to_owned()));
    let (status, body) = minter.post("/api/tokens", json!({"name": "child"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Lifetimes are bounded.
    let (status, body) = cookie
        .post("/api/tokens", json!({"expires_in": 365 * 86_400 + 1}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "expires_in");

    // An expired token is refused.
    let (status, body) = cookie.post("/api/tokens", json!({"expires_in": 1})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let short = Api::new(&env.base, Some(body["token"].as_str().unwrap().to_owned()));
    eventually("the short token to expire", WAIT, || async {
        let (status, _) = short.get("/api/me").await;
        (status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    let (_, list) = bob.get("/api/tokens").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["expired"] == true),
        "{list}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_revoked_by_their_owner_or_an_admin_only() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let carol = env.add_user("carol").await;
    let token_id = |api: Api| async move {
        let (_, list) = api.get("/api/tokens").await;
        id_of(&list[0])
    };
    let bobs = token_id(bob.clone()).await;
    let carols = token_id(carol.clone()).await;
    let (status, _) = bob.delete(&format!("/api/tokens/{carols}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not bob's");
    let (status, _) = carol.get("/api/me").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = env.api.delete(&format!("/api/tokens/{carols}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "an admin may");
    let (status, _) = carol.get("/api/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = bob.delete(&format!("/api/tokens/{bobs}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "one's own");
    let (status, _) = bob.get("/api/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_ones_password_needs_the_current_one_and_ends_the_other_sign_ins() {
    let env = TestEnv::start().await;
    let token = env.add_user("bob").await;
    let here = CookieClient::sign_in(&env.base, "bob", "bob-password").await;
    let elsewhere = CookieClient::sign_in(&env.base, "bob", "bob-password").await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});

    let (status, body) = here
        .post("/api/me/password", change("wrong", "a new long password"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["field"], "current_password");
    let (status, body) = here
        .post("/api/me/password", change("bob-password", "too short"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "new_password");
    let (status, body) = here
        .post(
            "/api/me/password",
            change("bob-password", "a new long password"),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    assert_eq!(
        here.get("/api/me").await.0,
        StatusCode::OK,
        "this sign-in stays"
    );
    assert_eq!(elsewhere.get("/api/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(token.get("/api/me").await.0, StatusCode::OK, "tokens stay");
    let old = try_login(&env.base, "bob", "bob-password", &[]).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = try_login(&env.base, "bob", "a new long password", &[]).await;
    assert_eq!(new.status, StatusCode::OK);
    let db = env.db().await;
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit WHERE action = 'user.password' AND username = 'bob'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    db.close().await;
    env.finish().await;
}

async fn user_id(env: &TestEnv, name: &str) -> Uuid {
    let (_, users) = env.api.get("/api/users").await;
    users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == name)
        .map(id_of)
        .unwrap_or_else(|| panic!("{name} in {users}"))
}

/// `user` opens a shell on a new host and attaches to it.
async fn open_shell_as(env: &TestEnv, user: &Api) -> (Uuid, WsClient) {
    let host = env.add_host().await;
    // Users reach only the hosts they are granted.
    env.grant(user, host, &["shell"]).await;
    let id = user.open_session(host).await;
    let mut ws = WsClient::connect(
        &env.base,
        &format!("/ws/sessions/{id}"),
        user.token.as_deref().unwrap(),
    )
    .await;
    ws.wait_open().await;
    (id, ws)
}

async fn wait_closed(ws: &mut WsClient) -> Value {
    ws.wait_event("closed", WAIT, |e| e["event"] == "closed")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_user_is_out_at_once_sessions_included_until_enabled_again() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let cookie = CookieClient::sign_in(&env.base, "bob", "bob-password").await;
    let (session, mut ws) = open_shell_as(&env, &bob).await;
    let id = user_id(&env, "bob").await;

    let (status, _) = bob
        .put(&format!("/api/users/{id}"), json!({"disabled": true}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admins only");
    let (status, body) = env
        .api
        .put(&format!("/api/users/{id}"), json!({"disabled": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], true);

    let closed = wait_closed(&mut ws).await;
    assert_eq!(closed["by"], "admin", "{closed}");
    eventually("the session to end", WAIT, || async {
        let s = env.api.session(session).await;
        (s["status"] == "closed").then_some(())
    })
    .await;
    assert_eq!(
        bob.get("/api/me").await.0,
        StatusCode::UNAUTHORIZED,
        "token"
    );
    assert_eq!(
        cookie.get("/api/me").await.0,
        StatusCode::UNAUTHORIZED,
        "cookie"
    );
    let r = try_login(&env.base, "bob", "bob-password", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert!(r.cookie.is_none());
    let r = try_login(&env.base, "bob", "wrong password", &[]).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a wrong password tells nothing more"
    );

    let (status, body) = env
        .api
        .put(&format!("/api/users/{id}"), json!({"disabled": false}))
        .await;
    assert_eq!(
        (status, &body["disabled"]),
        (StatusCode::OK, &json!(false)),
        "{body}"
    );
    assert_eq!(
        bob.get("/api/me").await.0,
        StatusCode::UNAUTHORIZED,
        "old tokens stay dead"
    );
    let r = try_login(&env.base, "bob", "bob-password", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let db = env.db().await;
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit WHERE target = 'bob' AND action LIKE 'user.%' ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(actions, ["user.create", "user.disable", "user.enable"]);
    db.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_cannot_lock_themselves_out() {
    let env = TestEnv::start().await;
    let me = user_id(&env, "admin").await;
    for change in [json!({"disabled": true}), json!({"is_admin": false})] {
        let (status, body) = env.api.put(&format!("/api/users/{me}"), change).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "yourself");
    }
    let (status, _) = env.api.delete(&format!("/api/users/{me}")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(env.api.get("/api/me").await.0, StatusCode::OK);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_user_is_gone_but_their_sessions_and_recordings_stay() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let (session, mut ws) = open_shell_as(&env, &bob).await;
    ws.type_text("echo kept-$((40+2))\r").await;
    ws.wait_output("kept-42", WAIT).await;
    let id = user_id(&env, "bob").await;

    let (status, body) = env.api.delete(&format!("/api/users/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    wait_closed(&mut ws).await;
    assert_eq!(bob.get("/api/me").await.0, StatusCode::UNAUTHORIZED);
    let r = try_login(&env.base, "bob", "bob-password", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "as if unknown");
    let (_, users) = env.api.get("/api/users").await;
    assert!(!users.to_string().contains("\"bob\""), "{users}");

    // The session still names its owner, and its recording plays.
    let detail = env.api.session(session).await;
    assert_eq!(detail["owner"], "bob");
    let (status, _) = env
        .api
        .get(&format!("/api/sessions/{session}/recording"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let recorded: Vec<u8> = env
        .recording(session)
        .await
        .into_iter()
        .flat_map(|c| c.2)
        .collect();
    assert!(String::from_utf8_lossy(&recorded).contains("kept-42"));

    // The name can be given to someone new, who is not the old bob.
    let (status, body) = env
        .api
        .post(
            "/api/users",
            json!({"username": "bob", "password": "new bob password"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_ne!(id_of(&body), id);
    let r = try_login(&env.base, "bob", "new bob password", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let (status, _) = env.api.delete(&format!("/api/users/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted once");
    env.finish().await;
}

//! The access model against a real sshd: without a grant a host does not
//! exist for a user; a grant names the account and the actions; groups,
//! expiry, revocation and disabling end live sessions with "access
//! revoked"; auditors read everything and connect nowhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::{eventually, Api, TestEnv, WsClient, WAIT};
use uuid::Uuid;

async fn user_id(api: &Api) -> Value {
    api.get("/api/me").await.1["user"]["id"].clone()
}

async fn attach(env: &TestEnv, who: &Api, id: Uuid) -> WsClient {
    let token = who.token.as_deref().unwrap();
    WsClient::connect(&env.base, &format!("/ws/sessions/{id}"), token).await
}

async fn open(who: &Api, body: Value) -> (StatusCode, Value) {
    who.post("/api/sessions", body).await
}

/// The host of the test sshd (its first account is the sshd's login) with
/// a second account, `operator`, through the runner's agent (never used to
/// connect here).
async fn host_with_two_accounts(env: &TestEnv, labels: Value) -> Uuid {
    let mut spec = env.host_json(&shellway_tests::unique("h"));
    spec["labels"] = labels;
    let host = env.api.create_host(spec).await;
    env.add_agent_account(host, "operator").await;
    host
}

async fn grant(env: &TestEnv, body: Value) -> Uuid {
    let (status, reply) = env.api.post("/api/grants", body).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    shellway_tests::api::id_of(&reply)
}

async fn wait_revoked(ws: &mut WsClient) -> Value {
    let closed = ws
        .wait_event("closed", WAIT, |e| e["event"] == "closed")
        .await;
    assert_eq!(closed["reason"], "access revoked", "{closed}");
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_grant_a_host_does_not_exist() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let host = env.add_host().await;
    let (status, hosts) = bob.get("/api/hosts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hosts, json!([]), "bob sees no host");
    for path in [
        format!("/api/hosts/{host}"),
        format!("/api/hosts/{host}/accounts"),
    ] {
        let (status, body) = bob.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, body) = open(&bob, json!({"host_id": host})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    // A host that does not exist answers the same.
    let (status, _) = open(&bob, json!({"host_id": Uuid::now_v7()})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let scan = json!({"hostname": "127.0.0.1", "port": env.sshd.port});
    let (status, body) = bob.post("/api/hosts/scan", scan).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Someone else's session on it: no run, no share, no recording.
    let session = env.api.open_session(host).await;
    let mut ws = env.attach(session).await;
    ws.wait_open().await;
    let runs = format!("/api/sessions/{session}/runs");
    let (status, _) = bob.post(&runs, json!({"command": "id"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let shares = format!("/api/sessions/{session}/shares");
    let (status, _) = bob.post(&shares, json!({"mode": "view"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = bob.get(&format!("/api/sessions/{session}/recording")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, access) = bob.get("/api/me/access").await;
    assert_eq!(access["hosts"], json!([]), "{access}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_grant_opens_that_account_only_and_runs_nothing() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let host = host_with_two_accounts(&env, json!({})).await;
    let login = env.sshd.username.clone();
    grant(
        &env,
        json!({
            "subject": {"user": user_id(&bob).await},
            "target": {"host": host},
            "account": login,
            "actions": ["shell"],
        }),
    )
    .await;

    // Bob sees the host and the one account he may use.
    let (_, hosts) = bob.get("/api/hosts").await;
    assert_eq!(hosts.as_array().unwrap().len(), 1, "{hosts}");
    let (_, accounts) = bob.get(&format!("/api/hosts/{host}/accounts")).await;
    let logins: Vec<&str> = accounts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["login"].as_str().unwrap())
        .collect();
    assert_eq!(logins, [login.as_str()]);
    let (_, access) = bob.get("/api/me/access").await;
    assert_eq!(
        access["hosts"][0]["accounts"],
        json!([{"login": login, "actions": ["shell"]}]),
        "{access}"
    );

    // Two accounts: the request must name one.
    let (status, body) = open(&bob, json!({"host_id": host})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "account");
    let (status, body) = open(&bob, json!({"host_id": host, "account": "nobody"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "account");
    // Not as the other account, which reads as one that does not exist.
    let (status, other) = open(&bob, json!({"host_id": host, "account": "operator"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{other}");
    assert_eq!(
        other["error"]["message"]
            .as_str()
            .unwrap()
            .replace("operator", "nobody"),
        body["error"]["message"].as_str().unwrap(),
        "an ungranted account is told apart from a missing one"
    );
    // No exec-only session (that is `run`).
    let (status, _) = open(
        &bob,
        json!({"host_id": host, "account": login, "shell": false}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // As the granted account: a shell.
    let (status, body) = open(&bob, json!({"host_id": host, "account": login})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = shellway_tests::api::id_of(&body);
    let mut ws = attach(&env, &bob, id).await;
    ws.wait_open().await;
    ws.type_text("echo who-$((40+2))\r").await;
    ws.wait_output("who-42", WAIT).await;
    let (_, session) = bob.get(&format!("/api/sessions/{id}")).await;
    assert_eq!(session["account"], login.as_str());

    // But no runs, no share links.
    let (status, body) = bob
        .post(
            &format!("/api/sessions/{id}/runs"),
            json!({"command": "id"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "not_granted");
    let (status, _) = bob
        .post(
            &format!("/api/sessions/{id}/shares"),
            json!({"mode": "view"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_grant_holds_while_the_user_is_in_the_group() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let bob_id = user_id(&bob).await;
    let host = host_with_two_accounts(&env, json!({"env": "staging", "team": "web"})).await;
    let (status, group) = env
        .api
        .post(
            "/api/groups",
            json!({"name": "web-ops", "members": [bob_id]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let group_id = group["id"].clone();
    grant(
        &env,
        json!({
            "subject": {"group": group_id},
            "target": {"labels": {"env": "staging"}},
            "account": "*",
            "actions": ["shell", "run"],
        }),
    )
    .await;
    let (_, users) = env.api.get("/api/users").await;
    let listed = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == bob_id)
        .cloned()
        .unwrap();
    assert_eq!(listed["groups"], json!([group_id]), "{listed}");

    let login = env.sshd.username.clone();
    let (status, body) = open(&bob, json!({"host_id": host, "account": login})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = shellway_tests::api::id_of(&body);
    let mut ws = attach(&env, &bob, id).await;
    ws.wait_open().await;

    // Bob leaves the group: the session ends, the host disappears.
    let (status, body) = env
        .api
        .put(
            &format!("/api/users/{}", bob_id.as_str().unwrap()),
            json!({"groups": []}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["groups"], json!([]));
    wait_revoked(&mut ws).await;
    let (status, _) = open(&bob, json!({"host_id": host, "account": login})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, hosts) = bob.get("/api/hosts").await;
    assert_eq!(hosts, json!([]));

    // Every change was audited with before and after.
    let db = env.db().await;
    let actions: Vec<(String, Value)> = sqlx::query_as(
        "SELECT action, detail FROM audit WHERE action IN \
         ('group.create', 'grant.create', 'user.groups', 'account.create', 'session.access_revoked') \
         ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "account.create",
            "group.create",
            "grant.create",
            "user.groups",
            "session.access_revoked"
        ]
    );
    assert_eq!(actions[3].1["before"]["groups"], json!([group_id]));
    assert_eq!(actions[3].1["after"]["groups"], json!([]));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_grant_ends_the_live_session() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let host = env.add_host().await;
    let until = Utc::now() + chrono::Duration::seconds(8);
    let g = grant(
        &env,
        json!({
            "subject": {"user": user_id(&bob).await},
            "target": {"host": host},
            "account": "*",
            "actions": ["shell"],
            "not_after": until,
        }),
    )
    .await;
    let (_, grants) = env.api.get("/api/grants").await;
    let listed = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == g.to_string())
        .cloned()
        .unwrap();
    assert_eq!(listed["active"], true, "{listed}");
    let id = bob.open_session(host).await;
    let mut ws = attach(&env, &bob, id).await;
    ws.wait_open().await;
    // The owner's viewer and an administrator watching both hear why.
    let mut admin = env.attach(id).await;
    wait_revoked(&mut ws).await;
    wait_revoked(&mut admin).await;
    assert!(Utc::now() >= until - chrono::Duration::milliseconds(100));
    let status = eventually("the session to end", WAIT, || async {
        let (_, s) = bob.get(&format!("/api/sessions/{id}")).await;
        (s["status"] != "open").then(|| s["status"].clone())
    })
    .await;
    assert_eq!(status, "closed");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_grant_or_disabling_a_user_ends_their_sessions() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let carol = env.add_user("carol").await;
    let host = env.add_host().await;
    let g = env.grant(&bob, host, &["shell"]).await;
    env.grant(&carol, host, &["shell"]).await;

    let id = bob.open_session(host).await;
    let mut ws = attach(&env, &bob, id).await;
    ws.wait_open().await;
    let (status, _) = env.api.delete(&format!("/api/grants/{g}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    wait_revoked(&mut ws).await;

    let id = carol.open_session(host).await;
    let mut ws = attach(&env, &carol, id).await;
    ws.wait_open().await;
    let carol_id = user_id(&carol).await;
    let (status, _) = env
        .api
        .put(
            &format!("/api/users/{}", carol_id.as_str().unwrap()),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_revoked(&mut ws).await;
    env.finish().await;
}

/// A session logged in as an account that its host no longer has ends,
/// whatever grant its owner holds (`*` included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_ends_the_sessions_logged_in_as_it() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let host = env.add_host().await;
    env.grant(&bob, host, &["shell"]).await;
    let id = bob.open_session(host).await;
    let mut ws = attach(&env, &bob, id).await;
    ws.wait_open().await;
    let accounts = format!("/api/hosts/{host}/accounts");
    let (_, list) = env.api.get(&accounts).await;
    let used = list[0]["id"].as_str().unwrap().to_owned();
    let (status, reply) = env
        .api
        .post(&accounts, json!({"login": "spare", "auth_method": "agent"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let (status, reply) = env.api.delete(&format!("{accounts}/{used}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{reply}");
    wait_revoked(&mut ws).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_reads_everyones_recordings_and_connects_nowhere() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let (status, body) = env
        .api
        .post(
            "/api/users",
            json!({"username": "audrey", "password": "audrey-password", "role": "auditor"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["role"], "auditor");
    assert_eq!(body["is_admin"], false);
    let audrey = Api::login(&env.base, "audrey", "audrey-password").await;
    let (_, me) = audrey.get("/api/me").await;
    assert_eq!(me["user"]["role"], "auditor");

    let (id, mut ws) = env.open_shell_as(&bob, &env.base).await;
    ws.type_text("echo secret-$((6*7))\r").await;
    ws.wait_output("secret-42", WAIT).await;
    env.wait_recorded(id, "secret-42").await;

    let (status, list) = audrey.get("/api/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.to_string()),
        "{list}"
    );
    let (status, _) = audrey.get(&format!("/api/sessions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, events) = audrey
        .get(&format!("/api/sessions/{id}/recording/events"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(events.to_string().contains("secret-42"));

    // A user granted view_recordings on the host reads it too; one with
    // only a shell there does not.
    let carol = env.add_user("carol").await;
    let dave = env.add_user("dave").await;
    let (_, session) = env.api.get(&format!("/api/sessions/{id}")).await;
    let bobs_host: Uuid = session["host_id"].as_str().unwrap().parse().unwrap();
    env.grant(&carol, bobs_host, &["view_recordings"]).await;
    env.grant(&dave, bobs_host, &["shell"]).await;
    let recording = format!("/api/sessions/{id}/recording/events");
    let (status, events) = carol.get(&recording).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert!(events.to_string().contains("secret-42"));
    let (status, _) = dave.get(&recording).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Hosts are visible to an auditor; connecting or acting is not.
    let host = env.add_host().await;
    let (status, _) = audrey.get(&format!("/api/hosts/{host}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = open(&audrey, json!({"host_id": host})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = audrey
        .post(
            &format!("/api/sessions/{id}/runs"),
            json!({"command": "id"}),
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    assert_ne!(status, StatusCode::CREATED);
    let (status, _) = audrey.delete(&format!("/api/sessions/{id}")).await;
    assert!(status.is_client_error(), "{status}");
    let (status, _) = audrey.get("/api/grants").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grants_groups_and_accounts_name_the_field() {
    let env = TestEnv::start().await;
    let bob = env.add_user("bob").await;
    let bob_id = user_id(&bob).await;
    let host = env.add_host().await;
    let good = json!({
        "subject": {"user": bob_id},
        "target": {"host": host},
        "account": "*",
        "actions": ["shell"],
    });
    let with = |key: &str, value: Value| {
        let mut g = good.clone();
        g[key] = value;
        g
    };
    let now = Utc::now();
    let cases = [
        (with("subject", json!({"user": Uuid::now_v7()})), "subject"),
        (with("subject", json!({"group": Uuid::now_v7()})), "subject"),
        (with("target", json!({"host": Uuid::now_v7()})), "target"),
        (with("target", json!({"labels": {}})), "target"),
        (with("account", json!("nobody")), "account"),
        (with("account", json!("../x")), "account"),
        (with("actions", json!(["shell", "sudo"])), "actions"),
        (with("actions", json!([])), "actions"),
        (
            {
                let mut g = with("not_before", json!(now));
                g["not_after"] = json!(now);
                g
            },
            "not_after",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = env.api.post("/api/grants", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {reply}");
        assert_eq!(reply["error"]["field"], field, "{body}: {reply}");
    }
    // A second grant to the same subject, host and account whose validity
    // overlaps the first is refused: change the first one instead.
    let hour = chrono::Duration::hours(1);
    let first = with("not_after", json!(now + hour));
    let (status, reply) = env.api.post("/api/grants", first).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let mut overlapping = with("not_before", json!(now + hour / 2));
    overlapping["actions"] = json!(["run"]);
    let (status, reply) = env.api.post("/api/grants", overlapping).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["field"], "not_before");
    let after = with("not_before", json!(now + hour));
    let (status, reply) = env.api.post("/api/grants", after).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "back to back is no overlap: {reply}"
    );
    // A deleted host takes no grant.
    let (status, _) = env.api.delete(&format!("/api/hosts/{host}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, reply) = env.api.post("/api/grants", good).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["field"], "target");

    let (status, reply) = env
        .api
        .post(
            "/api/groups",
            json!({"name": "g1", "members": [Uuid::now_v7()]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["field"], "members");
    let (status, reply) = env
        .api
        .put(
            &format!("/api/users/{}", bob_id.as_str().unwrap()),
            json!({"groups": [Uuid::now_v7()]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["field"], "groups");
    let (status, reply) = env
        .api
        .put(
            &format!("/api/users/{}", bob_id.as_str().unwrap()),
            json!({"role": "root"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["field"], "role");

    // Accounts: bad login, missing key_path, a duplicate, the last one.
    let host = env.add_host().await;
    let accounts = format!("/api/hosts/{host}/accounts");
    for (body, field) in [
        (json!({"login": "-x", "auth_method": "agent"}), "login"),
        (json!({"login": "x", "auth_method": "key_path"}), "key_path"),
        (
            json!({"login": "x", "auth_method": "key_path", "key_path": "../k"}),
            "key_path",
        ),
        (
            json!({"login": "x", "auth_method": "telepathy"}),
            "auth_method",
        ),
        (
            json!({"login": "x", "auth_method": "stored_key"}),
            "credential_id",
        ),
        (
            json!({"login": env.sshd.username, "auth_method": "agent"}),
            "login",
        ),
    ] {
        let (status, reply) = env.api.post(&accounts, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {reply}");
        assert_eq!(reply["error"]["field"], field, "{body}: {reply}");
    }
    let (_, list) = env.api.get(&accounts).await;
    let first = list[0]["id"].as_str().unwrap().to_owned();
    let (status, reply) = env.api.delete(&format!("{accounts}/{first}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert_eq!(reply["error"]["code"], "last_account");
    // Not an administrator: no accounts to add.
    env.grant(&bob, host, &["shell"]).await;
    let (status, _) = bob
        .post(&accounts, json!({"login": "y", "auth_method": "agent"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An account's stored credential must exist (the vault: vault.rs).
    let credential = Uuid::now_v7();
    let (status, reply) = env
        .api
        .post(
            &accounts,
            json!({"login": "vaulted", "auth_method": "stored_key", "credential_id": credential}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["field"], "credential_id", "{reply}");
    // The old host fields still show the first account.
    let (_, h) = env.api.get(&format!("/api/hosts/{host}")).await;
    assert_eq!(h["username"], env.sshd.username.as_str());
    tokio::time::sleep(Duration::from_millis(1)).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grants_page_grants_and_a_user_sees_only_their_hosts() {
    use shellway_tests::browser::Browser;
    use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
    let env = TestEnv::start().await;
    let web = env.api.create_host(env.host_json("web1")).await;
    env.api.create_host(env.host_json("db1")).await;
    env.add_user("bob").await;

    let admin = Browser::start().await;
    admin.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    admin.goto(&format!("{}/grants", env.base)).await;
    admin
        .wait_js(
            "the grant form",
            "document.querySelectorAll('#grant-subject option').length > 1 \
             && document.querySelectorAll('#grant-target option').length === 2",
        )
        .await;
    admin
        .js(
            "const s = document.getElementById('grant-subject');\
             s.value = [...s.options].find((o) => o.textContent === 'user bob').value;\
             document.getElementById('grant-target').value = arguments[0];",
            json!([web]),
        )
        .await;
    admin.click("#grant-create").await;
    admin
        .wait_js(
            "the grant listed",
            "document.querySelectorAll('#grants-table tbody tr').length === 1 \
             && document.querySelector('#grants-table tbody').textContent.includes('user bob') \
             && document.querySelector('#grants-table tbody').textContent.includes('web1')",
        )
        .await;
    admin.quit().await;

    let b = Browser::start().await;
    b.login(&env.base, "bob", "bob-password").await;
    let hidden = b
        .js(
            "return document.getElementById('nav-grants').hidden",
            json!([]),
        )
        .await;
    assert_eq!(hidden, true, "no Grants link for a user");
    b.wait_js(
        "only web1 in the picker",
        "document.querySelectorAll('#host option').length === 1 \
         && document.querySelector('#host option').textContent.startsWith('web1')",
    )
    .await;
    b.goto(&format!("{}/my-hosts", env.base)).await;
    b.wait_js(
        "my hosts",
        "document.querySelectorAll('#my-hosts-table tbody tr').length === 1 \
         && document.querySelector('#my-hosts-table tbody').textContent.includes('shell')",
    )
    .await;
    let text = b.text("#my-hosts-table").await;
    assert!(text.contains("web1") && !text.contains("db1"), "{text}");
    b.quit().await;
    env.finish().await;
}

//! The credential vault: keys and passwords stored through the API are
//! sealed with age to the runners' key, the proxy and the database hold
//! only ciphertext, runners open them per connection, and a rotation
//! re-seals everything to a new key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_common::vault::{self, secrecy::ExposeSecret, Identity};
use shellway_tests::{ScratchDir, TestEnv, TestEnvOptions, WAIT};
use tokio::process::Child;
use uuid::Uuid;

/// A fresh key pair: `ssh-keygen -t <kind> [-m PEM] -N <passphrase>`.
fn keygen(dir: &Path, name: &str, args: &[&str], passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-C", "vault-test", "-N", passphrase, "-f"])
        .arg(&path)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen {args:?}");
    path
}

/// `SHA256:…` of a public key file, as ssh-keygen prints it.
fn fingerprint(public: &Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().nth(1).unwrap().to_owned()
}

/// Lets the test sshd accept `key`.
fn authorize(env: &TestEnv, key: &Path) {
    use std::io::Write;
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(env.sshd.dir.join("authorized_keys"))
        .unwrap();
    file.write_all(public.as_bytes()).unwrap();
}

/// The base64 lines of a private key file (what must never be stored).
fn key_body(key: &Path) -> Vec<String> {
    std::fs::read_to_string(key)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.contains(':') && l.len() >= 40)
        .map(str::to_owned)
        .collect()
}

async fn store(env: &TestEnv, body: Value) -> Value {
    let (status, reply) = env.api.post("/api/credentials", body).await;
    assert_eq!(status, StatusCode::CREATED, "store credential: {reply}");
    reply
}

async fn store_key(env: &TestEnv, name: &str, key: &Path, passphrase: Option<&str>) -> Value {
    let mut body = json!({
        "name": name,
        "kind": "private_key",
        "secret": std::fs::read_to_string(key).unwrap(),
    });
    if let Some(p) = passphrase {
        body["passphrase"] = json!(p);
    }
    store(env, body).await
}

/// A host on the test sshd that logs in as `login` with a stored credential.
async fn host_with(env: &TestEnv, login: &str, method: &str, credential: &Value) -> Uuid {
    env.api
        .create_host(json!({
            "name": shellway_tests::unique("v"),
            "hostname": "127.0.0.1",
            "port": env.sshd.port,
            "username": login,
            "auth_method": method,
            "credential_id": credential["id"],
            "host_key_policy": "strict",
            "host_keys": [env.sshd.host_key],
        }))
        .await
}

/// Opens a shell on `host`, proves a command runs in it, ends it.
async fn shell_works(env: &TestEnv, host: Uuid) {
    let id = env.api.open_session(host).await;
    let mut ws = env.attach(id).await;
    ws.wait_open().await;
    ws.type_text("echo vault-$((6*7))\r").await;
    ws.wait_output("vault-42", WAIT).await;
    let (status, _) = env.api.delete(&format!("/api/sessions/{id}")).await;
    assert!(status.is_success());
}

/// Opens a session on `host` and returns its error event.
async fn session_error(env: &TestEnv, host: Uuid) -> Value {
    let id = env.api.open_session(host).await;
    let mut ws = env.attach(id).await;
    ws.wait_event("error", WAIT, |e| e["event"] == "error")
        .await
}

/// A system user whose password sshd checks (no PAM: /etc/shadow), made
/// for this test with a fresh random password; `None` where the test cannot
/// create users (not root).
fn password_user() -> Option<(String, String)> {
    let user = "shellway-vault".to_owned();
    let password = format!("pw-{}", shellway_tests::unique(""));
    let exists = std::process::Command::new("id")
        .arg(&user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        let made = std::process::Command::new("useradd")
            .args(["-M", "-N", "-s", "/bin/sh", &user])
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            return None;
        }
    }
    let mut chpasswd = std::process::Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .ok()?;
    {
        use std::io::Write;
        let mut stdin = chpasswd.stdin.take()?;
        writeln!(stdin, "{user}:{password}").ok()?;
    }
    chpasswd
        .wait()
        .is_ok_and(|s| s.success())
        .then_some((user, password))
}

/// Locks the test user's password again.
fn lock(user: &str) {
    let _ = std::process::Command::new("usermod")
        .args(["-L", user])
        .status();
}

/// Everything the database holds of the credentials: `SELECT *` as text
/// and a `pg_dump` of the table.
async fn dump(env: &TestEnv) -> String {
    let pool = env.db().await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT c::text FROM credentials c")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    let mut text: String = rows.into_iter().map(|r| r.0 + "\n").collect();
    let out = std::process::Command::new("pg_dump")
        .args(["--data-only", "--table", "credentials"])
        .arg(&env.db_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    // The rows are there: age files (bytea, shown as hex).
    assert!(
        text.contains(&hex::encode("age-encryption.org/v1")),
        "the dump holds the rows"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_keys_and_a_password_log_in_and_only_ciphertext_is_stored() {
    let env = TestEnv::start_with(TestEnvOptions {
        sshd_password_auth: true,
        ..Default::default()
    })
    .await;
    let keys = ScratchDir::new("shellway-vault-keys-").unwrap();
    let plain = env.sshd.user_key.clone();
    let protected = keygen(&keys, "protected", &["-t", "ed25519"], "open sesame");
    let pem = keygen(
        &keys,
        "pem",
        &["-t", "rsa", "-b", "2048", "-m", "PEM"],
        "pem passphrase",
    );
    assert!(std::fs::read_to_string(&pem)
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    authorize(&env, &protected);
    authorize(&env, &pem);

    let login = env.sshd.username.clone();
    let mut secrets: Vec<String> = vec!["open sesame".into(), "pem passphrase".into()];
    for (name, key, passphrase) in [
        ("plain", &plain, None),
        ("protected", &protected, Some("open sesame")),
        ("pem", &pem, Some("pem passphrase")),
    ] {
        let stored = store_key(&env, name, key, passphrase).await;
        assert_eq!(stored["kind"], "private_key");
        assert_eq!(
            stored["fingerprint"],
            fingerprint(&key.with_extension("pub")),
            "{name}"
        );
        assert!(stored.get("secret").is_none() && stored.get("passphrase").is_none());
        secrets.extend(key_body(key));
        let host = host_with(&env, &login, "stored_key", &stored).await;
        shell_works(&env, host).await;
    }

    // A password, where this machine lets the test make a user for it.
    match password_user() {
        Some((user, password)) => {
            let stored = store(
                &env,
                json!({"name": "pw", "kind": "password", "secret": password}),
            )
            .await;
            assert_eq!(stored["fingerprint"], Value::Null);
            secrets.push(password.clone());
            let host = host_with(&env, &user, "password", &stored).await;
            shell_works(&env, host).await;
            lock(&user);
            assert!(env
                .sshd
                .log()
                .contains(&format!("Accepted password for {user}")));
        }
        None => eprintln!("SKIPPED the password login: cannot create a system user here"),
    }

    assert!(env.sshd.log().contains("Accepted publickey"));
    // Nothing readable in the database, the list, or the audit trail.
    let dumped = dump(&env).await;
    let (status, list) = env.api.get("/api/credentials").await;
    assert_eq!(status, StatusCode::OK);
    let listed = list.to_string();
    let pool = env.db().await;
    let audit: Vec<(String,)> =
        sqlx::query_as("SELECT a::text FROM audit a WHERE action LIKE 'credential.%'")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert!(audit.len() >= 3, "{audit:?}");
    let audit = format!("{audit:?}");
    for secret in &secrets {
        // bytea is dumped as hex: a plaintext column would show so.
        let as_hex = hex::encode(secret);
        assert!(!dumped.contains(&as_hex), "the dump holds a secret (hex)");
        assert!(!dumped.contains(secret.as_str()), "the dump holds a secret");
        assert!(!listed.contains(secret.as_str()), "the list holds a secret");
        assert!(!audit.contains(secret.as_str()), "the audit holds a secret");
    }
    let items = list.as_array().unwrap();
    assert!(items.len() >= 3);
    for item in items {
        assert!(item.get("secret").is_none() && item.get("ciphertext").is_none());
        assert_eq!(item["used_by"].as_array().map(Vec::len), Some(1), "{item}");
    }

    // In use: not deletable; a user may not even list them.
    let id = items[0]["id"].as_str().unwrap();
    let (status, body) = env.api.delete(&format!("/api/credentials/{id}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "credential_in_use");
    let alice = env.add_user("alice").await;
    let (status, _) = alice.get("/api/credentials").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = alice
        .post(
            "/api/credentials",
            json!({"name": "x", "kind": "password", "secret": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_material_and_wrong_passphrases_are_refused_naming_the_field() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let keys = ScratchDir::new("shellway-vault-bad-").unwrap();
    let protected = keygen(&keys, "protected", &["-t", "ed25519"], "right");
    let pem = keygen(
        &keys,
        "pem",
        &["-t", "rsa", "-b", "2048", "-m", "PEM"],
        "right",
    );
    let text = |p: &Path| std::fs::read_to_string(p).unwrap();
    let key = |secret: String, passphrase: Option<&str>| {
        let mut body = json!({"name": shellway_tests::unique("c"), "kind": "private_key",
                              "secret": secret});
        if let Some(p) = passphrase {
            body["passphrase"] = json!(p);
        }
        body
    };
    let body_line = key_body(&protected)[0].clone();
    let cases = [
        (key("not a key".into(), None), "secret"),
        (
            key(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
                    .into(),
                None,
            ),
            "secret",
        ),
        (key(text(&protected), None), "passphrase"),
        (key(text(&protected), Some("wrong")), "passphrase"),
        (key(text(&pem), Some("wrong")), "passphrase"),
        (key(text(&pem), None), "passphrase"),
        (json!({"name": "x", "kind": "magic", "secret": "s"}), "kind"),
        (
            json!({"name": "bad name", "kind": "password", "secret": "s"}),
            "name",
        ),
        (json!({"name": "x", "kind": "password"}), "secret"),
        (
            json!({"name": "x", "kind": "password", "secret": ""}),
            "secret",
        ),
        (
            json!({"name": "x", "kind": "password", "secret": "s", "passphrase": "p"}),
            "passphrase",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = env.api.post("/api/credentials", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
        assert_eq!(reply["error"]["field"], field, "{body}: {reply}");
        assert!(
            !reply.to_string().contains(&body_line),
            "an error quotes the key"
        );
    }
    // The right passphrase works; a second credential of that name does not.
    let ok = key(text(&pem), Some("right"));
    store(&env, ok.clone()).await;
    let (status, reply) = env.api.post("/api/credentials", ok).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    // A host naming a credential of the wrong kind, or none that exists.
    let (_, list) = env.api.get("/api/credentials").await;
    let pem_id = list[0]["id"].as_str().unwrap().to_owned();
    for (method, credential) in [
        ("password", pem_id.clone()),
        ("stored_key", Uuid::now_v7().to_string()),
    ] {
        let (status, reply) = env
            .api
            .post(
                "/api/hosts",
                json!({"name": shellway_tests::unique("h"), "hostname": "127.0.0.1",
                       "username": "u", "auth_method": method, "credential_id": credential,
                       "host_key_policy": "tofu"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
        assert_eq!(reply["error"]["field"], "credential_id", "{reply}");
    }
    env.finish().await;
}

fn runner_with(env: &TestEnv, identities: Option<String>) -> Child {
    let mut cmd = env.runner_command(&shellway_tests::unique("vault-"));
    match identities {
        Some(ids) => cmd.env("SHELLWAY_VAULT_IDENTITY", ids),
        None => cmd.env_remove("SHELLWAY_VAULT_IDENTITY"),
    };
    cmd.spawn().unwrap()
}

fn secret_of(id: &Identity) -> String {
    id.to_string().expose_secret().to_owned()
}

async fn stop(mut runner: Child) {
    let _ = runner.start_kill();
    let _ = runner.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_runners_hold_the_key_and_a_rotation_switches_it() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        proxy_process: true,
        ..Default::default()
    })
    .await;
    // The proxy is configured with the recipient, never an identity.
    let pid = env.proxy_pid().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(environ.contains(&format!(
        "SHELLWAY_VAULT_RECIPIENTS={}",
        vault::recipient_of(&env.vault)
    )));
    for text in [&*environ, &cmdline] {
        assert!(
            !text.contains("AGE-SECRET-KEY-"),
            "the proxy holds an identity"
        );
        assert!(!text.contains("SHELLWAY_VAULT_IDENTITY"));
    }

    let stored = store_key(&env, "k", &env.sshd.user_key, None).await;
    let host = host_with(&env, &env.sshd.username, "stored_key", &stored).await;

    // A runner with the wrong identity, or none, fails the session: `auth`.
    let stranger = Identity::generate();
    for (ids, reason) in [
        (Some(secret_of(&stranger)), "sealed to another key"),
        (None, "no vault identity"),
    ] {
        let runner = runner_with(&env, ids);
        let err = session_error(&env, host).await;
        assert_eq!(err["type"], "auth", "{err}");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.starts_with("cannot decrypt the stored credential: ")
                && message.contains(reason),
            "{message}"
        );
        stop(runner).await;
    }

    // The operator rotates to a new key with the old identity, through the
    // proxy's command; the table then names the new recipient.
    let new = Identity::generate();
    let old_file = ScratchDir::new("shellway-vault-old-").unwrap();
    let old_path = old_file.join("identity.txt");
    std::fs::write(&old_path, format!("# old\n{}\n", secret_of(&env.vault))).unwrap();
    let (mut rotate, _) = env.proxy_command("rotate");
    let status = rotate
        .args(["vault", "rotate", "--identity-file"])
        .arg(&old_path)
        .args(["--to", &vault::recipient_of(&new)])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "vault rotate");
    let pool = env.db().await;
    let (recipient,): (String,) = sqlx::query_as("SELECT recipient FROM credentials")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(recipient, vault::recipient_of(&new));

    // The old identity alone no longer opens it; old and new together (the
    // switch-over) do, and so does the new one alone.
    let runner = runner_with(&env, Some(secret_of(&env.vault)));
    let err = session_error(&env, host).await;
    assert_eq!(err["type"], "auth", "{err}");
    stop(runner).await;
    for ids in [
        format!("{},{}", secret_of(&env.vault), secret_of(&new)),
        secret_of(&new),
    ] {
        let runner = runner_with(&env, Some(ids));
        shell_works(&env, host).await;
        stop(runner).await;
    }
    // A rotation with the wrong identity changes nothing.
    std::fs::write(&old_path, secret_of(&stranger)).unwrap();
    let (mut rotate, _) = env.proxy_command("rotate");
    let status = rotate
        .args(["vault", "rotate", "--identity-file"])
        .arg(&old_path)
        .args(["--to", &vault::recipient_of(&stranger)])
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(
        !status.success(),
        "a rotation that cannot open a credential fails"
    );
    let runner = runner_with(&env, Some(secret_of(&new)));
    shell_works(&env, host).await;
    stop(runner).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_form_offers_stored_credentials_by_name() {
    use shellway_tests::browser::Browser;
    use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
    let env = TestEnv::start().await;
    let stored = store_key(&env, "deploy-key", &env.sshd.user_key, None).await;
    let b = Browser::start().await;
    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    b.goto(&format!("{}/hosts", env.base)).await;
    b.wait_js(
        "the credential offered",
        "[...document.querySelectorAll('#host-credential_id option')]\
           .some(o => o.textContent.startsWith('deploy-key · SHA256:'))",
    )
    .await;
    b.type_into("#host-name", "vaulted").await;
    b.type_into("#host-hostname", "127.0.0.1").await;
    b.clear("#host-port").await;
    b.type_into("#host-port", &env.sshd.port.to_string()).await;
    b.type_into("#host-username", &env.sshd.username).await;
    b.js(
        "document.getElementById('host-auth_method').value = 'stored_key'; \
         document.getElementById('host-credential_id').value = arguments[0]; \
         document.getElementById('host-host_key_policy').value = 'tofu';",
        json!([stored["id"]]),
    )
    .await;
    b.click("#host-save").await;
    b.wait_js(
        "the host saved",
        "document.getElementById('hosts-table').textContent.includes('vaulted')",
    )
    .await;
    let (_, hosts) = env.api.get("/api/hosts").await;
    let host = &hosts.as_array().unwrap()[0];
    assert_eq!(host["auth_method"], "stored_key");
    assert_eq!(host["credential_id"], stored["id"]);
    shell_works(&env, shellway_tests::api::id_of(host)).await;
    b.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credentials_page_stores_a_key_and_never_shows_it_again() {
    use shellway_tests::browser::Browser;
    use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
    let env = TestEnv::start().await;
    let key = std::fs::read_to_string(&env.sshd.user_key).expect("the test key");
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let b = Browser::start().await;
    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    b.goto(&format!("{}/credentials", env.base)).await;
    b.wait_js(
        "the credentials page",
        "document.getElementById('credentials-table')",
    )
    .await;
    b.type_into("#cred-name", "page-key").await;
    b.js(
        "document.getElementById('cred-key').value = arguments[0];",
        json!([key]),
    )
    .await;
    b.click("#cred-save").await;
    b.wait_js(
        "the credential listed",
        "document.getElementById('credentials-table').textContent.includes('page-key')",
    )
    .await;
    let fingerprint = fingerprint(&env.sshd.user_key.with_extension("pub"));
    let row = b
        .js(
            "return document.querySelector('[data-credential=\"page-key\"]').textContent;",
            json!([]),
        )
        .await;
    let row = row.as_str().unwrap_or_default().to_owned();
    assert!(row.contains(&fingerprint), "{row} lacks {fingerprint}");
    let page = b
        .js(
            "return document.documentElement.outerHTML + document.getElementById('cred-key').value;",
            json!([]),
        )
        .await;
    let page = page.as_str().unwrap_or_default();
    assert!(
        !page.contains(&body[..40]),
        "the page still holds the key after storing it"
    );
    let (_, list) = env.api.get("/api/credentials").await;
    assert_eq!(list[0]["name"], "page-key");
    assert_eq!(list[0]["fingerprint"], fingerprint.as_str());
    b.quit().await;
    env.finish().await;
}

/// A host whose first account uses the runner's agent gets a second
/// account that logs in with a stored key: the session names the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_account_logs_in_with_a_stored_key() {
    let env = TestEnv::start().await;
    let stored = store_key(&env, "account-key", &env.sshd.user_key, None).await;
    let host = env
        .api
        .create_host(json!({
            "name": shellway_tests::unique("v"),
            "hostname": "127.0.0.1",
            "port": env.sshd.port,
            "username": "nobody-here",
            "auth_method": "agent",
            "host_key_policy": "strict",
            "host_keys": [env.sshd.host_key],
        }))
        .await;
    let accounts = format!("/api/hosts/{host}/accounts");
    let (status, reply) = env
        .api
        .post(
            &accounts,
            json!({"login": env.sshd.username, "auth_method": "stored_key", "credential_id": stored["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let (status, reply) = env
        .api
        .post(
            "/api/sessions",
            json!({"host_id": host, "account": env.sshd.username}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let id: Uuid = reply["id"].as_str().unwrap().parse().unwrap();
    let mut ws = env.attach(id).await;
    ws.wait_open().await;
    ws.type_text("echo account-$((6*7))\r").await;
    ws.wait_output("account-42", WAIT).await;
    // Where it is used is listed, and it cannot be deleted meanwhile.
    let (_, list) = env.api.get("/api/credentials").await;
    let used = format!("{}@", env.sshd.username);
    assert!(
        list[0]["used_by"][0]
            .as_str()
            .unwrap_or("")
            .starts_with(&used),
        "{list}"
    );
    let (status, reply) = env
        .api
        .delete(&format!(
            "/api/credentials/{}",
            stored["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert_eq!(reply["error"]["code"], "credential_in_use");
    env.finish().await;
}

/// The console's rotation, as an operator does it: the runners get the new
/// identity beside the old one, the proxy the new recipient (a proxy
/// restarted with it: here a second proxy process), then an administrator
/// presses Rotate and a runner re-seals; a runner with only the new
/// identity then logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_from_the_console_goes_through_a_runner() {
    use shellway_tests::browser::Browser;
    use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let stored = store_key(&env, "rot-key", &env.sshd.user_key, None).await;
    let host = host_with(&env, &env.sshd.username, "stored_key", &stored).await;
    let new = Identity::generate();
    let (mut cmd, base) = env.proxy_command(&shellway_tests::unique("rot-"));
    cmd.env("SHELLWAY_VAULT_RECIPIENTS", vault::recipient_of(&new));
    let mut proxy = cmd.spawn().unwrap();
    env.wait_healthy(&base).await;
    let api = shellway_tests::api::Api::new(base.clone(), Some(env.token().to_owned()));
    let recipient = || async {
        let pool = env.db().await;
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT recipient FROM credentials ORDER BY name")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        rows.into_iter().map(|r| r.0).collect::<Vec<_>>()
    };
    let (_, list) = api.get("/api/credentials").await;
    assert_eq!(list[0]["current_key"], false, "{list}");

    // No runner at all: a clear 503, nothing changed.
    let (status, reply) = api.post("/api/credentials/rotate", json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reply}");
    assert_eq!(recipient().await, [vault::recipient_of(&env.vault)]);

    // A runner that lacks the new identity refuses: the vault never moves
    // to a key the runners cannot open.
    let runner = runner_with(&env, Some(secret_of(&env.vault)));
    let (status, reply) = api.post("/api/credentials/rotate", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert_eq!(reply["error"]["code"], "rotation_refused", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("does not hold the identity of")
            && message.contains(&vault::recipient_of(&new)),
        "{message}"
    );
    assert_eq!(recipient().await, [vault::recipient_of(&env.vault)]);
    stop(runner).await;

    // Old and new on the runner: the administrator rotates on the
    // Credentials page.
    let runner = runner_with(
        &env,
        Some(format!("{},{}", secret_of(&env.vault), secret_of(&new))),
    );
    let b = Browser::start().await;
    b.login(&base, ADMIN, ADMIN_PASSWORD).await;
    b.goto(&format!("{base}/credentials")).await;
    b.wait_js(
        "the rotate button counts the credential on the old key",
        "document.getElementById('cred-rotate')?.textContent === 'Rotate 1 to the current key'",
    )
    .await;
    b.js("window.confirm = () => true", json!([])).await;
    b.click("#cred-rotate").await;
    b.wait_js(
        "the row shows the current key",
        "document.querySelector('[data-credential=\"rot-key\"] .cred-key')?.textContent === 'current'",
    )
    .await;
    b.quit().await;
    assert_eq!(recipient().await, [vault::recipient_of(&new)]);
    let (_, list) = api.get("/api/credentials").await;
    assert_eq!(list[0]["current_key"], true, "{list}");
    // Again: nothing left to move.
    let (status, reply) = api.post("/api/credentials/rotate", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["resealed"], 0, "{reply}");
    assert_eq!(reply["already_current"], 1, "{reply}");
    stop(runner).await;

    // Audited with who did it, never a secret.
    let pool = env.db().await;
    let rows: Vec<(Option<String>, Value)> = sqlx::query_as(
        "SELECT username, detail FROM audit WHERE action = 'credential.rotate' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0.as_deref(), Some(ADMIN));
    assert_eq!(rows[0].1["credentials"], 1, "{rows:?}");
    for body in key_body(&env.sshd.user_key) {
        assert!(!rows[0].1.to_string().contains(&body));
    }

    // Only the new identity now: it logs in.
    let runner = runner_with(&env, Some(secret_of(&new)));
    shell_works(&env, host).await;
    stop(runner).await;
    let _ = proxy.start_kill();
    let _ = proxy.wait().await;
    env.finish().await;
}

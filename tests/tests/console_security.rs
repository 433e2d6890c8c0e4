//! The console's security in a real browser (Debian's headless Chromium):
//! it works under its Content-Security-Policy, signing in never leads off
//! the site, admins manage users and sign-in protection, and people
//! manage their password and API tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::browser::Browser;
use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
use shellway_tests::{try_login, Api, TestEnv};

/// Collects the page's CSP violations into `window.cspViolations`, from
/// before its first script runs.
const WATCH_CSP: &str = "window.cspViolations = []; \
    document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(\
      e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber));";

async fn violations(b: &Browser) -> Vec<Value> {
    let v = b.js("return window.cspViolations", json!([])).await;
    v.as_array()
        .cloned()
        .unwrap_or_else(|| panic!("the CSP watcher is not in this page: {v}"))
}

/// Follows an in-app link (same document: the watcher stays).
async fn open_view(b: &Browser, nav: &str, ready: &str) {
    b.click(&format!("[data-nav={nav}]")).await;
    b.wait_js(&format!("the {nav} view"), ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_under_its_content_security_policy_without_a_violation() {
    let env = TestEnv::start().await;
    env.add_host().await;
    let b = Browser::start().await;
    b.on_every_page(WATCH_CSP).await;

    // The watcher sees what the policy blocks (else this test proves
    // nothing): an inline script does not run and is reported.
    b.goto(&format!("{}/login", env.base)).await;
    let ran = b
        .js(
            "const s = document.createElement('script'); s.textContent = 'window.inlineRan = true'; \
             document.body.append(s); return window.inlineRan === true",
            json!([]),
        )
        .await;
    assert_eq!(ran, false, "an inline script ran");
    b.wait_js("the violation report", "window.cspViolations.length > 0")
        .await;
    let seen = violations(&b).await;
    assert!(
        seen[0].as_str().unwrap().starts_with("script-src"),
        "{seen:?}"
    );

    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    // Connect (the WebSocket is same-origin `ws:`), type, colour, resize.
    b.click("#connect").await;
    b.wait_js(
        "CONNECTED",
        "document.getElementById('badge').textContent === 'CONNECTED'",
    )
    .await;
    b.type_into(".xterm-helper-textarea", "echo csp-$((20+22))\n")
        .await;
    b.screen_shows("csp-42").await;
    b.type_into(
        ".xterm-helper-textarea",
        "printf '\\033[38;2;255;100;0mtrue-%s\\033[0m \\033[1;4;31mbold\\033[0m\\n' colour\n",
    )
    .await;
    b.screen_shows("true-colour bold").await;
    let before = b.js("return window.shellwayTerm.cols", json!([])).await;
    b.set_window(900, 600).await;
    b.wait_js(
        "the terminal to refit",
        &format!("window.shellwayTerm.cols !== {before}"),
    )
    .await;
    let cols = b.js("return window.shellwayTerm.cols", json!([])).await;
    b.type_into(".xterm-helper-textarea", "stty size\n").await;
    b.screen_shows(&format!(" {cols}")).await;
    b.set_window(1280, 800).await;
    assert_eq!(violations(&b).await, Vec::<Value>::new(), "on the console");

    // Every other view, rendered in the same document.
    open_view(&b, "manual", "document.getElementById('batch')").await;
    open_view(&b, "hosts", "document.getElementById('host-form')").await;
    open_view(&b, "services", "document.getElementById('service-form')").await;
    open_view(
        &b,
        "users",
        "document.querySelector('#users-table [data-user]')",
    )
    .await;
    open_view(&b, "logs", "document.querySelector('#logs-table a')").await;
    b.click("#logs-table a").await;
    b.screen_shows("csp-42").await;
    b.click("#me").await;
    b.wait_js(
        "the account view",
        "document.getElementById('password-form')",
    )
    .await;
    assert_eq!(
        violations(&b).await,
        Vec::<Value>::new(),
        "on the other views"
    );
    b.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_never_leads_off_the_site() {
    let env = TestEnv::start().await;
    let b = Browser::start().await;
    let origin = env.base.clone();
    for next in [
        "/\\127.0.0.1:1/x",
        "/%09/host",
        "//evil.example/x",
        "/\\/evil.example/",
        "https://evil.example/",
        "javascript:alert(1)",
    ] {
        b.goto(&format!("{}/login?next={next}", env.base)).await;
        b.type_into("#username", ADMIN).await;
        b.type_into("#password", ADMIN_PASSWORD).await;
        b.click("button[type=submit]").await;
        let landed = b
            .wait_js(
                &format!("leaving the login page (next={next})"),
                "location.pathname !== '/login' && document.readyState === 'complete' && location.href",
            )
            .await;
        let landed = landed.as_str().unwrap();
        assert_eq!(landed, format!("{origin}/"), "next={next}");
    }
    // A page of the site is where one goes back to, query and fragment too.
    b.goto(&format!("{}/login?next=/hosts%3Fx%3D1%23top", env.base))
        .await;
    b.type_into("#username", ADMIN).await;
    b.type_into("#password", ADMIN_PASSWORD).await;
    b.click("button[type=submit]").await;
    let landed = b
        .wait_js(
            "the hosts page",
            "location.pathname === '/hosts' && location.href",
        )
        .await;
    assert_eq!(landed, json!(format!("{origin}/hosts?x=1#top")));
    b.quit().await;
    env.finish().await;
}

/// The row of the users table for `name`, as text (`None` if absent).
async fn user_row(b: &Browser, name: &str) -> Option<String> {
    let v = b
        .js(
            "const r = document.querySelector(`#users-table [data-user=\"${arguments[0]}\"]`); \
             return r && r.textContent",
            json!([name]),
        )
        .await;
    v.as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_users_and_sign_in_protection_in_the_console() {
    let env = TestEnv::start().await;
    let b = Browser::start().await;
    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    for _ in 0..5 {
        let r = try_login(&env.base, "mallory", "guess", &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    b.wait_js(
        "the Users link for an admin",
        "!document.getElementById('nav-users').hidden",
    )
    .await;
    b.click("#nav-users").await;
    b.wait_js(
        "mallory under sign-in protection",
        "document.querySelector('[data-throttle=\"username:mallory\"]')",
    )
    .await;
    let card = b.text("#throttles").await;
    assert!(card.contains("127.0.0.1"), "the address too: {card}");
    b.screenshot("docs/screenshots/users.png").await;
    for row in ["username:mallory", "address:127.0.0.1"] {
        b.click(&format!("[data-throttle=\"{row}\"] button")).await;
        b.wait_js(
            &format!("{row} cleared"),
            &format!("!document.querySelector('[data-throttle=\"{row}\"]')"),
        )
        .await;
    }
    let (_, list) = env.api.get("/api/login-throttles").await;
    assert_eq!(list, json!([]));

    // A weak password is refused next to its field; a good one creates.
    b.type_into("#user-username", "dave").await;
    b.type_into("#user-password", "too-short").await;
    b.click("#user-create").await;
    b.wait_js(
        "the password error",
        "document.getElementById('user-password-error').textContent.includes('12')",
    )
    .await;
    b.clear("#user-password").await;
    b.type_into("#user-password", "dave's long password").await;
    b.click("#user-create").await;
    b.wait_js(
        "dave listed",
        "document.querySelector('#users-table [data-user=\"dave\"]')",
    )
    .await;
    assert!(user_row(&b, "dave").await.unwrap().contains("active"));
    assert_eq!(
        try_login(&env.base, "dave", "dave's long password", &[])
            .await
            .status,
        StatusCode::OK
    );

    // Disable, enable, delete.
    b.click("[data-user=\"dave\"] .user-toggle").await;
    b.wait_js(
        "dave disabled",
        "document.querySelector('[data-user=\"dave\"]').textContent.includes('disabled')",
    )
    .await;
    let r = try_login(&env.base, "dave", "dave's long password", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    b.click("[data-user=\"dave\"] .user-toggle").await;
    b.wait_js(
        "dave enabled",
        "document.querySelector('[data-user=\"dave\"]').textContent.includes('active')",
    )
    .await;
    b.js("window.confirm = () => true", json!([])).await;
    b.click("[data-user=\"dave\"] .user-delete").await;
    b.wait_js(
        "dave gone",
        "!document.querySelector('#users-table [data-user=\"dave\"]')",
    )
    .await;
    assert!(user_row(&b, ADMIN).await.unwrap().contains("you"));
    b.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_change_their_password_and_manage_their_tokens_in_the_console() {
    let env = TestEnv::start().await;
    env.add_user("bob").await;
    let b = Browser::start().await;
    b.login(&env.base, "bob", "bob-password").await;
    let hidden = b
        .js(
            "return document.getElementById('nav-users').hidden",
            json!([]),
        )
        .await;
    assert_eq!(hidden, true, "no Users link for a non-admin");
    b.click("#me").await;
    b.wait_js(
        "the account view",
        "document.getElementById('password-form')",
    )
    .await;

    b.type_into("#pw-current", "not bob's password").await;
    b.type_into("#pw-new", "bob's new long password").await;
    b.click("#pw-save").await;
    b.wait_js(
        "the current-password error",
        "document.getElementById('pw-current-error').textContent.length > 0",
    )
    .await;
    b.clear("#pw-current").await;
    b.type_into("#pw-current", "bob-password").await;
    b.click("#pw-save").await;
    b.wait_js(
        "the change confirmed",
        "document.getElementById('flash').textContent.includes('Password changed')",
    )
    .await;
    let r = try_login(&env.base, "bob", "bob's new long password", &[]).await;
    assert_eq!(r.status, StatusCode::OK);

    // A token, shown once, that works until revoked.
    b.type_into("#token-name", "ci").await;
    b.click("#token-create").await;
    let secret = b
        .wait_js(
            "the new token",
            "document.getElementById('token-secret').value",
        )
        .await;
    let token = Api::new(&env.base, Some(secret.as_str().unwrap().to_owned()));
    assert_eq!(token.get("/api/me").await.0, StatusCode::OK);
    b.wait_js(
        "the token listed",
        "document.getElementById('tokens-table').textContent.includes('ci')",
    )
    .await;
    b.click("#tokens-table tbody tr:first-child button.danger")
        .await;
    b.wait_js(
        "the token gone",
        "!document.getElementById('tokens-table').textContent.includes('ci')",
    )
    .await;
    assert_eq!(token.get("/api/me").await.0, StatusCode::UNAUTHORIZED);
    b.quit().await;
    env.finish().await;
}

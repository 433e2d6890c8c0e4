//! The console in daily use, in a real browser (Debian's headless Chromium
//! through chromedriver) against the real proxy, runner, RabbitMQ,
//! Postgres and sshd: getting back to your sessions, several at once, the
//! end of a session, a window that shrinks, runs side by side, forms that
//! say what is wrong, and pages that only show what you may do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use shellway_tests::browser::Browser;
use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
use shellway_tests::{TestEnv, TestEnvOptions};
use uuid::Uuid;

/// The session id the console's URL names.
async fn session_in_url(b: &Browser) -> String {
    let v = b
        .wait_js(
            "a session in the URL",
            "new URLSearchParams(location.search).get('session')",
        )
        .await;
    v.as_str().unwrap().to_owned()
}

async fn count(b: &Browser, css: &str) -> u64 {
    let script = format!("return document.querySelectorAll({}).length", json!(css));
    b.js(&script, json!([])).await.as_u64().unwrap()
}

async fn session_status(env: &TestEnv, id: &str) -> Value {
    env.api.session(id.parse::<Uuid>().unwrap()).await["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_returns_to_the_session_and_tabs_keep_sessions_apart() {
    let env = TestEnv::start().await;
    env.add_host().await;
    let b = Browser::start().await;
    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;

    // First session, with a run.
    b.click("#connect").await;
    b.badge_is("CONNECTED").await;
    let first = session_in_url(&b).await;
    b.type_in_terminal("echo first-$((1+1))\n").await;
    b.screen_shows("first-2").await;
    b.type_into("#command", "echo ran-before-$((2+2))\n").await;
    b.wait_js(
        "the run's result",
        "document.querySelector('#run-output .run[data-status=ok]')",
    )
    .await;

    // A second one in its own tab; the first stays connected.
    b.click("#connect").await;
    b.wait_js(
        "a second tab",
        "document.querySelectorAll('#tabs .tab').length === 2",
    )
    .await;
    b.badge_is("CONNECTED").await;
    let second = session_in_url(&b).await;
    assert_ne!(first, second);
    b.type_in_terminal("echo second-$((3+3))\n").await;
    b.screen_shows("second-6").await;
    assert_eq!(count(&b, "#tabs .tab.detached").await, 0, "both attached");
    b.click(&format!("#tabs .tab[data-session='{first}'] .tab-label"))
        .await;
    b.screen_shows("first-2").await;
    assert_eq!(session_in_url(&b).await, first);
    let mixed = b
        .js(
            "return window.shellwayScreen().includes('second-6')",
            json!([]),
        )
        .await;
    assert_eq!(mixed, false, "each tab has its own terminal");
    b.type_in_terminal("echo still-first-$((5*5))\n").await;
    b.screen_shows("still-first-25").await;

    // F5: back on the same session, its screen and its runs.
    b.reload().await;
    b.badge_is("CONNECTED").await;
    assert_eq!(session_in_url(&b).await, first);
    b.screen_shows("still-first-25").await;
    b.wait_js(
        "the earlier run listed",
        "document.getElementById('run-output').textContent.includes('ran-before-4')",
    )
    .await;
    b.type_in_terminal("echo after-reload-$((4+5))\n").await;
    b.screen_shows("after-reload-9").await;
    assert_eq!(count(&b, "#tabs .tab").await, 2, "both sessions listed");
    assert_eq!(
        count(&b, &format!("#tabs .tab.detached[data-session='{second}']")).await,
        1,
        "the other one waits, detached"
    );

    // Closing a tab detaches: the session keeps running.
    b.click(&format!("#tabs .tab[data-session='{first}'] .tab-close"))
        .await;
    b.wait_js(
        "the tab detached",
        &format!("document.querySelector(\"#tabs .tab[data-session='{first}']\").classList.contains('detached')"),
    )
    .await;
    assert_eq!(session_status(&env, &first).await, "open");
    b.screenshot("docs/screenshots/tabs.png").await;
    b.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_badge_and_the_viewers_follow_the_end_of_a_session_at_once() {
    let env = TestEnv::start().await;
    let host = env.add_host().await;
    let bob = env.add_user("bob").await;
    // Users reach only the hosts they are granted.
    env.grant(&bob, host, &["shell", "run"]).await;
    let b = Browser::start().await;
    b.login(&env.base, "bob", "bob-password").await;
    let ended = "document.getElementById('badge').textContent === 'CLOSED' \
                 && document.querySelectorAll('#presence li').length === 0 \
                 && document.getElementById('disconnect').disabled \
                 && document.getElementById('run').disabled";

    // The shell exits.
    b.click("#connect").await;
    b.badge_is("CONNECTED").await;
    b.wait_js(
        "bob in the presence list",
        "document.getElementById('presence').textContent.includes('bob')",
    )
    .await;
    b.type_in_terminal("exit\n").await;
    b.wait_js("the console to show the end", ended).await;

    // An admin ends the next one.
    b.click("#connect").await;
    b.badge_is("CONNECTED").await;
    b.wait_js(
        "bob in the presence list",
        "document.querySelectorAll('#presence li').length === 1",
    )
    .await;
    let id = session_in_url(&b).await;
    let (status, body) = env.api.delete(&format!("/api/sessions/{id}")).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    b.wait_js("the console to show the end", ended).await;
    let flash = b.text("#flash").await;
    assert!(flash.contains("by admin"), "{flash}");
    b.quit().await;
    env.finish().await;
}

/// Waits until `stty size` in the terminal says the size xterm.js has
/// (`nth` tells this answer from earlier ones); returns (rows, cols).
async fn pty_follows_terminal(b: &Browser, nth: u32) -> (u64, u64) {
    let cols = b.js("return window.shellwayTerm.cols", json!([])).await;
    let rows = b.js("return window.shellwayTerm.rows", json!([])).await;
    b.type_in_terminal(&format!("echo size{nth}-$(stty size)\n"))
        .await;
    b.screen_shows(&format!("size{nth}-{rows} {cols}")).await;
    (rows.as_u64().unwrap(), cols.as_u64().unwrap())
}

const NO_SIDEWAYS_SCROLL: &str =
    "document.documentElement.scrollWidth <= document.documentElement.clientWidth";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_follows_the_window_narrower_and_wider() {
    let env = TestEnv::start().await;
    env.add_host().await;
    let b = Browser::start().await;
    b.set_window(1400, 900).await;
    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    b.click("#connect").await;
    b.badge_is("CONNECTED").await;
    let (_, wide) = pty_follows_terminal(&b, 1).await;

    // Below the one-column breakpoint.
    b.set_window(1000, 900).await;
    b.wait_js(
        "the terminal to get narrower",
        &format!("window.shellwayTerm.cols < {wide}"),
    )
    .await;
    b.wait_js("no sideways scrollbar", NO_SIDEWAYS_SCROLL).await;
    let (_, narrow) = pty_follows_terminal(&b, 2).await;
    assert!(narrow < wide, "{narrow} < {wide}");

    b.set_window(1400, 900).await;
    b.wait_js(
        "the terminal to get wider again",
        &format!("window.shellwayTerm.cols === {wide}"),
    )
    .await;
    b.wait_js("no sideways scrollbar", NO_SIDEWAYS_SCROLL).await;
    pty_follows_terminal(&b, 3).await;
    b.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_are_listed_each_with_its_own_output_and_result() {
    let env = TestEnv::start().await;
    env.add_host().await;
    let b = Browser::start().await;
    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    b.click("#connect").await;
    b.badge_is("CONNECTED").await;

    // The first run waits for a file the test creates (from the terminal,
    // which runs do not queue behind) once it has seen the second queued.
    let go = env.sshd.dir.join("go");
    let first = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; echo first-$((1+1))",
        go.display()
    );
    b.type_into("#command", &format!("{first}\n")).await;
    b.wait_js(
        "the first run going",
        "document.querySelector('#run-output .run[data-status=running]')",
    )
    .await;
    b.clear("#command").await;
    b.type_into("#command", "echo second-$((2+2)) >&2; exit 3\n")
        .await;
    b.wait_js(
        "the second run queued behind it",
        "document.querySelectorAll('#run-output .run').length === 2 \
         && document.querySelector('#run-output .run').dataset.status === undefined \
         && document.querySelector('#run-output .run .run-state').textContent === 'QUEUED'",
    )
    .await;
    b.type_in_terminal(&format!("touch {}\n", go.display()))
        .await;
    b.wait_js(
        "both results",
        "[...document.querySelectorAll('#run-output .run')].map(r => r.dataset.status).join() === 'failed,ok'",
    )
    .await;
    let runs = b
        .js(
            "return [...document.querySelectorAll('#run-output .run')].map(r => \
               [r.querySelector('.run-command').textContent, r.querySelector('.run-state').textContent, \
                r.querySelector('.runout').textContent])",
            json!([]),
        )
        .await;
    assert_eq!(
        runs,
        json!([
            ["echo second-$((2+2)) >&2; exit 3", "EXIT 3", "second-4\n"],
            [first, "EXIT 0", "first-2\n"]
        ]),
        "newest first, each with its own output and result"
    );
    let stderr = count(&b, "#run-output .run .runout .stderr").await;
    assert_eq!(stderr, 1, "stderr shown apart");
    b.screenshot("docs/screenshots/runs.png").await;
    b.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_hosts_connect_points_to_the_host_form_which_reports_every_error() {
    // A runner answers the form's host-key scan.
    let env = TestEnv::start().await;
    let b = Browser::start().await;
    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;

    // No host: no raw error, a way forward instead.
    let disabled = b
        .js(
            "return document.getElementById('connect').disabled",
            json!([]),
        )
        .await;
    assert_eq!(disabled, true);
    let hint = b.text("#no-hosts").await;
    assert!(hint.contains("add a host first"), "{hint}");
    b.click("#no-hosts a").await;
    b.wait_js(
        "the hosts page",
        "location.pathname === '/hosts' && document.getElementById('host-form')",
    )
    .await;

    // Every field at fault at once.
    b.clear("#host-port").await;
    b.type_into("#host-port", "0").await;
    b.click("#host-save").await;
    b.wait_js(
        "all the errors",
        "['name', 'hostname', 'port', 'username', 'key_path'].every(f => \
           document.getElementById('host-' + f + '-error').textContent !== '')",
    )
    .await;

    // Strict with no pinned key: refused, with the fix offered.
    b.type_into("#host-name", "web1").await;
    b.type_into("#host-hostname", "127.0.0.1").await;
    b.clear("#host-port").await;
    b.type_into("#host-port", &env.sshd.port.to_string()).await;
    b.type_into("#host-username", &env.sshd.username).await;
    b.type_into("#host-key_path", &env.sshd.user_key.display().to_string())
        .await;
    b.click("#host-save").await;
    b.wait_js(
        "the pinned key asked for",
        "document.getElementById('host-host_keys-error').textContent.includes('strict')",
    )
    .await;
    let others = b
        .js(
            "return ['name', 'hostname', 'port', 'username', 'key_path'].map(f => \
               document.getElementById('host-' + f + '-error').textContent).join('')",
            json!([]),
        )
        .await;
    assert_eq!(others, "", "fixed fields are cleared");
    b.click("#host-keys-fetch").await;
    b.wait_js(
        "the key filled in",
        "document.getElementById('host-host_keys').value.startsWith('ssh-')",
    )
    .await;
    b.click("#host-save").await;
    b.wait_js(
        "the host saved",
        "document.getElementById('hosts-table').textContent.includes('web1')",
    )
    .await;

    // New clears what an earlier attempt left.
    b.type_into("#host-name", "bad name!").await;
    b.click("#host-save").await;
    b.wait_js(
        "an error",
        "document.getElementById('host-name-error').textContent !== ''",
    )
    .await;
    b.click("#host-scan").await;
    b.wait_js(
        "a scan result",
        "document.getElementById('host-scan-result').textContent !== '' \
         || document.getElementById('host-hostname-error').textContent !== ''",
    )
    .await;
    b.click("#host-new").await;
    let left = b
        .js(
            "return [...document.querySelectorAll('#host-form .field-error')].map(e => e.textContent).join('') \
               + document.getElementById('host-scan-result').textContent \
               + (document.getElementById('flash').hidden ? '' : document.getElementById('flash').textContent)",
            json!([]),
        )
        .await;
    assert_eq!(left, "", "New starts clean");
    b.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_who_are_not_admins_see_hosts_tasks_and_scripts_read_only() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let host = env.add_host().await;
    let (status, body) = env
        .api
        .post("/api/tasks", json!({"name": "uptime", "command": "uptime"}))
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let (status, body) = env
        .api
        .post(
            "/api/scripts",
            json!({"name": "hello", "body": "echo hello"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let bob = env.add_user("bob").await;
    // Users see only the hosts they are granted.
    env.grant(&bob, host, &["shell"]).await;
    let b = Browser::start().await;
    b.login(&env.base, "bob", "bob-password").await;
    for (page, table, form) in [
        ("hosts", "hosts-table", "host-form"),
        ("tasks", "tasks-table", "tasks-form"),
        ("scripts", "scripts-table", "scripts-form"),
    ] {
        b.goto(&format!("{}/{page}", env.base)).await;
        b.wait_js(
            &format!("the {page} listed"),
            &format!("document.querySelectorAll('#{table} tbody tr').length === 1"),
        )
        .await;
        let shown = b
            .js(
                &format!(
                    "return [!!document.getElementById('{form}'), \
                       document.querySelectorAll('#{table} button').length, \
                       document.getElementById('read-only-note').textContent]"
                ),
                json!([]),
            )
            .await;
        assert_eq!(shown[0], false, "{page}: no form");
        assert_eq!(shown[1], 0, "{page}: no edit or delete buttons");
        assert!(
            shown[2].as_str().unwrap().contains("Only administrators"),
            "{page}: {shown}"
        );
    }
    b.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_shows_no_controls_a_viewer_cannot_use() {
    let env = TestEnv::start().await;
    let host = env.add_host().await;
    let bob = env.add_user("bob").await;
    // Users reach only the hosts they are granted.
    env.grant(&bob, host, &["shell", "run", "share"]).await;
    let id = bob.open_session(host).await;
    let (status, body) = bob
        .post(
            &format!("/api/sessions/{id}/runs"),
            json!({"command": "sleep 30"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let (status, share) = bob
        .post(
            &format!("/api/sessions/{id}/shares"),
            json!({"mode": "view", "expires_in": 600}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{share}");

    shellway_tests::eventually("the run going", shellway_tests::WAIT, || async {
        let runs = env.api.session(id).await["runs"].clone();
        (runs[0]["status"] == "running").then_some(())
    })
    .await;
    let b = Browser::start().await;
    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    let no_controls = "!document.querySelector('#command, #script, #run, #run-batch, #run-task, \
                       #cancel, #share, #disconnect, #connect, .run-cancel, #run-card') \
                       && window.shellwayTerm.options.disableStdin === true";
    // An admin watching from the monitor: the run is listed, nothing to
    // press.
    b.goto(&format!("{}/?watch={id}", env.base)).await;
    b.badge_is("CONNECTED").await;
    b.wait_js(
        "the run listed, read-only",
        "document.querySelector('#runs-card .run .run-command').textContent === 'sleep 30' \
         && document.querySelector('#runs-card .run .run-state').textContent === 'RUNNING'",
    )
    .await;
    b.wait_js("no controls when watching", no_controls).await;
    // A `view` share link: the same.
    b.goto(&format!("{}{}", env.base, share["url"].as_str().unwrap()))
        .await;
    b.badge_is("CONNECTED").await;
    b.wait_js("no controls through a view link", no_controls)
        .await;
    let (status, _) = env.api.delete(&format!("/api/sessions/{id}")).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    b.badge_is("CLOSED").await;
    b.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_filter_and_page_on_the_server_and_link_to_each_session() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let web = env.add_host().await;
    let other = env.add_host().await;
    // Thirty finished sessions a minute apart, two pages' worth, straight
    // into the database: no need for thirty SSH connections.
    let pool = env.db().await;
    let admin: (Uuid,) = sqlx::query_as("SELECT id FROM users WHERE username = $1")
        .bind(ADMIN)
        .fetch_one(&pool)
        .await
        .unwrap();
    for i in 0..30i32 {
        let host = if i == 7 { other } else { web };
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO sessions (id, host_id, owner_id, status, cols, rows, shell, created_at, ended_at) \
             VALUES ($1, $2, $3, 'closed', 80, 24, true, now() - make_interval(mins => $4), now())",
        )
        .bind(id)
        .bind(host)
        .bind(admin.0)
        .bind(60 - i)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO runs (id, session_id, kind, command, status) VALUES ($1, $2, 'command', $3, 'ok')",
        )
        .bind(Uuid::now_v7())
        .bind(id)
        .bind(format!("deploy --build {i}"))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let b = Browser::start().await;
    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    b.goto(&format!("{}/logs", env.base)).await;
    let rows = "document.querySelectorAll('#logs-table tbody tr[data-session]').length";
    b.wait_js("a full first page", &format!("{rows} === 25"))
        .await;
    let newest = b
        .js(
            "return document.querySelector('#logs-table tbody tr[data-session]').dataset.session",
            json!([]),
        )
        .await;
    b.click("#logs-older").await;
    b.wait_js("the second page", &format!("{rows} === 5")).await;
    let older_disabled = b
        .js(
            "return document.getElementById('logs-older').disabled",
            json!([]),
        )
        .await;
    assert_eq!(older_disabled, true, "nothing older");
    b.click("#logs-newer").await;
    b.wait_js("the first page again", &format!("{rows} === 25"))
        .await;

    // Search in run commands, then by host.
    b.type_into("#logs-search", "build 29").await;
    b.wait_js("one match", &format!("{rows} === 1")).await;
    let first = b
        .js(
            "return document.querySelector('#logs-table tbody tr[data-session]').dataset.session",
            json!([]),
        )
        .await;
    assert_eq!(first, newest, "the newest session ran build 29");
    b.clear("#logs-search").await;
    b.js(
        "const s = document.getElementById('logs-host'); s.value = arguments[0]; \
         s.dispatchEvent(new Event('change'))",
        json!([other.to_string()]),
    )
    .await;
    b.wait_js(
        "the other host's one session",
        &format!("{rows} === 1 && document.getElementById('logs-table').textContent.includes('deploy --build 7')"),
    )
    .await;
    // A date range with nothing in it.
    b.js(
        "const f = document.getElementById('logs-to'); f.value = '2001-01-01'; \
         f.dispatchEvent(new Event('change'))",
        json!([]),
    )
    .await;
    b.wait_js(
        "nothing before 2001",
        &format!("{rows} === 0 && document.getElementById('logs-page').textContent.includes('No session')"),
    )
    .await;

    // Each row links to its session: a copyable link and a new tab.
    b.goto(&format!("{}/logs", env.base)).await;
    b.wait_js("the list", &format!("{rows} === 25")).await;
    let links = b
        .js(
            "const row = document.querySelector('#logs-table tbody tr[data-session]'); \
             return [row.dataset.session, row.querySelector('.copy-link').dataset.url, \
                     row.querySelector('a.open-tab').getAttribute('href'), row.querySelector('a.open-tab').target]",
            json!([]),
        )
        .await;
    let id = links[0].as_str().unwrap();
    assert_eq!(links[1], json!(format!("{}/logs/{id}", env.base)));
    assert_eq!(links[2], json!(format!("/logs/{id}")));
    assert_eq!(links[3], "_blank");
    b.click("#logs-table .copy-link").await;
    b.wait_js(
        "the link copied or shown",
        &format!(
            "document.querySelector('#logs-table .copy-link') === null \
               ? document.querySelector('#logs-table .copy-field').value.endsWith('/logs/{id}') \
               : document.querySelector('#logs-table .copy-link').textContent === 'Copied'"
        ),
    )
    .await;
    b.screenshot("docs/screenshots/logs-filters.png").await;
    b.quit().await;
    env.finish().await;
}

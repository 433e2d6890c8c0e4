//! The web console in a real browser: Debian's headless Chromium through
//! chromedriver, against the real proxy, runner, RabbitMQ, Postgres and
//! sshd. `SHELLWAY_SCREENSHOTS=1` also refreshes docs/screenshots/.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use shellway_tests::browser::Browser;
use shellway_tests::env::{ADMIN, ADMIN_PASSWORD};
use shellway_tests::TestEnv;

/// Column and buffer row of the last place the terminal shows `needle`.
async fn find_on_screen(b: &Browser, needle: &str) -> (u64, u64) {
    let at = b
        .js(
            "const buf = window.shellwayTerm.buffer.active; \
             for (let y = buf.length - 1; y >= 0; y--) { \
               const x = buf.getLine(y).translateToString(true).indexOf(arguments[0]); \
               if (x >= 0) return [x, y]; \
             } return null;",
            json!([needle]),
        )
        .await;
    let at = at
        .as_array()
        .unwrap_or_else(|| panic!("the terminal does not show {needle:?}"));
    (at[0].as_u64().unwrap(), at[1].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let env = TestEnv::start().await;
    let b = Browser::start().await;

    // Every page needs a login; the login page brings you back.
    b.goto(&format!("{}/hosts", env.base)).await;
    b.wait_js("the login page", "location.pathname === '/login'")
        .await;
    b.screenshot("docs/screenshots/login.png").await;
    b.type_into("#username", ADMIN).await;
    b.type_into("#password", "wrong password").await;
    b.click("button[type=submit]").await;
    b.wait_js(
        "a login error",
        "!document.getElementById('login-error').hidden",
    )
    .await;
    b.clear("#password").await;
    b.type_into("#password", ADMIN_PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_js(
        "the hosts page",
        "location.pathname === '/hosts' && document.getElementById('host-form')",
    )
    .await;

    // Add a host; a bad field is reported next to it.
    b.type_into("#host-name", "browser-host").await;
    b.type_into("#host-hostname", "127.0.0.1").await;
    b.clear("#host-port").await;
    b.type_into("#host-port", "0").await;
    b.type_into("#host-username", &env.sshd.username).await;
    b.type_into("#host-key_path", &env.sshd.user_key.display().to_string())
        .await;
    b.click("#host-save").await;
    b.wait_js(
        "the port error next to the port field",
        "document.getElementById('host-port-error').textContent.includes('port')",
    )
    .await;
    b.clear("#host-port").await;
    b.type_into("#host-port", &env.sshd.port.to_string()).await;
    // "Fetch host key" shows the fingerprint and fills in the key to pin.
    b.click("#host-scan").await;
    b.wait_js(
        "the fingerprint",
        "document.getElementById('host-scan-result').textContent.includes('SHA256:')",
    )
    .await;
    let pinned = b
        .js(
            "return document.getElementById('host-host_keys').value",
            json!([]),
        )
        .await;
    assert_eq!(pinned.as_str().unwrap(), env.sshd.host_key);
    b.click("#host-save").await;
    b.wait_js(
        "the host in the list",
        "document.getElementById('hosts-table').textContent.includes('browser-host')",
    )
    .await;
    b.screenshot("docs/screenshots/hosts.png").await;

    // Connect and type.
    b.goto(&format!("{}/", env.base)).await;
    b.click("#connect").await;
    b.badge_is("CONNECTED").await;
    b.type_in_terminal("echo hel''lo\n").await;
    b.screen_shows("hello").await;

    // UTF-8 both ways, and colours: typed text comes back through the PTY;
    // the output below is made of escapes that are not on the command line.
    b.type_in_terminal("echo 'héllo ✓'\n").await;
    b.screen_shows("héllo ✓").await;
    b.type_in_terminal(
        "printf 'caf\\303\\251 \\342\\234\\223 \\033[31mred-%s\\033[0m\\n' $((1+1))\n",
    )
    .await;
    b.screen_shows("café ✓ red-2").await;
    let (x, y) = find_on_screen(&b, "red-2").await;
    let red = b
        .js(
            "const c = window.shellwayTerm.buffer.active.getLine(arguments[1]).getCell(arguments[0]); \
             return c.isFgPalette() && c.getFgColor();",
            json!([x, y]),
        )
        .await;
    assert_eq!(red, json!(1), "red-2 is drawn in palette colour 1 (red)");

    // Copy and paste: select what the shell printed, Ctrl+Shift+C, then
    // Ctrl+Shift+V pastes it back as input.
    b.type_in_terminal("echo copy-$((6*7))-me\n").await;
    b.screen_shows("copy-42-me").await;
    let (x, y) = find_on_screen(&b, "copy-42-me").await;
    let selected = b
        .js(
            "const t = window.shellwayTerm; t.select(arguments[0], arguments[1], 10); \
             return t.getSelection();",
            json!([x, y]),
        )
        .await;
    assert_eq!(selected, json!("copy-42-me"));
    b.type_in_terminal("\u{E009}\u{E008}c\u{E000}").await;
    b.type_in_terminal("echo pasted-$((1+1)):").await;
    b.type_in_terminal("\u{E009}\u{E008}v\u{E000}").await;
    b.type_in_terminal("\n").await;
    b.screen_shows("pasted-2:copy-42-me").await;

    // Resizing the window resizes the PTY.
    let before = b.js("return window.shellwayTerm.cols", json!([])).await;
    b.set_window(900, 600).await;
    b.wait_js(
        "the terminal to refit",
        &format!("window.shellwayTerm.cols !== {before}"),
    )
    .await;
    let cols = b.js("return window.shellwayTerm.cols", json!([])).await;
    let rows = b.js("return window.shellwayTerm.rows", json!([])).await;
    b.type_in_terminal("stty size\n").await;
    b.screen_shows(&format!("{rows} {cols}")).await;
    b.set_window(1280, 800).await;

    // A batch that fails at step 2 of 3.
    b.js(
        "window.badgeSeen = []; const el = document.getElementById('badge'); \
         new MutationObserver(() => window.badgeSeen.push(el.textContent)).observe(el, {childList: true, characterData: true, subtree: true});",
        json!([]),
    )
    .await;
    b.type_into("#script", "echo one\nsleep 0.3; false\necho three")
        .await;
    b.click("#run-batch").await;
    b.wait_js(
        "STEP 2/3 then the failure",
        "window.badgeSeen.includes('STEP 2/3') && window.badgeSeen.some(t => t.includes('STEP 2 FAILED'))",
    )
    .await;
    let output = b.text("#run-output").await;
    assert!(
        output.contains("one") && !output.contains("three"),
        "{output}"
    );

    // Cancel a long command.
    b.type_into("#command", "sleep 600").await;
    b.click("#run").await;
    b.badge_is("RUNNING").await;
    b.click("#cancel").await;
    b.badge_is("CANCELED").await;
    b.type_in_terminal("printf 'colours: \\033[31mred\\033[0m ok\\n'\n")
        .await;
    b.screen_shows("colours: red ok").await;
    b.screenshot("docs/screenshots/console.png").await;

    // A dropped connection resumes where it was: nothing lost or repeated.
    b.js(
        "window.firstSocket = window.shellwaySession.ws; window.firstSocket.close()",
        json!([]),
    )
    .await;
    b.wait_js(
        "the console to reconnect on a new socket",
        "window.shellwaySession.ws !== window.firstSocket && window.shellwaySession.ws.readyState === 1",
    )
    .await;
    b.type_in_terminal("echo after-drop-$((1+1))\n").await;
    b.screen_shows("after-drop-2").await;
    let hellos = b
        .js(
            "return window.shellwayScreen().split('\\n').filter(l => l === 'hello').length",
            json!([]),
        )
        .await;
    assert_eq!(hellos, 1, "output repeated after the reconnect");

    // Full-screen programs draw in the browser terminal.
    b.type_in_terminal("printf 'in-vim-%s\\n' $((6*7)) > /tmp/shellway-browser-vi.txt; vi -n -u NONE /tmp/shellway-browser-vi.txt\n").await;
    b.screen_shows("in-vim-42").await;
    b.wait_js(
        "vim's empty-line markers",
        "window.shellwayScreen().includes('\\n~')",
    )
    .await;
    b.type_in_terminal(":q!\n").await;
    // Typed before vim has left, the next line would partly go to vim.
    b.wait_js(
        "vim gone and the prompt back",
        "window.shellwayTerm.buffer.active.type === 'normal' \
         && window.shellwayScreen().split('\\n').filter(l => l.trim()).pop().match(/[#$] *$/)",
    )
    .await;
    b.type_in_terminal("rm -f /tmp/shellway-browser-vi.txt; echo vim-done-$((1+2))\n")
        .await;
    b.screen_shows("vim-done-3").await;

    // Logs list the session and its runs; its page replays it.
    b.goto(&format!("{}/logs", env.base)).await;
    b.wait_js(
        "the session in the logs",
        "document.getElementById('logs-table') && document.getElementById('logs-table').textContent.includes('canceled')",
    )
    .await;
    let table = b.text("#logs-table").await;
    assert!(table.contains("browser-host"), "{table}");
    assert!(table.contains("step 2"), "failed step shown: {table}");
    b.screenshot("docs/screenshots/logs.png").await;
    b.click("#logs-table a").await;
    b.wait_js("the replay page", "location.pathname.startsWith('/logs/')")
        .await;
    b.screen_shows("hello").await;
    let download = b
        .js(
            "return document.getElementById('replay-download').getAttribute('href')",
            json!([]),
        )
        .await;
    assert!(download.as_str().unwrap().ends_with("/recording"));

    // The manual is searchable.
    b.goto(&format!("{}/manual", env.base)).await;
    b.type_into("#manual-search", "cd DIR").await;
    b.wait_js(
        "only the batch rules",
        "!document.getElementById('batch').hidden && document.getElementById('keys').hidden",
    )
    .await;
    b.clear("#manual-search").await;
    b.js(
        "document.getElementById('manual-search').dispatchEvent(new Event('input'))",
        json!([]),
    )
    .await;
    b.screenshot("docs/screenshots/manual.png").await;

    b.quit().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_watching_and_ending_a_session_in_the_browser() {
    let env = TestEnv::start().await;
    env.add_host().await;
    env.add_user("bob").await;
    let owner = Browser::start().await;
    owner.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    owner.click("#connect").await;
    owner.badge_is("CONNECTED").await;
    owner.type_in_terminal("echo shared-$((4*4))\n").await;
    owner.screen_shows("shared-16").await;

    // The Share dialog makes a link with a copy button and lists it.
    owner.click("#share").await;
    owner.click("#share-create").await;
    let url = owner
        .wait_js("the link", "document.getElementById('share-url').value")
        .await;
    let url = url.as_str().unwrap().to_owned();
    assert!(url.contains("/join/swl_"), "{url}");
    owner
        .wait_js(
            "the link listed",
            "document.querySelector('#share-dialog tbody').textContent.includes('active')",
        )
        .await;
    // The picture in the docs shows no usable token.
    owner
        .js(
            "document.getElementById('share-url').value = location.origin + '/join/swl_…'",
            json!([]),
        )
        .await;
    owner.screenshot("docs/screenshots/share.png").await;
    owner
        .js("document.getElementById('share-dialog').close()", json!([]))
        .await;

    // Bob opens it: he sees the screen, is listed, and cannot type.
    let bob = Browser::start().await;
    bob.login(&env.base, "bob", "bob-password").await;
    bob.goto(&url).await;
    bob.screen_shows("shared-16").await;
    owner
        .wait_js(
            "bob in the presence list",
            "document.getElementById('presence').textContent.includes('bob')",
        )
        .await;
    let disabled = bob
        .js("return window.shellwayTerm.options.disableStdin", json!([]))
        .await;
    assert_eq!(disabled, true, "a view link gives a read-only terminal");

    // The admin's live monitor lists it with its viewers and ends it.
    let admin = Browser::start().await;
    admin.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    admin.goto(&format!("{}/monitor", env.base)).await;
    admin
        .wait_js(
            "the session with its viewers",
            "document.getElementById('monitor-table').textContent.includes('bob (view)')",
        )
        .await;
    admin.screenshot("docs/screenshots/monitor.png").await;
    admin.js("window.confirm = () => true", json!([])).await;
    admin.click("#monitor-table button.danger").await;
    bob.wait_js(
        "bob told who ended it",
        "document.getElementById('flash').textContent.includes('by admin')",
    )
    .await;
    owner
        .wait_js(
            "the owner told",
            "document.getElementById('flash').textContent.includes('Session ended')",
        )
        .await;
    for b in [owner, bob, admin] {
        b.quit().await;
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_script_runs_under_its_name_until_its_text_is_edited() {
    let env = TestEnv::start().await;
    env.add_host().await;
    let body = "echo first\nif true; then\n  echo second\nfi";
    let (status, script) = env
        .api
        .post("/api/scripts", json!({"name": "deploy", "body": body}))
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{script}");
    let b = Browser::start().await;
    b.login(&env.base, ADMIN, ADMIN_PASSWORD).await;
    b.click("#connect").await;
    b.badge_is("CONNECTED").await;
    b.js(
        "const s = document.getElementById('saved-script'); s.value = arguments[0]; \
         s.dispatchEvent(new Event('change'));",
        json!([script["id"]]),
    )
    .await;
    b.click("#run-batch").await;
    let done = |n: usize| {
        format!("document.querySelectorAll('#run-output .run[data-status=ok]').length === {n}")
    };
    b.wait_js("the saved script to finish", &done(1)).await;
    let newest = "const r = document.querySelector('#run-output .run'); \
                  return [r.querySelector('.run-command').textContent, r.querySelector('.runout').textContent];";
    let shown = b.js(newest, json!([])).await;
    assert_eq!(
        shown,
        json!(["script: deploy (2 steps)", "first\nsecond\n"])
    );
    // Edited, it is a batch of its own.
    b.type_into("#script", "\necho third").await;
    b.click("#run-batch").await;
    b.wait_js("the edited script to finish as a batch", &done(2))
        .await;
    let shown = b.js(newest, json!([])).await;
    assert_eq!(shown, json!(["batch (3 steps)", "first\nsecond\nthird\n"]));
    // Logged under the script's name, then as a batch.
    let (_, sessions) = env.api.get("/api/sessions").await;
    let commands: Vec<&str> = sessions[0]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(
        commands,
        vec!["script: deploy (2 steps)", "batch (3 steps)"]
    );
    b.quit().await;
    env.finish().await;
}

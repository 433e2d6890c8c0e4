//! Just enough of the W3C WebDriver protocol to drive Debian's headless
//! Chromium through `chromedriver` (no browser download, no extra client
//! crate): open pages, find elements, click, type, run a script, resize,
//! take screenshots.

use std::process::Stdio;

use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::sshd::free_port;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    base: String,
    session: String,
    http: reqwest::Client,
    driver: Child,
    /// Chromium's profile, ours rather than chromedriver's (which it never
    /// gets to delete: Drop kills the browser); removed after that kill.
    _profile: crate::ScratchDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session.
    pub async fn start() -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Its own process group, so that Drop can take Chromium down
            // with it even when a test panics before `quit`.
            .process_group(0)
            .spawn()
            .expect("chromedriver is installed (Debian package chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        crate::eventually("chromedriver to be ready", crate::WAIT, || {
            let http = http.clone();
            let url = format!("{base}/status");
            async move {
                let v: Value = http.get(url).send().await.ok()?.json().await.ok()?;
                (v["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        let profile = crate::ScratchDir::new("shellway-chromium-")
            .expect("create a browser profile directory");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-dev-shm-usage",
                         "--window-size=1280,800",
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let reply: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused a session: {reply}"))
            .to_owned();
        Self {
            base,
            session,
            http,
            driver,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|err| panic!("webdriver {path}: {err}"))
    }

    /// The call's value, or the error WebDriver answered with.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req
            .send()
            .await
            .expect("webdriver call")
            .json()
            .await
            .expect("webdriver json");
        if v["value"].get("error").is_some() {
            return Err(v["value"].clone());
        }
        Ok(v["value"].clone())
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The element matching `css`, waiting for it to exist.
    pub async fn find(&self, css: &str) -> String {
        crate::eventually(&format!("element {css}"), crate::WAIT, || async {
            let url = format!("{}/session/{}/element", self.base, self.session);
            let v: Value = self
                .http
                .post(url)
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            v["value"][ELEMENT].as_str().map(str::to_owned)
        })
        .await
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Types `text` into the element (`\n` presses Enter).
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn clear(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the JavaScript expression is truthy; returns its value.
    /// An expression that throws (the page is still loading: an element it
    /// reads is not there yet) counts as not yet.
    pub async fn wait_js(&self, what: &str, expr: &str) -> Value {
        let script = format!("return ({expr});");
        crate::eventually(what, crate::WAIT, || async {
            let body = json!({"script": script, "args": []});
            let v = self
                .try_call(reqwest::Method::POST, "/execute/sync", Some(body))
                .await
                .ok()?;
            let truthy = !(v.is_null() || v == false || v == "" || v == 0);
            truthy.then_some(v)
        })
        .await
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Slows the page's main thread down `rate` times (Chrome DevTools'
    /// CPU throttling): a slow laptop, or a tab busy with other work.
    pub async fn throttle_cpu(&self, rate: f64) {
        let cmd = json!({"cmd": "Emulation.setCPUThrottlingRate", "params": {"rate": rate}});
        self.call(reqwest::Method::POST, "/goog/cdp/execute", Some(cmd))
            .await;
    }

    /// Presses `key` with Control held, through the WebDriver actions API
    /// (a real key event in the focused element, as a person would type).
    pub async fn ctrl(&self, key: char) {
        let key = key.to_string();
        let actions = json!({"actions": [{
            "type": "key", "id": "keyboard",
            "actions": [
                {"type": "keyDown", "value": "\u{E009}"},
                {"type": "keyDown", "value": key},
                {"type": "keyUp", "value": key},
                {"type": "keyUp", "value": "\u{E009}"},
            ],
        }]});
        self.call(reqwest::Method::POST, "/actions", Some(actions))
            .await;
    }

    /// Runs `source` in every page this browser opens from now on, before
    /// the page's own scripts (Chrome DevTools' `addScriptToEvaluateOnNewDocument`).
    pub async fn on_every_page(&self, source: &str) {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Page.addScriptToEvaluateOnNewDocument",
                "params": {"source": source},
            })),
        )
        .await;
    }

    /// Reloads the page (F5).
    pub async fn reload(&self) {
        self.call(reqwest::Method::POST, "/refresh", Some(json!({})))
            .await;
    }

    /// Signs in on the login page and waits for the console.
    pub async fn login(&self, base: &str, user: &str, password: &str) {
        self.goto(&format!("{base}/login")).await;
        self.type_into("#username", user).await;
        self.type_into("#password", password).await;
        self.click("button[type=submit]").await;
        self.wait_js(
            "the console",
            "location.pathname === '/' && document.getElementById('badge')",
        )
        .await;
    }

    /// Waits until the active terminal's buffer shows `needle`.
    pub async fn screen_shows(&self, needle: &str) {
        let expr = format!(
            "window.shellwayScreen && window.shellwayScreen().includes({})",
            json!(needle)
        );
        self.wait_js(&format!("the terminal to show {needle:?}"), &expr)
            .await;
    }

    /// Types into the active terminal (xterm's hidden input), `\n` as Enter.
    pub async fn type_in_terminal(&self, text: &str) {
        self.type_into(".term:not([hidden]) .xterm-helper-textarea", text)
            .await;
    }

    /// Waits until the status badge reads `text`.
    pub async fn badge_is(&self, text: &str) {
        let expr = format!(
            "document.getElementById('badge') && document.getElementById('badge').textContent === {}",
            json!(text)
        );
        self.wait_js(&format!("the badge to read {text}"), &expr)
            .await;
    }

    pub async fn accept_alert(&self) {
        self.call(reqwest::Method::POST, "/alert/accept", Some(json!({})))
            .await;
    }

    /// A PNG of the page, written to `path` when `SHELLWAY_SCREENSHOTS` is
    /// set (the committed ones in docs/screenshots/ come from here).
    pub async fn screenshot(&self, path: &str) {
        if std::env::var_os("SHELLWAY_SCREENSHOTS").is_none() {
            return;
        }
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = decode_base64(b64.as_str().unwrap_or_default());
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path);
        std::fs::write(&full, png).expect("write screenshot");
    }

    pub async fn quit(self) {
        // Ends the WebDriver session politely; Drop then ends chromedriver
        // and whatever is left of the browser.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            // The group's id is chromedriver's pid; the browser it started
            // is in that group.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes() {
        assert_eq!(super::decode_base64("aGVsbG8="), b"hello");
        assert_eq!(super::decode_base64("aGk="), b"hi");
    }
}

//! Ctrl-C through a flood, in the real console: the browser test and the
//! benchmark both drive it. A shell in the console runs `yes`; Ctrl-C is
//! pressed as a key; the time until the prompt is the cursor's line in the
//! xterm.js buffer is measured from just before the key was sent, on the
//! machine's wall clock (the page and the test share it). The page also
//! records its longest main-thread task and any error xterm.js reports.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::browser::Browser;

/// The prompt the probe sets; nothing `yes` prints contains it.
const PROMPT: &str = "SW-READY";

/// Instruments the console page: long tasks, errors, and a check after
/// every parsed write (and every 5 ms) for the prompt on the cursor's line.
const INSTRUMENT: &str = r#"
const sw = window.__swProbe = {longest: 0, longestArmed: 0, errors: [], armed: false, seen: null};
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      sw.longest = Math.max(sw.longest, e.duration);
      if (sw.armed) sw.longestArmed = Math.max(sw.longestArmed, e.duration);
    }
  }).observe({type: 'longtask', buffered: true});
} catch (_) { sw.errors.push('no longtask observer'); }
window.addEventListener('error', (e) => sw.errors.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => sw.errors.push(String(e.reason)));
for (const level of ['warn', 'error']) {
  const orig = console[level].bind(console);
  console[level] = (...args) => { sw.errors.push(args.map(String).join(' ')); orig(...args); };
}
const check = () => {
  if (!sw.armed || sw.seen !== null) return;
  const t = window.shellwayTerm;
  if (!t) return;
  const b = t.buffer.active;
  const line = b.getLine(b.baseY + b.cursorY);
  if (line && line.translateToString(true).startsWith(arguments[0])) {
    sw.seen = performance.timeOrigin + performance.now();
  }
};
window.shellwayTerm.onWriteParsed(check);
setInterval(check, 5);
// Where the time goes after Ctrl-C: output handed to xterm.js meanwhile
// (bytes, snapshots) and when the prompt reached the page.
const term = window.shellwayTerm;
const write = term.write.bind(term);
sw.after = {bytes: 0, snapshots: 0, arrived: null};
term.write = (data, cb) => {
  if (sw.armed && sw.seen === null) {
    const a = sw.after;
    a.bytes += data.length;
    const text = typeof data === 'string' ? data : '';
    if (text.startsWith('\x1bc')) a.snapshots += 1;
    if (a.arrived === null && (text || new TextDecoder().decode(data)).includes(arguments[0])) {
      a.arrived = performance.timeOrigin + performance.now();
    }
  }
  return write(data, cb);
};
"#;

/// What one probe saw.
#[derive(Debug, Clone)]
pub struct InterruptReport {
    /// Ctrl-C → prompt on the cursor's line, one per try.
    pub latencies: Vec<Duration>,
    /// The longest main-thread task the page reported, in ms.
    pub longest_task_ms: f64,
    /// Errors and warnings the page logged (xterm.js's "write data
    /// discarded" would be one).
    pub errors: Vec<String>,
    /// The longest task seen between a Ctrl-C and its prompt, in ms.
    pub longest_task_after_ms: f64,
    /// Per try, what reached the page between Ctrl-C and the prompt.
    pub after: Vec<AfterInterrupt>,
}

/// What one Ctrl-C was followed by, up to the prompt.
#[derive(Debug, Clone)]
pub struct AfterInterrupt {
    /// Output bytes handed to xterm.js.
    pub bytes: u64,
    /// Snapshots among them.
    pub snapshots: u64,
    /// Ctrl-C → the prompt's bytes reached the page (ms); the rest of the
    /// latency is the page drawing what came before it.
    pub arrived_ms: Option<f64>,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

async fn type_line(b: &Browser, text: &str) {
    b.type_into(".xterm-helper-textarea", text).await;
}

/// Runs `tries` rounds of `yes` interrupted after `flood` in the console
/// `b` shows (connected to a shell). Fails if the prompt does not come
/// back within `limit` of a Ctrl-C.
pub async fn ctrl_c_during_yes(
    b: &Browser,
    tries: usize,
    flood: Duration,
    limit: Duration,
) -> anyhow::Result<InterruptReport> {
    b.js(INSTRUMENT, json!([PROMPT])).await;
    type_line(b, &format!("PS1='{PROMPT}$ '\n")).await;
    wait_prompt(b, limit).await?;
    let mut latencies = Vec::with_capacity(tries);
    let mut after = Vec::with_capacity(tries);
    for i in 0..tries {
        type_line(b, &format!("yes 'flood line {i}'\n")).await;
        let flooding =
            format!("window.shellwayScreen().includes('flood line {i}\\nflood line {i}')");
        b.wait_js("the flood on screen", &flooding).await;
        tokio::time::sleep(flood).await;
        b.js(
            "const p = window.__swProbe; p.seen = null; \
             p.after = {bytes: 0, snapshots: 0, arrived: null}; p.armed = true;",
            json!([]),
        )
        .await;
        let sent = now_ms();
        b.ctrl('c').await;
        let seen = wait_seen(b, limit).await?;
        latencies.push(Duration::from_secs_f64((seen - sent).max(0.0) / 1000.0));
        let a = b
            .js(
                "window.__swProbe.armed = false; return window.__swProbe.after;",
                json!([]),
            )
            .await;
        after.push(AfterInterrupt {
            bytes: a["bytes"].as_u64().unwrap_or(0),
            snapshots: a["snapshots"].as_u64().unwrap_or(0),
            arrived_ms: a["arrived"].as_f64().map(|at| at - sent),
        });
    }
    let state = b.js("return window.__swProbe;", json!([])).await;
    let errors = state["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e.as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default();
    Ok(InterruptReport {
        latencies,
        longest_task_ms: state["longest"].as_f64().unwrap_or(f64::NAN),
        errors,
        longest_task_after_ms: state["longestArmed"].as_f64().unwrap_or(f64::NAN),
        after,
    })
}

async fn wait_prompt(b: &Browser, limit: Duration) -> anyhow::Result<()> {
    let expr = format!(
        "return (() => {{ const b = window.shellwayTerm.buffer.active; \
         const l = b.getLine(b.baseY + b.cursorY); \
         return !!l && l.translateToString(true).startsWith({}); }})();",
        json!(PROMPT)
    );
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if b.js(&expr, json!([])).await == Value::Bool(true) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the prompt did not appear within {limit:?}")
}

async fn wait_seen(b: &Browser, limit: Duration) -> anyhow::Result<f64> {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Some(at) = b
            .js("return window.__swProbe.seen;", json!([]))
            .await
            .as_f64()
        {
            return Ok(at);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tail = b
        .js(
            "return window.shellwayScreen().split('\\n').filter(Boolean).slice(-3).join(' | ');",
            json!([]),
        )
        .await;
    anyhow::bail!("Ctrl-C did not bring the prompt back within {limit:?}; the screen ends {tail}")
}

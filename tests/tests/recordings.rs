//! Recordings: the asciicast export streams in constant memory, stops
//! when its client leaves or the proxy stops, holds resizes, exec output
//! and run markers, pages for the console's replay, and follows the
//! retention and size policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use shellway_tests::{eventually, TestEnv, TestEnvOptions, WAIT};
use sqlx::PgPool;
use uuid::Uuid;

/// One asciicast event.
type CastEvent = (f64, String, String);

/// Resident memory of `pid`, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

const MIB: u64 = 1 << 20;

/// A finished session of the admin's, `ended_ago` before now.
async fn closed_session(db: &PgPool, ended_ago: Duration) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO sessions (id, owner_id, status, cols, rows, created_at, ended_at) \
         SELECT $1, id, 'closed', 80, 24, now() - make_interval(secs => $2 + 60), \
           now() - make_interval(secs => $2) FROM users WHERE username = 'admin'",
    )
    .bind(id)
    .bind(ended_ago.as_secs_f64())
    .execute(db)
    .await
    .expect("insert session");
    id
}

/// Output chunk `g` of the generated recordings: 32,776 bytes of lines.
fn chunk_text(g: i64) -> String {
    format!("{g:010} line\r\n").repeat(1928)
}

/// Records `count` chunks after `from` straight into `output_chunks`, in
/// the recorder's format (what `chunk_text` makes).
async fn record_chunks(db: &PgPool, session: Uuid, from: i64, count: i64) {
    const BATCH: i64 = 1000;
    let mut next = from + 1;
    while next <= from + count {
        let last = (next + BATCH - 1).min(from + count);
        sqlx::query(
            "INSERT INTO output_chunks (session_id, seq, stream, data, at) \
             SELECT $1, g, 'pty', convert_to(repeat(lpad(g::text, 10, '0') || E' line\\r\\n', 1928), 'UTF8'), \
               now() + make_interval(secs => g / 1000.0) FROM generate_series($2::bigint, $3::bigint) g",
        )
        .bind(session)
        .bind(next)
        .bind(last)
        .execute(db)
        .await
        .expect("insert output");
        next = last + 1;
    }
}

fn recording_url(env: &TestEnv, session: Uuid) -> String {
    format!("{}/api/sessions/{session}/recording", env.base)
}

async fn start_download(env: &TestEnv, session: Uuid) -> reqwest::Response {
    let resp = reqwest::Client::new()
        .get(recording_url(env, session))
        .bearer_auth(env.token())
        .send()
        .await
        .expect("download starts");
    assert_eq!(resp.status(), StatusCode::OK);
    resp
}

/// The whole cast as text.
async fn download(env: &TestEnv, session: Uuid) -> String {
    start_download(env, session)
        .await
        .text()
        .await
        .expect("download")
}

fn parse_cast(cast: &str) -> (Value, Vec<CastEvent>) {
    let mut lines = cast.lines();
    let header: Value = serde_json::from_str(lines.next().expect("header")).expect("header JSON");
    let events = lines
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event {l:?}: {e}")))
        .collect();
    (header, events)
}

/// Checks what every asciicast v2 player relies on.
fn assert_valid(header: &Value, events: &[CastEvent]) {
    assert_eq!(header["version"], 2, "{header}");
    let mut last = 0.0;
    for (t, code, data) in events {
        assert!(*t >= last, "time goes back at {t}");
        last = *t;
        assert!(["o", "r", "m"].contains(&code.as_str()), "code {code}");
        if code == "r" {
            let (c, r) = data.split_once('x').expect("COLSxROWS");
            assert!(
                c.parse::<u16>().is_ok() && r.parse::<u16>().is_ok(),
                "{data}"
            );
        }
    }
}

/// Recording page queries running, or started within the last second.
async fn page_queries(db: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
           AND query NOT LIKE '%pg_stat_activity%' \
           AND query LIKE '%FROM output_chunks WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3) page%' \
           AND (state = 'active' OR query_start > now() - interval '1 second')",
    )
    .fetch_one(db)
    .await
    .expect("pg_stat_activity")
}

/// Samples the RSS of `pid` every 20 ms until dropped; the highest seen.
struct RssSampler {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = rss(pid);
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    () = token.cancelled() => return peak.max(rss(pid)),
                    _ = tick.tick() => peak = peak.max(rss(pid)),
                }
            }
        });
        Self { stop, task }
    }

    async fn peak(self) -> u64 {
        self.stop.cancel();
        self.task.await.expect("sampler")
    }
}

const BIG_CHUNKS: i64 = 16_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_gigabyte_recording_streams_in_flat_memory_and_stops_with_its_client() {
    let mut env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        proxy_process: true,
        ..Default::default()
    })
    .await;
    let db = env.db().await;
    let pid = env.proxy_pid().unwrap();
    let session = closed_session(&db, Duration::from_secs(60)).await;
    let took = Instant::now();
    record_chunks(&db, session, 0, BIG_CHUNKS).await;
    eprintln!("recorded {BIG_CHUNKS} chunks in {:?}", took.elapsed());

    // A small download first: the baseline is a proxy that has served one.
    let small = closed_session(&db, Duration::from_secs(60)).await;
    record_chunks(&db, small, 0, 3).await;
    assert_eq!(parse_cast(&download(&env, small).await).1.len(), 3);
    let baseline = rss(pid);

    // The whole download: every chunk, in order, as valid asciicast lines,
    // while the proxy's memory stays within BOUND of the baseline.
    const BOUND: u64 = 64 * MIB;
    let sampler = RssSampler::start(pid);
    let took = Instant::now();
    let mut resp = start_download(&env, session).await;
    let (mut received, mut pending, mut events) = (0u64, Vec::new(), 0i64);
    let mut header = None;
    let mut last_t = 0.0;
    while let Some(bytes) = resp.chunk().await.expect("download") {
        received += bytes.len() as u64;
        pending.extend_from_slice(&bytes);
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &pending[start..]) {
            let line = &pending[start..start + nl];
            start += nl + 1;
            if header.is_none() {
                header = Some(serde_json::from_slice::<Value>(line).expect("header"));
                continue;
            }
            let (t, code, data): CastEvent = serde_json::from_slice(line).expect("event");
            events += 1;
            assert_eq!(code, "o");
            assert!(t >= last_t, "time goes back");
            last_t = t;
            assert!(
                data == chunk_text(events),
                "event {events} is chunk {events}"
            );
        }
        pending.drain(..start);
    }
    let peak = sampler.peak().await;
    let header = header.expect("a header");
    assert_eq!(
        (header["width"].clone(), header["height"].clone()),
        (json!(80), json!(24))
    );
    assert!(pending.is_empty(), "the file ends with a whole line");
    assert_eq!(events, BIG_CHUNKS);
    assert!(received > 500 * 1000 * 1000, "{received} bytes");
    eprintln!(
        "downloaded {:.0} MB in {:?}; proxy RSS baseline {:.1} MiB, peak {:.1} MiB (+{:.1} MiB)",
        received as f64 / 1e6,
        took.elapsed(),
        baseline as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        peak.saturating_sub(baseline) as f64 / MIB as f64,
    );
    assert!(
        peak < baseline + BOUND,
        "proxy RSS grew from {baseline} to {peak} bytes while streaming"
    );

    // A client that leaves after a few MB: the proxy reads no more pages.
    let mut resp = start_download(&env, session).await;
    let mut got = 0;
    while got < 8 * MIB {
        got += resp.chunk().await.expect("download").expect("more").len() as u64;
    }
    assert!(page_queries(&db).await > 0, "the download reads pages");
    drop(resp);
    let left = Instant::now();
    eventually(
        "the download's page queries to stop",
        Duration::from_secs(5),
        || async { (page_queries(&db).await == 0).then_some(()) },
    )
    .await;
    eprintln!(
        "page queries stopped {:?} after the client left",
        left.elapsed()
    );
    let after = rss(pid);
    assert!(
        after < baseline + BOUND,
        "RSS {after} after the client left"
    );

    // SIGTERM ends the proxy although a client is still reading and
    // another stopped reading: the reader sees an error, not a cut file
    // that looks whole.
    let mut stalled = start_download(&env, session).await;
    stalled
        .chunk()
        .await
        .expect("download")
        .expect("first chunk");
    let mut reading = start_download(&env, session).await;
    let reader = tokio::spawn(async move {
        loop {
            match reading.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    });
    let stopping = Instant::now();
    assert!(
        env.terminate_proxy_process(Duration::from_secs(15)).await,
        "the proxy did not exit within 15 s of SIGTERM"
    );
    eprintln!("the proxy exited {:?} after SIGTERM", stopping.elapsed());
    let ended = reader.await.expect("reader");
    assert!(
        ended.is_err(),
        "a download cut by shutdown must not end cleanly"
    );
    drop(stalled);
    db.close().await;
    env.finish().await;
}

fn is_completed(run: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e: &Value| e["event"] == "completed" && e["run"] == run
}

/// The `o` text of events, joined.
fn text_of(events: &[CastEvent]) -> String {
    events
        .iter()
        .filter(|e| e.1 == "o")
        .map(|e| e.2.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cast_holds_the_initial_size_resizes_exec_output_and_run_markers() {
    let env = TestEnv::start().await;
    let (session, mut ws) = env.open_shell().await;
    ws.type_text("echo BEFORE-''RESIZE\r").await;
    ws.wait_output("BEFORE-RESIZE", WAIT).await;
    ws.send(json!({"action": "resize", "cols": 120, "rows": 40}))
        .await;
    ws.type_text("stty size\r").await;
    ws.wait_output("40 120", WAIT).await;
    // Viewers are told too, with the output the size follows.
    let resized = ws
        .wait_event("resized", WAIT, |e| e["event"] == "resized")
        .await;
    assert_eq!(
        (resized["cols"].clone(), resized["rows"].clone()),
        (json!(120), json!(40))
    );
    ws.send(json!({"action": "resize", "cols": 97, "rows": 30}))
        .await;
    // The same size again is no resize.
    ws.send(json!({"action": "resize", "cols": 97, "rows": 30}))
        .await;
    ws.type_text("stty size\r").await;
    ws.wait_output("30 97", WAIT).await;

    let command = "echo exec-out; echo exec-err >&2";
    let (status, reply) = env
        .api
        .post(
            &format!("/api/sessions/{session}/runs"),
            json!({ "command": command }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let run = reply["id"].as_str().unwrap().to_owned();
    ws.wait_event("completed", WAIT, is_completed(&run)).await;
    ws.type_text("echo AFTER-''RUN\r").await;
    ws.wait_output("AFTER-RUN", WAIT).await;

    let end = format!("run ok: {command} (exit 0)");
    let (header, events) = eventually("the recording to hold it all", WAIT, || async {
        let (header, events) = parse_cast(&download(&env, session).await);
        let ended = events.iter().any(|e| e.1 == "m" && e.2 == end);
        (ended && text_of(&events).contains("AFTER-RUN")).then_some((header, events))
    })
    .await;
    assert_valid(&header, &events);
    // The header has the size the session opened with.
    assert_eq!(
        (header["width"].clone(), header["height"].clone()),
        (json!(80), json!(24))
    );

    // The resizes, in order, each between the output before and after it.
    let resizes: Vec<usize> = (0..events.len()).filter(|&i| events[i].1 == "r").collect();
    let sizes: Vec<&str> = resizes.iter().map(|&i| events[i].2.as_str()).collect();
    assert_eq!(sizes, ["120x40", "97x30"]);
    let (before, at_120) = (
        text_of(&events[..resizes[0]]),
        text_of(&events[resizes[0]..resizes[1]]),
    );
    let at_97 = text_of(&events[resizes[1]..]);
    assert!(
        before.contains("BEFORE-RESIZE") && !before.contains("40 120"),
        "{before:?}"
    );
    assert!(
        at_120.contains("40 120") && !at_120.contains("30 97"),
        "{at_120:?}"
    );
    assert!(at_97.contains("30 97"), "{at_97:?}");

    // The run: a start marker, its output (CR LF, stderr in red), an end
    // marker with the status, each marker also drawn as a line.
    let markers: Vec<usize> = (0..events.len()).filter(|&i| events[i].1 == "m").collect();
    let labels: Vec<&str> = markers.iter().map(|&i| events[i].2.as_str()).collect();
    assert_eq!(labels, [format!("run started: {command}"), end.clone()]);
    let during = text_of(&events[markers[0]..markers[1]]);
    assert!(
        during.contains(&format!("run started: {command}")),
        "{during:?}"
    );
    assert!(during.contains("exec-out\r\n"), "{during:?}");
    assert!(
        during.contains("\x1b[31mexec-err\r\n\x1b[39m"),
        "{during:?}"
    );
    let after = text_of(&events[markers[1]..]);
    assert!(
        after.contains(&end) && after.contains("AFTER-RUN"),
        "{after:?}"
    );
    assert!(!text_of(&events[..markers[0]]).contains("exec-out"));

    // The console's pages hold the same events, whatever the page size.
    let mut paged: Vec<CastEvent> = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let (status, page) = env
            .api
            .get(&format!(
                "/api/sessions/{session}/recording/events?limit=3&after={after}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["width"], 80);
        pages += 1;
        paged.extend(serde_json::from_value::<Vec<CastEvent>>(page["events"].clone()).unwrap());
        if page["done"] == true {
            break;
        }
        after = page["next"].as_str().unwrap().to_owned();
        assert!(pages < 10_000, "pages never end");
    }
    assert!(pages > 3);
    assert_eq!(paged, events);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=99999", "limit"),
        ("after=x.1", "after"),
    ] {
        let (status, body) = env
            .api
            .get(&format!("/api/sessions/{session}/recording/events?{query}"))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_past_the_size_cap_is_not_stored_and_the_cast_says_where() {
    const CAP: u64 = 64 * 1024;
    let env = TestEnv::start_with(TestEnvOptions {
        recording: session_proxy::RecordingPolicy {
            max_bytes: Some(CAP),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (session, mut ws) = env.open_shell().await;
    ws.type_text("head -c 300000 /dev/zero | tr '\\0' x; echo; echo END-''OF-FLOOD\r")
        .await;
    ws.wait_output("END-OF-FLOOD", WAIT).await;
    let db = env.db().await;
    let last = ws.last_seq as i64;
    let (count, max, bytes): (i64, i64, i64) = eventually("the flood recorded", WAIT, || async {
        let row: (i64, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT count(*), max(seq), sum(length(data))::bigint FROM output_chunks WHERE session_id = $1",
        )
        .bind(session)
        .fetch_one(&db)
        .await
        .unwrap();
        (row.1 >= Some(last)).then(|| (row.0, row.1.unwrap_or(0), row.2.unwrap_or(0)))
    })
    .await;
    // Every seq is kept (resuming viewers see no gap); the bytes stop.
    assert_eq!(count, max, "no gaps in the sequence");
    assert!(bytes as u64 <= CAP, "{bytes} bytes stored");
    let (_, events) = parse_cast(&download(&env, session).await);
    let stop = events
        .iter()
        .position(|e| e.1 == "m" && e.2.starts_with("recording stopped:"))
        .expect("a marker where storing stopped");
    assert!(events[stop].2.contains("SHELLWAY_RECORDING_MAX_BYTES"));
    assert!(
        events[stop + 1].2.contains("recording stopped"),
        "drawn in the output too"
    );
    assert!(!text_of(&events).contains("END-OF-FLOOD"));
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit WHERE action = 'recording.truncated' AND target = $1",
    )
    .bind(session.to_string())
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    db.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_past_their_retention_are_deleted_in_batches_and_audited() {
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        recording: session_proxy::RecordingPolicy {
            retention: Some(Duration::from_secs(86_400)),
            sweep_every: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let db = env.db().await;
    let old = closed_session(&db, Duration::from_secs(2 * 86_400)).await;
    let recent = closed_session(&db, Duration::from_secs(3600)).await;
    // More chunks than one delete statement removes.
    sqlx::query(
        "INSERT INTO output_chunks (session_id, seq, stream, data) \
         SELECT s, g, 'pty', '\\x61'::bytea FROM unnest($1::uuid[]) s, generate_series(1, 4500) g",
    )
    .bind(vec![old, recent])
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO recording_events (session_id, seq, key, kind, cols, rows) \
         SELECT s, 1, 'resize:1', 'resize', 100, 30 FROM unnest($1::uuid[]) s",
    )
    .bind(vec![old, recent])
    .execute(&db)
    .await
    .unwrap();

    let detail: Value = eventually("the old recording deleted", WAIT, || async {
        sqlx::query_scalar::<_, sqlx::types::Json<Value>>(
            "SELECT detail FROM audit WHERE action = 'recording.deleted' AND target = $1",
        )
        .bind(old.to_string())
        .fetch_optional(&db)
        .await
        .unwrap()
        .map(|d| d.0)
    })
    .await;
    assert_eq!(detail["chunks"], 4500, "{detail}");
    assert_eq!(detail["reason"], "retention");
    let left = |s: Uuid| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT (SELECT count(*) FROM output_chunks WHERE session_id = $1) \
                   + (SELECT count(*) FROM recording_events WHERE session_id = $1)",
            )
            .bind(s)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    assert_eq!(left(old).await, 0);
    assert_eq!(left(recent).await, 4501, "a recent recording is kept");

    // The session stays in the logs; its recording says it is gone.
    assert_eq!(env.api.session(old).await["status"], "closed");
    let (status, body) = env
        .api
        .get(&format!("/api/sessions/{old}/recording/events"))
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["error"]["code"], "recording_deleted");
    let resp = reqwest::Client::new()
        .get(recording_url(&env, old))
        .bearer_auth(env.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::GONE);
    let (status, _) = env
        .api
        .get(&format!("/api/sessions/{recent}/recording/events"))
        .await;
    assert_eq!(status, StatusCode::OK);
    db.close().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_page_plays_a_recording_page_by_page_in_a_real_browser() {
    use shellway_tests::browser::Browser;
    let env = TestEnv::start_with(TestEnvOptions {
        runners: 0,
        ..Default::default()
    })
    .await;
    let db = env.db().await;
    // 3.3 MB: four pages of at most 1 MiB, a resize and a run's markers.
    let session = closed_session(&db, Duration::from_secs(60)).await;
    record_chunks(&db, session, 0, 100).await;
    sqlx::query(
        "INSERT INTO recording_events (session_id, seq, key, kind, cols, rows, label) VALUES \
         ($1, 30, 'resize:1', 'resize', 100, 30, NULL), \
         ($1, 99, 'run-start:x', 'marker', NULL, NULL, 'run started: true'), \
         ($1, 99, 'run-end:x', 'marker', NULL, NULL, 'run ok: true (exit 0)')",
    )
    .bind(session)
    .execute(&db)
    .await
    .unwrap();

    let b = Browser::start().await;
    b.goto(&format!("{}/login", env.base)).await;
    b.type_into("#username", shellway_tests::env::ADMIN).await;
    b.type_into("#password", shellway_tests::env::ADMIN_PASSWORD)
        .await;
    b.click("button[type=submit]").await;
    b.wait_js("the console", "location.pathname === '/'").await;
    b.goto(&format!("{}/logs/{session}", env.base)).await;
    let ended = "document.getElementById('replay-progress') && \
                 document.getElementById('replay-progress').textContent.includes('end of recording')";
    b.wait_js("the replay to end", ended).await;
    let shows = |text: &str| {
        format!(
            "window.shellwayScreen().includes({})",
            serde_json::to_string(text).unwrap()
        )
    };
    b.wait_js("the last output", &shows("0000000100 line"))
        .await;
    b.wait_js("the run's end marker", &shows("run ok: true (exit 0)"))
        .await;
    assert_eq!(
        b.js("return window.shellwayTerm.cols", json!([])).await,
        100
    );
    let pages = b
        .js(
            "return performance.getEntriesByType('resource') \
               .filter((e) => e.name.includes('/recording/events')).length",
            json!([]),
        )
        .await;
    assert!(pages.as_u64().unwrap() >= 4, "{pages} page requests");

    // Play in real time from the start again.
    b.js("window.shellwayTerm.reset()", json!([])).await;
    b.click("#replay-play").await;
    b.wait_js("the real-time replay to end", ended).await;
    b.wait_js("the last output again", &shows("0000000100 line"))
        .await;
    b.quit().await;
    db.close().await;
    env.finish().await;
}

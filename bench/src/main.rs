//! The benchmark: Shellway against direct OpenSSH and the webssh peer, on
//! one sshd, in one run. `cargo run --release -p shellway-bench`
//! (see docs/benchmarks.md). It measures; it asserts nothing.

mod broker_hop;
mod fleet;
mod interactive;
mod peers;
pub(crate) mod procstat;
mod report;
pub(crate) mod term;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::future::join_all;
use serde_json::json;
use uuid::Uuid;

use self::peers::{shellway_attach, shellway_open, Webssh};
use self::report::{Report, Row};
use self::term::{ssh_args, Got, Term};
use shellway_tests::{TestEnv, TestEnvOptions};

/// Sizes of one run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) keystrokes: usize,
    pub(crate) pty_bytes: usize,
    pub(crate) exec_bytes: usize,
    pub(crate) opens: usize,
    pub(crate) sessions: usize,
    pub(crate) fanout_bytes: usize,
    pub(crate) viewers: Vec<usize>,
    pub(crate) write_docs: bool,
    /// Only this figure (`--only echo|pty|exec|fanout|interrupt|fleet`): for work on one path;
    /// nothing is written to the docs.
    pub(crate) only: Option<Only>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Only {
    Echo,
    Pty,
    Exec,
    Fanout,
    Interrupt,
    Fleet,
}

impl Plan {
    pub(crate) fn full() -> Self {
        Self {
            keystrokes: 1000,
            pty_bytes: 20_000_000,
            exec_bytes: 100_000_000,
            opens: 10,
            sessions: 1000,
            fanout_bytes: 20_000_000,
            viewers: vec![1, 10, 50],
            write_docs: true,
            only: None,
        }
    }

    pub(crate) fn quick() -> Self {
        Self {
            keystrokes: 200,
            pty_bytes: 2_000_000,
            exec_bytes: 10_000_000,
            opens: 3,
            sessions: 50,
            fanout_bytes: 500_000,
            viewers: vec![1, 10, 50],
            write_docs: false,
            only: None,
        }
    }
}

const LONG: Duration = Duration::from_secs(300);
/// Printed after the output of a command, computed by the shell so the
/// echo of the command line does not match it.
const DONE_CMD: &str = "echo BENCH-$((40+2))-DONE";
const DONE: &[u8] = b"BENCH-42-DONE";

/// Percentile (0..=100) of sorted durations, in milliseconds.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Median of some numbers (0 for none).
fn median_of(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// "0.67 / 0.69 / 0.67", or "n/a" when a system was not measured.
fn by_round(values: impl Iterator<Item = f64>, decimals: usize) -> String {
    let v: Vec<String> = values.map(|x| format!("{x:.decimals$}")).collect();
    if v.is_empty() {
        "n/a".into()
    } else {
        v.join(" / ")
    }
}

/// A file on the host: random bytes whose base64 is about `bytes` long,
/// or (`text`) that base64 itself.
fn make_file(
    dir: &std::path::Path,
    name: &str,
    bytes: usize,
    text: bool,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let raw = bytes / 4 * 3;
    let encode = if text { "| base64 -w 76" } else { "" };
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {raw} /dev/urandom {encode} > {}",
            path.display()
        ))
        .status()?;
    if !status.success() {
        bail!("cannot make {name}");
    }
    Ok(path)
}

/// Waits for the shell's first output, then for it to settle.
async fn ready(term: &mut Term) -> anyhow::Result<()> {
    loop {
        match term.recv(Duration::from_secs(20)).await {
            Got::Bytes(b) if !b.is_empty() => break,
            Got::Closed => bail!("terminal closed before its prompt"),
            Got::Nothing => bail!("no prompt within 20 s"),
            _ => {}
        }
    }
    term.drain(Duration::from_millis(300)).await;
    Ok(())
}

/// Keystroke echo: one character at a time into `cat`, timed until the
/// terminal echoes it back.
async fn echo(term: &mut Term, n: usize) -> anyhow::Result<Vec<Duration>> {
    term.send("stty echo; cat >/dev/null\r").await?;
    term.drain(Duration::from_millis(300)).await;
    let warmup = 20;
    let mut times = Vec::with_capacity(n);
    for i in 0..n + warmup {
        if i % 64 == 63 {
            term.send("\r").await?;
            term.drain(Duration::from_millis(30)).await;
        }
        let t = Instant::now();
        term.send("x").await?;
        term.until(b"x", Duration::from_secs(10)).await?;
        if i >= warmup {
            times.push(t.elapsed());
        }
    }
    term.send("\x03").await?;
    term.drain(Duration::from_millis(200)).await;
    times.sort();
    Ok(times)
}

/// Figure 1: keystroke echo in the three terminals, and beside it each
/// part of Shellway's path no proxy or runner code can remove, measured
/// alone: the WebSocket round trip, one broker hop, the SSH leg. Returns
/// Shellway's p99 (ms).
async fn echo_figures(
    sw: &mut Term,
    direct: &mut Term,
    mut web: Option<&mut Term>,
    leg: &mut Term,
    amqp_url: &str,
    plan: &Plan,
    report: &mut Report,
) -> anyhow::Result<f64> {
    let (mut e_sw, mut e_direct, mut e_web) = (Vec::new(), Vec::new(), Vec::new());
    let mut e_leg = Vec::new();
    for _ in 0..ROUNDS {
        e_sw.push(echo(sw, plan.keystrokes).await?);
        e_direct.push(echo(direct, plan.keystrokes).await?);
        if let Some(t) = web.as_deref_mut() {
            e_web.push(echo(t, plan.keystrokes).await?);
        }
        e_leg.push(echo(leg, plan.keystrokes).await?);
    }
    // The median over the rounds of each round's percentile.
    let over_rounds =
        |rounds: &[Vec<Duration>], p: f64| median_of(rounds.iter().map(|r| pct(r, p)));
    for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        report.push(Row::lower_better(
            &format!("echo latency {name} (ms)"),
            over_rounds(&e_sw, p),
            over_rounds(&e_direct, p),
            (!e_web.is_empty()).then(|| over_rounds(&e_web, p)),
            match name {
                "p50" => Some(("≤ 1.25× webssh", 1.25)),
                "p99" => Some(("≤ 2× webssh", 2.0)),
                _ => None,
            },
        ));
    }
    for (name, p) in [("p50", 50.0), ("p99", 99.0)] {
        let each = |rounds: &[Vec<Duration>]| by_round(rounds.iter().map(|r| pct(r, p)), 2);
        report.note(format!(
            "echo {name} by round (ms): Shellway {}; direct {}; webssh {}",
            each(&e_sw),
            each(&e_direct),
            each(&e_web)
        ));
    }

    // What one broker hop costs here: an echo crosses two.
    let mut queue_hop = 0.0;
    for (route, how) in [
        (broker_hop::Route::Queue, "through a queue"),
        (broker_hop::Route::DirectReplyTo, "by direct reply-to"),
    ] {
        let hops = broker_hop::round_trips(amqp_url, plan.keystrokes, route).await?;
        report.note(format!(
            "one RabbitMQ hop {how} (publish → delivery, loopback, same client): p50 {:.3} ms, p99 {:.3} ms",
            pct(&hops, 50.0),
            pct(&hops, 99.0)
        ));
        if matches!(route, broker_hop::Route::Queue) {
            queue_hop = pct(&hops, 50.0);
        }
    }
    let mut ws_trips = Vec::with_capacity(plan.keystrokes);
    for _ in 0..plan.keystrokes {
        ws_trips.push(sw.ws_round_trip().await?);
    }
    ws_trips.sort();
    let ws_p50 = pct(&ws_trips, 50.0);
    report.note(format!(
        "WebSocket round trip to the proxy alone (ping → pong on the session's socket): p50 {ws_p50:.3} ms, p99 {:.3} ms",
        pct(&ws_trips, 99.0)
    ));
    let leg_p50 = over_rounds(&e_leg, 50.0);
    report.note(format!(
        "SSH leg alone (russh in the bench process to sshd, PTY echo, as the runner connects): p50 by round {} ms",
        by_round(e_leg.iter().map(|r| pct(r, 50.0)), 3)
    ));
    // What a Shellway echo has to cross, each part measured alone: the
    // WebSocket to the proxy and back, two broker hops, the SSH leg. Only
    // the hand-offs inside the proxy and the runner come on top.
    if !e_web.is_empty() {
        let floor = ws_p50 + 2.0 * queue_hop + leg_p50;
        let target = 1.25 * over_rounds(&e_web, 50.0);
        report.note(format!(
            "echo p50 floor of a brokered path (WebSocket round trip + two hops + the SSH leg, each alone): {floor:.2} ms; the target (1.25× webssh) allows {target:.2} ms, leaving {:.2} ms for the hand-offs inside the proxy and the runner (Shellway's p50 is {:.2} over the floor)",
            target - floor,
            over_rounds(&e_sw, 50.0) - floor
        ));
    }
    Ok(over_rounds(&e_sw, 99.0))
}

/// One PTY output round of one system.
struct PtyRound {
    bytes: u64,
    /// Bytes per second.
    rate: f64,
    /// Busy CPU of the whole machine (all processes, the kernel, both
    /// cores) per MB, ms.
    machine_ms_per_mb: f64,
    /// Share of the machine's CPU that was busy.
    machine_busy: f64,
}

/// PTY output: `base64` of a random file to the terminal.
async fn pty_output(term: &mut Term, file: &std::path::Path) -> anyhow::Result<PtyRound> {
    term.drain(Duration::from_millis(100)).await;
    let cpu0 = procstat::MachineCpu::now()?;
    let t = Instant::now();
    term.send(&format!("base64 {}; {DONE_CMD}\r", file.display()))
        .await?;
    let bytes = term.until(DONE, LONG).await?;
    let secs = t.elapsed().as_secs_f64();
    let (busy, share) = procstat::MachineCpu::now()?.since(&cpu0);
    term.drain(Duration::from_millis(200)).await;
    Ok(PtyRound {
        bytes,
        rate: bytes as f64 / secs,
        machine_ms_per_mb: busy * 1e3 / (bytes as f64 / 1e6),
        machine_busy: share,
    })
}

/// Exec output through a Shellway run: bytes of `chunk` events until the
/// run completes; bytes per second.
async fn shellway_exec(term: &mut Term, file: &std::path::Path) -> anyhow::Result<(u64, f64)> {
    term.drain(Duration::from_millis(100)).await;
    let t = Instant::now();
    term.send_json(json!({"action": "run", "command": format!("cat {}", file.display())}))
        .await?;
    let mut bytes = 0u64;
    loop {
        match term.recv(LONG).await {
            Got::Event(e) if e["event"] == "chunk" => {
                bytes += e["data"].as_str().map_or(0, str::len) as u64;
            }
            Got::Event(e) if e["event"] == "completed" => {
                if e["status"] != "ok" {
                    bail!("the exec run ended {e}");
                }
                break;
            }
            Got::Closed | Got::Nothing => bail!("the exec run did not complete"),
            _ => {}
        }
    }
    Ok((bytes, bytes as f64 / t.elapsed().as_secs_f64()))
}

/// `ssh host cat FILE`, the whole command; bytes per second.
async fn direct_exec(
    sshd: &shellway_tests::Sshd,
    file: &std::path::Path,
) -> anyhow::Result<(u64, f64)> {
    use tokio::io::AsyncReadExt;
    let t = Instant::now();
    let mut child = tokio::process::Command::new("ssh")
        .args(ssh_args(sshd))
        .arg(format!("cat {}", file.display()))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut out = child.stdout.take().context("stdout")?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = out.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    child.wait().await?;
    Ok((bytes, bytes as f64 / t.elapsed().as_secs_f64()))
}

/// Request → first output byte (the prompt), `n` times; median ms.
async fn open_times<F, Fut>(n: usize, mut open: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Term>>,
{
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let mut term = open().await?;
        loop {
            match term.recv(Duration::from_secs(20)).await {
                Got::Bytes(b) if !b.is_empty() => break,
                Got::Closed | Got::Nothing => bail!("no first byte"),
                _ => {}
            }
        }
        times.push(t.elapsed());
        term.close().await;
    }
    Ok(median_of(times.iter().map(|t| t.as_secs_f64() * 1e3)))
}

/// What every figure measures with: the environment (the proxy as a
/// process, the runner as another), its host, the webssh peer, the files
/// to print and the processes whose CPU is counted.
struct Bench {
    env: TestEnv,
    plan: Plan,
    host: Uuid,
    webssh: Option<Webssh>,
    _files: shellway_tests::ScratchDir,
    pty_file: PathBuf,
    exec_file: PathBuf,
    fan_file: PathBuf,
    /// Proxy, runner, broker (the server side of a session), then
    /// database, sshd, and the bench client.
    comms: Vec<String>,
    proxy_pid: u32,
    runner_pid: u32,
}

impl Bench {
    async fn start(plan: Plan) -> anyhow::Result<(Self, tokio::process::Child)> {
        let env = TestEnv::start_with(TestEnvOptions {
            runners: 0,
            runner_capacity: (plan.sessions + 100) as u32,
            proxy_process: true,
            heartbeat: Duration::from_secs(2),
            request_ttl: Duration::from_secs(60),
            sharing: session_proxy::Sharing {
                max_viewers: 200,
                ..Default::default()
            },
            ..Default::default()
        })
        .await;
        let runner = env.spawn_runner_process("bench-runner");
        let runner_pid = runner.id().context("runner pid")?;
        let proxy_pid = env.proxy_pid().context("proxy pid")?;
        let host = env.add_host().await;
        let webssh = match Webssh::start().await {
            Ok(w) => Some(w),
            Err(err) => {
                eprintln!("webssh columns will read n/a: {err:#}");
                None
            }
        };
        let files = shellway_tests::ScratchDir::new("shellway-bench-files-")?;
        let pty_file = make_file(&files, "pty.bin", plan.pty_bytes, false)?;
        let exec_file = make_file(&files, "exec.txt", plan.exec_bytes, true)?;
        let fan_file = make_file(&files, "fanout.bin", plan.fanout_bytes, false)?;
        let comms = vec![
            procstat::comm(proxy_pid),
            procstat::comm(runner_pid),
            "beam.smp".into(),
            "postgres".into(),
            "sshd".into(),
            procstat::comm(std::process::id()),
        ];
        let bench = Self {
            env,
            plan,
            host,
            webssh,
            _files: files,
            pty_file,
            exec_file,
            fan_file,
            comms,
            proxy_pid,
            runner_pid,
        };
        Ok((bench, runner))
    }
}

/// One terminal on each system, shared by the echo, PTY and exec figures.
struct Terms {
    session: Uuid,
    sw: Term,
    direct: Term,
    web: Option<Term>,
}

impl Terms {
    async fn open(b: &Bench) -> anyhow::Result<Self> {
        let (session, mut sw) = shellway_open(&b.env.api, b.host).await?;
        ready(&mut sw).await?;
        let mut direct = Term::direct(&b.env.sshd)?;
        ready(&mut direct).await?;
        let web = match &b.webssh {
            Some(w) => {
                let mut t = w.open(&b.env.sshd).await?;
                ready(&mut t).await?;
                Some(t)
            }
            None => None,
        };
        Ok(Self {
            session,
            sw,
            direct,
            web,
        })
    }

    async fn close(self) {
        self.sw.close().await;
        self.direct.close().await;
        if let Some(t) = self.web {
            t.close().await;
        }
    }
}

pub(crate) async fn run(plan: Plan) -> anyhow::Result<()> {
    let started = chrono::Utc::now();
    let (b, runner) = Bench::start(plan).await?;
    let mut report = Report::new(started, &b.plan);
    measure(&b, &mut report).await?;
    let Bench { env, plan, .. } = b;
    finish(&report, &plan, runner, env).await
}

/// Every figure the plan asks for, in an order where none disturbs the
/// next (the 1,000 sessions last: they leave a thousand shells open).
async fn measure(b: &Bench, report: &mut Report) -> anyhow::Result<()> {
    match b.plan.only {
        Some(Only::Fanout) => return fanout_figures(b, report).await,
        Some(Only::Interrupt) => return interactive::interrupt_in_console(&b.env, report).await,
        Some(Only::Fleet) => return fleet::fleet_figure(b, report).await,
        _ => {}
    }
    let mut terms = Terms::open(b).await?;
    if b.plan.only == Some(Only::Exec) {
        return exec_figure(b, &mut terms, report).await;
    }
    if b.plan.only != Some(Only::Pty) {
        echo_figure(b, &mut terms, report).await?;
    }
    if b.plan.only == Some(Only::Echo) {
        return Ok(());
    }
    pty_figure(b, &mut terms, report).await?;
    if b.plan.only == Some(Only::Pty) {
        return Ok(());
    }
    exec_figure(b, &mut terms, report).await?;
    // The recorder keeps up (checked right after the PTY and exec figures).
    report.note(recorder_check(&b.env, terms.session, terms.sw.last_seq()).await?);
    terms.close().await;
    open_figure(b, report).await?;
    // The viewers' own clients are the users' browsers: not counted.
    fanout_figures(b, report).await?;
    eprintln!("Ctrl-C during yes in the console…");
    interactive::interrupt_in_console(&b.env, report).await?;
    fleet::fleet_figure(b, report).await?;
    eprintln!("{} concurrent idle sessions…", b.plan.sessions);
    many_sessions(b, report).await
}

/// Keystroke echo, quiet and beside a flooding session.
async fn echo_figure(b: &Bench, terms: &mut Terms, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("echo latency ({} keystrokes each)…", b.plan.keystrokes);
    let mut leg = Term::russh(&b.env.sshd).await?;
    ready(&mut leg).await?;
    let quiet_p99 = echo_figures(
        &mut terms.sw,
        &mut terms.direct,
        terms.web.as_mut(),
        &mut leg,
        &b.env.amqp_url,
        &b.plan,
        report,
    )
    .await?;
    leg.close().await;
    eprintln!("echo beside a flooding session…");
    interactive::echo_beside_a_flood(
        &b.env.api,
        b.host,
        &mut terms.sw,
        b.plan.keystrokes,
        quiet_p99,
        report,
    )
    .await
}

/// PTY output rate, and who spends the CPU while Shellway streams (the
/// whole path shares two cores).
async fn pty_figure(b: &Bench, terms: &mut Terms, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("PTY output ({} bytes)…", b.plan.pty_bytes);
    let (mut sw_runs, mut direct_runs, mut web_runs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let cpu0 = procstat::cpu_snapshot(&b.comms);
        let sw_round = pty_output(&mut terms.sw, &b.pty_file).await?;
        if round == 0 {
            report.note(cpu_note(
                "PTY output (first round)",
                &cpu0,
                &b.comms,
                sw_round.bytes,
            ));
            report.note(format!(
                "PTY bytes seen by the Shellway client in a round: {}",
                sw_round.bytes
            ));
        }
        sw_runs.push(sw_round);
        direct_runs.push(pty_output(&mut terms.direct, &b.pty_file).await?);
        if let Some(t) = terms.web.as_mut() {
            web_runs.push(pty_output(t, &b.pty_file).await?);
        }
    }
    let rate = |runs: &[PtyRound]| median_of(runs.iter().map(|r| r.rate / 1e6));
    report.push(Row::higher_better_vs_direct(
        "PTY output (MB/s)",
        rate(&sw_runs),
        rate(&direct_runs),
        (!web_runs.is_empty()).then(|| rate(&web_runs)),
        ("≥ 0.95× direct", 0.95),
    ));
    let each =
        |runs: &[PtyRound], f: fn(&PtyRound) -> f64, digits| by_round(runs.iter().map(f), digits);
    report.note(format!(
        "PTY output by round (MB/s): Shellway {}; direct {}; webssh {}",
        each(&sw_runs, |r| r.rate / 1e6, 1),
        each(&direct_runs, |r| r.rate / 1e6, 1),
        each(&web_runs, |r| r.rate / 1e6, 1)
    ));
    report.note(format!(
        "whole-machine CPU ms per MB of PTY output (every process and the kernel, both cores) by round: Shellway {}; direct {}; webssh {}. Share of the machine busy: Shellway {}; direct {}; webssh {} (%)",
        each(&sw_runs, |r| r.machine_ms_per_mb, 0),
        each(&direct_runs, |r| r.machine_ms_per_mb, 0),
        each(&web_runs, |r| r.machine_ms_per_mb, 0),
        each(&sw_runs, |r| r.machine_busy * 100.0, 0),
        each(&direct_runs, |r| r.machine_busy * 100.0, 0),
        each(&web_runs, |r| r.machine_busy * 100.0, 0),
    ));
    Ok(())
}

/// Exec output rate: a run's `chunk` events against `ssh host cat`.
async fn exec_figure(b: &Bench, terms: &mut Terms, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("exec output ({} bytes)…", b.plan.exec_bytes);
    let cpu0 = procstat::cpu_snapshot(&b.comms);
    let (exec_bytes, exec_rate) = shellway_exec(&mut terms.sw, &b.exec_file).await?;
    report.note(cpu_note("exec output", &cpu0, &b.comms, exec_bytes));
    let (_, direct_exec_rate) = direct_exec(&b.env.sshd, &b.exec_file).await?;
    report.push(Row::higher_better_vs_direct(
        "exec output (MB/s)",
        exec_rate / 1e6,
        direct_exec_rate / 1e6,
        None,
        ("≥ 0.5× direct", 0.5),
    ));
    report.note(format!(
        "exec bytes seen by the Shellway client: {exec_bytes}"
    ));
    Ok(())
}

/// Session open → first byte on each system.
async fn open_figure(b: &Bench, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("session open…");
    let n = b.plan.opens;
    let sw_open = open_times(n, || async {
        let (_, t) = shellway_open(&b.env.api, b.host).await?;
        Ok(t)
    })
    .await?;
    let direct_open = open_times(n, || async { Term::direct(&b.env.sshd) }).await?;
    let web_open = match &b.webssh {
        Some(w) => Some(open_times(n, || w.open(&b.env.sshd)).await?),
        None => None,
    };
    report.push(Row::lower_better_vs_direct(
        "session open → first byte (ms)",
        sw_open,
        direct_open,
        web_open,
        ("≤ 1.5× direct", 1.5),
    ));
    Ok(())
}

/// Prints the report (and writes it to the docs if the plan says so), stops
/// the runner process and tears the environment down.
async fn finish(
    report: &Report,
    plan: &Plan,
    mut runner: tokio::process::Child,
    env: TestEnv,
) -> anyhow::Result<()> {
    report.print();
    let written = if plan.write_docs {
        report.write_docs()
    } else {
        Ok(())
    };
    let _ = runner.start_kill();
    let _ = runner.wait().await;
    env.finish().await;
    written
}

/// Fan-out figures: one session watched by each of `plan.viewers` viewers.
async fn fanout_figures(b: &Bench, report: &mut Report) -> anyhow::Result<()> {
    let (env, api, host, plan) = (&b.env, &b.env.api, b.host, &b.plan);
    let (servers, fan_file) = (&b.comms[..3], b.fan_file.as_path());
    eprintln!("fan-out…");
    let pool = env.db().await;
    // One unmeasured pass first, so the 1-viewer figure (the divisor) is
    // not the first stream the proxy and recorder handle in `--only fanout`.
    fanout(&pool, api, host, servers, 1, fan_file).await?;
    let mut fan_cpu = Vec::new();
    for &viewers in &plan.viewers {
        // CPU seconds of one pass vary by half between passes (scheduling on
        // a shared VM, message sizes with timing): the median of a few.
        let mut passes = Vec::new();
        for _ in 0..FANOUT_PASSES {
            passes.push(fanout(&pool, api, host, servers, viewers, fan_file).await?);
        }
        let f = Fanout {
            rate: median_of(passes.iter().map(|p| p.rate)),
            proxy_cpu: median_of(passes.iter().map(|p| p.proxy_cpu)),
            server_cpu: median_of(passes.iter().map(|p| p.server_cpu)),
        };
        report.note(format!(
            "fan-out to {viewers} viewer(s), median of {FANOUT_PASSES} passes: {:.1} MB/s at the slowest viewer, proxy CPU {:.3} s ({:.4} s per viewer; passes {} s), proxy + runner + broker CPU {:.3} s",
            f.rate / 1e6,
            f.proxy_cpu,
            f.proxy_cpu / viewers as f64,
            by_round(passes.iter().map(|p| p.proxy_cpu), 3),
            f.server_cpu,
        ));
        fan_cpu.push((viewers, f));
    }
    let (Some((n1, first)), Some((n2, last))) = (fan_cpu.first(), fan_cpu.last()) else {
        return Ok(());
    };
    // Below a few hundredths of a second (as in `--quick`), one viewer's
    // CPU is mostly the pass's fixed costs, not the stream's: no figure.
    for (what, one, many) in [
        ("proxy CPU", first.proxy_cpu, last.proxy_cpu),
        (
            "proxy + runner + broker CPU",
            first.server_cpu,
            last.server_cpu,
        ),
    ] {
        if one < MEASURABLE_CPU {
            report.note(format!(
                "{what}, {n2} viewers ÷ {n1} viewer: not measured, {one:.2} s for one viewer is too little to divide by (raise --fanout-bytes)"
            ));
        } else {
            report.push(Row::ratio(
                &format!("{what}, {n2} viewers ÷ {n1} viewer"),
                many / one,
                ("< 3×", 3.0),
            ));
        }
    }
    Ok(())
}

/// "CPU per MB while …: proxy 1.2 ms, runner …" since `before`.
fn cpu_note(what: &str, before: &[(u32, String, f64)], comms: &[String], bytes: u64) -> String {
    let after = procstat::cpu_snapshot(comms);
    let mb = bytes as f64 / 1e6;
    let parts: Vec<String> = procstat::spent_by_comm(before, &after)
        .iter()
        .map(|(name, cpu)| format!("{name} {:.1}", cpu * 1e3 / mb))
        .collect();
    format!(
        "CPU ms per MB during Shellway's {what}: {}",
        parts.join(", ")
    )
}

/// What the recording of a session holds: chunks, highest seq, bytes.
struct Recorded {
    count: i64,
    max: u64,
    bytes: i64,
}

/// Waits until the recording of `session` holds every seq up to
/// `last_seq` with no gap (a gap-free prefix alone could be a recorder
/// still catching up); `Err` with what it holds after `limit`.
async fn recorded_up_to(
    pool: &sqlx::PgPool,
    session: Uuid,
    last_seq: u64,
    limit: Duration,
) -> anyhow::Result<Result<Recorded, Recorded>> {
    let t = Instant::now();
    loop {
        let (count, max, bytes): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT count(*), max(seq), sum(length(data))::bigint FROM output_chunks WHERE session_id = $1",
        )
        .bind(session)
        .fetch_one(pool)
        .await?;
        let got = Recorded {
            count,
            max: max.unwrap_or(0).max(0) as u64,
            bytes: bytes.unwrap_or(0),
        };
        if got.count as u64 == got.max && got.max >= last_seq {
            return Ok(Ok(got));
        }
        if t.elapsed() > limit {
            return Ok(Err(got));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// All output of the session is in Postgres, in order, with no gap, up to
/// `last_seq`, the last one the client received.
async fn recorder_check(env: &TestEnv, session: Uuid, last_seq: u64) -> anyhow::Result<String> {
    let pool = env.db().await;
    let t = Instant::now();
    let recorded = recorded_up_to(&pool, session, last_seq, Duration::from_secs(120)).await;
    pool.close().await;
    Ok(match recorded? {
        Ok(r) => format!(
            "recorder: {} chunks, seq 1..{} with no gap (the client's last seq: {last_seq}), {} bytes in Postgres, complete {:.1} s after the last run ended",
            r.count,
            r.max,
            r.bytes,
            t.elapsed().as_secs_f64()
        ),
        Err(r) => format!(
            "recorder: INCOMPLETE after 120 s: {} chunks, max seq {}, the client's last seq {last_seq}",
            r.count, r.max
        ),
    })
}

/// Rounds of the echo and PTY figures, the systems taking turns; each
/// figure is the median of its rounds, so one system's lucky or unlucky
/// moment on a shared VM does not decide a ratio.
const ROUNDS: usize = 3;

/// Least CPU seconds of one viewer that a fan-out ratio divides by (a
/// 20 MB pass costs the proxy about 0.1 s).
const MEASURABLE_CPU: f64 = 0.05;

/// Passes of each fan-out figure; the median is reported.
const FANOUT_PASSES: usize = 3;

struct Fanout {
    /// Bytes per second at the slowest viewer.
    rate: f64,
    proxy_cpu: f64,
    /// Proxy, runner and broker together.
    server_cpu: f64,
}

/// One session, `viewers` WebSockets: PTY throughput at the slowest viewer
/// and the CPU seconds the servers (command names; the first is the proxy)
/// spent on it.
async fn fanout(
    pool: &sqlx::PgPool,
    api: &shellway_tests::Api,
    host: Uuid,
    servers: &[String],
    viewers: usize,
    file: &std::path::Path,
) -> anyhow::Result<Fanout> {
    let (id, mut owner) = shellway_open(api, host).await?;
    ready(&mut owner).await?;
    let mut others = Vec::new();
    for _ in 1..viewers {
        let mut t = shellway_attach(api, id, "").await?;
        t.drain(Duration::from_millis(50)).await;
        others.push(t);
    }
    let cpu0 = procstat::cpu_snapshot(servers);
    let t = Instant::now();
    owner
        .send(&format!("base64 {}; {DONE_CMD}\r", file.display()))
        .await?;
    // Each viewer reads on its own task, so the clients use both cores as
    // separate browsers would and do not fall behind one another.
    let mut all = vec![owner];
    all.extend(others);
    let readers: Vec<_> = all
        .into_iter()
        .map(|mut v| {
            tokio::spawn(async move {
                let read = v.until(DONE, LONG).await;
                (v, read)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut results = Vec::new();
    for reader in join_all(readers).await {
        let (v, read) = reader?;
        all.push(v);
        results.push(read);
    }
    let secs = t.elapsed().as_secs_f64();
    // The pass's CPU includes recording its own output, and the next pass
    // starts with nothing of this one left to record.
    let last_seq = all.iter().map(Term::last_seq).max().unwrap_or(0);
    if let Err(r) = recorded_up_to(pool, id, last_seq, LONG).await? {
        bail!(
            "fan-out: the recorder did not catch up (max seq {} of {last_seq})",
            r.max
        );
    }
    let spent = procstat::spent_by_comm(&cpu0, &procstat::cpu_snapshot(servers));
    let proxy_cpu = spent
        .iter()
        .find(|(name, _)| *name == servers[0])
        .map_or(0.0, |s| s.1);
    let server_cpu = spent.iter().map(|s| s.1).sum();
    let mut min_bytes = u64::MAX;
    for r in results {
        min_bytes = min_bytes.min(r?);
    }
    for v in all {
        v.close().await;
    }
    let _ = api.delete(&format!("/api/sessions/{id}")).await;
    Ok(Fanout {
        rate: min_bytes as f64 / secs,
        proxy_cpu,
        server_cpu,
    })
}

async fn many_sessions(b: &Bench, report: &mut Report) -> anyhow::Result<()> {
    let (api, host, plan) = (&b.env.api, b.host, &b.plan);
    let (proxy_pid, runner_pid) = (b.proxy_pid, b.runner_pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let proxy0 = procstat::rss_kib(proxy_pid)?;
    let runner0 = procstat::rss_kib(runner_pid)?;
    let t = Instant::now();
    let mut open = Vec::with_capacity(plan.sessions);
    let batch = 25;
    for chunk_start in (0..plan.sessions).step_by(batch) {
        let n = batch.min(plan.sessions - chunk_start);
        let opened = join_all((0..n).map(|_| async {
            let (_, mut t) = shellway_open(api, host).await?;
            ready_quick(&mut t).await?;
            Ok::<Term, anyhow::Error>(t)
        }))
        .await;
        for o in opened {
            open.push(o?);
        }
    }
    let open_all = t.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let proxy1 = procstat::rss_kib(proxy_pid)?;
    let runner1 = procstat::rss_kib(runner_pid)?;
    let n = plan.sessions as f64;
    let (_, mut probe) = shellway_open(api, host).await?;
    ready(&mut probe).await?;
    let echo_loaded = echo(&mut probe, plan.keystrokes.min(300)).await?;
    report.note(format!(
        "{} idle shell sessions (each with a WebSocket viewer) opened in {:.1} s through one proxy and one runner",
        plan.sessions,
        open_all.as_secs_f64()
    ));
    report.push(Row::plain(
        "runner RSS per idle session (KiB)",
        (runner1 as f64 - runner0 as f64) / n,
        Some(("≤ 256 KiB", 256.0)),
    ));
    report.push(Row::plain(
        "proxy RSS per idle session (KiB)",
        (proxy1 as f64 - proxy0 as f64) / n,
        Some(("≤ 128 KiB", 128.0)),
    ));
    report.push(Row::plain(
        &format!("echo p99 with {} sessions open (ms)", plan.sessions),
        pct(&echo_loaded, 99.0),
        None,
    ));
    report.note(format!(
        "RSS: runner {runner0} → {runner1} KiB, proxy {proxy0} → {proxy1} KiB"
    ));
    probe.close().await;
    for t in open {
        t.close().await;
    }
    Ok(())
}

/// First output only: many sessions at once must not wait 300 ms each.
async fn ready_quick(term: &mut Term) -> anyhow::Result<()> {
    let mut events = Vec::new();
    loop {
        match term.recv(Duration::from_secs(60)).await {
            Got::Bytes(b) if !b.is_empty() => return Ok(()),
            Got::Closed => bail!("the session closed before its prompt; events: {events:?}"),
            Got::Nothing => bail!("no prompt within 60 s; events: {events:?}"),
            Got::Event(e) if e["event"] == "error" => bail!("session failed: {e}"),
            Got::Event(e) => events.push(e),
            _ => {}
        }
    }
}

/// `cargo run -p shellway-bench` builds only the bench itself; the proxy
/// and runner it starts are the test harness's binaries, so build them too
/// (a stale proxy would be measured otherwise).
fn build_servers() -> anyhow::Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(()); // run directly: use what is built
    };
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "--release", "-p", "shellway-tests", "--bins"]);
    // What `cargo run` set for us describes this package, not the build;
    // build scripts that watch such variables (ring's) would otherwise see
    // them change and rebuild on every run.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let ours = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&&*key);
        if ours {
            build.env_remove(&*key);
        }
    }
    let status = build.status()?;
    anyhow::ensure!(status.success(), "building the proxy and runner failed");
    Ok(())
}

/// `--quick` for a smoke run; see docs/benchmarks.md for the flags.
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if procstat::raise_fd_limit_by_reexec(&args) {
        return std::process::ExitCode::SUCCESS;
    }
    let mut plan = if args.iter().any(|a| a == "--quick") {
        Plan::quick()
    } else {
        Plan::full()
    };
    if args.iter().any(|a| a == "--no-write") {
        plan.write_docs = false;
    }
    if let Some(i) = args.iter().position(|a| a == "--only") {
        match args.get(i + 1).map(String::as_str) {
            Some("echo") => plan.only = Some(Only::Echo),
            Some("pty") => plan.only = Some(Only::Pty),
            Some("fanout") => plan.only = Some(Only::Fanout),
            Some("interrupt") => plan.only = Some(Only::Interrupt),
            Some("exec") => plan.only = Some(Only::Exec),
            Some("fleet") => plan.only = Some(Only::Fleet),
            other => {
                let other = other.unwrap_or("nothing");
                eprintln!(
                    "bench: --only takes echo, pty, exec, fanout, interrupt or fleet, not {other:?}"
                );
                return std::process::ExitCode::FAILURE;
            }
        }
        plan.write_docs = false;
    }
    let number = |flag: &str| -> Option<usize> {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1)?.parse().ok()
    };
    if let Some(n) = number("--fanout-bytes") {
        plan.fanout_bytes = n;
    }
    if let Some(n) = number("--pty-bytes") {
        plan.pty_bytes = n;
    }
    if let Some(n) = number("--keystrokes") {
        plan.keystrokes = n;
    }
    if let Some(n) = number("--sessions") {
        plan.sessions = n;
    }
    if let Err(err) = build_servers() {
        eprintln!("bench: {err:#}");
        return std::process::ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("bench: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(plan)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench failed: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

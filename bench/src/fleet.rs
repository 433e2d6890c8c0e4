//! A fleet job: one command on 100 hosts, concurrency 20, from request to
//! the last result — Shellway's jobs against parallel-ssh and Ansible's
//! ad-hoc `command` module, each against the same sshd (100 host entries
//! pointing at it; every tool opens one SSH connection per entry).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use shellway_tests::TestEnv;
use uuid::Uuid;

use super::report::{Report, Row};
use super::{median_of, Bench};

const HOSTS: usize = 100;
const CONCURRENCY: usize = 20;
const COMMAND: &str = "uname -a; sleep 0.2";
const ROUNDS: usize = 3;
/// Longest a round may take before the bench gives up on it.
const ROUND_LIMIT: Duration = Duration::from_secs(300);

pub(crate) async fn fleet_figure(b: &Bench, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("fleet job: {HOSTS} hosts, concurrency {CONCURRENCY}…");
    let hosts = fleet_hosts(&b.env).await?;
    let dir = shellway_tests::ScratchDir::new("shellway-bench-fleet-")?;
    let pssh_hosts = dir.join("pssh-hosts");
    std::fs::write(
        &pssh_hosts,
        (0..HOSTS)
            .map(|_| format!("127.0.0.1:{}\n", b.env.sshd.port))
            .collect::<String>(),
    )?;
    let inventory = dir.join("inventory.ini");
    std::fs::write(&inventory, ansible_inventory(&b.env))?;
    let (mut sw, mut pssh, mut ansible) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved rounds: a slow minute of the machine hits all three.
    for round in 1..=ROUNDS {
        sw.push(shellway_job(&b.env, &hosts).await?);
        pssh.push(parallel_ssh(&b.env, &pssh_hosts)?);
        match ansible_adhoc(&inventory) {
            Ok(t) => ansible.push(t),
            Err(err) => eprintln!("  ansible round {round}: {err:#}"),
        }
        eprintln!(
            "  round {round}: shellway {:.2} s, parallel-ssh {:.2} s, ansible {}",
            sw[round - 1],
            pssh[round - 1],
            ansible.last().map_or("n/a".into(), |t| format!("{t:.2} s"))
        );
    }
    let (sw_s, pssh_s) = (
        median_of(sw.iter().copied()),
        median_of(pssh.iter().copied()),
    );
    report.push(Row::lower_better_vs_direct(
        "fleet job, 100 hosts × `uname -a; sleep 0.2`, concurrency 20 (s; direct = parallel-ssh)",
        sw_s,
        pssh_s,
        None,
        ("≤ 1.2× parallel-ssh", 1.2),
    ));
    let by = |v: &[f64]| {
        v.iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if ansible.is_empty() {
        report.note("fleet job: Ansible did not run (see the bench's output)".into());
    } else {
        let ansible_s = median_of(ansible.iter().copied());
        report.push(Row::ratio(
            "fleet job ÷ Ansible ad-hoc (forks 20)",
            sw_s / ansible_s,
            ("< 1 (faster)", 1.0),
        ));
        report.note(format!(
            "fleet job rounds (s): Shellway {}; parallel-ssh {}; Ansible {} (median {ansible_s:.2} s; \
             `ansible all -m command -a \"sh -c '…'\" -f 20`, no SSH multiplexing, as with distinct hosts)",
            by(&sw),
            by(&pssh),
            by(&ansible)
        ));
    }
    Ok(())
}

/// 100 host entries on the bench's sshd.
async fn fleet_hosts(env: &TestEnv) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(HOSTS);
    for i in 0..HOSTS {
        let mut host = env.host_json(&format!("fleet-{i:03}"));
        host["labels"] = json!({"bench": "fleet"});
        ids.push(env.api.create_host(host).await);
    }
    Ok(ids)
}

/// Seconds from `POST /api/jobs` to the job's last host result.
async fn shellway_job(env: &TestEnv, hosts: &[Uuid]) -> anyhow::Result<f64> {
    let started = Instant::now();
    let (status, reply) = env
        .api
        .post(
            "/api/jobs",
            json!({
                "targets": {"host_ids": hosts},
                "command": COMMAND,
                "strategy": "parallel",
                "concurrency": CONCURRENCY,
            }),
        )
        .await;
    if !status.is_success() {
        bail!("POST /api/jobs: {status} {reply}");
    }
    let id = reply["id"].as_str().context("job id")?.to_owned();
    loop {
        let (status, job) = env.api.get(&format!("/api/jobs/{id}")).await;
        if !status.is_success() {
            bail!("GET /api/jobs/{id}: {status} {job}");
        }
        if job_finished(&job) {
            let took = started.elapsed().as_secs_f64();
            let ok = count_ok(&job);
            if ok != HOSTS {
                bail!("the job ended with {ok} of {HOSTS} hosts ok: {job}");
            }
            return Ok(took);
        }
        if started.elapsed() > ROUND_LIMIT {
            bail!("the job did not finish in {} s", ROUND_LIMIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn job_finished(job: &Value) -> bool {
    !matches!(job["status"].as_str(), Some("queued" | "running") | None)
}

fn count_ok(job: &Value) -> usize {
    job["host_results"]
        .as_array()
        .map_or(0, |h| h.iter().filter(|h| h["status"] == "ok").count())
}

/// `parallel-ssh` (Debian's pssh) with the same concurrency.
fn parallel_ssh(env: &TestEnv, hosts: &Path) -> anyhow::Result<f64> {
    // Writes the known_hosts file the direct figures use, pinning the key.
    let _ = super::term::ssh_args(&env.sshd);
    let known = env.sshd.dir.join("known_hosts");
    let started = Instant::now();
    let out = std::process::Command::new("parallel-ssh")
        .arg("-h")
        .arg(hosts)
        .args(["-p", &CONCURRENCY.to_string(), "-t", "120", "-l", &env.sshd.username])
        .args(["-x", &format!(
            "-i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o ControlMaster=no -o BatchMode=yes -o LogLevel=ERROR",
            env.sshd.user_key.display(),
            known.display()
        )])
        .arg(COMMAND)
        .output()
        .context("parallel-ssh (Debian package pssh)")?;
    let took = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = text.matches("[SUCCESS]").count();
    if ok != HOSTS {
        bail!("parallel-ssh: {ok} of {HOSTS} succeeded: {text}");
    }
    Ok(took)
}

/// An inventory of 100 aliases of the bench's sshd.
fn ansible_inventory(env: &TestEnv) -> String {
    let mut out = String::from("[fleet]\n");
    for i in 0..HOSTS {
        out.push_str(&format!(
            "h{i:03} ansible_host=127.0.0.1 ansible_port={} ansible_user={} ansible_ssh_private_key_file={} ansible_python_interpreter=/usr/bin/python3\n",
            env.sshd.port,
            env.sshd.username,
            env.sshd.user_key.display()
        ));
    }
    out
}

/// `ansible all -m command` (ansible-core from PyPI), forks 20.
fn ansible_adhoc(inventory: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = std::process::Command::new("ansible")
        .arg("all")
        .arg("-i")
        .arg(inventory)
        .args(["-m", "command", "-a", &format!("sh -c '{COMMAND}'"), "-f"])
        .arg(CONCURRENCY.to_string())
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_SSH_ARGS", "-o ControlMaster=no")
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .context("ansible (pip install ansible-core)")?;
    let took = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = text.matches("| CHANGED |").count();
    if ok != HOSTS {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "ansible: {ok} of {HOSTS} succeeded: {}{}",
            tail(&text),
            tail(&err)
        );
    }
    Ok(took)
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(600);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

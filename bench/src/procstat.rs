//! What a process costs, read from /proc.

pub(crate) use shellway_tests::rss::rss_kib;

use anyhow::Context;

/// CPU seconds each live thread of `pid` has run so far, by thread id
/// (unique on the machine, like a pid). From /proc/<pid>/task/*/schedstat, in nanoseconds: exact,
/// where utime and stime count 10 ms ticks (a one-viewer fan-out pass is
/// only about ten of them). A thread that exits between two readings
/// loses its share; the processes measured keep theirs.
fn thread_cpu(pid: u32) -> Vec<(u32, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid: u32 = t.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
            Some((tid, ns as f64 / 1e9))
        })
        .collect()
}

/// Every process as (pid, command name).
fn processes() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((pid, comm(pid)))
        })
        .collect()
}

/// CPU seconds so far of every thread of every process whose command name
/// is in `comms` (a snapshot to diff with [`spent_by_comm`]).
pub(crate) fn cpu_snapshot(comms: &[String]) -> Vec<(u32, String, f64)> {
    processes()
        .into_iter()
        .filter(|(_, name)| comms.contains(name))
        .flat_map(|(pid, name)| {
            thread_cpu(pid)
                .into_iter()
                .map(move |(tid, secs)| (tid, name.clone(), secs))
        })
        .collect()
}

/// CPU seconds spent between two snapshots, summed by command name (a
/// thread that started in between counts from zero), largest first.
pub(crate) fn spent_by_comm(
    before: &[(u32, String, f64)],
    after: &[(u32, String, f64)],
) -> Vec<(String, f64)> {
    let mut by: Vec<(String, f64)> = Vec::new();
    for (tid, name, cpu) in after {
        let start = before
            .iter()
            .find(|(t, n, _)| t == tid && n == name)
            .map_or(0.0, |b| b.2);
        match by.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 += cpu - start,
            None => by.push((name.clone(), cpu - start)),
        }
    }
    by.sort_by(|a, b| b.1.total_cmp(&a.1));
    by
}

/// Command name of a process (what /proc/<pid>/comm says).
pub(crate) fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_owned())
        .unwrap_or_default()
}

/// A thousand sessions need more file descriptors than a shell's usual
/// 1024; without unsafe code we cannot raise our own limit, so we run
/// ourselves again under `ulimit -n`. True if this process was only the
/// launcher (the child has run and its status was reported).
pub(crate) fn raise_fd_limit_by_reexec(args: &[String]) -> bool {
    const WANT: u64 = 65536;
    if std::env::var_os("SHELLWAY_BENCH_REEXEC").is_some() {
        return false;
    }
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if soft >= 8192 {
        return false;
    }
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {WANT} 2>/dev/null || ulimit -n $(ulimit -Hn); exec \"$0\" \"$@\""
        ))
        .args(args)
        .env("SHELLWAY_BENCH_REEXEC", "1")
        .status();
    match status {
        Ok(s) if s.success() => true,
        Ok(s) => std::process::exit(s.code().unwrap_or(1)),
        Err(err) => {
            eprintln!("cannot raise the open-files limit ({err}); going on");
            false
        }
    }
}

/// The whole machine's CPU time (every process and the kernel, all cores)
/// from /proc/stat, seconds: busy and in all.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MachineCpu {
    busy: f64,
    total: f64,
}

impl MachineCpu {
    pub(crate) fn now() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let line = stat.lines().next().context("/proc/stat")?;
        // cpu user nice system idle iowait irq softirq steal (guest time is
        // already inside user and nice).
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        anyhow::ensure!(ticks.len() == 8, "short /proc/stat line");
        // Steal (time the hypervisor gave to other guests) is neither busy
        // with our work nor available to it.
        let (idle, steal) = (ticks[3] + ticks[4], ticks[7]);
        let total: u64 = ticks.iter().sum::<u64>() - steal;
        Ok(Self {
            busy: (total - idle) as f64 / 100.0,
            total: total as f64 / 100.0,
        })
    }

    /// Busy CPU seconds since `earlier`, and the share of the machine that was.
    pub(crate) fn since(&self, earlier: &Self) -> (f64, f64) {
        let busy = self.busy - earlier.busy;
        let total = self.total - earlier.total;
        (busy, if total > 0.0 { busy / total } else { 0.0 })
    }
}

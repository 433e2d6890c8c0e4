//! The results table: printed, and written into docs/benchmarks.md between
//! markers (the prose around them is kept).

use chrono::{DateTime, Utc};

use super::Plan;

pub(crate) struct Row {
    name: String,
    shellway: f64,
    direct: Option<f64>,
    webssh: Option<f64>,
    /// Shellway ÷ a reference (or the value itself for `plain`), and the
    /// target: text, limit, and whether lower is better.
    target: Option<(String, f64, Against)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Against {
    /// ratio to webssh must be ≤ limit
    WebsshAtMost,
    /// ratio to direct must be ≥ limit
    DirectAtLeast,
    /// ratio to direct must be ≤ limit
    DirectAtMost,
    /// the value itself must be ≤ limit
    ValueAtMost,
    /// the value itself must be < limit
    ValueBelow,
}

impl Row {
    fn new(
        name: &str,
        shellway: f64,
        direct: Option<f64>,
        webssh: Option<f64>,
        target: Option<(&str, f64)>,
        how: Against,
    ) -> Self {
        Self {
            name: name.into(),
            shellway,
            direct,
            webssh,
            target: target.map(|(t, l)| (t.to_owned(), l, how)),
        }
    }

    /// Lower is better; the target is a ratio to webssh.
    pub(crate) fn lower_better(
        name: &str,
        shellway: f64,
        direct: f64,
        webssh: Option<f64>,
        target: Option<(&str, f64)>,
    ) -> Self {
        Self::new(
            name,
            shellway,
            Some(direct),
            webssh,
            target,
            Against::WebsshAtMost,
        )
    }

    pub(crate) fn lower_better_vs_direct(
        name: &str,
        shellway: f64,
        direct: f64,
        webssh: Option<f64>,
        target: (&str, f64),
    ) -> Self {
        Self::new(
            name,
            shellway,
            Some(direct),
            webssh,
            Some(target),
            Against::DirectAtMost,
        )
    }

    pub(crate) fn higher_better_vs_direct(
        name: &str,
        shellway: f64,
        direct: f64,
        webssh: Option<f64>,
        target: (&str, f64),
    ) -> Self {
        Self::new(
            name,
            shellway,
            Some(direct),
            webssh,
            Some(target),
            Against::DirectAtLeast,
        )
    }

    pub(crate) fn plain(name: &str, value: f64, target: Option<(&str, f64)>) -> Self {
        Self::new(name, value, None, None, target, Against::ValueAtMost)
    }

    pub(crate) fn ratio(name: &str, value: f64, target: (&str, f64)) -> Self {
        Self::new(name, value, None, None, Some(target), Against::ValueBelow)
    }

    fn met(&self) -> Option<bool> {
        let (_, limit, how) = self.target.as_ref()?;
        Some(match how {
            Against::WebsshAtMost => self.shellway / self.webssh? <= *limit,
            Against::DirectAtLeast => self.shellway / self.direct? >= *limit,
            Against::DirectAtMost => self.shellway / self.direct? <= *limit,
            Against::ValueAtMost => self.shellway <= *limit,
            Against::ValueBelow => self.shellway < *limit,
        })
    }

    fn cells(&self) -> [String; 7] {
        let num = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}"));
        let ratio =
            |r: Option<f64>| r.map_or("–".to_owned(), |r| format!("{:.2}×", self.shellway / r));
        [
            self.name.clone(),
            format!("{:.2}", self.shellway),
            num(self.direct),
            num(self.webssh),
            ratio(self.direct),
            ratio(self.webssh),
            match (&self.target, self.met()) {
                (Some((t, _, _)), Some(true)) => format!("{t}: met"),
                (Some((t, _, _)), Some(false)) => format!("{t}: **not met**"),
                (Some((t, _, _)), None) => format!("{t}: n/a"),
                (None, _) => String::new(),
            },
        ]
    }
}

pub(crate) struct Report {
    started: DateTime<Utc>,
    plan: Plan,
    rows: Vec<Row>,
    notes: Vec<String>,
}

const START: &str = "<!-- results:start -->";
const END: &str = "<!-- results:end -->";

impl Report {
    pub(crate) fn new(started: DateTime<Utc>, plan: &Plan) -> Self {
        Self {
            started,
            plan: plan.clone(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub(crate) fn note(&mut self, note: String) {
        eprintln!("  {note}");
        self.notes.push(note);
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "Run {} on {}; commit `{}`; plan: {} keystrokes, PTY {} MB, exec {} MB, {} sessions, fan-out {} MB to {:?} viewers.\n\n",
            self.started.format("%Y-%m-%d %H:%M UTC"),
            machine(),
            commit(),
            self.plan.keystrokes,
            self.plan.pty_bytes / 1_000_000,
            self.plan.exec_bytes / 1_000_000,
            self.plan.sessions,
            self.plan.fanout_bytes as f64 / 1e6,
            self.plan.viewers,
        ));
        out.push_str(
            "| figure | Shellway | direct OpenSSH | webssh | ÷ direct | ÷ webssh | target |\n",
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---|\n");
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.cells().join(" | ")));
        }
        out.push('\n');
        for note in &self.notes {
            out.push_str(&format!("- {note}\n"));
        }
        out
    }

    pub(crate) fn print(&self) {
        println!("{}", self.markdown());
    }

    pub(crate) fn write_docs(&self) -> anyhow::Result<()> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let block = format!("{START}\n{}{END}", self.markdown());
        let new = match (old.find(START), old.find(END)) {
            (Some(a), Some(b)) if a < b => format!("{}{block}{}", &old[..a], &old[b + END.len()..]),
            _ => format!("# Benchmarks\n\n{block}\n"),
        };
        std::fs::write(&path, new)?;
        eprintln!("wrote {}", path.display());
        Ok(())
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or("?".into(), |kib| {
            format!("{:.0} GiB", kib as f64 / 1048576.0)
        });
    format!("{cpu}, {cores} cores, {mem} RAM")
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

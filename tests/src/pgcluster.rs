//! A PostgreSQL cluster of the test's own (`initdb` + `pg_ctl` as user
//! `postgres`, on a free port), to stop and kill under running sessions
//! without touching the machine's shared server. With `fsync=off`, initdb
//! takes about a second here and a start or stop a fraction of one.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::sshd::free_server_port;
use crate::ScratchDir;

/// The newest installed server's programs (Debian: /usr/lib/postgresql/<v>/bin).
fn bin() -> String {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (Debian package postgresql)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("a PostgreSQL version under /usr/lib/postgresql");
    format!("/usr/lib/postgresql/{newest}/bin")
}

pub struct PgCluster {
    dir: ScratchDir,
    pub port: u16,
}

impl PgCluster {
    /// Creates and starts a cluster (trust authentication, user `postgres`).
    pub async fn start() -> Self {
        let dir = ScratchDir::new("shellway-pg-").expect("scratch dir");
        let status = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&*dir)
            .status()
            .expect("chown runs");
        assert!(
            status.success(),
            "chown the cluster's directory to postgres"
        );
        let cluster = Self {
            dir,
            port: free_server_port(),
        };
        let data = cluster.data();
        cluster
            .as_postgres(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ],
            )
            .await;
        cluster.boot().await;
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// A URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    async fn as_postgres(&self, tool: &str, args: &[&str]) {
        let out = Command::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(format!("{}/{tool}", bin()))
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("{tool} runs (Debian package postgresql): {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the cluster (again) and waits until it accepts connections.
    /// After a kill the old backends may hold its shared memory a moment:
    /// it tries again until they are gone.
    pub async fn boot(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let (data, log) = (self.data(), self.log_path().display().to_string());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new("setpriv")
                .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(format!("{}/pg_ctl", bin()))
                .args([
                    "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "30", "start",
                ])
                .output()
                .await
                .expect("pg_ctl runs");
            if out.status.success() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "pg_ctl start failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A clean, fast shutdown (`pg_ctl stop -m fast`): clients are
    /// disconnected, the server exits.
    pub async fn stop(&self) {
        let data = self.data();
        self.as_postgres("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"])
            .await;
    }

    /// Kills the postmaster with SIGKILL; its backends exit when they
    /// notice.
    pub async fn kill(&self) {
        let pidfile = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .expect("the cluster runs");
        let pid = pidfile.lines().next().unwrap_or_default().trim().to_owned();
        let status = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "kill -KILL {pid}");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(format!("{}/pg_ctl", bin()))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

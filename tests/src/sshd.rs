//! A real OpenSSH server for tests, on a free loopback port, with freshly
//! generated host and user keys.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// sshd's own default `PATH` for sessions.
const STD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Sshd {
    pub port: u16,
    pub dir: crate::ScratchDir,
    /// `ssh-ed25519 AAAA…` of the server's host key.
    pub host_key: String,
    /// A private key that the server accepts.
    pub user_key: PathBuf,
    /// A valid private key the server does not accept.
    pub stranger_key: PathBuf,
    pub username: String,
    child: Child,
}

fn keygen(path: &Path) {
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "shellway-test", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen is installed");
    assert!(status.success(), "ssh-keygen failed");
}

pub fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let out = std::process::Command::new("id")
                .arg("-un")
                .output()
                .expect("id");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A free port below the ephemeral range, for a server that goes down and
/// comes back while clients retry: a client connecting to a port of the
/// ephemeral range nobody listens on may be given that very port as its
/// own and connect to itself, and the server then cannot bind it again.
pub fn free_server_port() -> u16 {
    loop {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        let free = ["127.0.0.1", "0.0.0.0"]
            .iter()
            .all(|a| std::net::TcpListener::bind((*a, port)).is_ok());
        if free {
            return port;
        }
    }
}

impl Sshd {
    pub async fn start() -> Self {
        Self::start_in(None, false).await
    }

    /// An sshd that also accepts passwords (of the system's users, from
    /// /etc/shadow: sshd runs without PAM) when `password_auth`.
    pub async fn start_with(password_auth: bool) -> Self {
        Self::start_in(None, password_auth).await
    }

    /// An sshd inside network namespace `netns` (on its own loopback).
    pub async fn start_in_netns(netns: &str) -> Self {
        Self::start_in(Some(netns), false).await
    }

    async fn start_in(netns: Option<&str>, password_auth: bool) -> Self {
        let dir = crate::ScratchDir::new("shellway-sshd-").unwrap();
        // sshd refuses to start without its privilege-separation directory.
        std::fs::create_dir_all("/run/sshd").ok();
        let host_key = dir.join("host_ed25519");
        let user_key = dir.join("user_ed25519");
        let stranger_key = dir.join("stranger_ed25519");
        for k in [&host_key, &user_key, &stranger_key] {
            keygen(k);
        }
        std::fs::copy(dir.join("user_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        // Sessions get a home of their own: the machine user's shell rc
        // files (pyenv init and the like) make every shell start slow, and
        // a shell killed mid-start can leave their lock files behind.
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        // Sessions find programs in `bin` first (empty unless a test puts
        // fakes there, e.g. `FakeSystemd`), then in the usual places.
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
                 PidFile none\nUsePAM no\nStrictModes no\nPermitRootLogin yes\n\
                 PasswordAuthentication {pw}\nKbdInteractiveAuthentication no\n\
                 MaxStartups 2000:30:4000\nMaxSessions 64\nLogLevel VERBOSE\n\
                 AcceptEnv LANG LC_*\nSetEnv HOME={home} PATH={bin}:{STD_PATH}\n",
                hk = host_key.display(),
                ak = dir.join("authorized_keys").display(),
                home = home.display(),
                bin = bin.display(),
                pw = if password_auth { "yes" } else { "no" },
            ),
        )
        .unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, "/usr/sbin/sshd"]);
                cmd
            }
            None => Command::new("/usr/sbin/sshd"),
        };
        let child = cmd
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("/usr/sbin/sshd is installed (Debian package openssh-server)");
        let host_key_line = std::fs::read_to_string(dir.join("host_ed25519.pub")).unwrap();
        let host_key_line = host_key_line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let sshd = Self {
            port,
            dir,
            host_key: host_key_line,
            user_key,
            stranger_key,
            username: current_user(),
            child,
        };
        match netns {
            None => sshd.wait_ready().await,
            Some(_) => {
                crate::eventually("sshd to listen", Duration::from_secs(10), || async {
                    sshd.log().contains("Server listening").then_some(())
                })
                .await
            }
        }
        sshd
    }

    async fn wait_ready(&self) {
        crate::eventually(
            "sshd to accept connections",
            Duration::from_secs(10),
            || async {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .ok()?;
                let mut buf = [0u8; 4];
                tokio::io::AsyncReadExt::read_exact(&mut s, &mut buf)
                    .await
                    .ok()?;
                (&buf == b"SSH-").then_some(())
            },
        )
        .await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // `dir` goes with the fields, after this.
    }
}

//! A network namespace joined to this one by a veth pair, so a test can
//! run a process (a runner) behind a link it cuts and restores: packets are
//! dropped without a word, as in a real network partition, while both
//! sides stay up.

use tokio::process::Command;

pub struct NetNs {
    pub name: String,
    /// This side's address on the link (a broker listens here).
    pub host_addr: String,
    /// The namespace's address on the link.
    pub ns_addr: String,
    host_if: String,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    pub fn create() -> Self {
        let tag = hex::encode(rand::random::<[u8; 3]>());
        let name = format!("swt-{tag}");
        let host_if = format!("swh{tag}");
        let ns_if = format!("swn{tag}");
        // A random /30 in 10.213.0.0/16.
        let (a, b) = (rand::random::<u8>(), rand::random::<u8>() & 0xfc);
        let host_addr = format!("10.213.{a}.{}", b + 1);
        let ns_addr = format!("10.213.{a}.{}", b + 2);
        ip(&["netns", "add", &name]);
        let ns = Self {
            name,
            host_addr,
            ns_addr,
            host_if,
        };
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_addr),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/30", ns.ns_addr), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    /// Cuts the link: from now on its packets are dropped.
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    /// Restores the link.
    pub fn restore(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }

    /// `program` to run inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

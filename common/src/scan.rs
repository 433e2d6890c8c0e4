//! Host-key scans: a proxy asks a runner (`POST /api/hosts/scan`), since
//! the runners are the ones that reach hosts. Request/reply: the request
//! goes to the scans queue (runners compete for it) with the proxy's reply
//! queue in `reply_to` and an id in `correlation_id`; the runner that takes
//! it answers [`ScanReply::Taken`] at once, then the outcome.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a runner may spend on one scan (connect and key exchange).
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a proxy waits for some runner to take a scan; the request
/// expires unserved after the same time.
pub const SCAN_TAKE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRequest {
    pub hostname: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ScanReply {
    /// A runner took the request; the outcome follows within
    /// [`SCAN_TIMEOUT`].
    Taken { runner: String },
    /// The host's key as an OpenSSH line, and its SHA256 fingerprint.
    Key { key: String, fingerprint: String },
    /// Nothing that speaks SSH answered (deliberately no more detail).
    NoSshServer { message: String },
    /// The peer spoke SSH, then the key exchange failed.
    SshError { message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_tagged() {
        let reply = ScanReply::NoSshServer {
            message: "no SSH server answered at h:22".into(),
        };
        let json = serde_json::to_value(&reply).unwrap_or_default();
        assert_eq!(json["reply"], "no_ssh_server");
        let back: ScanReply = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, reply);
        let req: ScanRequest =
            serde_json::from_str(r#"{"hostname":"h","port":22}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(req.port, 22);
    }
}

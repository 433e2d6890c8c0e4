//! What a proxy asks of a runner: open a session on a host.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Published to the requests queue. Carries everything the runner needs, so
/// runners stay stateless and never touch the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    pub session: Uuid,
    pub owner: String,
    pub host: HostTarget,
    pub pty: PtySize,
    /// Start an interactive shell; `false` means exec runs only.
    pub shell: bool,
    pub requested_at: DateTime<Utc>,
    /// End the session after this many seconds with no viewer and no
    /// input (`closed {reason: "idle"}`); absent or 0: never. Set by the
    /// proxy from its configuration, so one setting governs a deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_s: Option<u64>,
    /// A job host: the one run this session exists for. The runner starts
    /// it as soon as the session is open and closes the session once it
    /// completed (`closed {reason: "job host done"}`). Absent for sessions
    /// people open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<crate::control::RunSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostTarget {
    pub name: String,
    pub hostname: String,
    pub port: u16,
    pub username: String,
    pub auth: AuthMethod,
    pub host_key_policy: HostKeyPolicy,
    /// Pinned public keys in OpenSSH format (`ssh-ed25519 AAAA…`).
    pub host_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum AuthMethod {
    /// A private key file on the runner's file system.
    KeyPath { path: String },
    /// The runner's SSH agent (`SSH_AUTH_SOCK`).
    Agent,
    /// A credential from the vault: an age file sealed to the runners'
    /// key (see [`crate::vault`]), base64. Only a runner holding the
    /// identity can open it; it does so per connection, in memory.
    Sealed {
        kind: crate::vault::CredentialKind,
        ciphertext: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostKeyPolicy {
    /// The server key must match a pinned key.
    Strict,
    /// Trust on first use: with no pinned key the first one seen is pinned.
    Tofu,
    /// No check at all. Development only; runners log it loudly.
    Off,
}

impl HostKeyPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::Tofu => "tofu",
            Self::Off => "off",
        }
    }
}

impl std::str::FromStr for HostKeyPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(Self::Strict),
            "tofu" => Ok(Self::Tofu),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "unknown host key policy {other:?} (use strict, tofu or off)"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySize {
    pub cols: u16,
    pub rows: u16,
}

impl Default for PtySize {
    fn default() -> Self {
        Self { cols: 80, rows: 24 }
    }
}

/// Published by every runner on the runners exchange each interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub runner: String,
    pub capacity: u32,
    pub sessions: Vec<Uuid>,
    pub interval_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_through_json() {
        let req = SessionRequest {
            session: Uuid::now_v7(),
            owner: "alice".into(),
            host: HostTarget {
                name: "web1".into(),
                hostname: "10.0.0.1".into(),
                port: 22,
                username: "deploy".into(),
                auth: AuthMethod::KeyPath {
                    path: "/keys/id".into(),
                },
                host_key_policy: HostKeyPolicy::Tofu,
                host_keys: vec!["ssh-ed25519 AAAA".into()],
            },
            pty: PtySize::default(),
            shell: true,
            requested_at: Utc::now(),
            idle_timeout_s: Some(1800),
            run: None,
        };
        let json = serde_json::to_string(&req).unwrap_or_default();
        assert!(json.contains(r#""method":"key_path""#), "{json}");
        let back: SessionRequest = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, req);
    }

    #[test]
    fn a_request_without_an_idle_timeout_never_times_out() {
        let json = r#"{"session":"018f0000-0000-7000-8000-000000000000","owner":"a",
            "host":{"name":"h","hostname":"h","port":22,"username":"u",
            "auth":{"method":"agent"},"host_key_policy":"strict","host_keys":[]},
            "pty":{"cols":80,"rows":24},"shell":true,"requested_at":"2026-01-01T00:00:00Z"}"#;
        let req: SessionRequest = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(req.idle_timeout_s, None);
        assert_eq!(req.run, None);
    }

    #[test]
    fn policy_parses_and_rejects() {
        assert_eq!("tofu".parse::<HostKeyPolicy>(), Ok(HostKeyPolicy::Tofu));
        assert!("TOFU".parse::<HostKeyPolicy>().is_err());
    }
}

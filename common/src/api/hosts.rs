//! SSH targets, and fetching a host's key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Sent;

/// A host as a client sends it (`POST /api/hosts`, `PUT /api/hosts/{id}`).
/// Every field is validated by the proxy, which names each one at fault
/// (422); the schema shows the types it accepts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "name": "web-1", "hostname": "127.0.0.1", "port": 2222, "username": "deploy",
    "auth_method": "agent", "host_key_policy": "tofu"
}))]
pub struct HostSpec {
    /// 1-64 characters of `A-Z a-z 0-9 . _ -`.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: Sent<String>,
    /// A DNS name or an IP address.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9._:\\[\\]%][A-Za-z0-9._:\\[\\]%-]{0,252}$")]
    pub hostname: Sent<String>,
    /// 22 when absent.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = Option<u16>, minimum = 1, maximum = 65535)]
    pub port: Sent<u64>,
    /// The login on the host.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$")]
    pub username: Sent<String>,
    /// `key_path`, `agent`, or a credential from the vault: `stored_key`
    /// (a private key) or `password`, with `credential_id`.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = String, required = true, pattern = "^(key_path|agent|stored_key|password)$")]
    pub auth_method: Sent<String>,
    /// An absolute path on the runner; required with `key_path`.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = Option<String>)]
    pub key_path: Sent<String>,
    /// The stored credential (`POST /api/credentials`); required with
    /// `stored_key` and `password`.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = Option<Uuid>)]
    pub credential_id: Sent<String>,
    /// `strict` (the default), `tofu`, or `off` (no check; development only).
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = Option<String>, pattern = "^(strict|tofu|off)$")]
    pub host_key_policy: Sent<String>,
    /// Pinned keys, `"<algorithm> <base64> [comment]"`; at most 16.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = Option<Vec<String>>)]
    pub host_keys: Sent<Vec<Sent<String>>>,
    /// `{key: value}` for grants to select hosts by; at most 32.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub labels: Sent<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Host {
    pub id: Uuid,
    pub name: String,
    pub hostname: String,
    pub port: i32,
    pub username: String,
    /// The first account's (see `GET /api/hosts/{id}/accounts`).
    #[schema(pattern = "^(key_path|agent|stored_key|password)$")]
    pub auth_method: String,
    #[schema(pattern = "^(strict|tofu|off)$")]
    pub host_key_policy: String,
    pub host_keys: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    /// Only with `auth_method` `key_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<String>,
    /// Only with `auth_method` `stored_key` or `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<Uuid>,
}

/// `POST /api/hosts/scan`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ScanRequest {
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9._:\\[\\]%][A-Za-z0-9._:\\[\\]%-]{0,252}$")]
    pub hostname: Sent<String>,
    /// 22 when absent.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = Option<u16>, minimum = 1, maximum = 65535)]
    pub port: Sent<u64>,
}

/// The key a host presented, to compare with the server's own and pin.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScanResult {
    pub key: String,
    pub fingerprint: String,
}

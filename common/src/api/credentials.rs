//! The credential vault: private keys and passwords a runner uses to log
//! in. A secret is write-only: nothing the API returns contains it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Sent;

/// `POST /api/credentials`. The proxy names each field at fault (422).
#[derive(Default, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "name": "deploy-key", "kind": "private_key",
    "secret": "-----BEGIN OPENSSH PRIVATE KEY-----\n…\n-----END OPENSSH PRIVATE KEY-----\n"
}))]
pub struct NewCredential {
    /// 1-64 characters of `A-Z a-z 0-9 . _ -`; unique.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: Sent<String>,
    /// `private_key` or `password`.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = String, required = true, pattern = "^(private_key|password)$")]
    pub kind: Sent<String>,
    /// The private key (OpenSSH or PEM) or the password.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = String, required = true)]
    pub secret: Sent<String>,
    /// The private key's passphrase, if it has one.
    #[serde(default, skip_serializing_if = "Sent::is_missing")]
    #[schema(value_type = Option<String>)]
    pub passphrase: Sent<String>,
}

impl std::fmt::Debug for NewCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCredential")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A stored credential, without its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Credential {
    pub id: Uuid,
    pub name: String,
    #[schema(pattern = "^(private_key|password)$")]
    pub kind: String,
    /// `SHA256:…` of the public key (private keys only).
    pub fingerprint: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The host accounts that log in with it, as `login@host`.
    #[serde(default)]
    pub used_by: Vec<String>,
    /// Sealed to the runners' key configured now; `false`: a rotation
    /// (`POST /api/credentials/rotate`) would move it.
    #[serde(default)]
    pub current_key: bool,
}

/// `POST /api/credentials/rotate`: what was re-sealed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rotation {
    /// Credentials a runner re-sealed to the current recipients.
    pub resealed: usize,
    /// Credentials that were sealed to them already.
    pub already_current: usize,
    /// The `age1…` recipient(s) everything is now sealed to.
    pub recipient: String,
}

//! Re-sealing the vault from the console (`POST /api/credentials/rotate`):
//! the proxy holds no identity, so it asks a runner, over the same
//! request/reply path as host-key scans (the scans queue, message type
//! [`RESEAL_KIND`]). The runner opens each credential with its identities
//! and seals it again to the recipients asked for — only to recipients
//! whose identity it holds itself, so neither a proxy nor an administrator
//! can have the vault sealed to a key the runners were not given.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The AMQP message type of a re-seal request on the scans queue.
pub const RESEAL_KIND: &str = "reseal";
/// Credentials per request: bounds a message (~100 × 4 KiB of base64).
pub const RESEAL_BATCH: usize = 100;
/// How long a runner may spend on one request.
pub const RESEAL_TIMEOUT: Duration = Duration::from_secs(10);

/// One sealed credential: its id and its age file, base64.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedItem {
    pub id: Uuid,
    pub ciphertext: String,
}

impl std::fmt::Debug for SealedItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedItem({})", self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResealRequest {
    /// The `age1…` recipients to seal to (the proxy's configured ones).
    pub recipients: Vec<String>,
    pub items: Vec<SealedItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ResealReply {
    /// A runner took the request; the outcome follows within
    /// [`RESEAL_TIMEOUT`].
    Taken { runner: String },
    /// Every item, sealed to the recipients asked for, in the same order.
    Resealed {
        runner: String,
        items: Vec<SealedItem>,
    },
    /// Nothing was re-sealed, and why (never a secret).
    Refused { runner: String, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_tagged_and_items_never_print_their_ciphertext() {
        let item = SealedItem {
            id: Uuid::nil(),
            ciphertext: "c2VjcmV0".into(),
        };
        assert!(!format!("{item:?}").contains("c2VjcmV0"));
        let reply = ResealReply::Refused {
            runner: "r1".into(),
            message: "no".into(),
        };
        let json = serde_json::to_value(&reply).unwrap_or_default();
        assert_eq!(json["reply"], "refused");
        let back: ResealReply = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, reply);
    }
}

//! The credential vault's sealed format, shared by the proxy (which seals)
//! and the runners (which open).
//!
//! A stored credential is an [age](https://age-encryption.org/v1) file
//! encrypted to the runners' X25519 recipients (`age1…`). Its plaintext is
//! a small JSON object `{"secret": "…", "passphrase": "…"}` (the passphrase
//! only for a protected private key). The proxy holds recipients only and
//! can seal but never open; runners hold identities (`AGE-SECRET-KEY-1…`),
//! and several during a key rotation. Plaintext is wiped from memory when
//! dropped ([`Zeroizing`]).

use std::io::{Read, Write};

use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

pub use age::secrecy;
pub use age::x25519::{Identity, Recipient};

/// What a sealed credential holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// An SSH private key (OpenSSH or PEM), maybe passphrase-protected.
    PrivateKey,
    /// A login password.
    Password,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrivateKey => "private_key",
            Self::Password => "password",
        }
    }
}

impl std::str::FromStr for CredentialKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "private_key" => Ok(Self::PrivateKey),
            "password" => Ok(Self::Password),
            other => Err(format!(
                "unknown credential kind {other:?} (use private_key or password)"
            )),
        }
    }
}

/// A credential's plaintext, wiped from memory when dropped.
#[derive(Serialize, Deserialize)]
pub struct Secret {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.secret.zeroize();
        self.passphrase.zeroize();
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A runner's identities (several during a rotation), shared and cheap to
/// clone. Debug shows only how many there are.
#[derive(Clone, Default)]
pub struct Identities(std::sync::Arc<Vec<Identity>>);

impl Identities {
    pub fn new(identities: Vec<Identity>) -> Self {
        Self(std::sync::Arc::new(identities))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Opens a sealed credential with whichever identity fits.
    pub fn open(&self, ciphertext: &[u8]) -> Result<Secret, VaultError> {
        open(&self.0, ciphertext)
    }

    /// Whether one of these identities belongs to `recipient` (`age1…`).
    pub fn holds(&self, recipient: &str) -> bool {
        self.0.iter().any(|i| recipient_of(i) == recipient)
    }

    /// Opens a sealed credential and seals it again to `to`; the
    /// plaintext is wiped as soon as it is sealed.
    pub fn reseal(&self, ciphertext: &[u8], to: &[Recipient]) -> Result<Vec<u8>, VaultError> {
        let plain = self.open(ciphertext)?;
        seal(to, &plain)
    }
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({})", self.0.len())
    }
}

/// Why a credential could not be sealed or opened. No variant carries
/// plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no vault recipient is configured")]
    NoRecipients,
    #[error("no vault identity is configured")]
    NoIdentity,
    #[error("{0}")]
    Config(String),
    #[error("encryption failed: {0}")]
    Seal(String),
    #[error("{0}")]
    Open(String),
}

/// Parses a comma- or whitespace-separated list of `age1…` recipients.
pub fn parse_recipients(list: &str) -> Result<Vec<Recipient>, VaultError> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Recipient>()
                .map_err(|e| VaultError::Config(format!("invalid age recipient {s:?}: {e}")))
        })
        .collect()
}

/// Parses identities (`AGE-SECRET-KEY-1…`): an identity file's text (one
/// per line, `#` comments and blank lines skipped) or a comma-separated
/// list. The error never quotes the key.
pub fn parse_identities(text: &str) -> Result<Vec<Identity>, VaultError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        for item in line.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let id = item.parse::<Identity>().map_err(|e| {
                VaultError::Config(format!("line {}: not an age identity ({e})", n + 1))
            })?;
            out.push(id);
        }
    }
    Ok(out)
}

/// Encrypts `secret` to every recipient.
pub fn seal(recipients: &[Recipient], secret: &Secret) -> Result<Vec<u8>, VaultError> {
    if recipients.is_empty() {
        return Err(VaultError::NoRecipients);
    }
    let plaintext =
        Zeroizing::new(serde_json::to_vec(secret).map_err(|e| VaultError::Seal(e.to_string()))?);
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| VaultError::Seal(e.to_string()))?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| VaultError::Seal(e.to_string()))?;
    writer
        .write_all(&plaintext)
        .and_then(|()| writer.finish().map(drop))
        .map_err(|e| VaultError::Seal(e.to_string()))?;
    Ok(out)
}

/// Decrypts a sealed credential with whichever identity fits.
pub fn open(identities: &[Identity], ciphertext: &[u8]) -> Result<Secret, VaultError> {
    if identities.is_empty() {
        return Err(VaultError::NoIdentity);
    }
    let decryptor = age::Decryptor::new_buffered(ciphertext)
        .map_err(|e| VaultError::Open(format!("not an age file ({e})")))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => VaultError::Open(
                "it is sealed to another key (no vault identity at hand opens it)".into(),
            ),
            other => VaultError::Open(other.to_string()),
        })?;
    let mut plaintext = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| VaultError::Open(format!("the ciphertext is damaged ({e})")))?;
    serde_json::from_slice(&plaintext)
        .map_err(|_| VaultError::Open("the plaintext is not a credential".into()))
}

/// Base64 (standard, padded) of a sealed credential, as the broker carries it.
pub fn to_base64(ciphertext: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(ciphertext)
}

pub fn from_base64(text: &str) -> Result<Vec<u8>, VaultError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| VaultError::Open("the ciphertext is not base64".into()))
}

/// The `age1…` recipient of an identity.
pub fn recipient_of(identity: &Identity) -> String {
    identity.to_public().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret {
            secret: "hunter2".into(),
            passphrase: Some("pp".into()),
        }
    }

    #[test]
    fn seal_and_open_round_trip_with_any_of_several_identities() {
        let old = Identity::generate();
        let new = Identity::generate();
        let sealed = seal(&[new.to_public()], &secret()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        let opened = open(&[old.clone(), new.clone()], &sealed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened.secret, "hunter2");
        assert_eq!(opened.passphrase.as_deref(), Some("pp"));
        let b64 = to_base64(&sealed);
        assert_eq!(from_base64(&b64).ok(), Some(sealed.clone()));
        let err = open(&[old], &sealed).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("another key")));
        assert!(matches!(open(&[], &sealed), Err(VaultError::NoIdentity)));
        assert!(matches!(
            seal(&[], &secret()),
            Err(VaultError::NoRecipients)
        ));
    }

    #[test]
    fn reseal_moves_a_credential_to_a_new_key() {
        let old = Identity::generate();
        let new = Identity::generate();
        let sealed = seal(&[old.to_public()], &secret()).unwrap_or_else(|e| panic!("{e}"));
        let runner = Identities::new(vec![old.clone(), new.clone()]);
        assert!(runner.holds(&recipient_of(&new)));
        assert!(!runner.holds(&recipient_of(&Identity::generate())));
        let moved = runner
            .reseal(&sealed, &[new.to_public()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(open(&[old], &moved).is_err());
        let opened = open(&[new], &moved).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened.secret, "hunter2");
    }

    #[test]
    fn keys_parse_from_lists_and_files() {
        let a = Identity::generate();
        let b = Identity::generate();
        use age::secrecy::ExposeSecret;
        let file = format!(
            "# created: now\n# public key: {}\n{}\n\n{}\n",
            recipient_of(&a),
            a.to_string().expose_secret(),
            b.to_string().expose_secret()
        );
        assert_eq!(parse_identities(&file).map(|v| v.len()).ok(), Some(2));
        let err = parse_identities("AGE-SECRET-KEY-1NOPE")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| !e.contains("NOPE")));
        let list = format!("{}, {}", recipient_of(&a), recipient_of(&b));
        assert_eq!(parse_recipients(&list).map(|v| v.len()).ok(), Some(2));
        assert!(parse_recipients("age1nope").is_err());
    }
}

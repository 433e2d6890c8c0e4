//! Opening an SSH connection to a session's host with russh.
//!
//! The handler really verifies the server key (see `known_hosts`) and
//! remembers what it saw, so the session can report the key and explain a
//! refusal. Errors carry a message written for the user; the underlying
//! cause goes to the log only.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, DisconnectReason, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::Disconnect;
use shellway_common::vault::{self, CredentialKind, Identities};
use shellway_common::{AuthMethod, HostKeyPolicy, HostTarget};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::key_file::{self, KeyFileError};
use super::known_hosts::{self, KeyCheck};

/// Why a connection could not be opened. `Display` is the user-facing
/// message; none of them contains key material.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SshError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("host key mismatch for {host} ({addr}): server presented {presented}, pinned {}", pinned.join(", "))]
    HostKeyMismatch {
        host: String,
        addr: String,
        presented: String,
        pinned: Vec<String>,
    },
    #[error("host key of {host} ({addr}) is not pinned and the policy is strict: server presented {presented}")]
    HostKeyNotPinned {
        host: String,
        addr: String,
        presented: String,
    },
    #[error("cannot use the private key {path}: {reason}")]
    Key { path: String, reason: KeyFileError },
    /// A stored credential this runner cannot open (no identity, the
    /// wrong one, damaged ciphertext).
    #[error("cannot decrypt the stored credential: {0}")]
    Vault(String),
    /// A stored private key that does not decode (never quoted).
    #[error("cannot use the stored private key: {0}")]
    StoredKey(&'static str),
    #[error("authentication failed for user {user} on {addr} ({method})")]
    AuthFailed {
        user: String,
        addr: String,
        method: String,
    },
    #[error("SSH connection to {addr} failed during {stage}")]
    Protocol { addr: String, stage: &'static str },
}

impl SshError {
    /// A stored credential this runner could not open: an `auth` error,
    /// not the host's fault.
    pub(crate) fn is_vault(&self) -> bool {
        matches!(self, Self::Vault(_) | Self::StoredKey(_))
    }

    /// No connection, or no SSH server answered: the host is unreachable
    /// (not refusing us).
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }
}

/// The key a server presented, and what the pinned keys said about it.
#[derive(Debug, Clone)]
pub(crate) struct HostKeySeen {
    /// `<algorithm> <base64>`.
    pub(crate) key: String,
    /// `SHA256:…`.
    pub(crate) fingerprint: String,
    pub(crate) check: KeyCheck,
}

/// An authenticated SSH connection, shared by the shell and the runs.
pub(crate) struct SshConnection {
    handle: Handle<Verifier>,
    closed: CancellationToken,
}

impl SshConnection {
    pub(crate) async fn open_channel(&self) -> Result<russh::Channel<client::Msg>, russh::Error> {
        self.handle.channel_open_session().await
    }

    /// Cancelled when the connection to the host ends.
    pub(crate) fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    pub(crate) async fn disconnect(&self) {
        if let Err(err) = self
            .handle
            .disconnect(Disconnect::ByApplication, "session closed", "en")
            .await
        {
            tracing::debug!(error = %err, "SSH disconnect failed (connection already gone)");
        }
    }
}

/// The outcome of a connection attempt and the host key seen on the way.
pub(crate) struct Attempt {
    pub(crate) host_key: Option<HostKeySeen>,
    pub(crate) result: Result<SshConnection, SshError>,
}

/// How the runner logs in, once read or opened.
enum Login {
    Key(Box<PrivateKey>),
    Password(Zeroizing<String>),
    Agent,
}

/// Reads the key (a `key_path` under `key_dir`) or opens the stored
/// credential (with `vault`), then connects and authenticates, each within
/// `timeout`. A stored secret lives in memory only for this attempt.
pub(crate) async fn connect(
    target: &HostTarget,
    timeout: Duration,
    key_dir: &Path,
    vault: &Identities,
) -> Attempt {
    let seen = Arc::new(Mutex::new(None));
    let result = match load_login(target, key_dir, vault, timeout).await {
        Ok(key) => connect_inner(target, timeout, key, &seen).await,
        Err(err) => Err(err),
    };
    let host_key = seen.lock().ok().and_then(|s| s.clone());
    Attempt { host_key, result }
}

fn addr(target: &HostTarget) -> String {
    format!("{}:{}", target.hostname, target.port)
}

async fn connect_inner(
    target: &HostTarget,
    timeout: Duration,
    key: Login,
    seen: &Arc<Mutex<Option<HostKeySeen>>>,
) -> Result<SshConnection, SshError> {
    let addr = addr(target);
    let config = Arc::new(client::Config {
        nodelay: true,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        ..Default::default()
    });
    let closed = CancellationToken::new();
    let verifier = Verifier {
        host: target.name.clone(),
        addr: addr.clone(),
        policy: target.host_key_policy,
        pinned: target.host_keys.clone(),
        seen: seen.clone(),
        closed: closed.clone(),
    };
    let connecting = client::connect(config, (target.hostname.as_str(), target.port), verifier);
    let mut handle = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => {
            return Err(SshError::Connect {
                addr,
                reason: format!("timed out after {} ms", timeout.as_millis()),
            })
        }
        Ok(Err(err)) => return Err(refused(target, &addr, seen, err)),
        Ok(Ok(handle)) => handle,
    };
    let authenticated =
        tokio::time::timeout(timeout, authenticate(&mut handle, target, key, &addr))
            .await
            .map_err(|_| SshError::Protocol {
                addr: addr.clone(),
                stage: "authentication (timed out)",
            })??;
    if !authenticated {
        return Err(SshError::AuthFailed {
            user: target.username.clone(),
            addr,
            method: auth_name(&target.auth).into(),
        });
    }
    Ok(SshConnection { handle, closed })
}

/// Turns a failed handshake into the user's error: a refused host key if
/// the verifier refused it, else a connection error.
fn refused(
    target: &HostTarget,
    addr: &str,
    seen: &Mutex<Option<HostKeySeen>>,
    err: russh::Error,
) -> SshError {
    let key = seen.lock().ok().and_then(|s| s.clone());
    if let Some(key) = key {
        if !known_hosts::accepts(target.host_key_policy, &key.check) {
            return match key.check {
                KeyCheck::Mismatch { presented, pinned } => SshError::HostKeyMismatch {
                    host: target.name.clone(),
                    addr: addr.into(),
                    presented,
                    pinned,
                },
                _ => SshError::HostKeyNotPinned {
                    host: target.name.clone(),
                    addr: addr.into(),
                    presented: key.fingerprint,
                },
            };
        }
    }
    tracing::info!(error = %err, "SSH connection failed");
    SshError::Connect {
        addr: addr.into(),
        reason: err.to_string(),
    }
}

fn auth_name(auth: &AuthMethod) -> &'static str {
    match auth {
        AuthMethod::KeyPath { .. } => "public key",
        AuthMethod::Agent => "SSH agent",
        AuthMethod::Sealed {
            kind: CredentialKind::PrivateKey,
            ..
        } => "stored public key",
        AuthMethod::Sealed {
            kind: CredentialKind::Password,
            ..
        } => "stored password",
    }
}

async fn authenticate(
    handle: &mut Handle<Verifier>,
    target: &HostTarget,
    key: Login,
    addr: &str,
) -> Result<bool, SshError> {
    let user = target.username.as_str();
    let protocol = |stage| SshError::Protocol {
        addr: addr.into(),
        stage,
    };
    match key {
        Login::Key(key) => {
            let key = *key;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(|_| protocol("authentication"))?
                .flatten();
            let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
            let result = handle
                .authenticate_publickey(user, key)
                .await
                .map_err(|err| {
                    tracing::info!(error = %err, "public key authentication failed");
                    protocol("authentication")
                })?;
            Ok(result.success())
        }
        Login::Password(password) => {
            let result = handle
                .authenticate_password(user, password.as_str())
                .await
                .map_err(|err| {
                    tracing::info!(error = %err, "password authentication failed");
                    protocol("authentication")
                })?;
            Ok(result.success())
        }
        Login::Agent => authenticate_with_agent(handle, user, addr).await,
    }
}

/// What to log in with: a key file, a stored credential opened here, or
/// the agent.
async fn load_login(
    target: &HostTarget,
    key_dir: &Path,
    vault: &Identities,
    timeout: Duration,
) -> Result<Login, SshError> {
    match &target.auth {
        AuthMethod::Sealed { kind, ciphertext } => {
            let (kind, ciphertext, vault) = (*kind, ciphertext.clone(), vault.clone());
            // X25519 and, for a protected key, bcrypt-pbkdf: CPU work.
            tokio::task::spawn_blocking(move || open_sealed(kind, &ciphertext, &vault))
                .await
                .unwrap_or_else(|_| Err(SshError::Vault("the decryption failed".into())))
        }
        AuthMethod::KeyPath { .. } => Ok(load_key(target, key_dir, timeout)
            .await?
            .map_or(Login::Agent, |key| Login::Key(Box::new(key)))),
        AuthMethod::Agent => Ok(Login::Agent),
    }
}

/// Opens a stored credential in memory; the plaintext is wiped when the
/// returned login (and the opened secret, here) are dropped.
fn open_sealed(
    kind: CredentialKind,
    ciphertext: &str,
    vault: &Identities,
) -> Result<Login, SshError> {
    if vault.is_empty() {
        return Err(SshError::Vault(
            "this runner has no vault identity (SHELLWAY_VAULT_IDENTITY_FILE)".into(),
        ));
    }
    let bytes = vault::from_base64(ciphertext).map_err(|e| SshError::Vault(e.to_string()))?;
    let secret = vault
        .open(&bytes)
        .map_err(|e| SshError::Vault(e.to_string()))?;
    match kind {
        CredentialKind::Password => Ok(Login::Password(Zeroizing::new(secret.secret.clone()))),
        CredentialKind::PrivateKey => {
            russh::keys::decode_secret_key(&secret.secret, secret.passphrase.as_deref())
                .map(|key| Login::Key(Box::new(key)))
                .map_err(|err| match err {
                    russh::keys::Error::KeyIsEncrypted => {
                        SshError::StoredKey("it is encrypted and no passphrase was stored")
                    }
                    _ => SshError::StoredKey("not a valid private key, or a wrong passphrase"),
                })
        }
    }
}

/// The private key of a `key_path` host (`None` for the agent), read
/// before any connection is made. The error names the path and a reason,
/// never the file's contents.
async fn load_key(
    target: &HostTarget,
    key_dir: &Path,
    timeout: Duration,
) -> Result<Option<PrivateKey>, SshError> {
    let AuthMethod::KeyPath { path } = &target.auth else {
        return Ok(None);
    };
    match key_file::load(path, key_dir, timeout).await {
        Ok(key) => Ok(Some(key)),
        Err(reason) => {
            tracing::warn!(path, %reason, "cannot load private key");
            Err(SshError::Key {
                path: path.clone(),
                reason,
            })
        }
    }
}

async fn authenticate_with_agent(
    handle: &mut Handle<Verifier>,
    user: &str,
    addr: &str,
) -> Result<bool, SshError> {
    let agent_error = |stage| SshError::Protocol {
        addr: addr.into(),
        stage,
    };
    let mut agent = AgentClient::connect_env().await.map_err(|err| {
        tracing::warn!(error = %err, "cannot reach the SSH agent (SSH_AUTH_SOCK)");
        agent_error("authentication (the runner's SSH agent is unavailable)")
    })?;
    let identities = agent
        .request_identities()
        .await
        .map_err(|_| agent_error("authentication (the SSH agent did not list its keys)"))?;
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|_| agent_error("authentication"))?
        .flatten();
    for identity in identities {
        let key = identity.public_key().into_owned();
        match handle
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
        {
            Ok(AuthResult::Success) => return Ok(true),
            Ok(AuthResult::Failure { .. }) => continue,
            Err(err) => {
                tracing::info!(error = %err, "agent key refused");
                continue;
            }
        }
    }
    Ok(false)
}

/// The russh handler: checks the server key against the pinned keys.
struct Verifier {
    host: String,
    addr: String,
    policy: HostKeyPolicy,
    pinned: Vec<String>,
    seen: Arc<Mutex<Option<HostKeySeen>>>,
    closed: CancellationToken,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        let check = known_hosts::check(&key, &self.pinned);
        let accepted = known_hosts::accepts(self.policy, &check);
        let fingerprint = known_hosts::fingerprint(&key);
        match (&check, self.policy) {
            (KeyCheck::Valid, _) => {}
            (_, HostKeyPolicy::Off) => tracing::warn!(
                host = %self.host, addr = %self.addr, %fingerprint,
                "HOST KEY NOT VERIFIED: host key policy is `off` (development only)"
            ),
            (KeyCheck::Unknown, HostKeyPolicy::Tofu) => {
                tracing::info!(host = %self.host, %fingerprint, "trusting host key on first use")
            }
            _ => {
                tracing::warn!(host = %self.host, addr = %self.addr, %fingerprint, ?check, "host key refused")
            }
        }
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(HostKeySeen {
                key: known_hosts::openssh_line(&key),
                fingerprint,
                check,
            });
        }
        Ok(accepted)
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        self.closed.cancel();
        match reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                tracing::debug!(message = %info.message, "host closed the SSH connection");
                Ok(())
            }
            DisconnectReason::Error(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_target(path: &str) -> HostTarget {
        HostTarget {
            name: "web1".into(),
            hostname: "127.0.0.1".into(),
            port: 1,
            username: "u".into(),
            auth: AuthMethod::KeyPath { path: path.into() },
            host_key_policy: HostKeyPolicy::Strict,
            host_keys: Vec::new(),
        }
    }

    async fn key_error(path: &str, key_dir: &Path) -> String {
        load_key(&key_target(path), key_dir, Duration::from_secs(5))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_missing_key_names_the_path_only() {
        let path = "/tmp/shellway-nonexistent/id_ed25519";
        assert_eq!(
            key_error(path, Path::new("/tmp")).await,
            format!("cannot use the private key {path}: no such file")
        );
    }

    #[tokio::test]
    async fn a_file_that_is_no_key_does_not_leak_its_contents() {
        let dir = std::env::temp_dir().join(format!("shellway-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("id");
        let secret = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END OPENSSH PRIVATE KEY-----\n";
        std::fs::write(&path, secret).unwrap_or_else(|e| panic!("{e}"));
        let big = dir.join("big");
        std::fs::write(&big, secret.repeat(2000)).unwrap_or_else(|e| panic!("{e}"));
        // The fixture would leak if an error quoted the file.
        assert!(secret.contains("c2VjcmV0"));
        for path in [path, big] {
            let path = path.display().to_string();
            let err = key_error(&path, &dir).await;
            assert!(
                err.starts_with(&format!("cannot use the private key {path}: ")),
                "{err}"
            );
            assert!(
                !err.contains("c2VjcmV0") && !err.contains("PRIVATE KEY"),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_mismatch_message_names_both_fingerprints() {
        let err = SshError::HostKeyMismatch {
            host: "web1".into(),
            addr: "127.0.0.1:2222".into(),
            presented: "SHA256:abc".into(),
            pinned: vec!["SHA256:def".into()],
        };
        assert_eq!(
            err.to_string(),
            "host key mismatch for web1 (127.0.0.1:2222): server presented SHA256:abc, pinned SHA256:def"
        );
    }
}

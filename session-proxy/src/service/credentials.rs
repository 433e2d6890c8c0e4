//! The credential vault: administrators store private keys and passwords,
//! which the proxy seals at once to the runners' age recipients
//! (`SHELLWAY_VAULT_RECIPIENTS`) and forgets. The proxy holds no identity:
//! it cannot open what it stored. A session hands the sealed credential to
//! its runner, which opens it in memory for one connection.

use std::sync::Arc;

use serde_json::{json, Value};
use shellway_common::reseal::{ResealReply, ResealRequest, SealedItem, RESEAL_BATCH};
use shellway_common::vault::{self, CredentialKind, Identity, Recipient, Secret};
use shellway_common::AuthMethod;
use sqlx::PgPool;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{authorize, Action, Resource, ServiceError};
use crate::auth::AuthUser;
use crate::bus::AskError;
use crate::state::AppState;
use crate::store;
use crate::store::credentials::{CredentialRow, CredentialWriteError, NewCredential};

/// The runners' recipients the proxy seals to; empty when the vault is
/// not configured.
#[derive(Clone, Default)]
pub(crate) struct Vault {
    recipients: Arc<Vec<Recipient>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("recipients", &self.label())
            .finish()
    }
}

impl Vault {
    pub(crate) fn new(recipients: Vec<Recipient>) -> Self {
        Self {
            recipients: Arc::new(recipients),
        }
    }

    /// The recipients, comma-separated, as stored with each credential.
    fn label(&self) -> String {
        join(&self.recipients)
    }

    /// Whether a credential sealed to `recipient` (as stored) is sealed to
    /// the recipients configured now; `false` means a rotation would move it.
    pub(crate) fn is_current(&self, recipient: &str) -> bool {
        !self.recipients.is_empty() && recipient == self.label()
    }
}

fn join(recipients: &[Recipient]) -> String {
    recipients
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A credential as an administrator sent it (validated field by field in
/// `api/credentials.rs`). The secret is wiped when dropped.
pub(crate) struct CredentialInput {
    pub name: String,
    pub kind: CredentialKind,
    pub secret: Zeroizing<String>,
    pub passphrase: Option<Zeroizing<String>>,
}

/// May `user` manage credentials? Asked before the request is parsed.
pub(crate) fn may_manage(user: &AuthUser) -> Result<(), ServiceError> {
    Ok(authorize(
        &user.actor(),
        Action::Manage,
        Resource::Credentials,
    )?)
}

pub(crate) async fn list(
    st: &AppState,
    user: &AuthUser,
) -> Result<Vec<CredentialRow>, ServiceError> {
    authorize(&user.actor(), Action::Read, Resource::Credentials)?;
    Ok(store::credentials::list(&st.db).await?)
}

/// What the audit trail keeps of a credential: never its secret.
fn audit_detail(row: &CredentialRow) -> Value {
    json!({"name": row.name, "kind": row.kind, "fingerprint": row.fingerprint})
}

/// Checks the secret (a private key must decode, with its passphrase if
/// it has one), seals it to the runners, stores the ciphertext.
pub(crate) async fn create(
    st: &AppState,
    user: &AuthUser,
    input: CredentialInput,
) -> Result<CredentialRow, ServiceError> {
    may_manage(user)?;
    let vault = st.settings.vault.clone();
    if vault.recipients.is_empty() {
        return Err(ServiceError::conflict(
            "vault_not_configured",
            "the credential vault is not configured (SHELLWAY_VAULT_RECIPIENTS)",
        ));
    }
    let CredentialInput {
        name,
        kind,
        secret,
        passphrase,
    } = input;
    // Key derivation (bcrypt-pbkdf) and encryption are CPU work.
    let sealed = tokio::task::spawn_blocking(move || -> Result<_, ServiceError> {
        let (fingerprint, passphrase) = match kind {
            CredentialKind::PrivateKey => {
                let (fp, needs) = fingerprint(&secret, passphrase.as_deref().map(|p| p.as_str()))?;
                (Some(fp), if needs { passphrase } else { None })
            }
            CredentialKind::Password => (None, None),
        };
        let plain = Secret {
            secret: secret.to_string(),
            passphrase: passphrase.map(|p| p.to_string()),
        };
        let ciphertext = vault::seal(&vault.recipients, &plain).map_err(|err| {
            tracing::error!(error = %err, "cannot seal a credential");
            ServiceError::conflict("vault_error", "the credential could not be encrypted")
        })?;
        Ok((ciphertext, fingerprint, vault.label()))
    })
    .await
    .map_err(|_| {
        ServiceError::conflict("vault_error", "the credential could not be encrypted")
    })??;
    let (ciphertext, fingerprint, recipient) = sealed;
    let new = NewCredential {
        name: &name,
        kind: kind.as_str(),
        ciphertext: &ciphertext,
        fingerprint: fingerprint.as_deref(),
        recipient: &recipient,
    };
    match store::credentials::create(&st.db, &new, user.audit_id(), audit_detail).await {
        Ok(row) => Ok(row),
        Err(CredentialWriteError::DuplicateName) => Err(ServiceError::conflict(
            "duplicate_name",
            "a credential with this name exists already",
        )),
        Err(CredentialWriteError::InUse) => Err(ServiceError::conflict(
            "credential_in_use",
            "the credential is in use",
        )),
        Err(CredentialWriteError::Db(err)) => Err(err.into()),
    }
}

/// `SHA256:…` of the key's public half, and whether it is encrypted (its
/// passphrase is then needed). A 422 names `secret` (no key) or
/// `passphrase` (missing or wrong); no message quotes the key.
fn fingerprint(secret: &str, passphrase: Option<&str>) -> Result<(String, bool), ServiceError> {
    use russh::keys::{decode_secret_key, Error, HashAlg};
    let fp =
        |key: &russh::keys::PrivateKey| key.public_key().fingerprint(HashAlg::Sha256).to_string();
    match decode_secret_key(secret, None) {
        Ok(key) => Ok((fp(&key), false)),
        Err(Error::KeyIsEncrypted) => {
            let Some(passphrase) = passphrase.filter(|p| !p.is_empty()) else {
                return Err(ServiceError::invalid(
                    "passphrase",
                    "the private key is encrypted: its passphrase is required",
                ));
            };
            decode_secret_key(secret, Some(passphrase))
                .map(|key| (fp(&key), true))
                .map_err(|_| {
                    ServiceError::invalid(
                        "passphrase",
                        "the passphrase does not decrypt the private key",
                    )
                })
        }
        Err(_) => Err(ServiceError::invalid(
            "secret",
            "not a valid private key (OpenSSH or PEM)",
        )),
    }
}

pub(crate) async fn delete(st: &AppState, user: &AuthUser, id: Uuid) -> Result<(), ServiceError> {
    may_manage(user)?;
    match store::credentials::delete(&st.db, id, user.audit_id(), audit_detail).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ServiceError::NotFound("credential")),
        Err(CredentialWriteError::InUse) => Err(ServiceError::conflict(
            "credential_in_use",
            "the credential is in use by a host; change the host first",
        )),
        Err(CredentialWriteError::DuplicateName) => Err(ServiceError::conflict(
            "duplicate_name",
            "a credential with this name exists already",
        )),
        Err(CredentialWriteError::Db(err)) => Err(err.into()),
    }
}

/// The sealed credential a runner logs in with, for a login that uses a
/// stored key or password. Only ciphertext leaves the proxy.
pub(crate) async fn sealed_auth(
    st: &AppState,
    credential_id: Uuid,
) -> Result<AuthMethod, ServiceError> {
    let gone = || {
        ServiceError::conflict(
            "host_unusable",
            "this login's stored credential does not exist; edit the host",
        )
    };
    let (kind, ciphertext) = store::credentials::sealed(&st.db, credential_id)
        .await?
        .ok_or_else(gone)?;
    let kind = kind.parse::<CredentialKind>().map_err(|_| gone())?;
    Ok(AuthMethod::Sealed {
        kind,
        ciphertext: vault::to_base64(&ciphertext),
    })
}

/// The kind of a stored credential, to check a login that names it.
pub(crate) async fn kind_of(
    st: &AppState,
    credential_id: Uuid,
) -> Result<Option<CredentialKind>, ServiceError> {
    Ok(store::credentials::sealed(&st.db, credential_id)
        .await?
        .and_then(|(kind, _)| kind.parse().ok()))
}

/// Re-seals every credential to `to`, in one transaction, opening each
/// with `identities` (the operator's copy of the runners' old identity).
/// Returns how many were re-sealed; any failure changes nothing.
pub(crate) async fn rotate(
    db: &PgPool,
    identities: &[Identity],
    to: &[Recipient],
) -> anyhow::Result<usize> {
    anyhow::ensure!(!to.is_empty(), "no new recipient given");
    let mut tx = db.begin().await?;
    let rows = store::credentials::lock_all(&mut tx).await?;
    let label = join(to);
    for (id, ciphertext) in &rows {
        let plain = vault::open(identities, ciphertext)
            .map_err(|err| anyhow::anyhow!("cannot open credential {id}: {err}"))?;
        let resealed = vault::seal(to, &plain)?;
        drop(plain);
        store::credentials::reseal(&mut tx, *id, &resealed, &label).await?;
    }
    let detail = json!({"credentials": rows.len(), "recipient": label});
    store::credentials::record_rotation(&mut tx, None, detail).await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// What a rotation from the console did.
#[derive(Debug)]
pub(crate) struct Rotation {
    /// Credentials now sealed to the current recipients that were not.
    pub resealed: usize,
    /// Credentials that were sealed to them already.
    pub already_current: usize,
    /// The recipients, comma-separated.
    pub recipient: String,
}

/// `POST /api/credentials/rotate`: re-seals every credential not sealed to
/// the recipients configured now (`SHELLWAY_VAULT_RECIPIENTS`). The proxy
/// cannot open them, so a runner does it, a batch at a time (so memory
/// stays one batch, however many credentials there are); it seals only to
/// keys whose identity it holds. Nothing is locked while the runner works:
/// each batch is written in one transaction, each credential only if it
/// was not changed meanwhile. A refusal stops the rotation; batches before
/// it stay moved (the runners hold the new key), and running it again
/// finishes the rest.
pub(crate) async fn rotate_through_runner(
    st: &AppState,
    user: &AuthUser,
) -> Result<Rotation, ServiceError> {
    may_manage(user)?;
    let vault = st.settings.vault.clone();
    if vault.recipients.is_empty() {
        return Err(ServiceError::conflict(
            "vault_not_configured",
            "no vault recipient is configured (SHELLWAY_VAULT_RECIPIENTS)",
        ));
    }
    let label = vault.label();
    let total = store::credentials::count(&st.db).await?;
    let recipients: Vec<String> = vault.recipients.iter().map(ToString::to_string).collect();
    let (mut resealed, mut stale, mut after) = (0, 0, None);
    let mut runners = Vec::new();
    let outcome = loop {
        let batch =
            store::credentials::sealed_elsewhere(&st.db, &label, after, RESEAL_BATCH as i64)
                .await?;
        let Some(last) = batch.last() else {
            break Ok(());
        };
        after = Some(last.0);
        stale += batch.len();
        match reseal_batch(st, &recipients, &batch).await {
            Ok((runner, moved)) => {
                let mut tx = st.db.begin().await?;
                for ((id, old), new) in batch.iter().zip(&moved) {
                    if store::credentials::reseal_if_unchanged(&mut tx, *id, old, new, &label)
                        .await?
                    {
                        resealed += 1;
                    }
                }
                tx.commit().await?;
                if !runners.contains(&runner) {
                    runners.push(runner);
                }
            }
            Err(err) => break Err(err),
        }
    };
    if resealed > 0 || outcome.is_ok() {
        let detail = json!({
            "credentials": resealed,
            "already_current": total.saturating_sub(stale),
            "recipient": label,
            "runners": runners,
            "complete": outcome.is_ok(),
        });
        let mut tx = st.db.begin().await?;
        store::credentials::record_rotation(&mut tx, user.audit_id(), detail).await?;
        tx.commit().await?;
    }
    outcome?;
    tracing::info!(resealed, runners = ?runners, user = %user.username, "vault rotated from the console");
    Ok(Rotation {
        resealed,
        already_current: total.saturating_sub(stale),
        recipient: label,
    })
}

/// Has a runner re-seal one batch to `recipients`: the runner's name and
/// the new ciphertexts, in the batch's order.
async fn reseal_batch(
    st: &AppState,
    recipients: &[String],
    batch: &[(Uuid, Vec<u8>)],
) -> Result<(String, Vec<Vec<u8>>), ServiceError> {
    let request = ResealRequest {
        recipients: recipients.to_vec(),
        items: batch
            .iter()
            .map(|(id, c)| SealedItem {
                id: *id,
                ciphertext: vault::to_base64(c),
            })
            .collect(),
    };
    let (runner, items) = match st.asks.reseal(&request).await {
        Ok(ResealReply::Resealed { runner, items }) => (runner, items),
        Ok(ResealReply::Refused { runner, message }) => {
            tracing::warn!(%runner, %message, "a runner refused to re-seal the vault");
            return Err(ServiceError::conflict("rotation_refused", message));
        }
        Ok(ResealReply::Taken { .. }) => {
            return Err(ServiceError::Internal("a re-seal ended at `taken`".into()))
        }
        Err(err @ AskError::NoRunner(_)) => return Err(ServiceError::NoCapacity(err.to_string())),
        Err(AskError::Broker(err)) => return Err(err.into()),
    };
    let same = items.len() == batch.len() && items.iter().zip(batch).all(|(i, b)| i.id == b.0);
    if !same {
        return Err(ServiceError::Internal(format!(
            "runner {runner} answered a re-seal with other credentials than asked"
        )));
    }
    let moved = items
        .iter()
        .map(|item| vault::from_base64(&item.ciphertext))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            ServiceError::Internal(format!("runner {runner} sent a damaged ciphertext"))
        })?;
    Ok((runner, moved))
}

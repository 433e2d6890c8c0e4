//! The credential vault (administrators only). A secret goes in and never
//! comes out: answers carry id, name, kind, fingerprint and where it is used.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use shellway_common::api::credentials::{Credential, NewCredential, Rotation};
use shellway_common::api::Sent;
use shellway_common::vault::CredentialKind;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{AppState, Json};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::credentials::{self, CredentialInput};
use crate::store::credentials::CredentialRow;

/// Largest secret accepted: an RSA-16384 key in OpenSSH format is ~12 KiB.
const MAX_SECRET: usize = 64 * 1024;

fn to_dto(st: &AppState, c: CredentialRow) -> Credential {
    Credential {
        current_key: st.settings.vault.is_current(&c.recipient),
        id: c.id,
        name: c.name,
        kind: c.kind,
        fingerprint: c.fingerprint,
        created_at: c.created_at,
        used_by: c.used_by,
    }
}

#[utoipa::path(get, operation_id = "list_credentials", path = "/api/credentials", tag = "credentials", responses((status = 200, description = "Every stored credential, by name, without secrets (administrators)", body = Vec<Credential>)))]
pub(crate) async fn list(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<Credential>>, ApiError> {
    let rows = credentials::list(&st, &user).await?;
    Ok(axum::Json(
        rows.into_iter().map(|c| to_dto(&st, c)).collect(),
    ))
}

#[utoipa::path(post, operation_id = "create_credential", path = "/api/credentials", tag = "credentials", request_body = NewCredential, responses((status = 201, description = "Sealed to the runners' key and stored (administrators); the secret is not returned", body = Credential), (status = 409, description = "`duplicate_name`, or `vault_not_configured` (no SHELLWAY_VAULT_RECIPIENTS)", body = shellway_common::api::errors::ErrorBody)))]
pub(crate) async fn create(
    State(st): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewCredential>,
) -> Result<(StatusCode, axum::Json<Credential>), ApiError> {
    credentials::may_manage(&user)?;
    let input = parse(body)?;
    let row = credentials::create(&st, &user, input).await?;
    Ok((StatusCode::CREATED, axum::Json(to_dto(&st, row))))
}

#[utoipa::path(delete, operation_id = "delete_credential", path = "/api/credentials/{id}", tag = "credentials", params(("id" = Uuid, Path)), responses((status = 204, description = "Deleted (administrators)"), (status = 409, description = "`credential_in_use`: a host logs in with it", body = shellway_common::api::errors::ErrorBody)))]
pub(crate) async fn remove(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    credentials::delete(&st, &user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, operation_id = "rotate_credentials", path = "/api/credentials/rotate", tag = "credentials", responses((status = 200, description = "Every credential is now sealed to the recipients configured now (SHELLWAY_VAULT_RECIPIENTS); a runner re-sealed those that were not (administrators)", body = Rotation), (status = 409, description = "`vault_not_configured`, or `rotation_refused`: the runner does not hold the new key's identity, or cannot open a credential (the message says which); batches (100 credentials) written before it stay moved, a retry finishes the rest", body = shellway_common::api::errors::ErrorBody), (status = 503, description = "No runner answered; batches written before it stay moved", body = shellway_common::api::errors::ErrorBody)))]
pub(crate) async fn rotate(
    State(st): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Rotation>, ApiError> {
    let done = credentials::rotate_through_runner(&st, &user).await?;
    Ok(axum::Json(Rotation {
        resealed: done.resealed,
        already_current: done.already_current,
        recipient: done.recipient,
    }))
}

/// Validates every field, naming each one at fault; the secret is moved
/// into wiped-on-drop storage at once.
fn parse(body: NewCredential) -> Result<CredentialInput, ApiError> {
    let NewCredential {
        name,
        kind,
        secret,
        passphrase,
    } = body;
    let mut errors = Vec::new();
    let name = match name {
        Sent::Value(n) if valid_name(&n) => Some(n),
        _ => {
            errors.push(ApiError::invalid(
                "name",
                "name must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
            ));
            None
        }
    };
    let kind = match kind {
        Sent::Value(k) => k
            .parse::<CredentialKind>()
            .map_err(|m| ApiError::invalid("kind", m)),
        _ => Err(ApiError::invalid(
            "kind",
            "kind is required: private_key or password",
        )),
    }
    .map_err(|e| errors.push(e))
    .ok();
    let secret = match secret {
        Sent::Value(s) => {
            let s = Zeroizing::new(s);
            if s.is_empty() {
                errors.push(ApiError::invalid("secret", "secret must not be empty"));
                None
            } else if s.len() > MAX_SECRET {
                errors.push(ApiError::invalid("secret", "secret is larger than 64 KiB"));
                None
            } else {
                Some(s)
            }
        }
        _ => {
            errors.push(ApiError::invalid(
                "secret",
                "secret is required (a private key or a password)",
            ));
            None
        }
    };
    let passphrase = match passphrase {
        Sent::Missing => None,
        Sent::Value(p) => Some(Zeroizing::new(p)).filter(|p| !p.is_empty()),
        Sent::WrongType => {
            errors.push(ApiError::invalid(
                "passphrase",
                "passphrase must be a string",
            ));
            None
        }
    };
    if kind == Some(CredentialKind::Password) && passphrase.is_some() {
        errors.push(ApiError::invalid(
            "passphrase",
            "a passphrase belongs to a private key, not a password",
        ));
    }
    if let Some(err) = ApiError::all(errors) {
        return Err(err);
    }
    match (name, kind, secret) {
        (Some(name), Some(kind), Some(secret)) => Ok(CredentialInput {
            name,
            kind,
            secret,
            passphrase,
        }),
        _ => Err(ApiError::invalid("body", "the credential is not valid")),
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

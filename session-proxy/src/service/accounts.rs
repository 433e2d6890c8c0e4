//! People proving who they are: signing in and out, changing one's own
//! password, the first administrator. Failed attempts are throttled per
//! username and per client address (`store::throttles`); a password is
//! checked only with a hashing thread admitted (`passwords::Hasher`).

use std::net::IpAddr;

use serde_json::json;
use uuid::Uuid;

use super::{Role, ServiceError};
use crate::auth::{self, AuthUser};
use crate::passwords::{self, HashError, Hasher};
use crate::state::AppState;
use crate::store::pool as db;
use crate::store::throttles::{self as throttle, Attempt};
use crate::store::{self, audit, AuditAction};

/// A cookie session just opened: the secret goes into the cookie and
/// nowhere else.
pub(crate) struct SignedIn {
    pub(crate) id: Uuid,
    pub(crate) username: String,
    pub(crate) role: Role,
    pub(crate) cookie_token: String,
    pub(crate) csrf_token: String,
}

impl From<HashError> for ServiceError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => {
                Self::Busy("the server is checking many passwords at once; try again in a moment")
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

fn too_many_attempts(secs: u64) -> ServiceError {
    ServiceError::Throttled {
        message: format!("too many failed sign-ins; try again in {secs} s"),
        retry_after_s: secs,
    }
}

/// Checks `username`'s password and opens a cookie session.
pub(crate) async fn sign_in(
    st: &AppState,
    username: &str,
    password: String,
    addr: Option<IpAddr>,
) -> Result<SignedIn, ServiceError> {
    let keys = throttle::keys(username, addr);
    // Blocked keys are refused before waiting for a hashing thread.
    if let Some(secs) = throttle::blocked_for(&st.db, &keys).await? {
        return Err(too_many_attempts(secs));
    }
    let admitted = st.hasher.admit().await?;
    let blocking = match throttle::count_attempt(&st.db, &keys).await? {
        Attempt::Blocked(secs) => return Err(too_many_attempts(secs)),
        Attempt::Counted(blocking) => blocking,
    };
    let row = store::users::for_login(&st.db, username).await?;
    let stored = row.as_ref().map(|r| r.2.clone());
    let ok = admitted.verify(stored, password).await;
    let address = addr.map(|a| a.to_string());
    let Some((id, username, _, role, disabled_at)) = row.filter(|_| ok) else {
        let tried = db::untrusted_text(username);
        let detail = json!({"address": address});
        audit::record_alone(&st.db, None, AuditAction::LoginFailed, &tried, detail).await?;
        for (key, failures, until) in blocking {
            let detail = json!({"kind": key.kind.as_str(), "failures": failures, "until": until});
            audit::record_alone(&st.db, None, AuditAction::LoginThrottled, &key.key, detail)
                .await?;
        }
        return Err(ServiceError::Unauthenticated("wrong username or password"));
    };
    throttle::succeeded(&st.db, &keys).await?;
    if disabled_at.is_some() {
        let who = Some((id, username.as_str()));
        let action = AuditAction::LoginDisabled;
        audit::record_alone(&st.db, who, action, &username, json!({})).await?;
        return Err(ServiceError::Forbidden(
            "this account is disabled; ask an administrator",
        ));
    }
    let (cookie_token, hash) = auth::new_secret("");
    let csrf_token = hex::encode(rand::random::<[u8; 32]>());
    let detail = json!({"address": address});
    let hours = auth::LOGIN_HOURS as i32;
    store::users::sign_in(&st.db, (id, &username), &hash, &csrf_token, hours, detail).await?;
    Ok(SignedIn {
        id,
        username,
        role: Role::parse(&role).unwrap_or(Role::User),
        cookie_token,
        csrf_token,
    })
}

/// Ends the cookie session whose secret hashes to `cookie_hash` (if any).
pub(crate) async fn sign_out(
    st: &AppState,
    user: &AuthUser,
    cookie_hash: Option<&[u8]>,
) -> Result<(), ServiceError> {
    store::users::sign_out(&st.db, (user.id, &user.username), cookie_hash).await?;
    Ok(())
}

/// Changes `user`'s own password. The current one proves it is them (a
/// wrong one counts as a failed sign-in); every cookie session of theirs
/// but `keep` (the hash of the caller's own cookie) ends.
pub(crate) async fn change_password(
    st: &AppState,
    user: &AuthUser,
    addr: Option<IpAddr>,
    current: String,
    new: String,
    keep: &[u8],
) -> Result<(), ServiceError> {
    passwords::check_new(&user.username, &new)
        .map_err(|why| ServiceError::invalid("new_password", why))?;
    let keys = throttle::keys(&user.username, addr);
    if let Some(secs) = throttle::blocked_for(&st.db, &keys).await? {
        return Err(too_many_attempts(secs));
    }
    let admitted = st.hasher.admit().await?;
    if let Attempt::Blocked(secs) = throttle::count_attempt(&st.db, &keys).await? {
        return Err(too_many_attempts(secs));
    }
    let stored = store::users::password_hash(&st.db, user.id).await?;
    if !admitted.verify(stored, current).await {
        let action = AuditAction::UserPasswordFailed;
        audit::record_alone(&st.db, user.audit_id(), action, &user.username, json!({})).await?;
        return Err(ServiceError::WrongSecret {
            field: "current_password",
            message: "the current password is wrong",
        });
    }
    throttle::succeeded(&st.db, &keys).await?;
    let hash = st.hasher.hash(new).await?;
    store::users::change_own_password(&st.db, (user.id, &user.username), &hash, keep).await?;
    Ok(())
}

/// Creates `username` as an administrator unless the user exists already
/// (then nothing changes and the password is not looked at). Returns
/// whether it was created.
pub(crate) async fn ensure_admin(
    db: &sqlx::PgPool,
    hasher: &Hasher,
    username: &str,
    password: &str,
) -> anyhow::Result<bool> {
    if store::users::exists(db, username).await? {
        return Ok(false);
    }
    passwords::check_new(username, password)
        .map_err(|why| anyhow::anyhow!("the administrator's password is refused: {why}"))?;
    let hash = hasher.hash(password.to_owned()).await?;
    let id = Uuid::now_v7();
    let action = AuditAction::UserCreateAdmin;
    Ok(store::users::create(db, id, username, &hash, "admin", None, action).await?)
}

//! Sign-in protection, for admins: which usernames and client addresses
//! are throttled, and clearing one (a locked-out colleague).

use shellway_common::api::throttles::Throttle;

use super::{authorize, Action, Resource, ServiceError};
use crate::auth::AuthUser;
use crate::state::AppState;
use crate::store::throttles::{self as throttle, Kind};

const MAX_LISTED: i64 = 200;

/// Keys with at least the threshold of failures in the window, most
/// recent first.
pub(crate) async fn list(st: &AppState, user: &AuthUser) -> Result<Vec<Throttle>, ServiceError> {
    authorize(&user.actor(), Action::Read, Resource::LoginThrottles)?;
    Ok(throttle::list(&st.db, MAX_LISTED).await?)
}

/// Clears one key (`kind`: `username` or `address`).
pub(crate) async fn clear(
    st: &AppState,
    user: &AuthUser,
    kind: &str,
    key: &str,
) -> Result<(), ServiceError> {
    authorize(&user.actor(), Action::Manage, Resource::LoginThrottles)?;
    let kind = Kind::parse(kind).ok_or(ServiceError::NotFound("throttle"))?;
    if throttle::clear(&st.db, kind, key, user.audit_id()).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound("throttle"))
    }
}

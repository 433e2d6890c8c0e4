//! One's own account.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/me/password`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

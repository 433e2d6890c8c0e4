//! Signing in and out, and who is calling.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /api/login`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserSummary {
    pub id: Uuid,
    pub username: String,
    /// `role == "admin"`.
    pub is_admin: bool,
    #[schema(pattern = "^(admin|auditor|user)$")]
    pub role: String,
}

/// A signed-in person: the CSRF token goes in `X-CSRF-Token` with every
/// request that changes something.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    pub user: UserSummary,
    pub csrf_token: String,
}

/// `GET /api/me`: `csrf_token` only for a cookie sign-in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub user: UserSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

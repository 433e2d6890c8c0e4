//! People, managed by administrators.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /api/users`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"username": "alice", "password": "a long passphrase", "is_admin": false}))]
pub struct NewUser {
    /// 1-64 letters, digits, `.`, `_`, `-` or `@`.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    pub username: String,
    /// 12 or more characters, not the username.
    #[schema(min_length = 12)]
    pub password: String,
    /// The same as `role: "admin"` (kept for old clients).
    #[serde(default)]
    pub is_admin: bool,
    /// `admin`, `auditor` or `user`; `user` (or `admin` with `is_admin`)
    /// when absent.
    #[serde(default)]
    #[schema(pattern = "^(admin|auditor|user)$")]
    pub role: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedUser {
    pub id: Uuid,
    pub username: String,
    pub is_admin: bool,
    pub role: String,
    pub disabled: bool,
}

/// `PUT /api/users/{id}`: each field changes what it names.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub disabled: Option<bool>,
    /// `true`: role `admin`; `false`: role `user`.
    pub is_admin: Option<bool>,
    #[schema(pattern = "^(admin|auditor|user)$")]
    pub role: Option<String>,
    /// Ids of every group the user belongs to (replaces the list).
    pub groups: Option<Vec<Uuid>>,
    /// A new password (the user's cookie sessions end).
    pub password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub is_admin: bool,
    #[schema(pattern = "^(admin|auditor|user)$")]
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub disabled: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Ids of the groups they belong to.
    pub groups: Vec<Uuid>,
}

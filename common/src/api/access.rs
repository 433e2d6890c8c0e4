//! The access model: groups, host accounts, grants, and what a caller may
//! reach.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /api/groups`, `PUT /api/groups/{id}` (members replace the list).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ops", "members": []}))]
pub struct GroupSpec {
    /// 1-64 characters of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// User ids.
    #[serde(default)]
    pub members: Vec<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    pub members: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// `POST /api/hosts/{id}/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"login": "deploy", "auth_method": "agent"}))]
pub struct AccountSpec {
    /// The login on the host.
    #[schema(pattern = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$")]
    pub login: String,
    #[schema(pattern = "^(stored_key|password|key_path|agent)$")]
    pub auth_method: String,
    /// A stored credential, with `stored_key` and `password`.
    pub credential_id: Option<Uuid>,
    /// An absolute path on the runner, with `key_path` (administrators).
    pub key_path: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostAccount {
    pub id: Uuid,
    pub host_id: Uuid,
    pub login: String,
    #[schema(pattern = "^(stored_key|password|key_path|agent)$")]
    pub auth_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Whom a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantSubject {
    User(Uuid),
    Group(Uuid),
}

/// Which hosts a grant reaches: one, or all carrying these labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantTarget {
    Host(Uuid),
    Labels(BTreeMap<String, String>),
}

/// `POST /api/grants`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "subject": {"user": "0190f0d2-0000-7000-8000-000000000001"},
    "target": {"labels": {"env": "prod"}},
    "account": "deploy", "actions": ["shell", "run"]
}))]
pub struct GrantSpec {
    pub subject: GrantSubject,
    pub target: GrantTarget,
    /// A login, or `*` for every account of the host.
    pub account: String,
    /// Of `shell`, `run`, `job`, `service`, `share`, `view_recordings`.
    pub actions: Vec<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    pub id: Uuid,
    pub subject: GrantSubject,
    pub target: GrantTarget,
    pub account: String,
    pub actions: Vec<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
    /// Within its validity now.
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// An account of a host the caller may use, and what they may do as it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MyAccount {
    pub login: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MyHost {
    pub host_id: Uuid,
    pub name: String,
    pub hostname: String,
    pub port: i32,
    pub labels: BTreeMap<String, String>,
    pub accounts: Vec<MyAccount>,
}

/// `GET /api/me/access`: the hosts, accounts and actions the caller may
/// use now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MyAccess {
    #[schema(pattern = "^(admin|auditor|user)$")]
    pub role: String,
    pub hosts: Vec<MyHost>,
}

//! The audit trail. Every event is written on the connection (in the
//! transaction) of the change it records, and an event that cannot be
//! written fails that change: nothing happens that the trail misses.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// What an audit line records. The strings are stored and read by people
/// and tests: they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditAction {
    Login,
    LoginFailed,
    LoginThrottled,
    LoginDisabled,
    Logout,
    LoginThrottleCleared,
    UserCreate,
    UserCreateAdmin,
    UserUpdate,
    UserEnable,
    UserDisable,
    UserPasswordReset,
    UserPassword,
    UserPasswordFailed,
    UserDelete,
    UserGroups,
    GroupCreate,
    GroupUpdate,
    GroupDelete,
    GrantCreate,
    GrantDelete,
    AccountCreate,
    AccountDelete,
    TokenCreate,
    TokenRevoke,
    HostCreate,
    HostUpdate,
    HostDelete,
    HostScan,
    HostKeyPinned,
    CredentialCreate,
    CredentialDelete,
    CredentialRotate,
    TaskSave,
    TaskDelete,
    ScriptSave,
    ScriptDelete,
    ServiceSave,
    ServiceDelete,
    ServiceAction,
    SessionOpen,
    SessionEnd,
    SessionAccessRevoked,
    SessionClosed,
    SessionError,
    SessionLost,
    SessionFailed,
    SessionRejected,
    RunStart,
    JobStart,
    JobCancel,
    JobRerun,
    HostGroupSave,
    HostGroupDelete,
    ShareCreate,
    ShareRevoke,
    RecordingTruncated,
    RecordingDeleted,
}

impl AuditAction {
    pub(crate) fn as_str(self) -> &'static str {
        use AuditAction::*;
        match self {
            Login => "login",
            LoginFailed => "login.failed",
            LoginThrottled => "login.throttled",
            LoginDisabled => "login.disabled",
            Logout => "logout",
            LoginThrottleCleared => "login.throttle_cleared",
            UserCreate => "user.create",
            UserCreateAdmin => "user.create_admin",
            UserUpdate => "user.update",
            UserEnable => "user.enable",
            UserDisable => "user.disable",
            UserPasswordReset => "user.password_reset",
            UserPassword => "user.password",
            UserPasswordFailed => "user.password_failed",
            UserDelete => "user.delete",
            UserGroups => "user.groups",
            GroupCreate => "group.create",
            GroupUpdate => "group.update",
            GroupDelete => "group.delete",
            GrantCreate => "grant.create",
            GrantDelete => "grant.delete",
            AccountCreate => "account.create",
            AccountDelete => "account.delete",
            TokenCreate => "token.create",
            TokenRevoke => "token.revoke",
            HostCreate => "host.create",
            HostUpdate => "host.update",
            HostDelete => "host.delete",
            HostScan => "host.scan",
            HostKeyPinned => "host.key_pinned",
            CredentialCreate => "credential.create",
            CredentialDelete => "credential.delete",
            CredentialRotate => "credential.rotate",
            TaskSave => "task.save",
            TaskDelete => "task.delete",
            ScriptSave => "script.save",
            ScriptDelete => "script.delete",
            ServiceSave => "service.save",
            ServiceDelete => "service.delete",
            ServiceAction => "service.action",
            SessionOpen => "session.open",
            SessionEnd => "session.end",
            SessionAccessRevoked => "session.access_revoked",
            SessionClosed => "session.closed",
            SessionError => "session.error",
            SessionLost => "session.lost",
            SessionFailed => "session.failed",
            SessionRejected => "session.rejected",
            RunStart => "run.start",
            JobStart => "job.start",
            JobCancel => "job.cancel",
            JobRerun => "job.rerun",
            HostGroupSave => "host_group.save",
            HostGroupDelete => "host_group.delete",
            ShareCreate => "share.create",
            ShareRevoke => "share.revoke",
            RecordingTruncated => "recording.truncated",
            RecordingDeleted => "recording.deleted",
        }
    }
}

/// Who did it: a signed-in user, or the system (a runner's report, a
/// background job).
pub(crate) type Who<'a> = Option<(Uuid, &'a str)>;

/// Appends one line to the audit trail, on `conn` (the change's transaction).
pub(crate) async fn record(
    conn: &mut PgConnection,
    who: Who<'_>,
    action: AuditAction,
    target: &str,
    detail: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit (user_id, username, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(who.map(|u| u.0))
    .bind(who.map(|u| u.1))
    .bind(action.as_str())
    .bind(target)
    .bind(sqlx::types::Json(detail))
    .execute(conn)
    .await
    .map(drop)
}

/// Records an event that changes nothing else (a refused sign-in, a scan),
/// in a transaction of its own.
pub(crate) async fn record_alone(
    db: &sqlx::PgPool,
    who: Who<'_>,
    action: AuditAction,
    target: &str,
    detail: Value,
) -> Result<(), sqlx::Error> {
    let mut conn = db.acquire().await?;
    record(&mut conn, who, action, target, detail).await
}

#[cfg(test)]
mod tests {
    use super::AuditAction;

    #[test]
    fn action_names_are_distinct_and_dotted_by_subject() {
        let all = [
            AuditAction::Login,
            AuditAction::SessionOpen,
            AuditAction::SessionClosed,
            AuditAction::RunStart,
            AuditAction::HostKeyPinned,
            AuditAction::RecordingDeleted,
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(AuditAction::SessionEnd.as_str(), "session.end");
    }
}

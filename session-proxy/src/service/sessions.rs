//! Sessions: open one (ask a runner for it), find and list them, end one.

use chrono::Utc;
use shellway_common::{Control, Event, PtySize, SessionRequest, SessionStatus};
use uuid::Uuid;

use super::access::{self, Access};
use super::{authorize, hosts, Action, HostAction, Resource, ServiceError};
use crate::auth::AuthUser;
use crate::bus::BrokerError;
use crate::state::AppState;
use crate::store::{self, sessions::SessionRow};

/// The session, if `user` may do `action` to it.
pub(crate) async fn load(
    st: &AppState,
    id: Uuid,
    user: &AuthUser,
    action: Action,
) -> Result<SessionRow, ServiceError> {
    let row = store::sessions::get(&st.db, id)
        .await?
        .ok_or(ServiceError::NotFound("session"))?;
    authorize(
        &user.actor(),
        action,
        Resource::Session {
            owner: row.owner_id,
        },
    )?;
    Ok(row)
}

/// The session, if `user` may read its recording: who may view it, and
/// those granted `view_recordings` on its host and account.
pub(crate) async fn load_recording(
    st: &AppState,
    id: Uuid,
    user: &AuthUser,
) -> Result<SessionRow, ServiceError> {
    match load(st, id, user, Action::View).await {
        Err(ServiceError::Denied(denied)) => {
            let row = store::sessions::get(&st.db, id)
                .await?
                .ok_or(ServiceError::NotFound("session"))?;
            let access = Access::load(st, user).await?;
            if access::session_allows(st, &access, &row, HostAction::ViewRecordings)
                .await?
                .is_ok()
            {
                Ok(row)
            } else {
                Err(denied.into())
            }
        }
        other => other,
    }
}

/// The session, if `user` may act on it and it is live.
pub(crate) async fn load_live(
    st: &AppState,
    id: Uuid,
    user: &AuthUser,
    code: &'static str,
    message: &str,
) -> Result<SessionRow, ServiceError> {
    let row = load(st, id, user, Action::Control).await?;
    if !row.status().is_live() {
        return Err(ServiceError::conflict(code, message));
    }
    Ok(row)
}

/// Sessions matching `filter`: everyone's for those who may see them all
/// (unless they ask for their own), else the caller's own.
pub(crate) async fn list(
    st: &AppState,
    user: &AuthUser,
    mine: bool,
    mut filter: store::sessions::Filter<'_>,
) -> Result<Vec<SessionRow>, ServiceError> {
    let all = authorize(&user.actor(), Action::ListAll, Resource::Sessions).is_ok();
    filter.owned_by = (mine || !all).then_some(user.id);
    Ok(store::sessions::list(&st.db, &filter).await?)
}

/// What `POST /api/sessions` asks for (the API's request body).
pub(crate) use shellway_common::api::sessions::OpenSession as OpenRequest;

fn pty_size(cols: Option<u16>, rows: Option<u16>) -> Result<PtySize, ServiceError> {
    let d = PtySize::default();
    let size = PtySize {
        cols: cols.unwrap_or(d.cols),
        rows: rows.unwrap_or(d.rows),
    };
    if !(1..=1000).contains(&size.cols) {
        return Err(ServiceError::invalid(
            "cols",
            "cols must be between 1 and 1000",
        ));
    }
    if !(1..=1000).contains(&size.rows) {
        return Err(ServiceError::invalid(
            "rows",
            "rows must be between 1 and 1000",
        ));
    }
    Ok(size)
}

/// Writes the session `pending` and asks the runners for it.
pub(crate) async fn open(
    st: &AppState,
    user: &AuthUser,
    req: OpenRequest,
) -> Result<Uuid, ServiceError> {
    let pty = pty_size(req.cols, req.rows)?;
    let access = Access::load(st, user).await?;
    let host = store::hosts::get(&st.db, req.host_id).await?;
    let host = match host {
        Some(h) if access.sees(&h) => h,
        Some(_) => return Err(ServiceError::NotFound("host")),
        None if user.is_admin() => return Err(ServiceError::invalid("host_id", "no such host")),
        None => return Err(ServiceError::NotFound("host")),
    };
    let shell = req.shell.unwrap_or(true);
    let account = access::account_for(st, &access, &host, req.account.as_deref()).await?;
    let action = Action::Use(access::session_action(shell));
    access.check(&host, Some(&account.login), action)?;
    let target = hosts::target(st, &host, &account).await?;
    if !st.broker.is_up() {
        // Refused before anything is written: no session to clean up.
        return Err(BrokerError::NotConnected.into());
    }
    let id = Uuid::now_v7();
    let new = store::sessions::NewSession {
        id,
        host: host.id,
        host_name: &host.name,
        account: &account.login,
        owner: user.audit_id(),
        cols: pty.cols,
        rows: pty.rows,
        shell,
        job: None,
    };
    store::sessions::create(&st.db, &new).await?;
    let request = SessionRequest {
        session: id,
        owner: user.username.clone(),
        host: target,
        pty,
        shell,
        requested_at: Utc::now(),
        idle_timeout_s: Some(st.settings.session_idle_timeout.as_secs()),
        run: None,
    };
    publish(st, &request).await?;
    tracing::info!(session_id = %id, host = %host.name, user = %user.username, "session requested");
    Ok(id)
}

/// Declares a written session's input queue and asks the runners for it;
/// when the broker fails, the session is failed here and the error returned.
pub(crate) async fn publish(st: &AppState, request: &SessionRequest) -> Result<(), ServiceError> {
    let sent = async {
        st.broker.declare_session(request.session).await?;
        st.broker
            .publish_request(request, st.settings.request_ttl)
            .await
    }
    .await;
    if let Err(err) = sent {
        fail_unsent(st, request.session, "the message broker was unavailable").await?;
        return Err(err.into());
    }
    Ok(())
}

/// Fails a written session no runner was asked for (`runtime`, `why`).
pub(crate) async fn fail_unsent(st: &AppState, id: Uuid, why: &str) -> Result<(), ServiceError> {
    let change = store::sessions::Change {
        error_kind: Some("runtime"),
        error: Some(why),
        ..Default::default()
    };
    let mut tx = st.db.begin().await?;
    store::sessions::set_status(&mut tx, id, SessionStatus::Failed, change).await?;
    tx.commit().await?;
    Ok(())
}

/// `DELETE /api/sessions/{id}`: the owner ends a live session, an admin
/// kicks it.
pub(crate) async fn end(st: &AppState, id: Uuid, user: &AuthUser) -> Result<(), ServiceError> {
    let row = load(st, id, user, Action::Control).await?;
    if !row.status().is_live() {
        return Err(ServiceError::conflict(
            "session_ended",
            format!("the session is already {}", row.status),
        ));
    }
    end_now(st, id, user).await
}

/// Ends a session `user` may control: the runner is told to close it; a
/// session no runner has taken yet is closed right here.
pub(crate) async fn end_now(st: &AppState, id: Uuid, user: &AuthUser) -> Result<(), ServiceError> {
    let reason = format!("ended by {}", user.username);
    end_with(st, id, &reason, Some(&user.username), user.audit_id()).await
}

/// Ends a session with `reason` for its viewers, `by` someone (or the
/// proxy), audited as `who`'s `session.end`.
pub(crate) async fn end_with(
    st: &AppState,
    id: Uuid,
    reason: &str,
    by: Option<&str>,
    who: store::audit::Who<'_>,
) -> Result<(), ServiceError> {
    let close = Control::Close {
        reason: reason.to_owned(),
        by: by.map(str::to_owned),
    };
    st.broker.publish_control(id, &close, false).await?;
    let closed_here = store::sessions::end_by(&st.db, id, who).await?;
    if closed_here {
        let closed = Event::Closed {
            reason: reason.to_owned(),
            by: by.map(str::to_owned),
        };
        st.broker.publish_event(id, &closed).await?;
        let status = Event::Status {
            status: SessionStatus::Closed,
            runner: None,
            message: None,
        };
        st.broker.publish_event(id, &status).await?;
    }
    Ok(())
}

/// Ends every live session of a user who was disabled or deleted: their
/// viewers are told "access revoked".
pub(crate) async fn end_all_of(
    st: &AppState,
    owner: Uuid,
    admin: &AuthUser,
    limit: i64,
) -> Result<(), ServiceError> {
    for id in store::sessions::live_of_owner(&st.db, owner, limit).await? {
        let reason = super::access::ACCESS_REVOKED;
        end_with(st, id, reason, Some(&admin.username), admin.audit_id()).await?;
    }
    Ok(())
}

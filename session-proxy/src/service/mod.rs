//! The proxy's domain: what people do to sessions, runs, share links and
//! hosts, as plain async functions over the store and the broker. The HTTP
//! handlers (`api/`) and the WebSocket (`ws/`) both call these and turn a
//! [`ServiceError`] into their own answer in one place each (`error.rs`).

pub(crate) mod access;
pub(crate) mod accounts;
pub(crate) mod authorize;
pub(crate) mod credentials;
pub(crate) mod host_groups;
pub(crate) mod hosts;
pub(crate) mod job_plan;
pub(crate) mod job_results;
pub(crate) mod job_targets;
pub(crate) mod jobs;
pub(crate) mod library;
pub(crate) mod runs;
pub(crate) mod services;
pub(crate) mod sessions;
pub(crate) mod shares;
pub(crate) mod task_params;
pub(crate) mod throttles;
pub(crate) mod tokens;
pub(crate) mod users;

use std::borrow::Cow;

use crate::bus::BrokerError;
pub(crate) use authorize::{
    authorize, Action, Actor, Denied, Grant, GrantTarget, HostAccess, HostAction, Resource, Role,
};

/// Why the domain refused or failed, in its own terms.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A field of the request is wrong.
    #[error("{message}")]
    Invalid {
        field: Cow<'static, str>,
        message: String,
    },
    /// Several fields are wrong (each `Invalid`), told all at once.
    #[error("{} fields are invalid", .0.len())]
    InvalidFields(Vec<ServiceError>),
    /// The thing is in a state that does not allow this (`code` names it).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Denied(#[from] Denied),
    /// Not allowed, for a reason the caller can act on.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Not allowed by a rule of the thing itself (`code` names it: a
    /// service's action allowlist).
    #[error("{message}")]
    NotAllowed { code: &'static str, message: String },
    /// Who the caller says they are is not proven.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A secret given to prove something (a current password) is wrong.
    #[error("{message}")]
    WrongSecret {
        field: &'static str,
        message: &'static str,
    },
    /// Too many failed attempts: try again later.
    #[error("{message}")]
    Throttled { message: String, retry_after_s: u64 },
    /// No capacity right now: try again in a moment.
    #[error("{0}")]
    Busy(&'static str),
    /// The peer is no SSH server, or the SSH handshake failed.
    #[error("{0}")]
    NotSsh(String),
    /// No runner took the work in time.
    #[error("{0}")]
    NoCapacity(String),
    /// Failed for a reason the caller cannot act on (logged, not shown).
    #[error("{0}")]
    Internal(String),
    /// A share link that does not open its session.
    #[error("{0}")]
    Share(#[from] shares::LinkRefused),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl ServiceError {
    pub(crate) fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
}

//! The proxy's domain: what people do to sessions, runs, share links and
//! hosts, as plain async functions over the store and the broker. The HTTP
//! handlers (`api/`) and the WebSocket (`ws/`) both call these and turn a
//! [`ServiceError`] into their own answer in one place each (`error.rs`).

pub(crate) mod authorize;
pub(crate) mod credentials;
pub(crate) mod hosts;
pub(crate) mod runs;
pub(crate) mod sessions;
pub(crate) mod shares;

use std::borrow::Cow;

use crate::bus::BrokerError;
pub(crate) use authorize::{authorize, Action, Actor, Denied, Resource};

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
    /// The thing is in a state that does not allow this (`code` names it).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Denied(#[from] Denied),
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

//! The proxy's Postgres: the only code that writes SQL. One module per
//! thing stored; every status change goes through the state machines in
//! [`lifecycle`], and every audit line is written in the transaction of
//! the change it records ([`audit`]).

pub(crate) mod access;
pub(crate) mod audit;
pub(crate) mod credentials;
pub(crate) mod host_groups;
pub(crate) mod hosts;
pub(crate) mod inputs;
pub(crate) mod jobs;
pub(crate) mod library;
pub(crate) mod lifecycle;
pub(crate) mod pool;
pub(crate) mod recording_pages;
pub(crate) mod recordings;
pub(crate) mod retention;
pub(crate) mod runs;
pub(crate) mod services;
pub(crate) mod sessions;
pub(crate) mod shares;
pub(crate) mod throttles;
pub(crate) mod tokens;
pub(crate) mod users;

pub(crate) use audit::AuditAction;
pub(crate) use lifecycle::IllegalTransition;

/// What became of a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moved<S> {
    /// Applied; the status it came from.
    From(S),
    /// The state machine refused it; nothing changed.
    Refused(IllegalTransition),
    /// No such row.
    Missing,
}

impl<S> Moved<S> {
    pub(crate) fn applied(&self) -> bool {
        matches!(self, Self::From(_))
    }
}

/// Whether Postgres answers at all (for `/readyz` and the outage flag).
pub(crate) async fn ping(db: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(db).await.map(drop)
}

/// `'a', 'b'`: statuses as an SQL list, for the few statements that
/// need one inside a constant.
fn sql_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

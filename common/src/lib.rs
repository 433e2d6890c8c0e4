//! The contract between Shellway's parts.
//!
//! Everything that crosses the broker or a WebSocket is a type in this crate:
//! the proxy and the runners agree on nothing that is not written here.
//! `docs/protocol.md` describes the same contract for people.

pub mod amqp;
pub mod api;
pub mod browser;
pub mod control;
pub mod event;
pub mod output;
pub mod request;
pub mod reseal;
pub mod scan;
pub mod script;
pub mod topology;
pub mod vault;
pub mod ws;

pub use browser::BrowserEvent;
pub use control::Control;
pub use event::{ErrorKind, Event, RunStatus, SessionStatus};
pub use output::{OutputMeta, Stream};
pub use request::{AuthMethod, Heartbeat, HostKeyPolicy, HostTarget, PtySize, SessionRequest};
pub use topology::Topology;
pub use ws::ClientAction;

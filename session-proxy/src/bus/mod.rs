//! The proxy's side of RabbitMQ: the supervised connection and what the
//! proxy publishes (`broker.rs`), the one reconnecting consumer every
//! long-lived reader uses (`consumer.rs`), what a live feed hands its
//! viewers (`report.rs`), and what the proxy asks of a runner and
//! waits for: host-key scans, vault re-seals (`ask.rs`).

mod ask;
mod broker;
pub(crate) mod consumer;
mod report;

pub(crate) use ask::{AskError, RunnerAsks};
pub(crate) use broker::{Broker, BrokerError};
pub(crate) use report::Report;

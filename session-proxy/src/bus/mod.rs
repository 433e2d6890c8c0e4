//! The proxy's side of RabbitMQ: the supervised connection and what the
//! proxy publishes (`broker.rs`), the one reconnecting consumer every
//! long-lived reader uses (`consumer.rs`), what a live feed hands its
//! viewers (`report.rs`), and host-key scans asked of a runner
//! (`scan.rs`).

mod broker;
pub(crate) mod consumer;
mod report;
mod scan;

pub(crate) use broker::{Broker, BrokerError};
pub(crate) use report::Report;
pub(crate) use scan::{ScanError, Scans};

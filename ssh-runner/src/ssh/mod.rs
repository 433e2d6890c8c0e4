//! The SSH side of a session: connecting, authenticating and verifying the
//! host key (`client`), and the pure host-key check (`known_hosts`).

pub(crate) mod client;
pub(crate) mod known_hosts;

pub(crate) use client::{connect, SshConnection};

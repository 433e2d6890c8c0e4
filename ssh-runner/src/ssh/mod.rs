//! The SSH side of a session: connecting, authenticating and verifying the
//! host key (`client`), reading key files safely (`key_file`), the pure
//! host-key check (`known_hosts`), and fetching a key for pinning (`scan`).

pub(crate) mod client;
pub(crate) mod key_file;
pub(crate) mod known_hosts;
pub(crate) mod scan;

pub(crate) use client::{connect, SshConnection};

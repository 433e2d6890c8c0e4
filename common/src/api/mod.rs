//! The HTTP API's request and response bodies. The proxy serves exactly
//! these shapes and the tests read them; the OpenAPI document
//! (`docs/openapi.json`, `GET /api/openapi.json`) is generated from them.

pub mod access;
pub mod account;
pub mod credentials;
pub mod errors;
pub mod health;
pub mod hosts;
pub mod jobs;
pub mod library;
pub mod login;
pub mod recording;
pub mod runs;
pub mod sent;
pub mod services;
pub mod sessions;
pub mod shares;
pub mod throttles;
pub mod tokens;
pub mod users;

pub use sent::Sent;

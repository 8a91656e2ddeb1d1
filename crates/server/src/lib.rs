//! The anchorage server: configuration, the HTTP and WebSocket API, and the
//! fleet of live sessions with its provisioning queue.
//!
//! Start it with [`App::build`] and [`App::run`]; the `anchorage` binary is a
//! thin wrapper around these. Nothing here spawns a process (that is
//! `anchorage-browser`) or writes SQL (that is `anchorage-store`).

pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod events;
pub mod extensions;
pub mod fleet;
pub mod keys;
mod leftovers;
pub mod metrics;
pub mod profiles;
pub mod recordings;
mod routes;
pub mod state;
#[cfg(test)]
mod test_support;
pub mod webhooks;
pub mod wire;

pub use app::{App, StartError};
pub use config::{Config, ConfigError, Environment, Source};

//! The anchorage server: configuration, the HTTP and WebSocket API, and the
//! fleet of live sessions with its provisioning queue.
//!
//! Start it with [`App::build`] and [`App::run`]; the `anchorage` binary is a
//! thin wrapper around these, and this crate exposes only what it uses
//! (the app, its configuration, `keys` and `nodes` for the admin
//! commands). Nothing here spawns a process (that is
//! `anchorage-browser`) or writes SQL (that is `anchorage-store`).

mod app;
mod auth;
mod cluster;
mod code;
mod config;
mod error;
mod events;
mod extensions;
mod files;
mod fleet;
pub mod keys;
mod leftovers;
mod mcp;
mod metrics;
mod profiles;
mod recordings;
mod routes;
mod state;
#[cfg(test)]
mod test_support;
mod webhooks;
mod wire;

pub use app::{App, StartError};
pub use config::{Config, ConfigError, Environment, Source};

/// The nodes of the database, as `anchorage nodes` shows them.
pub mod nodes {
    pub use crate::cluster::nodes::{list, state};
}

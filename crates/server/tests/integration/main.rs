//! The integration tests of the server: the real server in-process (port 0,
//! a temp data dir) with real Chromium and pages served on 127.0.0.1. One
//! test binary with a module per area, sharing `support`, so that the suite
//! builds and links once.

#![allow(missing_docs)]

mod support;

mod actions;
mod adblock;
mod agent;
mod bad_input;
mod batches;
mod certificates;
mod chaos;
mod code;
mod contexts;
mod events;
mod extensions;
mod flags;
mod headful;
mod isolation;
mod leaks;
mod live;
mod memory;
mod pool;
mod profiles;
mod proxy;
mod recordings;
mod sessions;
mod tools;
mod webhooks;

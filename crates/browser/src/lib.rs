//! Chromium processes for anchorage.
//!
//! This crate alone spawns and kills processes. It launches one Chromium per
//! session in its own process group with its own profile and temp dirs
//! ([`launch`]), speaks DevTools with it over a pipe that any number of
//! connections share ([`Devtools`]), kills the whole group and removes the dirs when the session
//! ends ([`Browser::shut_down`]), finds and removes what a previous run left
//! behind ([`reap_leftovers`]), reads how much memory they use
//! ([`browsers_memory`]), pumps CDP frames between a client and a
//! browser ([`pump`]), streams a page to the live view and forwards its
//! input ([`Screencast`]), and runs a user's code in a sandbox beside a
//! browser ([`CodeProcess`]). It knows nothing of HTTP routes, teams or the
//! store.

mod actions;
pub mod adblock;
mod cdp;
mod context;
mod devtools;
mod dirs;
mod display;
mod downloads;
pub mod host;
mod launch;
mod launcher;
mod memory;
mod page_rules;
mod pages;
mod profile_files;
mod proxy_auth;
mod pump;
mod reap;
mod recorder;
mod sandbox;
mod scope;
mod screencast;
mod snapshot;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use actions::{Button, Capture, Key, PageControl};
pub use cdp::{close_page, fit_viewport, list_pages, open_in_first_page, open_page, CdpError, PageInfo};
pub use context::{ContextSetup, HostedContext, SpareContext};
pub use devtools::{Devtools, DevtoolsConnection, PipeClosed, CONNECT_TIMEOUT, QUEUE_BUDGET_BYTES};
pub use dirs::BrowserDirs;
pub use downloads::{download_path, follow_downloads, ClientCopy, Download, Downloads};
pub use host::SystemUser;
pub use launch::{
    can_raise_priority, launch, launch_until, AdblockSetup, Browser, BrowserExit, BrowserSetup, LaunchError,
    LaunchSpec, LaunchTimings, RunAs,
};
pub use launcher::{ChromiumLauncher, ChromiumSettings, LaunchRequest, Launcher};
pub use memory::{browsers_memory, MemoryReader, MemoryUse};
pub use page_rules::{PageRules, PageRulesConnection};
pub use pages::{page_order, switch_to_page};
pub use profile_files::{copy_profile, CopyError, CopyLimits};
pub use proxy_auth::ProxyAuthenticator;
pub use pump::{pump, pump_watching, websocket_config, FrameWatch, PumpEnd, MAX_FRAME_BYTES};
pub use reap::{leftover_browser_pids, leftover_display_pids, reap_leftovers, ReapReport};
pub use recorder::{
    leftover_encoder_pids, probe_duration, reap_encoders, record, Recorded, RecordingControl, RecordingSpec,
};
pub use sandbox::{
    build_code_cache, free_run_uid, kill_user_processes, leftover_runner_pids, processes_of_user, reap_leftover_runs,
    CodeProcess, RunFailure, RunLimits, SandboxSettings, Zygote, RUN_UIDS, ZYGOTE_ADDON,
};
pub use scope::{Scope, BROWSER_SESSION_METHODS, REFUSED_METHODS};
pub use screencast::{Frame, FrameAck, Incoming, Input, MouseButton, MouseKind, Screencast, ScreencastEvent};
pub use snapshot::{fit as snapshot_text, parse_ref as parse_snapshot_ref};

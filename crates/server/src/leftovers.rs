//! What the start-up sweeps of the data dir may remove. Nodes can share
//! the profiles and extensions folders, so a folder no row names may be
//! another node's work in progress (a save, an upload) rather than what a
//! crash left; only one left alone for a while is taken for the latter.

use std::path::Path;
use std::time::Duration;

/// How long a folder no row names must have been left alone before a
/// start-up sweep removes it.
pub const LEFTOVER_AGE: Duration = Duration::from_secs(600);

/// Whether `path` was last changed longer than [`LEFTOVER_AGE`] ago (or
/// its age cannot be read).
pub async fn left_long_ago(path: &Path) -> bool {
    tokio::fs::metadata(path)
        .await
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|changed| changed.elapsed().ok())
        .is_none_or(|age| age >= LEFTOVER_AGE)
}

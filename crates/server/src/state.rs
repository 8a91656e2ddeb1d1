//! The state every handler gets: one `Clone` value of shared parts.

use std::sync::Arc;

use anchorage_core::SessionId;
use anchorage_store::Store;
use url::Url;

use crate::auth::TokenSigner;
use crate::fleet::Fleet;

/// Shared parts of the running server.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Live sessions and the start queue.
    pub fleet: Arc<Fleet>,
    /// The other nodes of the database.
    pub cluster: Arc<dyn crate::cluster::Cluster>,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The data dir's profiles, recordings and extensions.
    pub files: crate::files::SessionFiles,
    /// Session tokens.
    pub tokens: TokenSigner,
    /// Base URL clients reach us at (http or https).
    pub public_url: Url,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest file one upload may carry.
    pub max_upload_bytes: u64,
    /// Largest extension, zipped and unpacked.
    pub max_extension_bytes: u64,
    /// Whether `initial_url`s of private hosts are refused.
    pub block_private_networks: bool,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: std::time::Duration,
    /// Most sessions in one batch.
    pub max_batch: usize,
    /// Where browsers keep their directories.
    pub browser_dirs: anchorage_browser::BrowserDirs,
    /// Named events and their waiters.
    pub events: Arc<crate::events::EventHub>,
    /// The webhook delivery worker (woken when a test event is recorded).
    pub deliverer: Arc<crate::webhooks::Deliverer>,
    /// Runs of users' code on this node.
    pub code: Arc<crate::code::CodeRunner>,
    /// This node's id.
    pub node: anchorage_core::NodeId,
    /// Each session's last snapshot, for "what changed since".
    pub snapshots: Arc<SnapshotMemory>,
}

/// The last snapshot (its page's URL and lines) of each session this node
/// answered for; a session that is no longer live is forgotten at the
/// next swap.
#[derive(Debug, Default)]
pub struct SnapshotMemory {
    last: std::sync::Mutex<std::collections::HashMap<SessionId, (String, Vec<String>)>>,
}

impl SnapshotMemory {
    /// Keeps `lines` as the session's last snapshot of `url`; returns the
    /// one before when it was of the same URL.
    pub fn swap(
        &self,
        session_id: SessionId,
        url: &str,
        lines: Vec<String>,
        is_live: impl Fn(SessionId) -> bool,
    ) -> Option<Vec<String>> {
        let Ok(mut last) = self.last.lock() else {
            return None;
        };
        last.retain(|id, _| *id == session_id || is_live(*id));
        let before = last.insert(session_id, (url.to_owned(), lines));
        before
            .filter(|(previous_url, _)| previous_url == url)
            .map(|(_, lines)| lines)
    }
}

impl AppState {
    /// The `cdp_url` of a session: a WebSocket URL on this server with the
    /// session's token.
    pub fn cdp_url(&self, session_id: SessionId) -> String {
        let mut url = self.public_url.clone();
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        // Both schemes are special, so switching between them cannot fail.
        let _ = url.set_scheme(scheme);
        url.set_path(&format!("{}cdp/{session_id}", base_path(&self.public_url)));
        url.set_query(Some(&format!("token={}", self.tokens.token(session_id))));
        url.to_string()
    }

    /// A CDP URL of a session opened with an API key (the form the npm SDK
    /// builds): its connections close when the key stops standing, as a
    /// run's credential does when its run ends.
    pub fn cdp_url_with_key(&self, session_id: SessionId, key: &str) -> String {
        let mut url = self.public_url.clone();
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        // Both schemes are special, so switching between them cannot fail.
        let _ = url.set_scheme(scheme);
        url.set_path(&base_path(&self.public_url));
        url.query_pairs_mut()
            .clear()
            .append_pair("apiKey", key)
            .append_pair("sessionId", &session_id.to_string());
        url.to_string()
    }

    /// This server's public URL for an API path (given without its leading `/`).
    pub fn api_url(&self, path: &str) -> String {
        let mut url = self.public_url.clone();
        url.set_path(&format!("{}{path}", base_path(&self.public_url)));
        url.to_string()
    }

    /// The `live_view_url` of a session.
    pub fn live_view_url(&self, session_id: SessionId) -> String {
        let mut url = self.public_url.clone();
        url.set_path(&format!("{}live/{session_id}", base_path(&self.public_url)));
        url.set_query(Some(&format!("token={}", self.tokens.token(session_id))));
        url.to_string()
    }
}

/// The public URL's path, ending in `/`, so that a server behind a path
/// prefix builds its URLs under it.
fn base_path(url: &Url) -> String {
    let path = url.path();
    if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
}

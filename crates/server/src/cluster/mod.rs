//! The other nodes of a shared database, behind one seam: [`Cluster`].
//!
//! Everything the rest of the server needs from other nodes goes through
//! this trait: which node runs a session, ending a session where it runs,
//! stopping a batch's share on every other node, the wake-up signals
//! between nodes, a named event's signal for waiters elsewhere, and passing
//! a call or a WebSocket to the node that runs its session. Nothing outside
//! this folder makes an HTTP call to another node or reads another node's
//! lease.
//!
//! Two implementations serve: [`single::SingleNode`] where no other node
//! can share the database (SQLite), and [`network::Network`] where they can
//! (PostgreSQL: HTTP calls with the node key, `LISTEN`/`NOTIFY` signals).
//! The unit tests use a third, in-process one (`fake.rs`), so that every
//! cross-node rule of the fleet runs in milliseconds.
//!
//! Also here: this process as a node (its id, registration and lease,
//! `nodes.rs`), the middleware that passes a call to its session's node
//! (`forward.rs`) and the internal routes other nodes call (`internal.rs`).

#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod forward;
pub(crate) mod internal;
mod network;
pub mod nodes;
mod signals;
mod single;

use std::fmt::Debug;

use anchorage_core::{BatchId, NodeId, SessionId, SessionStatus, TeamId, Timestamp};
use anchorage_store::{NodeRecord, NodeStore, StoreError};
use async_trait::async_trait;
use axum::extract::Request;
use axum::response::Response;
use tokio::sync::mpsc;

pub use network::Network;
pub use signals::Signal;
pub use single::SingleNode;

/// The header an internal call carries its node key in.
pub const NODE_KEY_HEADER: &str = "anchorage-node-key";
/// The header a request forwarded to the node that runs its session
/// carries (the id of the node that forwarded it), so that it is never
/// forwarded again.
pub const FORWARDED_HEADER: &str = "anchorage-forwarded-by";

/// A call to another node that did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The database could not say where things are.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The other node did not answer as it should.
    #[error("the node {node} did not answer: {message}")]
    Unreachable {
        /// The node called.
        node: NodeId,
        /// What went wrong.
        message: String,
    },
}

/// What one node did with its share of a batch that was cancelled or
/// deleted: every session of the batch it held, and whether this stop
/// ended it (`false`: it was ending already).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchShare {
    /// The sessions it held, each with whether this stop ended it. A node
    /// of the version before this answered `{}`: read as none held, so its
    /// sessions are ended one by one, as that version did.
    #[serde(default)]
    pub sessions: Vec<HeldSession>,
}

/// One session a node held when it stopped its share of a batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldSession {
    /// The session.
    pub session_id: SessionId,
    /// Whether the stop ended it.
    pub ended: bool,
}

impl BatchShare {
    /// How many sessions the stop ended.
    pub fn ended(&self) -> usize {
        self.sessions.iter().filter(|session| session.ended).count()
    }
}

/// One other node's answer to a batch stop.
#[derive(Debug)]
pub struct NodeShare {
    /// The node.
    pub node: NodeId,
    /// What it held and ended, or why it could not say.
    pub share: Result<BatchShare, ClusterError>,
}

/// The operations the server needs from the other nodes of its database.
///
/// The rule: only the fleet (ends, batch stops, signals; the lease keeper
/// reaches it through the fleet), the forwarding middleware and the named
/// events route call it; nothing reaches another node any other way.
#[async_trait]
pub trait Cluster: Send + Sync + Debug {
    /// This node.
    fn me(&self) -> NodeId;

    /// The live node other than this one that runs `session_id`, if another
    /// does (`None`: this node, a lost node, or nobody).
    async fn owner_elsewhere(&self, session_id: SessionId) -> Result<Option<NodeRecord>, StoreError>;

    /// Asks `owner` to end a session it runs and waits until the browser is
    /// gone; whether that call ended it.
    async fn end_session_at(
        &self,
        owner: &NodeRecord,
        session_id: SessionId,
        status: SessionStatus,
        reason: &str,
    ) -> Result<bool, ClusterError>;

    /// Asks every other live node, once each and all at once, to drop what
    /// it queued of a batch, stop its launches of it and end its running
    /// sessions of it; answers once each has, with what each did.
    async fn stop_batch_elsewhere(&self, batch_id: BatchId, reason: &str) -> Result<Vec<NodeShare>, StoreError>;

    /// Tells the other nodes that something changed here (a signal already
    /// on its way is not sent twice). A node alone has nobody to tell.
    fn publish(&self, signal: Signal);

    /// Starts listening for the other nodes' signals: the receiver gets
    /// each signal another node published from now on. `None` where no
    /// signal can come (polling alone then finds other nodes' changes).
    async fn listen(&self) -> Option<mpsc::Receiver<Signal>>;

    /// Passes a named event's signal to the waiters on every other node (a
    /// node that cannot be reached is logged and skipped: a signal nobody
    /// hears is not kept anyway).
    async fn pass_event(&self, team_id: TeamId, name: &str, data: &serde_json::Value);

    /// Passes `request` (a call, or a WebSocket upgrade) to `owner` as it
    /// came, and its answer back as it went.
    async fn forward(&self, owner: &NodeRecord, request: Request) -> Response;
}

/// The other nodes of `store` whose lease holds now.
pub(crate) async fn live_others(store: &dyn NodeStore, me: NodeId) -> Result<Vec<NodeRecord>, StoreError> {
    let now = Timestamp::now();
    Ok(store
        .nodes()
        .await?
        .into_iter()
        .filter(|node| node.id != me && node.lease_until >= now)
        .collect())
}

/// The live node other than `me` that runs `session_id`, as `store` says.
pub(crate) async fn live_owner_elsewhere(
    store: &dyn NodeStore,
    me: NodeId,
    session_id: SessionId,
) -> Result<Option<NodeRecord>, StoreError> {
    let Some(owner) = store.session_node(session_id).await? else {
        return Ok(None);
    };
    if owner == me {
        return Ok(None);
    }
    Ok(live_others(store, me).await?.into_iter().find(|node| node.id == owner))
}

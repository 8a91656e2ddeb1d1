//! The cluster of a node that shares its database with nobody (SQLite,
//! which one process owns): no session runs elsewhere, no call leaves this
//! process, no signal comes or goes.

use anchorage_core::{BatchId, NodeId, SessionId, SessionStatus, TeamId};
use anchorage_store::{NodeRecord, StoreError};
use async_trait::async_trait;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::{Cluster, ClusterError, NodeShare, Signal};
use crate::error::ApiError;

/// A node alone.
#[derive(Debug)]
pub struct SingleNode {
    me: NodeId,
}

impl SingleNode {
    /// The node `me`, alone.
    pub fn new(me: NodeId) -> Self {
        Self { me }
    }
}

#[async_trait]
impl Cluster for SingleNode {
    fn me(&self) -> NodeId {
        self.me
    }

    async fn owner_elsewhere(&self, _session_id: SessionId) -> Result<Option<NodeRecord>, StoreError> {
        Ok(None)
    }

    async fn end_session_at(
        &self,
        owner: &NodeRecord,
        _session_id: SessionId,
        _status: SessionStatus,
        _reason: &str,
    ) -> Result<bool, ClusterError> {
        // Never asked: no session has an owner elsewhere.
        Err(ClusterError::Unreachable {
            node: owner.id,
            message: "this node shares its database with no other".to_owned(),
        })
    }

    async fn stop_batch_elsewhere(&self, _batch_id: BatchId, _reason: &str) -> Result<Vec<NodeShare>, StoreError> {
        Ok(Vec::new())
    }

    fn publish(&self, _signal: Signal) {}

    async fn listen(&self) -> Option<mpsc::Receiver<Signal>> {
        None
    }

    async fn pass_event(&self, _team_id: TeamId, _name: &str, _data: &serde_json::Value) {}

    async fn forward(&self, owner: &NodeRecord, _request: Request) -> Response {
        // Never asked: no session has an owner elsewhere.
        ApiError::Unavailable(format!(
            "the node that runs this session ({}) is not reachable from a node alone",
            owner.url
        ))
        .into_response()
    }
}

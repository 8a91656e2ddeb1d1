//! An in-process cluster for the unit tests: several fleets on one store,
//! each reaching the others by calling them directly, as the internal
//! routes would. Every call between nodes is recorded, and a node can be
//! cut off (its calls fail as an unreachable node's do), so the cross-node
//! rules of the fleet run in milliseconds without PostgreSQL, HTTP or
//! Chromium. Which node runs a session, and which nodes are live, is read
//! from the store exactly as [`super::Network`] reads it.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use anchorage_core::{BatchId, NodeId, SessionId, SessionStatus, TeamId};
use anchorage_store::{NodeRecord, Store, StoreError};
use async_trait::async_trait;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::{Cluster, ClusterError, NodeShare, Signal};
use crate::fleet::{EndWait, Fleet};

/// A call one node made on another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// End a session it runs.
    EndSession {
        /// The node called.
        to: NodeId,
        /// The session.
        session_id: SessionId,
    },
    /// Stop its share of a batch.
    StopBatch {
        /// The node called.
        to: NodeId,
        /// The batch.
        batch_id: BatchId,
    },
    /// A named event's signal.
    Event {
        /// The node called.
        to: NodeId,
    },
    /// A request passed on.
    Forward {
        /// The node called.
        to: NodeId,
    },
}

/// The wires between the nodes of one test.
#[derive(Default)]
pub struct FakeNet {
    fleets: Mutex<HashMap<NodeId, Weak<Fleet>>>,
    listeners: Mutex<HashMap<NodeId, mpsc::Sender<Signal>>>,
    calls: Mutex<Vec<Call>>,
    cut: Mutex<HashSet<NodeId>>,
    /// Signals published, by the node that published them.
    published: Mutex<Vec<(NodeId, Signal)>>,
}

impl FakeNet {
    /// The cluster of node `me` on `store`, wired to this net.
    pub fn node(self: &Arc<Self>, me: NodeId, store: Arc<dyn Store>) -> Arc<FakeCluster> {
        Arc::new(FakeCluster {
            me,
            store,
            net: Arc::clone(self),
        })
    }

    /// Makes `fleet` the one that answers calls to node `id`.
    pub fn join(&self, id: NodeId, fleet: &Arc<Fleet>) {
        self.fleets.lock().unwrap().insert(id, Arc::downgrade(fleet));
    }

    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// From now on, calls to `id` fail as an unreachable node's do.
    pub fn cut_off(&self, id: NodeId) {
        self.cut.lock().unwrap().insert(id);
    }

    /// Every signal published so far, with its node.
    pub fn published(&self) -> Vec<(NodeId, Signal)> {
        self.published.lock().unwrap().clone()
    }

    /// Records `call` to `to`; an error if `to` is cut off.
    fn dial(&self, to: NodeId, call: Call) -> Result<(), ClusterError> {
        self.calls.lock().unwrap().push(call);
        if self.cut.lock().unwrap().contains(&to) {
            return Err(ClusterError::Unreachable {
                node: to,
                message: "cut off".to_owned(),
            });
        }
        Ok(())
    }

    /// The fleet that answers for `to`, or why it cannot be reached.
    fn reach(&self, to: NodeId, call: Call) -> Result<Arc<Fleet>, ClusterError> {
        self.dial(to, call)?;
        let unreachable = |message: &str| ClusterError::Unreachable {
            node: to,
            message: message.to_owned(),
        };
        self.fleets
            .lock()
            .unwrap()
            .get(&to)
            .and_then(Weak::upgrade)
            .ok_or_else(|| unreachable("no such node in this test"))
    }
}

/// One node's view of a [`FakeNet`].
pub struct FakeCluster {
    me: NodeId,
    store: Arc<dyn Store>,
    net: Arc<FakeNet>,
}

impl std::fmt::Debug for FakeCluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FakeCluster")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Cluster for FakeCluster {
    fn me(&self) -> NodeId {
        self.me
    }

    async fn owner_elsewhere(&self, session_id: SessionId) -> Result<Option<NodeRecord>, StoreError> {
        super::live_owner_elsewhere(self.store.as_ref(), self.me, session_id).await
    }

    async fn end_session_at(
        &self,
        owner: &NodeRecord,
        session_id: SessionId,
        status: SessionStatus,
        reason: &str,
    ) -> Result<bool, ClusterError> {
        let fleet = self.net.reach(
            owner.id,
            Call::EndSession {
                to: owner.id,
                session_id,
            },
        )?;
        Ok(fleet
            .end_local_session(session_id, status, reason, EndWait::Gone)
            .await?)
    }

    async fn stop_batch_elsewhere(&self, batch_id: BatchId, reason: &str) -> Result<Vec<NodeShare>, StoreError> {
        let others = super::live_others(self.store.as_ref(), self.me).await?;
        let stops = others.iter().map(|node| async move {
            let share = match self.net.reach(node.id, Call::StopBatch { to: node.id, batch_id }) {
                Ok(fleet) => Ok(fleet.stop_batch_here(batch_id, reason).await),
                Err(error) => Err(error),
            };
            NodeShare { node: node.id, share }
        });
        Ok(futures_util::future::join_all(stops).await)
    }

    fn publish(&self, signal: Signal) {
        self.net.published.lock().unwrap().push((self.me, signal));
        let listeners: Vec<(NodeId, mpsc::Sender<Signal>)> = self
            .net
            .listeners
            .lock()
            .unwrap()
            .iter()
            .map(|(id, sender)| (*id, sender.clone()))
            .collect();
        for (id, sender) in listeners {
            if id != self.me && !self.net.cut.lock().unwrap().contains(&id) {
                // A full or closed listener loses the signal, as a real one may.
                let _ = sender.try_send(signal);
            }
        }
    }

    async fn listen(&self) -> Option<mpsc::Receiver<Signal>> {
        let (sender, receiver) = mpsc::channel(1024);
        self.net.listeners.lock().unwrap().insert(self.me, sender);
        Some(receiver)
    }

    async fn pass_event(&self, _team_id: TeamId, _name: &str, _data: &serde_json::Value) {
        let Ok(others) = super::live_others(self.store.as_ref(), self.me).await else {
            return;
        };
        for node in others {
            let _ = self.net.reach(node.id, Call::Event { to: node.id });
        }
    }

    async fn forward(&self, owner: &NodeRecord, _request: Request) -> Response {
        match self.net.dial(owner.id, Call::Forward { to: owner.id }) {
            // The owner's answer, as far as this test can tell it.
            Ok(_) => (StatusCode::OK, format!("answered by {}", owner.id)).into_response(),
            Err(error) => crate::error::ApiError::Unavailable(error.to_string()).into_response(),
        }
    }
}

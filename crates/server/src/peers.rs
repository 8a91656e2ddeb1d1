//! The other nodes of a shared database, as this node reaches them: which
//! node runs a session, and the internal calls one node makes on another
//! (end a session it runs; stop what it runs and launches of a batch; pass
//! on a named event's signal to its waiters). The calls carry the node key (`TokenSigner::node_key`), which
//! every node derives from the database's shared secret and no client has.
//!
//! Why calls rather than rows a node is woken for: the answer of an end or
//! a cancel must wait until the browsers are gone, and only the node that
//! holds a browser knows when that is; a call returns exactly then, and
//! its failure (a node unreachable) is an error the caller can report.

use std::time::Duration;

use anchorage_core::{BatchId, NodeId, SessionId, SessionStatus, Timestamp};
use anchorage_store::{NodeRecord, Store, StoreError};
use serde::{Deserialize, Serialize};

/// The header an internal call carries its node key in.
pub const NODE_KEY_HEADER: &str = "anchorage-node-key";
/// The header a request forwarded to the node that runs its session
/// carries (the id of the node that forwarded it), so that it is never
/// forwarded again.
pub const FORWARDED_HEADER: &str = "anchorage-forwarded-by";

/// How long an internal call may take (an end waits for a browser to be
/// gone, which takes well under this).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The body of an internal end.
#[derive(Debug, Serialize, Deserialize)]
pub struct EndCall {
    /// The final status: `completed` or `failed`.
    pub status: String,
    /// Why, as recorded.
    pub reason: String,
}

/// A named event's signal passed to another node.
#[derive(Debug, Serialize, Deserialize)]
pub struct SignalCall {
    /// The team whose event it is.
    pub team_id: String,
    /// The event's name.
    pub name: String,
    /// Its data.
    pub data: serde_json::Value,
}

/// The answer of an internal end.
#[derive(Debug, Serialize, Deserialize)]
pub struct EndAnswer {
    /// Whether this call ended it (`false`: it had ended already).
    pub ended: bool,
}

/// This node's view of the others.
pub struct Peers {
    me: NodeId,
    key: String,
    store: std::sync::Arc<dyn Store>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Peers")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// An internal call that did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The database could not say where things are.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The other node did not answer as it should.
    #[error("the node at {url} did not answer: {message}")]
    Unreachable {
        /// Where it was called.
        url: String,
        /// What went wrong.
        message: String,
    },
}

impl Peers {
    /// This node (`me`) among the others, calling them with `key`.
    pub fn new(me: NodeId, key: String, store: std::sync::Arc<dyn Store>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self { me, key, store, http }
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The other nodes whose lease holds now.
    pub async fn others(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let now = Timestamp::now();
        Ok(self
            .store
            .nodes()
            .await?
            .into_iter()
            .filter(|node| node.id != self.me && node.lease_until >= now)
            .collect())
    }

    /// The URL of the live node other than this one that runs `session`,
    /// if another does (`None`: this node, a lost node, or nobody).
    pub async fn owner_elsewhere(&self, session: SessionId) -> Result<Option<String>, StoreError> {
        let Some(owner) = self.store.session_node(session).await? else {
            return Ok(None);
        };
        if owner == self.me {
            return Ok(None);
        }
        Ok(self
            .others()
            .await?
            .into_iter()
            .find(|node| node.id == owner)
            .map(|node| node.url))
    }

    /// The client this node calls the others with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request to another node's internal API, with the node key.
    pub fn internal(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header(NODE_KEY_HEADER, &self.key)
            .timeout(CALL_TIMEOUT)
    }

    /// Asks the node at `base` to end a session it runs and waits until the
    /// browser is gone; whether that call ended it.
    pub async fn end_session(&self, base: &str, session: SessionId, call: &EndCall) -> Result<bool, PeerError> {
        let url = join(base, &format!("internal/v1/sessions/{session}/end"));
        let answer: EndAnswer = self.call(reqwest::Method::POST, &url, Some(call)).await?;
        Ok(answer.ended)
    }

    /// Asks the node at `base` to drop what it queued of a batch, stop its
    /// launches of it and end its running sessions of it, and waits until
    /// they are gone.
    pub async fn stop_batch(&self, base: &str, batch: BatchId, reason: &str) -> Result<(), PeerError> {
        let url = join(base, &format!("internal/v1/batches/{batch}/stop"));
        let call = EndCall {
            status: SessionStatus::Completed.as_str().to_owned(),
            reason: reason.to_owned(),
        };
        let _: serde_json::Value = self.call(reqwest::Method::POST, &url, Some(&call)).await?;
        Ok(())
    }

    /// Passes a named event's signal to every other live node, for the
    /// waiters there (a node that cannot be reached is logged and skipped:
    /// a signal with nobody to hear it is not kept anyway).
    pub async fn signal_everywhere(&self, team: anchorage_core::TeamId, name: &str, data: &serde_json::Value) {
        let others = match self.others().await {
            Ok(others) => others,
            Err(error) => return tracing::warn!(%error, "cannot pass an event's signal to the other nodes"),
        };
        let call = SignalCall {
            team_id: team.to_string(),
            name: name.to_owned(),
            data: data.clone(),
        };
        let sends = others.iter().map(|node| {
            let url = join(&node.url, "internal/v1/events/signal");
            let request = self.internal(reqwest::Method::POST, &url).json(&call);
            async move { (node, request.send().await.and_then(reqwest::Response::error_for_status)) }
        });
        for (node, result) in futures_util::future::join_all(sends).await {
            if let Err(error) = result {
                tracing::warn!(node = %node.id, %error, "a node did not take an event's signal");
            }
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&EndCall>,
    ) -> Result<T, PeerError> {
        let unreachable = |message: String| PeerError::Unreachable {
            url: url.to_owned(),
            message,
        };
        let mut request = self.internal(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|error| unreachable(error.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(unreachable(format!(
                "{status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        response.json().await.map_err(|error| unreachable(error.to_string()))
    }
}

/// `base` (a node's URL) and a path under it.
pub fn join(base: &str, path: &str) -> String {
    format!("{}/{path}", base.trim_end_matches('/'))
}

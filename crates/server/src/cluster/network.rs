//! The cluster of nodes sharing a PostgreSQL database: they call each other
//! over HTTP (the internal routes, `internal.rs`, with the node key that
//! every node derives from the database's shared secret and no client has)
//! and wake each other with `LISTEN`/`NOTIFY` ([`anchorage_store::NodeStore::notify`],
//! [`anchorage_store::NodeStore::listen`]).
//!
//! Why calls rather than rows a node is woken for: the answer of an end or
//! a cancel must wait until the browsers are gone, and only the node that
//! holds a browser knows when that is; a call returns exactly then, and
//! its failure (a node unreachable) is an error the caller can report.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorage_core::{BatchId, NodeId, SessionId, SessionStatus, TeamId};
use anchorage_store::{NodeRecord, NodeStore, StoreError};
use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::{BatchShare, Cluster, ClusterError, NodeShare, Signal, FORWARDED_HEADER, NODE_KEY_HEADER};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// How long an internal call may take (an end waits for a browser to be
/// gone, which takes well under this).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers that belong to one connection and are not passed on (the ones a
/// protocol switch needs are passed on for an upgrade).
const HOP_BY_HOP: &[&str] = &[
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "host",
    "content-length",
];

/// The body of an internal end or batch stop.
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
    pub team_id: TeamId,
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

/// This node among the others of a PostgreSQL database.
pub struct Network {
    me: NodeId,
    key: String,
    store: Arc<dyn NodeStore>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    /// Signals waiting to be sent.
    publishing: Arc<Mutex<HashSet<Signal>>>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Network")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// This node (`me`) among the others of `store`, calling them with
    /// `key`; signals are sent from tasks of `tasks` and counted in `metrics`.
    pub fn new(me: NodeId, key: String, store: Arc<dyn NodeStore>, metrics: Arc<Metrics>, tasks: TaskTracker) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            me,
            key,
            store,
            http,
            metrics,
            publishing: Arc::default(),
            tasks,
        }
    }

    /// A request to another node's internal API, with the node key.
    fn internal(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header(NODE_KEY_HEADER, &self.key)
            .timeout(CALL_TIMEOUT)
    }

    /// Calls `path` of `node`'s internal API with `body` and reads its answer.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        node: &NodeRecord,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClusterError> {
        let unreachable = |message: String| ClusterError::Unreachable { node: node.id, message };
        let url = join(&node.url, path);
        let response = self
            .internal(reqwest::Method::POST, &url)
            .json(body)
            .send()
            .await
            .map_err(|error| unreachable(format!("{url}: {error}")))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(unreachable(format!(
                "{url}: {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        response
            .json()
            .await
            .map_err(|error| unreachable(format!("{url}: {error}")))
    }
}

#[async_trait]
impl Cluster for Network {
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
        let call = EndCall {
            status: status.as_str().to_owned(),
            reason: reason.to_owned(),
        };
        let answer: EndAnswer = self
            .call(owner, &format!("internal/v1/sessions/{session_id}/end"), &call)
            .await?;
        Ok(answer.ended)
    }

    async fn stop_batch_elsewhere(&self, batch_id: BatchId, reason: &str) -> Result<Vec<NodeShare>, StoreError> {
        let others = super::live_others(self.store.as_ref(), self.me).await?;
        let call = EndCall {
            status: SessionStatus::Completed.as_str().to_owned(),
            reason: reason.to_owned(),
        };
        let path = format!("internal/v1/batches/{batch_id}/stop");
        let stops = others.iter().map(|node| self.call::<BatchShare>(node, &path, &call));
        let answers = futures_util::future::join_all(stops).await;
        Ok(others
            .iter()
            .zip(answers)
            .map(|(node, share)| NodeShare { node: node.id, share })
            .collect())
    }

    fn publish(&self, signal: Signal) {
        let fresh = self
            .publishing
            .lock()
            .map(|mut publishing| publishing.insert(signal))
            .unwrap_or(true);
        if !fresh {
            return;
        }
        self.metrics.node_signal("sent", signal.kind());
        let (store, publishing) = (Arc::clone(&self.store), Arc::clone(&self.publishing));
        let topic = signal.topic(self.me);
        self.tasks.spawn(async move {
            if let Ok(mut publishing) = publishing.lock() {
                publishing.remove(&signal);
            }
            if let Err(error) = store.notify(&topic).await {
                tracing::debug!(%error, topic, "cannot tell the other nodes; they will poll");
            }
        });
    }

    async fn listen(&self) -> Option<mpsc::Receiver<Signal>> {
        let mut topics = match self.store.listen().await {
            Ok(topics) => topics?,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for other nodes' changes; polling alone finds them");
                return None;
            }
        };
        let (sender, receiver) = mpsc::channel(1024);
        let (me, metrics) = (self.me, Arc::clone(&self.metrics));
        // Ends when the store's listener does, or as soon as nobody reads
        // any more (the fleet stops reading at shutdown, which must not wait
        // for the next signal). Its end lets the store's listener go too.
        self.tasks.spawn(async move {
            loop {
                let topic = tokio::select! {
                    topic = topics.recv() => topic,
                    () = sender.closed() => return,
                };
                let Some(topic) = topic else { return };
                match Signal::parse(&topic) {
                    Some((from, signal)) if from != me => {
                        metrics.node_signal("received", signal.kind());
                        if sender.send(signal).await.is_err() {
                            return;
                        }
                    }
                    Some(_) => {}
                    None => tracing::debug!(topic, "a signal this version does not know"),
                }
            }
        });
        Some(receiver)
    }

    async fn pass_event(&self, team_id: TeamId, name: &str, data: &serde_json::Value) {
        let others = match super::live_others(self.store.as_ref(), self.me).await {
            Ok(others) => others,
            Err(error) => return tracing::warn!(%error, "cannot pass an event's signal to the other nodes"),
        };
        let call = SignalCall {
            team_id,
            name: name.to_owned(),
            data: data.clone(),
        };
        let sends = others
            .iter()
            .map(|node| self.call::<serde_json::Value>(node, "internal/v1/events/signal", &call));
        for (node, result) in others.iter().zip(futures_util::future::join_all(sends).await) {
            if let Err(error) = result {
                tracing::warn!(node = %node.id, %error, "a node did not take an event's signal");
            }
        }
    }

    async fn forward(&self, owner: &NodeRecord, request: Request) -> Response {
        forward(self, owner, request)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    }
}

async fn forward(network: &Network, owner: &NodeRecord, mut request: Request) -> Result<Response, ApiError> {
    let path = request
        .uri()
        .path_and_query()
        .map(|path| path.as_str().trim_start_matches('/').to_owned())
        .unwrap_or_default();
    let url = join(&owner.url, &path);
    let upgrade = crate::routes::is_websocket_upgrade(request.headers());
    let ours = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let mut headers = passed_on(&parts.headers, upgrade);
    if let Ok(me) = HeaderValue::from_str(&network.me.to_string()) {
        headers.insert(FORWARDED_HEADER, me);
    }
    let unreachable = |error: reqwest::Error| {
        tracing::warn!(%url, %error, "the node that runs a session cannot be reached");
        ApiError::Unavailable(format!(
            "the node that runs this session ({}) cannot be reached; try again shortly",
            owner.url
        ))
    };
    let outgoing = network
        .http
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    let answer = outgoing.send().await.map_err(unreachable)?;
    let status = answer.status();
    let mut response_headers = passed_on(answer.headers(), upgrade);
    if let (Some(ours), StatusCode::SWITCHING_PROTOCOLS) = (ours, status) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        std::mem::swap(response.headers_mut(), &mut response_headers);
        tokio::spawn(async move {
            let theirs = match answer.upgrade().await {
                Ok(theirs) => theirs,
                Err(error) => return tracing::warn!(%error, "a forwarded WebSocket did not open at its node"),
            };
            let ours = match ours.await {
                Ok(ours) => ours,
                Err(error) => return tracing::debug!(%error, "a forwarded WebSocket's client left"),
            };
            let mut ours = hyper_util::rt::TokioIo::new(ours);
            let mut theirs = theirs;
            let _ = tokio::io::copy_bidirectional(&mut ours, &mut theirs).await;
        });
        return Ok(response);
    }
    let mut response = Response::new(Body::from_stream(answer.bytes_stream().map_err(std::io::Error::other)));
    *response.status_mut() = status;
    std::mem::swap(response.headers_mut(), &mut response_headers);
    Ok(response)
}

/// The headers of `from` that are passed on: all but the connection's own
/// (and those of a protocol switch, unless this is one).
fn passed_on(from: &HeaderMap, upgrade: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in from {
        let name_text = name.as_str();
        let switch = name == header::CONNECTION || name == header::UPGRADE;
        if HOP_BY_HOP.contains(&name_text) || (switch && !upgrade) {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers
}

/// `base` (a node's URL) and a path under it.
fn join(base: &str, path: &str) -> String {
    format!("{}/{path}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_request_keeps_its_headers_but_the_connections_own() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("anchor-api-key", "k"),
            ("host", "a:1"),
            ("content-length", "3"),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "x"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let call = passed_on(&headers, false);
        let names = |map: &HeaderMap| {
            let mut names: Vec<String> = map.keys().map(|name| name.as_str().to_owned()).collect();
            names.sort();
            names
        };
        assert_eq!(names(&call), ["anchor-api-key", "sec-websocket-key"]);
        let upgrade = passed_on(&headers, true);
        assert_eq!(
            names(&upgrade),
            ["anchor-api-key", "connection", "sec-websocket-key", "upgrade"]
        );
        assert_eq!(join("http://a:1/", "v1/x"), "http://a:1/v1/x");
        assert_eq!(join("http://a:1/base", "v1/x"), "http://a:1/base/v1/x");
    }

    /// A database that carries topics as PostgreSQL does: a notification
    /// reaches every listener, the notifying node's own included.
    struct Channel {
        feed: std::sync::Mutex<Option<mpsc::Receiver<String>>>,
        sender: mpsc::Sender<String>,
        notified: tokio::sync::Notify,
    }

    #[async_trait]
    impl NodeStore for Channel {
        async fn recover_node(
            &self,
            _node: NodeId,
            _reason: &str,
            _at: anchorage_core::Timestamp,
        ) -> Result<anchorage_store::RecoveryReport, StoreError> {
            Err(StoreError::Unavailable("not in this test"))
        }
        async fn register_node(&self, _record: &NodeRecord) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("not in this test"))
        }
        async fn renew_node(&self, _id: NodeId, _lease_until: anchorage_core::Timestamp) -> Result<bool, StoreError> {
            Err(StoreError::Unavailable("not in this test"))
        }
        async fn session_node(&self, _session_id: SessionId) -> Result<Option<NodeId>, StoreError> {
            Ok(None)
        }
        async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
            Ok(Vec::new())
        }
        async fn leave(&self, _id: NodeId) -> Result<(), StoreError> {
            Ok(())
        }
        async fn notify(&self, topic: &str) -> Result<(), StoreError> {
            let _ = self.sender.send(topic.to_owned()).await;
            self.notified.notify_one();
            Ok(())
        }
        async fn listen(&self) -> Result<Option<mpsc::Receiver<String>>, StoreError> {
            Ok(self.feed.lock().map(|mut feed| feed.take()).unwrap_or_default())
        }
    }

    #[tokio::test]
    async fn other_nodes_signals_arrive_and_the_listener_ends_once_nobody_reads() {
        let (sender, feed) = mpsc::channel(16);
        let store = Arc::new(Channel {
            feed: std::sync::Mutex::new(Some(feed)),
            sender: sender.clone(),
            notified: tokio::sync::Notify::new(),
        });
        let tasks = TaskTracker::new();
        let (me, other) = (NodeId::from_u128(1), NodeId::from_u128(2));
        let network = Network::new(me, "key".to_owned(), store.clone(), Arc::default(), tasks.clone());
        let mut signals = network.listen().await.expect("the database carries signals");
        // This node's own signal comes back from the database and is dropped,
        // as is a topic this version does not know.
        network.publish(Signal::Queued);
        store.notified.notified().await;
        let batch = anchorage_core::BatchId::new_random();
        for topic in [
            Signal::Batch(batch).topic(other),
            "a topic from later".to_owned(),
            Signal::Queued.topic(other),
        ] {
            sender.send(topic).await.expect("fed");
        }
        for expected in [Signal::Batch(batch), Signal::Queued] {
            let received = tokio::time::timeout(Duration::from_secs(5), signals.recv()).await;
            assert_eq!(received.expect("in time"), Some(expected));
        }
        // At shutdown the fleet stops reading: the listener ends at once,
        // though the database would go on carrying topics.
        drop(signals);
        tasks.close();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .expect("the listener ended once nobody read its signals");
    }

    #[test]
    fn an_end_call_names_its_status_as_the_wire_does() {
        let call: EndCall = serde_json::from_str(r#"{"status":"failed","reason":"r"}"#).expect("read");
        assert_eq!(call.status, SessionStatus::Failed.as_str());
        let share: BatchShare = serde_json::from_value(serde_json::json!({"sessions": [
            {"session_id": "00000000-0000-0000-0000-000000000001", "ended": true},
            {"session_id": "00000000-0000-0000-0000-000000000002", "ended": false},
        ]}))
        .expect("read");
        assert_eq!(share.ended(), 1);
        // A node of the previous version answers a stop with `{}`.
        let old: BatchShare = serde_json::from_str("{}").expect("read");
        assert!(old.sessions.is_empty());
    }
}

//! Calls that must reach the node running their session. Any node answers
//! any call, but a session's browser lives on one node: a request that acts
//! on it (an end, an action, its pages, its recordings and downloads, which
//! are files on that node) or a WebSocket to it (CDP, the live view) that
//! arrives at another node is passed to that node as it came
//! ([`Cluster::forward`]), and its answer passed back as it went.
//!
//! Which routes act on a session, and where they name it, is declared once,
//! in the route table (`routes::table`, each row's [`SessionIn`]); the
//! router puts this middleware on exactly those routes, so nothing here
//! reads a path by hand.
//!
//! A forwarded request carries `anchorage-forwarded-by` and is never
//! forwarded again: the owner answers it as it would answer a request sent
//! to it directly. Reads of the database (`GET /v1/sessions/{id}`, lists,
//! batches) are answered by whichever node gets them.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Cluster, FORWARDED_HEADER};
use crate::error::ApiError;
use anchorage_core::SessionId;

/// Where a route names the session it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionIn {
    /// It acts on no session's browser (any node answers it).
    Nowhere,
    /// The path's `{session_id}`.
    Path,
    /// The query's `sessionId` (the one-shot tools, the SDK's CDP form).
    Query,
    /// The JSON body's `session_id` (a profile made from a running session).
    Body,
    /// The JSON body's `sessionId` (a task run in a running session).
    BodyCamel,
}

/// What the forwarding of one route needs.
#[derive(Clone)]
pub struct Forwarding {
    /// The other nodes.
    pub cluster: Arc<dyn Cluster>,
    /// Whether this node runs a session (then nothing is looked up).
    pub runs_here: Arc<dyn Fn(SessionId) -> bool + Send + Sync>,
    /// Largest body read to find a session named in it.
    pub max_body_bytes: usize,
    /// Where the route names its session.
    pub session_in: SessionIn,
}

/// Passes a request to the node that runs its session when that is
/// another live node; otherwise lets this node answer it.
pub async fn to_owner(
    State(forwarding): State<Forwarding>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    if request.headers().contains_key(FORWARDED_HEADER) {
        return next.run(request).await;
    }
    let (session_id, request) = match forwarding.session_in {
        SessionIn::Nowhere => (None, request),
        SessionIn::Path => {
            let named = params.ok().and_then(|params| {
                params
                    .iter()
                    .find(|(name, _)| *name == "session_id")
                    .and_then(|(_, value)| value.parse().ok())
            });
            (named, request)
        }
        SessionIn::Query => (in_query(request.uri()), request),
        SessionIn::Body => match in_body(forwarding.max_body_bytes, request, "session_id").await {
            Ok(found) => found,
            Err(answer) => return answer,
        },
        SessionIn::BodyCamel => match in_body(forwarding.max_body_bytes, request, "sessionId").await {
            Ok(found) => found,
            Err(answer) => return answer,
        },
    };
    let Some(session_id) = session_id else {
        return next.run(request).await;
    };
    if (forwarding.runs_here)(session_id) {
        return next.run(request).await;
    }
    match forwarding.cluster.owner_elsewhere(session_id).await {
        Ok(Some(owner)) => forwarding.cluster.forward(&owner, request).await,
        Ok(None) => next.run(request).await,
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// The `sessionId` of a query.
fn in_query(uri: &axum::http::Uri) -> Option<SessionId> {
    let query = uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "sessionId")
        .and_then(|(_, value)| value.parse().ok())
}

/// The session a JSON body names in `field`, and the request again with the
/// same body (read whole, within the body limit; a body that is not JSON
/// names none and is left to the handler to refuse).
async fn in_body(
    max_body_bytes: usize,
    request: Request,
    field: &str,
) -> Result<(Option<SessionId>, Request), Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, max_body_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(max_body_bytes).into_response())?;
    let session_id = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|value| value.get(field)?.as_str()?.parse().ok());
    Ok((session_id, Request::from_parts(parts, Body::from(bytes))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::cluster::fake::{Call, FakeNet};
    use anchorage_core::{NodeId, TeamId, Timestamp};
    use anchorage_store::{NodeRecord, Store};
    use axum::http::StatusCode;
    use axum::routing::post;
    use tower::ServiceExt;

    const HERE: NodeId = NodeId::from_u128(1);
    const THERE: NodeId = NodeId::from_u128(2);

    /// A store where `THERE` runs one session; the net between the two nodes.
    async fn world() -> (tempfile::TempDir, Arc<dyn Store>, Arc<FakeNet>, SessionId) {
        let (dir, store) = crate::test_support::file_store().await;
        let store: Arc<dyn Store> = Arc::new(store);
        for id in [HERE, THERE] {
            store
                .register_node(&NodeRecord {
                    id,
                    url: format!("http://{id}.test"),
                    max_sessions: 1,
                    started_at: Timestamp::now(),
                    lease_until: Timestamp::from_millis(Timestamp::now().as_millis() + 3_600_000),
                    live_sessions: 0,
                })
                .await
                .unwrap();
        }
        let team: TeamId = store.create_team("a").await.unwrap().id;
        let session = crate::test_support::live_session(store.as_ref(), team, THERE).await;
        (dir, store, Arc::new(FakeNet::default()), session.id)
    }

    /// One route at `path`, naming its session as `session_in`, whose own
    /// handler answers `here`.
    fn app(net: &Arc<FakeNet>, store: &Arc<dyn Store>, path: &str, session_in: SessionIn) -> axum::Router {
        let forwarding = Forwarding {
            cluster: net.node(HERE, Arc::clone(store)),
            runs_here: Arc::new(|_| false),
            max_body_bytes: 1024,
            session_in,
        };
        axum::Router::new().route(
            path,
            post(|body: String| async move { format!("here {body}") })
                .route_layer(axum::middleware::from_fn_with_state(forwarding, to_owner)),
        )
    }

    async fn call(app: axum::Router, uri: &str, body: &str, forwarded: bool) -> (StatusCode, String) {
        let mut request = axum::http::Request::post(uri);
        if forwarded {
            request = request.header(FORWARDED_HEADER, HERE.to_string());
        }
        let response = app
            .oneshot(request.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn a_call_reaches_the_node_named_where_its_route_declares() {
        let (_dir, store, net, session) = world().await;
        let there = format!("answered by {THERE}");
        let cases = [
            (
                "/s/{session_id}/x",
                SessionIn::Path,
                format!("/s/{session}/x"),
                String::new(),
            ),
            (
                "/tool",
                SessionIn::Query,
                format!("/tool?sessionId={session}"),
                String::new(),
            ),
            (
                "/made",
                SessionIn::Body,
                "/made".to_owned(),
                format!(r#"{{"session_id":"{session}"}}"#),
            ),
        ];
        for (path, session_in, uri, body) in cases {
            let (status, answer) = call(app(&net, &store, path, session_in), &uri, &body, false).await;
            assert_eq!((status, answer), (StatusCode::OK, there.clone()), "{path}");
            // Already forwarded once: answered where it arrived.
            let (_, answer) = call(app(&net, &store, path, session_in), &uri, &body, true).await;
            assert_eq!(answer, format!("here {body}"), "{path}");
        }
        assert_eq!(net.calls(), vec![Call::Forward { to: THERE }; 3]);
        // A route that declares no session is answered here, whatever it names.
        let (_, answer) = call(
            app(&net, &store, "/s/{session_id}/x", SessionIn::Nowhere),
            &format!("/s/{session}/x"),
            "",
            false,
        )
        .await;
        assert_eq!(answer, "here ");
        assert_eq!(net.calls().len(), 3);
    }

    #[tokio::test]
    async fn unknown_sessions_lost_owners_and_bodies_that_are_not_json_are_answered_here() {
        let (_dir, store, net, session) = world().await;
        let stranger = SessionId::new_random();
        let (_, answer) = call(
            app(&net, &store, "/s/{session_id}", SessionIn::Path),
            &format!("/s/{stranger}"),
            "",
            false,
        )
        .await;
        assert_eq!(answer, "here ");
        let (_, answer) = call(app(&net, &store, "/made", SessionIn::Body), "/made", "not json", false).await;
        assert_eq!(answer, "here not json", "the body reaches the handler whole");
        // The owner's lease ran out: nobody to pass it to.
        store
            .renew_node(THERE, Timestamp::from_millis(Timestamp::now().as_millis() - 1))
            .await
            .unwrap();
        let (_, answer) = call(
            app(&net, &store, "/s/{session_id}", SessionIn::Path),
            &format!("/s/{session}"),
            "",
            false,
        )
        .await;
        assert_eq!(answer, "here ");
        assert!(net.calls().is_empty(), "{:?}", net.calls());
    }

    #[tokio::test]
    async fn an_owner_that_cannot_be_reached_is_a_503() {
        let (_dir, store, net, session) = world().await;
        net.cut_off(THERE);
        let (status, _) = call(
            app(&net, &store, "/s/{session_id}", SessionIn::Path),
            &format!("/s/{session}"),
            "",
            false,
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
}

//! Calls that must reach the node running their session. Any node answers
//! any call, but a session's browser lives on one node: a request that acts
//! on it (an end, an action, its pages, its recordings and downloads, which
//! are files on that node) or a WebSocket to it (CDP, the live view) that
//! arrives at another node is passed to that node as it came, and its
//! answer passed back as it went. A WebSocket is passed through as bytes
//! after the owner switched protocols, so nothing is decoded twice.
//!
//! The same goes for a one-shot tool given a `sessionId` and a profile
//! made from a running session (`session_id` in its body).
//!
//! A forwarded request carries `anchorage-forwarded-by` and is never
//! forwarded again: the owner answers it as it would answer a request sent
//! to it directly. Reads of the database (`GET /v1/sessions/{id}`, lists,
//! batches) are answered by whichever node gets them.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use crate::error::ApiError;
use crate::peers::FORWARDED_HEADER;
use crate::state::AppState;
use anchorage_core::SessionId;

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

/// Passes a request to the node that runs its session when that is
/// another live node; otherwise lets this node answer it.
pub async fn to_owner(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (session_id, request) = if is_profile_from_session(request.method(), request.uri()) {
        match named_in_body(&state, request).await {
            Ok(found) => found,
            Err(answer) => return answer,
        }
    } else {
        (acting_on(request.method(), request.uri()), request)
    };
    let Some(session_id) = session_id else {
        return next.run(request).await;
    };
    if request.headers().contains_key(FORWARDED_HEADER) || state.fleet.live_session_any_team(session_id).is_some() {
        return next.run(request).await;
    }
    let Some(peers) = state.fleet.peers() else {
        return next.run(request).await;
    };
    match peers.owner_elsewhere(session_id).await {
        Ok(Some(owner)) => forward(&state, &owner, request)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Ok(None) => next.run(request).await,
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// The session a request acts on, if it is one that must reach its node.
fn acting_on(method: &Method, uri: &axum::http::Uri) -> Option<SessionId> {
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let id = match segments.as_slice() {
        ["v1", "sessions", id] if method == Method::DELETE => id,
        ["v1", "sessions", id, _, ..] => id,
        ["cdp", id] | ["live", id] | ["live", id, "stream"] => id,
        // The one-shot tools and the SDK's CDP form name it in the query.
        [""] | ["v1", "tools", ..] => {
            let query = uri.query()?;
            return url::form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "sessionId")
                .and_then(|(_, value)| value.parse().ok());
        }
        _ => return None,
    };
    id.parse().ok()
}

/// `POST /v1/profiles`: a profile made from a running session is saved by
/// the node that runs it.
fn is_profile_from_session(method: &Method, uri: &axum::http::Uri) -> bool {
    method == Method::POST && uri.path().trim_end_matches('/') == "/v1/profiles"
}

/// The `session_id` a JSON body names, and the request again with the
/// same body (read whole, within the body limit; a body that is not JSON
/// names none and is left to the handler to refuse).
async fn named_in_body(state: &AppState, request: Request) -> Result<(Option<SessionId>, Request), Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(state.max_body_bytes).into_response())?;
    let session_id = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|value| value.get("session_id")?.as_str()?.parse().ok());
    Ok((session_id, Request::from_parts(parts, Body::from(bytes))))
}

async fn forward(state: &AppState, owner: &str, mut request: Request) -> Result<Response, ApiError> {
    let peers = state
        .fleet
        .peers()
        .ok_or_else(|| ApiError::internal("forwarding without peers"))?;
    let path = request
        .uri()
        .path_and_query()
        .map(|path| path.as_str().trim_start_matches('/').to_owned())
        .unwrap_or_default();
    let url = crate::peers::join(owner, &path);
    let upgrade = crate::routes::cdp::is_websocket_upgrade(request.headers());
    let ours = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let mut headers = passed_on(&parts.headers, upgrade);
    if let Ok(me) = HeaderValue::from_str(&peers.me().to_string()) {
        headers.insert(FORWARDED_HEADER, me);
    }
    let unreachable = |error: reqwest::Error| {
        tracing::warn!(%url, %error, "the node that runs a session cannot be reached");
        ApiError::Unavailable(format!(
            "the node that runs this session ({owner}) cannot be reached; try again shortly"
        ))
    };
    let outgoing = peers
        .http()
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

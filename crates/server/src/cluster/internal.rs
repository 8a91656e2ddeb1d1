//! The calls nodes of one database make on each other (see `network.rs`),
//! under `/internal/v1`. Only a caller with the node key gets in; they are
//! not part of the public API or its OpenAPI document.

use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::network::{EndAnswer, EndCall, SignalCall};
use super::{BatchShare, NODE_KEY_HEADER};
use crate::error::ApiError;
use crate::fleet::EndWait;
use crate::state::AppState;

/// The internal routes, behind the node key.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/internal/v1/sessions/{session_id}/end", post(end_session))
        .route("/internal/v1/batches/{batch_id}/stop", post(stop_batch))
        .route("/internal/v1/events/signal", post(signal))
        .layer(axum::middleware::from_fn_with_state(state, node_only))
}

async fn node_only(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let key = request
        .headers()
        .get(NODE_KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !state.tokens.verify_node_key(key) {
        return ApiError::Unauthorized.into_response();
    }
    next.run(request).await
}

fn status_of(call: &EndCall) -> Result<anchorage_core::SessionStatus, ApiError> {
    match call.status.parse() {
        Ok(status @ (anchorage_core::SessionStatus::Completed | anchorage_core::SessionStatus::Failed)) => Ok(status),
        _ => Err(ApiError::BadRequest(format!(
            "status must be completed or failed, not {:?}",
            call.status
        ))),
    }
}

/// Ends a session this node runs, answering once its browser is gone.
async fn end_session(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    Json(call): Json<EndCall>,
) -> Result<Json<EndAnswer>, ApiError> {
    let session_id = session_id
        .parse()
        .map_err(|_| ApiError::NotFound("no such session".to_owned()))?;
    let status = status_of(&call)?;
    let ended = state
        .fleet
        .end_local_session(session_id, status, &call.reason, EndWait::Gone)
        .await?;
    Ok(Json(EndAnswer { ended }))
}

/// Drops and stops this node's share of a batch, answering once it is
/// gone with the sessions it held.
async fn stop_batch(
    State(state): State<AppState>,
    Path(batch_id): Path<String>,
    Json(call): Json<EndCall>,
) -> Result<Json<BatchShare>, ApiError> {
    let batch_id = batch_id
        .parse()
        .map_err(|_| ApiError::NotFound("no such batch".to_owned()))?;
    Ok(Json(state.fleet.stop_batch_here(batch_id, &call.reason).await))
}

/// A named event signalled on another node: this node's waiters get it.
async fn signal(
    State(state): State<AppState>,
    Json(call): Json<SignalCall>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.events.signal(call.team_id, &call.name, call.data);
    Ok(Json(serde_json::json!({})))
}

//! `/healthz` (the process answers), `/readyz` (the store answers and
//! Chromium is in place), and `/metrics` (Prometheus text). None of them
//! needs a key, none of them changes anything.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"data": {"status": "ok"}}))
}

/// `GET /readyz`: `503` with the reason when the store does not answer or
/// Chromium is missing.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    if let Err(error) = state.store.team_count().await {
        tracing::warn!(%error, "readiness: the store does not answer");
        return Err(ApiError::Unavailable(
            "not ready: the database does not answer".to_owned(),
        ));
    }
    if !state.fleet.chromium_ready() {
        return Err(ApiError::Unavailable(
            "not ready: the Chromium executable is missing".to_owned(),
        ));
    }
    Ok(Json(json!({"data": {"status": "ready"}})))
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut gauges = state.fleet.gauges();
    let counts = state.store.batch_item_counts().await?;
    gauges.batch_items = vec![
        ("pending", counts.pending),
        ("processing", counts.processing),
        ("completed", counts.completed),
        ("failed", counts.failed),
        ("cancelled", counts.cancelled),
    ];
    let body = state.fleet.metrics.render(&gauges);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response())
}

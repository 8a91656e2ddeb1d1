//! `/healthz` (the process answers), `/readyz` (the store answers and
//! Chromium is in place), and `/metrics` (Prometheus text). None of them
//! needs a key, none of them changes anything.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{Data, StatusOk};

/// `GET /healthz`.
#[utoipa::path(
    operation_id = "healthz",
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Whether the process answers",
    responses((status = 200, description = "It does", body = Data<StatusOk>))
)]
pub async fn healthz() -> Json<Data<StatusOk>> {
    Data::of(StatusOk::OK)
}

/// `GET /readyz`: `503` with the reason when the store does not answer or
/// Chromium is missing.
#[utoipa::path(
    operation_id = "readyz",
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Whether the server can start sessions",
    responses(
        (status = 200, description = "The store answers and Chromium is in place", body = Data<StatusOk>)
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Data<StatusOk>>, ApiError> {
    if let Err(error) = state.store.team_count().await {
        tracing::warn!(%error, "readiness: the store does not answer");
        return Err(ApiError::Unavailable(
            "not ready: the database does not answer".to_owned(),
        ));
    }
    if !state.fleet.launcher_ready() {
        return Err(ApiError::Unavailable(
            "not ready: the Chromium executable is missing".to_owned(),
        ));
    }
    Ok(Data::of(StatusOk::READY))
}

/// `GET /metrics`.
#[utoipa::path(
    operation_id = "metrics",
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Metrics in the OpenMetrics text format",
    responses((status = 200, description = "Sessions, pool, launches, batch items, connections, bytes proxied", content_type = "application/openmetrics-text", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut gauges = state.fleet.gauges();
    gauges.event_waiters = state.events.waiters();
    // Every node's: the queue is shared.
    gauges.queued_requests = usize::try_from(state.store.queued_requests().await?).unwrap_or(0);
    let counts = state.store.batch_item_counts().await?;
    gauges.batch_items = vec![
        ("pending", counts.pending),
        ("processing", counts.processing),
        ("completed", counts.completed),
        ("failed", counts.failed),
        ("cancelled", counts.cancelled),
    ];
    let profiles = state.store.all_profiles().await?;
    let extensions = state.store.list_extensions(None).await?;
    let certificates = state.store.list_certificates(None).await?;
    let recordings = state
        .store
        .recordings_in(anchorage_core::RecordingStatus::Ready, None, None)
        .await?;
    let count = |len: usize| i64::try_from(len).unwrap_or(i64::MAX);
    gauges.stored = vec![
        (
            "profiles",
            count(profiles.len()),
            profiles.iter().map(|profile| profile.size_bytes).sum(),
        ),
        (
            "extensions",
            count(extensions.len()),
            extensions.iter().map(|extension| extension.size_bytes).sum(),
        ),
        (
            "recordings",
            count(recordings.len()),
            recordings.iter().map(|recording| recording.size_bytes).sum(),
        ),
        (
            "certificates",
            count(certificates.len()),
            certificates
                .iter()
                .map(|certificate| count(certificate.pem.len()))
                .sum(),
        ),
    ];
    let body = state.metrics.render(&gauges);
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response())
}

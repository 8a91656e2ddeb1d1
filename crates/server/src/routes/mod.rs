//! The HTTP surface: the router, its fallbacks, and per-request logging.
//! This module alone speaks HTTP; handlers call the fleet and the store and
//! turn their answers into the contract's JSON.

mod batches;
mod cdp;
pub mod extract;
mod health;
mod live;
mod sessions;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route we serve.
pub fn router(state: AppState) -> Router {
    let body_limit = state.max_body_bytes;
    Router::new()
        .route("/", get(root))
        .route("/cdp/{session_id}", get(cdp::by_token))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/live/{session_id}", get(live::page))
        .route("/live/{session_id}/stream", get(live::stream))
        .route("/v1/sessions", post(sessions::create).get(sessions::history))
        .route("/v1/sessions/async", post(sessions::create_async))
        .route("/v1/sessions/async/{request_id}/status", get(sessions::async_status_of))
        .route("/v1/sessions/all", delete(sessions::delete_all))
        .route("/v1/sessions/all/status", get(sessions::all_status))
        .route("/v1/sessions/{session_id}", get(sessions::get).delete(sessions::delete))
        .route("/v1/sessions/{session_id}/pages", get(sessions::pages))
        .route("/v1/batch-sessions", post(batches::create).get(batches::list))
        .route(
            "/v1/batch-sessions/{batch_id}",
            get(batches::get).patch(batches::cancel).delete(batches::delete),
        )
        .route("/v1/batch-sessions/{batch_id}/retry", post(batches::retry))
        .route("/v1/batch-sessions/{batch_id}/events", get(batches::events))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(log_request))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .with_state(state)
}

/// The dashboard page: a static page that calls the API with the key the
/// user signs in with.
const DASHBOARD_PAGE: &str = include_str!("../../assets/dashboard.html");

/// `GET /`: a CDP upgrade when asked for one (the SDK's form), the dashboard
/// for a web browser, otherwise a short description of the server.
async fn root(State(state): State<AppState>, request: Request) -> Response {
    if cdp::is_websocket_upgrade(request.headers()) {
        return cdp::by_api_key(state, request).await;
    }
    let wants_html = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html {
        return ([(axum::http::header::CACHE_CONTROL, "no-store")], Html(DASHBOARD_PAGE)).into_response();
    }
    Json(json!({
        "name": "anchorage",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "A self-hosted browser fleet server speaking the AnchorBrowser API",
        "api": "/v1",
    }))
    .into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!(
        "there is no route {} {}",
        request.method(),
        request.uri().path()
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        request.method(),
        request.uri().path()
    ))
}

/// One log line per request: method, route, status, latency.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::warn!(%method, %route, status = status.as_u16(), latency_ms, "request");
    } else {
        tracing::info!(%method, %route, status = status.as_u16(), latency_ms, "request");
    }
    response
}

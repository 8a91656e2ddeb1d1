//! The HTTP surface: the router, its fallbacks, and per-request logging.
//! This module alone speaks HTTP; handlers call the fleet and the store and
//! turn their answers into the contract's JSON.

mod batches;
mod cdp;
pub mod extract;
mod health;
mod live;
mod openapi;
mod sessions;

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{About, ErrorBody};

/// Every route we serve: method, path, handler. The router is built from
/// this table alone, and a test checks it against `/openapi.json`.
fn table() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    vec![
        (Method::GET, "/", get(root)),
        (Method::GET, "/openapi.json", get(openapi::openapi_json)),
        (Method::GET, "/docs", get(openapi::docs)),
        (Method::GET, "/cdp/{session_id}", get(cdp::by_token)),
        (Method::GET, "/healthz", get(health::healthz)),
        (Method::GET, "/readyz", get(health::readyz)),
        (Method::GET, "/metrics", get(health::metrics)),
        (Method::GET, "/live/{session_id}", get(live::page)),
        (Method::GET, "/live/{session_id}/stream", get(live::stream)),
        (Method::POST, "/v1/sessions", post(sessions::create)),
        (Method::GET, "/v1/sessions", get(sessions::history)),
        (Method::POST, "/v1/sessions/async", post(sessions::create_async)),
        (
            Method::GET,
            "/v1/sessions/async/{request_id}/status",
            get(sessions::async_status_of),
        ),
        (Method::DELETE, "/v1/sessions/all", delete(sessions::delete_all)),
        (Method::GET, "/v1/sessions/all/status", get(sessions::all_status)),
        (Method::GET, "/v1/sessions/{session_id}", get(sessions::get)),
        (Method::DELETE, "/v1/sessions/{session_id}", delete(sessions::delete)),
        (Method::GET, "/v1/sessions/{session_id}/pages", get(sessions::pages)),
        (Method::POST, "/v1/batch-sessions", post(batches::create)),
        (Method::GET, "/v1/batch-sessions", get(batches::list)),
        (Method::GET, "/v1/batch-sessions/{batch_id}", get(batches::get)),
        (Method::PATCH, "/v1/batch-sessions/{batch_id}", patch(batches::cancel)),
        (Method::DELETE, "/v1/batch-sessions/{batch_id}", delete(batches::delete)),
        (
            Method::POST,
            "/v1/batch-sessions/{batch_id}/retry",
            post(batches::retry),
        ),
        (
            Method::GET,
            "/v1/batch-sessions/{batch_id}/events",
            get(batches::events),
        ),
    ]
}

/// The router, with its fallbacks and layers.
pub fn router(state: AppState) -> Router {
    let body_limit = state.max_body_bytes;
    let mut by_path: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
    for (_, path, handler) in table() {
        let merged = match by_path.remove(path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(path, merged);
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| router.route(path, handlers))
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
#[utoipa::path(
    operation_id = "root",
    get,
    path = "/",
    tag = "operations",
    summary = "The dashboard, a description of the server, or the SDK's CDP connection",
    description = "A web browser (Accept: text/html) gets the dashboard. A WebSocket upgrade with `apiKey` and \
                   `sessionId` connects a CDP client to that session (what the SDK's `browser.connect` builds). \
                   Anything else gets a short JSON description.",
    params(
        ("apiKey" = Option<String>, Query, description = "For the WebSocket form: an API key"),
        ("sessionId" = Option<String>, Query, description = "For the WebSocket form: a session of the key's team"),
    ),
    responses(
        (status = 200, description = "The dashboard or the description", content(
            (About = "application/json"),
            (String = "text/html"),
        )),
        (status = 101, description = "Switched to the WebSocket protocol (the CDP form)"),
        (status = 401, description = "The CDP form with a missing or unknown key", body = ErrorBody),
        (status = 404, description = "The CDP form with a session that is not running", body = ErrorBody),
    )
)]
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
    Json(About {
        name: "anchorage",
        version: env!("CARGO_PKG_VERSION"),
        description: "A self-hosted browser fleet server speaking the AnchorBrowser API",
        api: "/v1",
    })
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use utoipa::OpenApi;

    use super::*;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
        let served: BTreeSet<(String, String)> = table()
            .into_iter()
            .map(|(method, path, _)| (method.as_str().to_owned(), path.to_owned()))
            .collect();
        let document = serde_json::to_value(openapi::ApiDoc::openapi()).unwrap_or_default();
        let mut documented = BTreeSet::new();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(method, _)| method) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        assert_eq!(served, documented);
        assert_eq!(served.len(), table().len(), "a route is in the table twice");
    }
}

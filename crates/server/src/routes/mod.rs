//! The HTTP surface: the router, its fallbacks, and per-request logging.
//! This module alone speaks HTTP; handlers call the fleet and the store and
//! turn their answers into the contract's JSON.

mod actions;
mod adblock;
mod agent;
mod batches;
mod cdp;
mod certificates;
mod code;
mod events;
mod extensions;
pub mod extract;
mod health;
mod live;
mod openapi;
mod profiles;
mod recordings;
mod sessions;
mod tasks;
mod tools;
mod usage;
mod webhooks;

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;

use crate::cluster::forward::{Forwarding, SessionIn};
use crate::error::{ApiError, Fault};
use crate::state::AppState;
use crate::wire::About;

pub(crate) use cdp::is_websocket_upgrade;

/// One route: what it serves, and the error answers it can give besides a
/// `500` (which every route can). Those are its documented error responses
/// (`openapi.rs` adds them to the document from here) and the only ones it
/// may answer: the router turns any other into a logged `500`.
pub(crate) struct Route {
    pub method: Method,
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
    pub faults: &'static [Fault],
    /// Where it names the session whose browser it acts on: such a call is
    /// passed to the node that runs that session (`cluster::forward`).
    pub session_in: SessionIn,
}

impl Route {
    /// The row, acting on the session named `where_named`.
    fn on_session(self, where_named: SessionIn) -> Self {
        Self {
            session_in: where_named,
            ..self
        }
    }
}

/// What a `/v1` route that reads only can answer: a bad key, a database
/// that cannot take work.
const READ: &[Fault] = &[Fault::Unauthorized, Fault::Unavailable];
/// … and one that names a resource by id.
const READ_ONE: &[Fault] = &[Fault::Unauthorized, Fault::NotFound, Fault::Unavailable];
/// … and one with a query to check.
const QUERY: &[Fault] = &[Fault::BadRequest, Fault::Unauthorized, Fault::Unavailable];
/// A start: a body to check, a quota.
const START: &[Fault] = &[
    Fault::BadRequest,
    Fault::Unauthorized,
    Fault::PayloadTooLarge,
    Fault::TooManyRequests,
    Fault::Unavailable,
];
/// A change of a batch's state, with a body.
const BATCH_CHANGE: &[Fault] = &[
    Fault::BadRequest,
    Fault::Unauthorized,
    Fault::NotFound,
    Fault::Conflict,
    Fault::PayloadTooLarge,
    Fault::Unavailable,
];
/// A signal of a named event, with a body.
const EVENT_SIGNAL: &[Fault] = &[
    Fault::BadRequest,
    Fault::Unauthorized,
    Fault::PayloadTooLarge,
    Fault::Unavailable,
];
/// A wait for a named event: it may time out.
const EVENT_WAIT: &[Fault] = &[
    Fault::BadRequest,
    Fault::Unauthorized,
    Fault::PayloadTooLarge,
    Fault::Unavailable,
    Fault::Timeout,
];
/// A change of one resource named by id, with a body: a webhook (or a test
/// event for it), a session's tags.
const CHANGE_ONE: &[Fault] = &[
    Fault::BadRequest,
    Fault::Unauthorized,
    Fault::NotFound,
    Fault::PayloadTooLarge,
    Fault::Unavailable,
];
/// An upload of a file the server checks and keeps.
const UPLOAD: &[Fault] = &[
    Fault::BadRequest,
    Fault::Unauthorized,
    Fault::PayloadTooLarge,
    Fault::Unavailable,
];
/// … of a file kept under a name its team may already use.
const UPLOAD_NAMED: &[Fault] = &[
    Fault::BadRequest,
    Fault::Unauthorized,
    Fault::Conflict,
    Fault::PayloadTooLarge,
    Fault::Unavailable,
];
/// Making a profile (from a running session, when one is named).
const PROFILE_CREATE: &[Fault] = &[
    Fault::BadRequest,
    Fault::Unauthorized,
    Fault::NotFound,
    Fault::Conflict,
    Fault::PayloadTooLarge,
    Fault::Unavailable,
];
/// A read of a running session's state kept by the server.
const RUNNING_READ: &[Fault] = &[
    Fault::Unauthorized,
    Fault::NotFound,
    Fault::Conflict,
    Fault::Unavailable,
];
/// A read of a running session's page, without a body.
const PAGE_READ: &[Fault] = &[
    Fault::Unauthorized,
    Fault::NotFound,
    Fault::Conflict,
    Fault::Unavailable,
    Fault::Timeout,
];
/// An action on a running session, with a body.
const ACTION: &[Fault] = &[
    Fault::BadRequest,
    Fault::Unauthorized,
    Fault::NotFound,
    Fault::Conflict,
    Fault::PayloadTooLarge,
    Fault::Unavailable,
    Fault::Timeout,
];
/// A one-shot tool: an action, plus the team's quota for the session it may start.
const TOOL: &[Fault] = &[
    Fault::BadRequest,
    Fault::Unauthorized,
    Fault::NotFound,
    Fault::Conflict,
    Fault::PayloadTooLarge,
    Fault::TooManyRequests,
    Fault::Unavailable,
    Fault::Timeout,
];
/// A task's change, with a body: it may be missing, or clash by name.
const TASK_CHANGE: &[Fault] = &[
    Fault::BadRequest,
    Fault::Unauthorized,
    Fault::NotFound,
    Fault::Conflict,
    Fault::PayloadTooLarge,
    Fault::Unavailable,
];
/// A read of a task or its parts, by id and version name.
const TASK_READ: &[Fault] = &[
    Fault::BadRequest,
    Fault::Unauthorized,
    Fault::NotFound,
    Fault::Unavailable,
];
/// A task's run: a change that may start a session and wait for a run slot.
const TASK_RUN: &[Fault] = TOOL;

/// A WebSocket upgrade that a session's token opens.
const TOKEN_UPGRADE: &[Fault] = &[Fault::BadRequest, Fault::Unauthorized, Fault::NotFound];

/// Every route the server serves. The router is built from it and the
/// OpenAPI document's error responses come from it; a test checks the
/// document's paths and methods against it.
pub(crate) fn table() -> Vec<Route> {
    let route = |method: Method, path: &'static str, handler: MethodRouter<AppState>, faults: &'static [Fault]| Route {
        method,
        path,
        handler,
        faults,
        session_in: SessionIn::Nowhere,
    };
    vec![
        route(
            Method::GET,
            "/",
            get(root),
            &[Fault::Unauthorized, Fault::NotFound, Fault::Unavailable],
        )
        .on_session(SessionIn::Query),
        route(Method::GET, "/openapi.json", get(openapi::openapi_json), &[]),
        route(Method::GET, "/docs", get(openapi::docs), &[]),
        route(Method::GET, "/cdp/{session_id}", get(cdp::by_token), TOKEN_UPGRADE).on_session(SessionIn::Path),
        route(Method::GET, "/healthz", get(health::healthz), &[]),
        route(Method::GET, "/readyz", get(health::readyz), &[Fault::Unavailable]),
        route(Method::GET, "/metrics", get(health::metrics), &[Fault::Unavailable]),
        route(
            Method::GET,
            "/live/{session_id}",
            get(live::page),
            &[Fault::Unauthorized, Fault::NotFound],
        )
        .on_session(SessionIn::Path),
        route(
            Method::GET,
            "/live/{session_id}/stream",
            get(live::stream),
            TOKEN_UPGRADE,
        )
        .on_session(SessionIn::Path),
        route(Method::POST, "/v1/sessions", post(sessions::create), START),
        route(Method::GET, "/v1/sessions", get(sessions::history), QUERY),
        route(Method::POST, "/v1/sessions/async", post(sessions::create_async), START),
        route(
            Method::GET,
            "/v1/sessions/async/{request_id}/status",
            get(sessions::async_status_of),
            READ_ONE,
        ),
        route(Method::DELETE, "/v1/sessions/all", delete(sessions::delete_all), READ),
        route(Method::GET, "/v1/sessions/history", get(usage::history), QUERY),
        route(Method::GET, "/v1/adblock", get(adblock::status), READ),
        route(Method::GET, "/v1/sessions/all/status", get(sessions::all_status), QUERY),
        route(Method::GET, "/v1/sessions/{session_id}", get(sessions::get), READ_ONE),
        route(
            Method::GET,
            "/v1/sessions/{session_id}/tags",
            get(sessions::tags),
            READ_ONE,
        ),
        route(
            Method::PUT,
            "/v1/sessions/{session_id}/tags",
            axum::routing::put(sessions::put_tags),
            CHANGE_ONE,
        ),
        route(
            Method::DELETE,
            "/v1/sessions/{session_id}/tags",
            delete(sessions::delete_tags),
            READ_ONE,
        ),
        route(
            Method::DELETE,
            "/v1/sessions/{session_id}",
            delete(sessions::delete),
            READ_ONE,
        )
        .on_session(SessionIn::Path),
        route(
            Method::GET,
            "/v1/sessions/{session_id}/pages",
            get(sessions::pages),
            READ_ONE,
        )
        .on_session(SessionIn::Path),
        route(
            Method::GET,
            "/v1/sessions/{session_id}/screenshot",
            get(actions::screenshot),
            PAGE_READ,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/mouse/click",
            post(actions::mouse_click),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/mouse/doubleClick",
            post(actions::mouse_double_click),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/mouse/down",
            post(actions::mouse_down),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/mouse/up",
            post(actions::mouse_up),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/mouse/move",
            post(actions::mouse_move),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/scroll",
            post(actions::scroll),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/keyboard/type",
            post(actions::keyboard_type),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/keyboard/shortcut",
            post(actions::keyboard_shortcut),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/goto",
            post(actions::goto),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/drag-and-drop",
            post(actions::drag_and_drop),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::GET,
            "/v1/sessions/{session_id}/clipboard",
            get(actions::get_clipboard),
            RUNNING_READ,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/clipboard",
            post(actions::set_clipboard),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/copy",
            post(actions::copy),
            PAGE_READ,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/paste",
            post(actions::paste),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/uploads",
            // Streamed to disk with its own limit (ANCHORAGE_MAX_UPLOAD_BYTES).
            post(actions::upload).layer(DefaultBodyLimit::disable()),
            &[
                Fault::BadRequest,
                Fault::Unauthorized,
                Fault::NotFound,
                Fault::Conflict,
                Fault::PayloadTooLarge,
                Fault::Unavailable,
            ],
        )
        .on_session(SessionIn::Path),
        route(
            Method::GET,
            "/v1/sessions/{session_id}/downloads",
            get(actions::downloads),
            RUNNING_READ,
        )
        .on_session(SessionIn::Path),
        route(
            Method::GET,
            "/v1/sessions/{session_id}/downloads/{download_id}",
            get(actions::download_file),
            RUNNING_READ,
        )
        .on_session(SessionIn::Path),
        route(
            Method::GET,
            "/v1/sessions/{session_id}/recordings",
            get(recordings::list),
            READ_ONE,
        )
        .on_session(SessionIn::Path),
        route(
            Method::GET,
            "/v1/sessions/{session_id}/recordings/primary/fetch",
            get(recordings::fetch),
            RUNNING_READ,
        )
        .on_session(SessionIn::Path),
        route(
            Method::DELETE,
            "/v1/sessions/{session_id}/recordings/{recording_id}",
            delete(recordings::delete),
            RUNNING_READ,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/recordings/pause",
            post(recordings::pause),
            RUNNING_READ,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/recordings/resume",
            post(recordings::resume),
            RUNNING_READ,
        )
        .on_session(SessionIn::Path),
        route(Method::POST, "/v1/profiles", post(profiles::create), PROFILE_CREATE).on_session(SessionIn::Body),
        route(Method::GET, "/v1/profiles", get(profiles::list), READ),
        route(Method::GET, "/v1/profiles/{name}", get(profiles::get), READ_ONE),
        route(
            Method::DELETE,
            "/v1/profiles/{name}",
            delete(profiles::delete),
            READ_ONE,
        ),
        route(
            Method::POST,
            "/v1/certificates",
            post(certificates::create),
            UPLOAD_NAMED,
        ),
        route(Method::GET, "/v1/certificates", get(certificates::list), READ),
        route(
            Method::DELETE,
            "/v1/certificates/{name}",
            delete(certificates::delete),
            READ_ONE,
        ),
        route(
            Method::POST,
            "/v1/events/{event_name}",
            post(events::signal),
            EVENT_SIGNAL,
        ),
        route(
            Method::POST,
            "/v1/events/{event_name}/wait",
            post(events::wait),
            EVENT_WAIT,
        ),
        route(
            Method::POST,
            "/v1/webhooks",
            post(webhooks::create),
            &[
                Fault::BadRequest,
                Fault::Unauthorized,
                Fault::Conflict,
                Fault::PayloadTooLarge,
                Fault::Unavailable,
            ],
        ),
        route(Method::GET, "/v1/webhooks", get(webhooks::list), READ),
        route(Method::GET, "/v1/webhooks/{id}", get(webhooks::get), READ_ONE),
        route(Method::PATCH, "/v1/webhooks/{id}", patch(webhooks::update), CHANGE_ONE),
        route(Method::DELETE, "/v1/webhooks/{id}", delete(webhooks::delete), READ_ONE),
        route(
            Method::POST,
            "/v1/webhooks/{id}/rotate-secret",
            post(webhooks::rotate),
            READ_ONE,
        ),
        route(Method::POST, "/v1/webhooks/{id}/test", post(webhooks::test), CHANGE_ONE),
        route(
            Method::GET,
            "/v1/webhooks/{id}/events",
            get(webhooks::events),
            &[
                Fault::BadRequest,
                Fault::Unauthorized,
                Fault::NotFound,
                Fault::Unavailable,
            ],
        ),
        route(Method::POST, "/v1/extensions", post(extensions::upload), UPLOAD),
        route(Method::GET, "/v1/extensions", get(extensions::list), READ),
        route(Method::GET, "/v1/extensions/{id}", get(extensions::get), READ_ONE),
        route(
            Method::DELETE,
            "/v1/extensions/{id}",
            delete(extensions::delete),
            READ_ONE,
        ),
        route(Method::POST, "/v1/tools/screenshot", post(tools::screenshot), TOOL).on_session(SessionIn::Query),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/snapshot",
            post(agent::snapshot),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/element",
            post(agent::element),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/wait",
            post(agent::wait),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/pages",
            post(agent::open_page),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::DELETE,
            "/v1/sessions/{session_id}/pages/{page_id}",
            delete(agent::close_page),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(
            Method::POST,
            "/v1/sessions/{session_id}/pages/{page_id}/activate",
            post(agent::activate_page),
            ACTION,
        )
        .on_session(SessionIn::Path),
        route(Method::POST, "/v1/tools/execute-code", post(code::execute_code), TOOL).on_session(SessionIn::Query),
        route(Method::POST, "/v1/task", post(tasks::create), TASK_CHANGE),
        route(Method::GET, "/v1/task", get(tasks::list), QUERY),
        route(Method::POST, "/v1/task/run", post(tasks::run), TASK_RUN).on_session(SessionIn::BodyCamel),
        route(
            Method::POST,
            "/v1/task/run/{task_name}",
            post(tasks::run_by_name),
            TASK_RUN,
        )
        .on_session(SessionIn::BodyCamel),
        route(Method::GET, "/v1/task/{task_id}", get(tasks::get), READ_ONE),
        route(
            Method::PUT,
            "/v1/task/{task_id}",
            axum::routing::put(tasks::update),
            TASK_CHANGE,
        ),
        route(Method::DELETE, "/v1/task/{task_id}", delete(tasks::delete), READ_ONE),
        route(
            Method::GET,
            "/v1/task/{task_id}/versions",
            get(tasks::versions),
            READ_ONE,
        ),
        route(Method::GET, "/v1/task/{task_id}/latest", get(tasks::latest), TASK_READ),
        route(
            Method::POST,
            "/v1/task/{task_id}/latest",
            post(tasks::publish_latest),
            TASK_READ,
        ),
        route(
            Method::DELETE,
            "/v1/task/{task_id}/latest",
            delete(tasks::delete_latest),
            TASK_READ,
        ),
        route(Method::GET, "/v1/task/{task_id}/draft", get(tasks::draft), TASK_READ),
        route(
            Method::DELETE,
            "/v1/task/{task_id}/draft",
            delete(tasks::delete_draft),
            TASK_READ,
        ),
        route(
            Method::POST,
            "/v1/task/{task_id}/draft",
            post(tasks::save_draft),
            TASK_CHANGE,
        ),
        route(
            Method::POST,
            "/v1/task/{task_id}/deploy",
            post(tasks::deploy),
            TASK_CHANGE,
        ),
        route(
            Method::GET,
            "/v1/task/{task_id}/executions",
            get(tasks::executions),
            TASK_READ,
        ),
        route(
            Method::GET,
            "/v1/task/{task_id}/executions/{execution_id}",
            get(tasks::execution),
            READ_ONE,
        ),
        route(
            Method::GET,
            "/v1/task/{task_id}/{task_version}",
            get(tasks::get_version),
            TASK_READ,
        ),
        route(
            Method::POST,
            "/v1/task/{task_id}/{task_version}",
            post(tasks::publish),
            TASK_CHANGE,
        ),
        route(
            Method::DELETE,
            "/v1/task/{task_id}/{task_version}",
            delete(tasks::delete_version),
            TASK_READ,
        ),
        route(Method::POST, "/v1/tools/page-pdf", post(tools::page_pdf), TOOL).on_session(SessionIn::Query),
        route(
            Method::POST,
            "/v1/tools/fetch/webpage",
            post(tools::fetch_webpage),
            TOOL,
        )
        .on_session(SessionIn::Query),
        route(
            Method::POST,
            "/v1/tools/fetch-webpage",
            post(tools::fetch_webpage_npm),
            TOOL,
        )
        .on_session(SessionIn::Query),
        route(
            Method::POST,
            "/v1/batch-sessions",
            post(batches::create),
            &[
                Fault::BadRequest,
                Fault::Unauthorized,
                Fault::PayloadTooLarge,
                Fault::Unavailable,
            ],
        ),
        route(Method::GET, "/v1/batch-sessions", get(batches::list), QUERY),
        route(
            Method::GET,
            "/v1/batch-sessions/{batch_id}",
            get(batches::get),
            READ_ONE,
        ),
        route(
            Method::PATCH,
            "/v1/batch-sessions/{batch_id}",
            patch(batches::cancel),
            BATCH_CHANGE,
        ),
        route(
            Method::DELETE,
            "/v1/batch-sessions/{batch_id}",
            delete(batches::delete),
            READ_ONE,
        ),
        route(
            Method::POST,
            "/v1/batch-sessions/{batch_id}/retry",
            post(batches::retry),
            BATCH_CHANGE,
        ),
        route(
            Method::GET,
            "/v1/batch-sessions/{batch_id}/events",
            get(batches::events),
            READ_ONE,
        ),
    ]
}

/// Holds a route to its table row: an error answer the row does not name
/// (besides `500`) is a bug, logged and answered as a `500`, so that the
/// document never tells a client less than the route can answer.
async fn declared_answers_only(State(faults): State<&'static [Fault]>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    match Fault::of_status(response.status()) {
        Some(fault) if fault != Fault::Internal && !faults.contains(&fault) => {
            tracing::error!(%method, %route, status = %response.status(), "a route answered an error its table does not declare");
            ApiError::internal(format!(
                "{method} {route} answered the undeclared status {}",
                response.status()
            ))
            .into_response()
        }
        _ => response,
    }
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.max_body_bytes;
    let mut by_path: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
    let fleet = std::sync::Arc::clone(&state.fleet);
    let runs_here: std::sync::Arc<dyn Fn(anchorage_core::SessionId) -> bool + Send + Sync> =
        std::sync::Arc::new(move |session_id| fleet.live_session_any_team(session_id).is_some());
    for Route {
        path,
        handler,
        faults,
        session_in,
        ..
    } in table()
    {
        let mut handler = handler.route_layer(middleware::from_fn_with_state(faults, declared_answers_only));
        if session_in != SessionIn::Nowhere {
            // Outside the declared-answers check: a forwarded call is
            // answered by its owner's route, or by a 503 when it cannot be
            // reached.
            let forwarding = Forwarding {
                cluster: std::sync::Arc::clone(&state.cluster),
                runs_here: std::sync::Arc::clone(&runs_here),
                max_body_bytes: body_limit,
                session_in,
            };
            handler = handler.route_layer(middleware::from_fn_with_state(
                forwarding,
                crate::cluster::forward::to_owner,
            ));
        }
        let merged = match by_path.remove(path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(path, merged);
    }
    let rest = by_path
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| router.route(path, handlers))
        .merge(crate::cluster::internal::router(state.clone()));
    // The MCP endpoint's tools call the routes above, in-process, through
    // the same layers as a request from outside.
    let mcp = Router::new()
        .nest_service(
            crate::mcp::PATH,
            crate::mcp::service(finish(rest.clone(), state.clone()), &state),
        )
        .layer(middleware::from_fn_with_state(state.clone(), crate::mcp::authenticated));
    finish(rest.merge(mcp), state)
}

/// The fallbacks and layers every request goes through.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.max_body_bytes;
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(log_request))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .with_state(state)
}

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
        (status = 101, description = "Switched to the WebSocket protocol (the CDP form)")
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

    use super::*;

    #[test]
    fn every_route_that_names_a_session_in_its_path_declares_it_or_only_reads_the_database() {
        // The routes that use the database alone (not the session's
        // browser), which any node answers.
        let reads = [
            (Method::GET, "/v1/sessions/{session_id}"),
            (Method::GET, "/v1/sessions/{session_id}/tags"),
            (Method::PUT, "/v1/sessions/{session_id}/tags"),
            (Method::DELETE, "/v1/sessions/{session_id}/tags"),
        ];
        for route in table() {
            let reads_only = reads.contains(&(route.method.clone(), route.path));
            if route.path.contains("{session_id}") {
                let expected = if reads_only {
                    SessionIn::Nowhere
                } else {
                    SessionIn::Path
                };
                assert_eq!(route.session_in, expected, "{} {}", route.method, route.path);
            } else {
                assert_ne!(route.session_in, SessionIn::Path, "{} {}", route.method, route.path);
            }
        }
        let named = |method: Method, path: &str| {
            table()
                .into_iter()
                .find(|route| route.method == method && route.path == path)
                .map(|route| route.session_in)
        };
        assert_eq!(named(Method::GET, "/"), Some(SessionIn::Query), "the SDK's CDP form");
        assert_eq!(named(Method::POST, "/v1/tools/screenshot"), Some(SessionIn::Query));
        assert_eq!(named(Method::POST, "/v1/profiles"), Some(SessionIn::Body));
        assert_eq!(named(Method::DELETE, "/v1/sessions/all"), Some(SessionIn::Nowhere));
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
        let served: BTreeSet<(String, String)> = table()
            .into_iter()
            .map(|route| (route.method.as_str().to_owned(), route.path.to_owned()))
            .collect();
        let document = serde_json::to_value(openapi::document()).unwrap_or_default();
        let mut documented = BTreeSet::new();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(method, _)| method) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        assert_eq!(served, documented);
        assert_eq!(served.len(), table().len(), "a route is in the table twice");
    }

    #[test]
    fn the_readme_api_reference_lists_every_route() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
        let reference = readme
            .split("## API reference")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap_or_default();
        let missing: Vec<String> = table()
            .into_iter()
            .map(|route| format!("`{} {}`", route.method, route.path))
            .filter(|listed| !reference.contains(listed.as_str()))
            .collect();
        assert!(missing.is_empty(), "README's API reference lacks {missing:?}");
    }

    #[test]
    fn each_route_documents_exactly_the_errors_its_row_declares() {
        let document = serde_json::to_value(openapi::document()).unwrap_or_default();
        for route in table() {
            let responses = &document["paths"][route.path][route.method.as_str().to_lowercase()]["responses"];
            let documented: BTreeSet<u16> = responses
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(status, _)| status.parse::<u16>().ok())
                .filter(|status| *status >= 400)
                .collect();
            let declared: BTreeSet<u16> = route
                .faults
                .iter()
                .chain([&Fault::Internal])
                .map(|fault| fault.status().as_u16())
                .collect();
            assert_eq!(documented, declared, "{} {}", route.method, route.path);
        }
    }

    #[tokio::test]
    async fn an_error_a_route_does_not_declare_is_answered_as_a_logged_500() {
        use axum::body::Body;
        use tower::ServiceExt;

        let handler: MethodRouter<()> = get(|| async { ApiError::Conflict("not declared".to_owned()) }).route_layer(
            middleware::from_fn_with_state(&[Fault::NotFound][..], declared_answers_only),
        );
        let app = Router::new().route("/x", handler);
        let request = Request::builder().uri("/x").body(Body::empty()).unwrap_or_default();
        let response = app.oneshot(request).await.map(|response| response.status()).ok();
        assert_eq!(response, Some(StatusCode::INTERNAL_SERVER_ERROR));
    }
}

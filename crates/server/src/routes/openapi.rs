//! `GET /openapi.json` (the OpenAPI 3.1 document, generated from the
//! routes' annotations and the types of [`crate::wire`]) and `GET /docs` (a
//! reference page that renders it, compiled into the binary).

use axum::http::{header, Method};
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{
    actions, adblock, agent, batches, cdp, certificates, code, events, extensions, health, live, profiles, recordings,
    sessions, tasks, tools, usage, webhooks,
};
use crate::error::Fault;
use crate::wire::{BatchGone, ErrorBody};

/// The reference page; it fetches `/openapi.json` and renders it.
const DOCS_PAGE: &str = include_str!("../../assets/docs.html");

/// The document. Every route the router serves is listed in `paths`; a
/// test checks the two against each other.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "anchorage",
        description = "A self-hosted browser fleet server. It speaks the AnchorBrowser HTTP API, so the official \
                       `anchorbrowser` SDKs work against it unchanged. Success bodies are wrapped in `{\"data\": …}`; \
                       errors are always `{\"error\": {\"code\", \"message\"}}`. Every `/v1` route takes the \
                       `anchor-api-key` header; a team sees only its own sessions and batches.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::root,
        openapi_json,
        docs,
        cdp::by_token,
        live::page,
        live::stream,
        health::healthz,
        health::readyz,
        health::metrics,
        sessions::create,
        sessions::history,
        sessions::create_async,
        sessions::async_status_of,
        sessions::delete_all,
        usage::history,
        sessions::all_status,
        sessions::get,
        sessions::tags,
        sessions::put_tags,
        sessions::delete_tags,
        sessions::delete,
        sessions::pages,
        actions::screenshot,
        actions::mouse_click,
        actions::mouse_double_click,
        actions::mouse_down,
        actions::mouse_up,
        actions::mouse_move,
        actions::scroll,
        actions::keyboard_type,
        actions::keyboard_shortcut,
        actions::goto,
        actions::drag_and_drop,
        actions::get_clipboard,
        actions::set_clipboard,
        actions::copy,
        actions::paste,
        actions::upload,
        actions::downloads,
        actions::download_file,
        events::signal,
        events::wait,
        recordings::list,
        recordings::fetch,
        recordings::delete,
        recordings::pause,
        recordings::resume,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::update,
        webhooks::delete,
        webhooks::rotate,
        webhooks::test,
        webhooks::events,
        certificates::create,
        certificates::list,
        certificates::delete,
        extensions::upload,
        extensions::list,
        extensions::get,
        extensions::delete,
        profiles::create,
        profiles::list,
        profiles::get,
        profiles::delete,
        tools::screenshot,
        tools::page_pdf,
        tools::fetch_webpage,
        tools::fetch_webpage_npm,
        code::execute_code,
        agent::snapshot,
        agent::element,
        agent::wait,
        agent::open_page,
        agent::close_page,
        agent::activate_page,
        adblock::status,
        tasks::create,
        tasks::list,
        tasks::run,
        tasks::run_by_name,
        tasks::get,
        tasks::update,
        tasks::delete,
        tasks::versions,
        tasks::latest,
        tasks::publish_latest,
        tasks::delete_latest,
        tasks::delete_draft,
        tasks::draft,
        tasks::save_draft,
        tasks::deploy,
        tasks::executions,
        tasks::execution,
        tasks::get_version,
        tasks::publish,
        tasks::delete_version,
        batches::create,
        batches::list,
        batches::get,
        batches::cancel,
        batches::delete,
        batches::retry,
        batches::events,
    ),
    components(schemas(BatchGone, ErrorBody)),
    modifiers(&ApiKeyHeader),
    tags(
        (name = "sessions", description = "Start, inspect, list and end browser sessions"),
        (name = "batches", description = "Many sessions with one call, provisioned in the background"),
        (name = "certificates", description = "CA certificates a team uploads and sessions trust"),
        (name = "events", description = "Named events a team's clients signal and wait for"),
        (name = "recordings", description = "Video recordings of sessions (MP4, H.264)"),
        (name = "webhooks", description = "URLs the team's session and batch events are posted to, signed"),
        (name = "extensions", description = "Browser extensions a team uploads and sessions load"),
        (name = "profiles", description = "Saved browser state (cookies, storage, cache) that sessions start from and save into"),
        (name = "tools", description = "One-shot tools on a web page: a screenshot, a PDF, the rendered HTML; and the caller's code run beside a session"),
        (name = "tasks", description = "Code tasks: the team's TypeScript kept in versions and run beside a session with inputs"),
        (name = "actions", description = "What an agent does to a running session over REST: screenshot, mouse, keyboard, navigation"),
        (name = "connect", description = "CDP connections to a session's browser"),
        (name = "live view", description = "Watching and steering a session from a web browser"),
        (name = "operations", description = "Health, readiness, metrics, this document, and the dashboard"),
    )
)]
pub struct ApiDoc;

/// Declares the `anchor-api-key` header scheme the `/v1` routes name.
struct ApiKeyHeader;

impl Modify for ApiKeyHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "anchor-api-key",
                "An API key (`anchorage keys create`); it belongs to one team.",
            ))),
        );
    }
}

/// The document served: the routes' annotations (success answers,
/// parameters, bodies), with every route's error answers added from its row
/// of the route table (`routes::table`) and the error table (`Fault`), the
/// one place that decides them. Every route can also answer `500`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    for route in super::table() {
        let Some(item) = document.paths.paths.get_mut(route.path) else {
            continue;
        };
        let operation = match route.method {
            Method::GET => item.get.as_mut(),
            Method::POST => item.post.as_mut(),
            Method::PATCH => item.patch.as_mut(),
            Method::DELETE => item.delete.as_mut(),
            Method::PUT => item.put.as_mut(),
            _ => None,
        };
        let Some(operation) = operation else {
            continue;
        };
        for fault in route.faults.iter().copied().chain([Fault::Internal]) {
            let (status, meaning) = fault.entry();
            let answer = ResponseBuilder::new()
                .description(meaning)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build();
            operation
                .responses
                .responses
                .insert(status.as_u16().to_string(), answer.into());
        }
    }
    document
}

/// `GET /openapi.json`.
#[utoipa::path(
    operation_id = "openapi_json",
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Response {
    axum::Json(document()).into_response()
}

/// `GET /docs`.
#[utoipa::path(
    operation_id = "docs",
    get,
    path = "/docs",
    tag = "operations",
    summary = "The API reference, rendered from this document",
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String))
)]
pub async fn docs() -> Response {
    ([(header::CACHE_CONTROL, "no-cache")], Html(DOCS_PAGE)).into_response()
}

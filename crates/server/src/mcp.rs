//! `/v1/mcp`: the Model Context Protocol over Streamable HTTP (the `rmcp`
//! crate speaks the protocol), so that an agent drives the team's fleet
//! with the URL and a key.
//!
//! Every tool is a call of this server's own REST API, made in-process
//! through the router with the caller's key: the same checks, the same
//! errors (a REST error becomes a tool error with its words), the same
//! team scoping, and a call about a session another node runs is passed
//! to that node by the router's forwarding, as any REST call is. This
//! module only maps tool arguments to requests and answers to content; it
//! holds no state of its own (the MCP session is the client's handle, not a
//! browser session: every tool names the browser session it acts on).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rmcp::handler::server::common::schema_for_type;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, JsonObject, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ErrorData as McpError, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::auth::{authenticate, API_KEY_HEADER};
use crate::error::ApiError;
use crate::state::AppState;

/// The path the endpoint is served at.
pub const PATH: &str = "/v1/mcp";

/// Largest screenshot a tool gives back as an image; a larger PNG is sent
/// again as a JPEG.
const MAX_IMAGE_BYTES: usize = 1024 * 1024;
/// Largest snapshot a tool gives (characters).
const MAX_SNAPSHOT_CHARS: usize = 200_000;
/// Largest answer read from a REST call.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The caller's key, checked by [`authenticated`] and handed to the tools.
#[derive(Debug, Clone)]
struct CallerKey(String);

/// The endpoint, ready to be nested under [`PATH`]: `rest` is the router
/// the tools call (without this endpoint).
pub fn service(rest: axum::Router, state: &AppState) -> StreamableHttpService<FleetTools, LocalSessionManager> {
    let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Some(host) = state.public_url.host_str() {
        hosts.push(host.trim_start_matches('[').trim_end_matches(']').to_owned());
    }
    let tools = FleetTools { rest };
    StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts(hosts),
    )
}

/// Checks the key (`anchor-api-key`, or `Authorization: Bearer …`) before
/// anything of the protocol: `401` in the API's shape when it is missing or
/// wrong.
pub async fn authenticated(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let key = headers
        .get(API_KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
                .map(|key| key.trim().to_owned())
        });
    let Some(key) = key else {
        return ApiError::Unauthorized.into_response();
    };
    match authenticate(&state, &key).await {
        Ok(Some(_)) => {
            request.extensions_mut().insert(CallerKey(key));
            let ending = request.method() == Method::DELETE;
            let mut response = next.run(request).await;
            // An ended MCP session is answered 200, which clients (the
            // Python SDK) take for success; the library says 202.
            if ending && response.status() == axum::http::StatusCode::ACCEPTED {
                *response.status_mut() = axum::http::StatusCode::OK;
            }
            response
        }
        Ok(None) => ApiError::Unauthorized.into_response(),
        Err(error) => error.into_response(),
    }
}

/// The tools: each a call of the REST API.
#[derive(Clone)]
pub struct FleetTools {
    rest: axum::Router,
}

/// A REST answer that went well.
enum Answer {
    Json(Value),
    Bytes(String, Vec<u8>),
}

impl FleetTools {
    /// Calls the REST API as the caller with a body of `content_type`; a
    /// REST error is `Err` with its message.
    async fn send(
        &self,
        context: &RequestContext<RoleServer>,
        method: Method,
        path: &str,
        (body, content_type): (Body, &str),
    ) -> Result<Answer, String> {
        let key = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<CallerKey>())
            .map(|key| key.0.clone())
            .ok_or_else(|| "the call carries no key".to_owned())?;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(API_KEY_HEADER, key)
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .map_err(|error| format!("the request could not be made: {error}"))?;
        let response = match self.rest.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|error| format!("the answer could not be read: {error}"))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|body| body["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("the call failed with {status}"));
            return Err(message);
        }
        if content_type.starts_with("application/json") {
            serde_json::from_slice(&bytes)
                .map(Answer::Json)
                .map_err(|error| format!("the answer is not JSON: {error}"))
        } else {
            Ok(Answer::Bytes(content_type, bytes.to_vec()))
        }
    }

    /// Calls the REST API as the caller with a JSON body (or none).
    async fn call(
        &self,
        context: &RequestContext<RoleServer>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, String> {
        let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
        self.send(context, method, path, (body, "application/json")).await
    }

    /// A call whose JSON answer is given to the model as text.
    /// A call on one tab (`/pages/{page_id}` and `suffix`), told as `done`
    /// and the tab's id.
    async fn tab_tool(
        &self,
        context: &RequestContext<RoleServer>,
        arguments: &TabArgs,
        method: Method,
        suffix: &str,
        done: &str,
    ) -> Result<CallToolResult, McpError> {
        let rest = format!("/pages/{}{suffix}", urlencode(&arguments.page_id));
        let path = match session_path(&arguments.session_id, &rest) {
            Ok(path) => path,
            Err(result) => return Ok(result),
        };
        self.json_tool(context, method, &path, None, |_| {
            format!("{done} {}", arguments.page_id)
        })
        .await
    }

    async fn json_tool(
        &self,
        context: &RequestContext<RoleServer>,
        method: Method,
        path: &str,
        body: Option<Value>,
        shape: impl FnOnce(Value) -> String,
    ) -> Result<CallToolResult, McpError> {
        Ok(match self.call(context, method, path, body).await {
            Ok(Answer::Json(value)) => CallToolResult::success(vec![ContentBlock::text(shape(value))]),
            Ok(Answer::Bytes(kind, _)) => failure(format!("the answer was {kind}, not JSON")),
            Err(message) => failure(message),
        })
    }
}

fn failure(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// Arguments as the model gave them, checked against the tool's type: a
/// wrong one is a tool error that names it (and nothing is done).
fn arguments<T: DeserializeOwned>(given: JsonObject) -> Result<T, CallToolResult> {
    serde_path_to_error::deserialize(Value::Object(given)).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            failure(format!("bad arguments: {inner}"))
        } else {
            failure(format!("bad argument {path}: {inner}"))
        }
    })
}

/// `Ok(result)` of a check that failed, or the arguments.
macro_rules! checked {
    ($given:expr) => {
        match arguments($given) {
            Ok(arguments) => arguments,
            Err(result) => return Ok(result),
        }
    };
}

fn session_path(session_id: &str, rest: &str) -> Result<String, CallToolResult> {
    let id: anchorage_core::SessionId = session_id
        .parse()
        .map_err(|_| failure(format!("session_id {session_id:?} is not a session id (a UUID)")))?;
    Ok(format!("/v1/sessions/{id}{rest}"))
}

macro_rules! path {
    ($session:expr, $rest:expr) => {
        match session_path(&$session, $rest) {
            Ok(path) => path,
            Err(result) => return Ok(result),
        }
    };
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

// ---------------------------------------------------------------- arguments

/// Start a browser session.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StartArgs {
    /// A page to open first.
    initial_url: Option<String>,
    /// Viewport width in CSS pixels (default 1440).
    viewport_width: Option<u32>,
    /// Viewport height in CSS pixels (default 900).
    viewport_height: Option<u32>,
    /// A saved profile (cookies, storage) of the team to start from.
    profile: Option<String>,
    /// Save the session's state into that profile when it ends.
    persist_profile: Option<bool>,
    /// A proxy: `http://host:port` (with `proxy_username`, `proxy_password`).
    proxy_server: Option<String>,
    /// The proxy's user.
    proxy_username: Option<String>,
    /// The proxy's password.
    proxy_password: Option<String>,
    /// Record a video of the session.
    recording: Option<bool>,
    /// A visible browser on a virtual display (for the live view).
    headful: Option<bool>,
    /// End the session after this many minutes in all.
    max_duration_minutes: Option<i64>,
    /// End the session after this many minutes without a client.
    idle_timeout_minutes: Option<i64>,
    /// Tags to find the session by.
    tags: Option<Vec<String>>,
}

/// A session to act on.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SessionArgs {
    /// The browser session (from start_session or list_sessions).
    session_id: String,
}

/// Where to go.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NavigateArgs {
    /// The browser session.
    session_id: String,
    /// An http or https URL.
    url: String,
}

/// What to read of the page.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SnapshotArgs {
    /// The browser session.
    session_id: String,
    /// At most this many characters (default 20000, up to 200000); more is left out with a note.
    max_chars: Option<usize>,
    /// Only this CSS selector's first match and what is in it.
    selector: Option<String>,
    /// Only what is new or changed since the last snapshot of this page.
    changes_only: Option<bool>,
}

/// An element (by reference) or a point.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PointArgs {
    /// The browser session.
    session_id: String,
    /// The element's reference from a snapshot (e12); or give x and y.
    #[serde(rename = "ref")]
    reference: Option<String>,
    /// X in CSS pixels of the viewport.
    x: Option<f64>,
    /// Y in CSS pixels of the viewport.
    y: Option<f64>,
    /// Click twice.
    double: Option<bool>,
    /// The right button.
    right: Option<bool>,
}

/// Text to type.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TypeArgs {
    /// The browser session.
    session_id: String,
    /// The text.
    text: String,
    /// The field's reference from a snapshot; without it, types where the focus is.
    #[serde(rename = "ref")]
    reference: Option<String>,
    /// Press Enter after it.
    submit: Option<bool>,
}

/// Keys to press.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct KeysArgs {
    /// The browser session.
    session_id: String,
    /// Keys pressed together, modifiers first: ["Enter"], ["Control", "a"], ["Shift", "Tab"].
    keys: Vec<String>,
}

/// Options to choose.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SelectArgs {
    /// The browser session.
    session_id: String,
    /// The <select>'s reference from a snapshot.
    #[serde(rename = "ref")]
    reference: String,
    /// Option values or labels to choose.
    values: Vec<String>,
}

/// A scroll.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ScrollArgs {
    /// The browser session.
    session_id: String,
    /// Pixels down (negative: up).
    delta_y: f64,
    /// Pixels right (negative: left).
    delta_x: Option<f64>,
    /// Where the wheel is (X, CSS pixels; default the viewport's centre).
    x: Option<f64>,
    /// Where the wheel is (Y).
    y: Option<f64>,
}

/// A drag.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DragArgs {
    /// The browser session.
    session_id: String,
    /// The element to drag (reference), or give start_x/start_y.
    from_ref: Option<String>,
    /// Where to drop it (reference), or give end_x/end_y.
    to_ref: Option<String>,
    /// Start X.
    start_x: Option<f64>,
    /// Start Y.
    start_y: Option<f64>,
    /// End X.
    end_x: Option<f64>,
    /// End Y.
    end_y: Option<f64>,
}

/// What to wait for.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaitArgs {
    /// The browser session.
    session_id: String,
    /// Text to appear.
    text: Option<String>,
    /// Text to go away.
    text_gone: Option<String>,
    /// A CSS selector to match.
    selector: Option<String>,
    /// Milliseconds at most (default 10000, up to 60000).
    timeout_ms: Option<u64>,
}

/// A page to fetch.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FetchArgs {
    /// The browser session.
    session_id: String,
    /// The page; without it, the session's active page as it is.
    url: Option<String>,
}

/// A file to upload.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UploadArgs {
    /// The browser session.
    session_id: String,
    /// Its file name.
    name: String,
    /// Its bytes, base64.
    content_base64: String,
}

/// A batch of sessions.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BatchArgs {
    /// How many sessions, 1 to the server's limit.
    count: u32,
    /// A page every session opens first.
    initial_url: Option<String>,
    /// Tags every session gets.
    tags: Option<Vec<String>>,
}

/// A batch.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BatchIdArgs {
    /// The batch (from start_batch).
    batch_id: String,
}

/// Code to run beside a session.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CodeArgs {
    /// The browser session.
    session_id: String,
    /// TypeScript: the body of an async function given page, browser, context (Playwright), sessionId and anchorClient; what it returns comes back as JSON.
    code: String,
}

fn start_body(arguments: StartArgs) -> Value {
    let mut session = serde_json::Map::new();
    if let Some(url) = arguments.initial_url {
        session.insert("initial_url".into(), json!(url));
    }
    if let Some(tags) = arguments.tags {
        session.insert("tags".into(), json!(tags));
    }
    if let Some(recording) = arguments.recording {
        session.insert("recording".into(), json!({"active": recording}));
    }
    if let Some(server) = arguments.proxy_server {
        session.insert(
            "proxy".into(),
            json!({"type": "custom", "active": true, "server": server,
                   "username": arguments.proxy_username, "password": arguments.proxy_password}),
        );
    }
    let mut timeout = serde_json::Map::new();
    if let Some(minutes) = arguments.max_duration_minutes {
        timeout.insert("max_duration".into(), json!(minutes));
    }
    if let Some(minutes) = arguments.idle_timeout_minutes {
        timeout.insert("idle_timeout".into(), json!(minutes));
    }
    if !timeout.is_empty() {
        session.insert("timeout".into(), Value::Object(timeout));
    }
    let mut browser = serde_json::Map::new();
    if arguments.viewport_width.is_some() || arguments.viewport_height.is_some() {
        browser.insert(
            "viewport".into(),
            json!({"width": arguments.viewport_width.unwrap_or(1440), "height": arguments.viewport_height.unwrap_or(900)}),
        );
    }
    if let Some(profile) = arguments.profile {
        browser.insert(
            "profile".into(),
            json!({"name": profile, "persist": arguments.persist_profile.unwrap_or(false)}),
        );
    }
    if let Some(headful) = arguments.headful {
        browser.insert("headless".into(), json!({"active": !headful}));
    }
    json!({"session": session, "browser": browser})
}

// -------------------------------------------------------------------- tools

#[tool_router]
impl FleetTools {
    #[tool(
        description = "Start a browser session for your team and wait until it runs. Returns its session_id (every other tool takes it), its CDP URL and live-view URL.",
        input_schema = schema_for_type::<StartArgs>()
    )]
    async fn start_session(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: StartArgs = checked!(given);
        self.json_tool(
            &context,
            Method::POST,
            "/v1/sessions",
            Some(start_body(arguments)),
            |answer| {
                let data = &answer["data"];
                format!(
                    "session_id: {}\ncdp_url: {}\nlive_view_url: {}",
                    data["id"].as_str().unwrap_or_default(),
                    data["cdp_url"].as_str().unwrap_or_default(),
                    data["live_view_url"].as_str().unwrap_or_default()
                )
            },
        )
        .await
    }

    #[tool(description = "List your team's running browser sessions.", input_schema = schema_for_type::<NoArgs>())]
    async fn list_sessions(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let _: NoArgs = checked!(given);
        self.json_tool(&context, Method::GET, "/v1/sessions/all/status", None, |answer| {
            pretty(&answer["data"])
        })
        .await
    }

    #[tool(description = "End a browser session (its browser closes).", input_schema = schema_for_type::<SessionArgs>())]
    async fn end_session(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: SessionArgs = checked!(given);
        let path = path!(arguments.session_id, "");
        self.json_tool(&context, Method::DELETE, &path, None, |_| "ended".to_owned())
            .await
    }

    #[tool(description = "Load a URL in the session's active page and wait for it to load.", input_schema = schema_for_type::<NavigateArgs>())]
    async fn navigate(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: NavigateArgs = checked!(given);
        let path = path!(arguments.session_id, "/goto");
        self.json_tool(
            &context,
            Method::POST,
            &path,
            Some(json!({"url": arguments.url})),
            |_| "loaded; take a snapshot to see the page".to_owned(),
        )
        .await
    }

    #[tool(
        description = "Read the session's active page as an accessibility snapshot: one line per element (role, name, state) with a reference [ref=eN] that click, type, hover, select_option and drag take. Stays within max_chars (default 20000); scope it with a CSS selector, or ask only for what changed since the last snapshot.",
        input_schema = schema_for_type::<SnapshotArgs>()
    )]
    async fn snapshot(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: SnapshotArgs = checked!(given);
        if arguments.max_chars.is_some_and(|max| max > MAX_SNAPSHOT_CHARS) {
            // A tool result travels in one event; clients cap its size (the
            // Python SDK at 1 MiB).
            return Ok(failure(format!(
                "max_chars is at most {MAX_SNAPSHOT_CHARS} here: scope the snapshot with selector, or use changes_only"
            )));
        }
        let path = path!(arguments.session_id, "/snapshot");
        let body = json!({"max_chars": arguments.max_chars, "selector": arguments.selector, "changes_only": arguments.changes_only});
        self.json_tool(&context, Method::POST, &path, Some(body), |answer| {
            let data = &answer["data"];
            format!(
                "page: {} ({})\n{}",
                data["title"].as_str().unwrap_or_default(),
                data["url"].as_str().unwrap_or_default(),
                data["snapshot"].as_str().unwrap_or_default()
            )
        })
        .await
    }

    #[tool(
        description = "Click an element by its snapshot reference (ref), or a point (x, y in CSS pixels of the viewport). double for a double click, right for the right button.",
        input_schema = schema_for_type::<PointArgs>()
    )]
    async fn click(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: PointArgs = checked!(given);
        let action = match (arguments.double.unwrap_or(false), arguments.right.unwrap_or(false)) {
            (true, _) => "double_click",
            (false, true) => "right_click",
            _ => "click",
        };
        self.point(&context, arguments, action).await
    }

    #[tool(description = "Move the mouse over an element (ref) or a point (x, y).", input_schema = schema_for_type::<PointArgs>())]
    async fn hover(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: PointArgs = checked!(given);
        self.point(&context, arguments, "hover").await
    }

    #[tool(
        description = "Type text into a field (ref from a snapshot), or where the focus is; submit presses Enter after it.",
        input_schema = schema_for_type::<TypeArgs>()
    )]
    async fn type_text(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: TypeArgs = checked!(given);
        match arguments.reference {
            Some(reference) => {
                let path = path!(arguments.session_id, "/element");
                let body =
                    json!({"ref": reference, "action": "type", "text": arguments.text, "submit": arguments.submit});
                self.json_tool(&context, Method::POST, &path, Some(body), |_| "typed".to_owned())
                    .await
            }
            None => {
                let path = path!(arguments.session_id, "/keyboard/type");
                if let Err(message) = self
                    .call(&context, Method::POST, &path, Some(json!({"text": arguments.text})))
                    .await
                {
                    return Ok(failure(message));
                }
                if arguments.submit.unwrap_or(false) {
                    let path = path!(arguments.session_id, "/keyboard/shortcut");
                    if let Err(message) = self
                        .call(&context, Method::POST, &path, Some(json!({"keys": ["Enter"]})))
                        .await
                    {
                        return Ok(failure(message));
                    }
                }
                Ok(CallToolResult::success(vec![ContentBlock::text("typed")]))
            }
        }
    }

    #[tool(description = "Press keys together (modifiers first): [\"Enter\"], [\"Control\", \"a\"].", input_schema = schema_for_type::<KeysArgs>())]
    async fn press_keys(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: KeysArgs = checked!(given);
        let path = path!(arguments.session_id, "/keyboard/shortcut");
        self.json_tool(
            &context,
            Method::POST,
            &path,
            Some(json!({"keys": arguments.keys})),
            |_| "pressed".to_owned(),
        )
        .await
    }

    #[tool(description = "Choose options of a <select> (ref from a snapshot) by value or label.", input_schema = schema_for_type::<SelectArgs>())]
    async fn select_option(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: SelectArgs = checked!(given);
        let path = path!(arguments.session_id, "/element");
        let body = json!({"ref": arguments.reference, "action": "select", "values": arguments.values});
        self.json_tool(&context, Method::POST, &path, Some(body), |answer| {
            format!("selected: {}", answer["selected"])
        })
        .await
    }

    #[tool(description = "Scroll with the mouse wheel: delta_y pixels down (negative: up).", input_schema = schema_for_type::<ScrollArgs>())]
    async fn scroll(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: ScrollArgs = checked!(given);
        let path = path!(arguments.session_id, "/scroll");
        let body = json!({"x": arguments.x.unwrap_or(100.0), "y": arguments.y.unwrap_or(100.0),
                          "deltaX": arguments.delta_x.unwrap_or(0.0), "deltaY": arguments.delta_y});
        self.json_tool(&context, Method::POST, &path, Some(body), |_| "scrolled".to_owned())
            .await
    }

    #[tool(description = "Drag from an element (from_ref) or point to another element (to_ref) or point.", input_schema = schema_for_type::<DragArgs>())]
    async fn drag(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: DragArgs = checked!(given);
        match (arguments.from_ref, arguments.to_ref) {
            (Some(from), Some(to)) => {
                let path = path!(arguments.session_id, "/element");
                let body = json!({"ref": from, "action": "drag", "to_ref": to});
                self.json_tool(&context, Method::POST, &path, Some(body), |_| "dragged".to_owned())
                    .await
            }
            (None, None) => {
                let path = path!(arguments.session_id, "/drag-and-drop");
                let body = json!({"startX": arguments.start_x, "startY": arguments.start_y,
                                  "endX": arguments.end_x, "endY": arguments.end_y});
                self.json_tool(&context, Method::POST, &path, Some(body), |_| "dragged".to_owned())
                    .await
            }
            _ => Ok(failure("give both from_ref and to_ref, or the four coordinates")),
        }
    }

    #[tool(description = "Wait until text appears (text), goes (text_gone) or a CSS selector matches (selector).", input_schema = schema_for_type::<WaitArgs>())]
    async fn wait_for(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: WaitArgs = checked!(given);
        let path = path!(arguments.session_id, "/wait");
        let body = json!({"text": arguments.text, "text_gone": arguments.text_gone,
                          "selector": arguments.selector, "timeout": arguments.timeout_ms});
        Ok(match self.call(&context, Method::POST, &path, Some(body)).await {
            Ok(Answer::Json(answer)) if answer["data"]["found"] == true => {
                CallToolResult::success(vec![ContentBlock::text(format!(
                    "found after {} ms",
                    answer["data"]["waited_ms"]
                ))])
            }
            Ok(_) => failure("not found within the timeout"),
            Err(message) => failure(message),
        })
    }

    #[tool(description = "A screenshot of the session's active page (its viewport), as an image.", input_schema = schema_for_type::<SessionArgs>())]
    async fn screenshot(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: SessionArgs = checked!(given);
        let path = path!(arguments.session_id, "/screenshot");
        let (kind, bytes) = match self.call(&context, Method::GET, &path, None).await {
            Ok(Answer::Bytes(kind, bytes)) => (kind, bytes),
            Ok(Answer::Json(_)) => return Ok(failure("the screenshot came back as JSON")),
            Err(message) => return Ok(failure(message)),
        };
        let (kind, bytes) = if bytes.len() > MAX_IMAGE_BYTES {
            // Too large for a model's context as PNG: the same view as a JPEG.
            let tool = format!("/v1/tools/screenshot?sessionId={}", arguments.session_id);
            match self
                .call(&context, Method::POST, &tool, Some(json!({"image_quality": 60})))
                .await
            {
                Ok(Answer::Bytes(kind, bytes)) => (kind, bytes),
                _ => (kind, bytes),
            }
        } else {
            (kind, bytes)
        };
        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        Ok(CallToolResult::success(vec![ContentBlock::image(data, kind)]))
    }

    #[tool(description = "The session's pages (tabs): id, title, URL, and active: true on the page the other tools act on.", input_schema = schema_for_type::<SessionArgs>())]
    async fn list_tabs(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: SessionArgs = checked!(given);
        let path = path!(arguments.session_id, "/pages");
        self.json_tool(&context, Method::GET, &path, None, |answer| pretty(&answer["data"]))
            .await
    }

    #[tool(description = "Open a tab at url (or blank); it becomes the active page the other tools act on.", input_schema = schema_for_type::<FetchArgs>())]
    async fn open_tab(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: FetchArgs = checked!(given);
        let path = path!(arguments.session_id, "/pages");
        self.json_tool(
            &context,
            Method::POST,
            &path,
            Some(json!({"url": arguments.url})),
            |answer| format!("opened tab {}", answer["data"]["id"].as_str().unwrap_or_default()),
        )
        .await
    }

    #[tool(description = "Close a tab (page_id from list_tabs); the newest open tab becomes the active page, unless switch_tab chose another that is still open.", input_schema = schema_for_type::<TabArgs>())]
    async fn close_tab(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: TabArgs = checked!(given);
        self.tab_tool(&context, &arguments, Method::DELETE, "", "closed tab")
            .await
    }

    #[tool(description = "Switch to a tab (page_id from list_tabs): it becomes the active page the other tools act on, and the one the live view shows, until it closes or a tab opens.", input_schema = schema_for_type::<TabArgs>())]
    async fn switch_tab(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: TabArgs = checked!(given);
        self.tab_tool(&context, &arguments, Method::POST, "/activate", "switched to tab")
            .await
    }

    #[tool(description = "A page as Markdown (its rendered HTML turned into Markdown): the url loaded in a tab of the session, or without url the active page as it is.", input_schema = schema_for_type::<FetchArgs>())]
    async fn page_markdown(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: FetchArgs = checked!(given);
        let path = format!("/v1/tools/fetch/webpage?sessionId={}", arguments.session_id);
        let body = json!({"url": arguments.url.unwrap_or_default(), "format": "markdown"});
        Ok(match self.call(&context, Method::POST, &path, Some(body)).await {
            Ok(Answer::Bytes(_, bytes)) => {
                CallToolResult::success(vec![ContentBlock::text(String::from_utf8_lossy(&bytes).into_owned())])
            }
            Ok(Answer::Json(value)) => CallToolResult::success(vec![ContentBlock::text(pretty(&value))]),
            Err(message) => failure(message),
        })
    }

    #[tool(description = "Print a URL to PDF in a tab of the session; the PDF comes back as an embedded resource (base64).", input_schema = schema_for_type::<NavigateArgs>())]
    async fn page_pdf(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: NavigateArgs = checked!(given);
        let path = format!("/v1/tools/page-pdf?sessionId={}", arguments.session_id);
        Ok(
            match self
                .call(&context, Method::POST, &path, Some(json!({"url": arguments.url})))
                .await
            {
                Ok(Answer::Bytes(kind, bytes)) => CallToolResult::success(vec![ContentBlock::resource(
                    rmcp::model::ResourceContents::BlobResourceContents {
                        uri: arguments.url,
                        mime_type: Some(kind),
                        blob: base64::engine::general_purpose::STANDARD.encode(&bytes),
                        meta: None,
                    },
                )]),
                Ok(Answer::Json(_)) => failure("the PDF came back as JSON"),
                Err(message) => failure(message),
            },
        )
    }

    #[tool(description = "Put a file in the session's uploads folder; answers its path, which a file input takes.", input_schema = schema_for_type::<UploadArgs>())]
    async fn upload_file(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: UploadArgs = checked!(given);
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(arguments.content_base64.trim()) else {
            return Ok(failure("content_base64 is not base64"));
        };
        let path = path!(arguments.session_id, "/uploads");
        let boundary = format!("anchorage-mcp-{}", uuid::Uuid::new_v4().simple());
        let name = arguments.name.replace(['"', '\r', '\n'], "_");
        let mut body = format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\ncontent-type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        Ok(
            match self
                .send(&context, Method::POST, &path, (Body::from(body), &content_type))
                .await
            {
                Ok(Answer::Json(value)) => CallToolResult::success(vec![ContentBlock::text(pretty(&value))]),
                Ok(Answer::Bytes(kind, _)) => failure(format!("the answer was {kind}, not JSON")),
                Err(message) => failure(message),
            },
        )
    }

    #[tool(description = "The files the session's browser downloaded (names, sizes, links).", input_schema = schema_for_type::<SessionArgs>())]
    async fn list_downloads(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: SessionArgs = checked!(given);
        let path = path!(arguments.session_id, "/downloads");
        self.json_tool(&context, Method::GET, &path, None, |answer| pretty(&answer["data"]))
            .await
    }

    #[tool(description = "The session's live-view URL (a person can watch and take over in a web browser) and its recordings.", input_schema = schema_for_type::<SessionArgs>())]
    async fn live_view(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: SessionArgs = checked!(given);
        let path = path!(arguments.session_id, "");
        let session = match self.call(&context, Method::GET, &path, None).await {
            Ok(Answer::Json(session)) => session,
            Ok(_) => return Ok(failure("the session came back as something else than JSON")),
            Err(message) => return Ok(failure(message)),
        };
        let recordings_path = path!(arguments.session_id, "/recordings");
        let recordings = match self.call(&context, Method::GET, &recordings_path, None).await {
            Ok(Answer::Json(value)) => value["data"].clone(),
            _ => Value::Null,
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "live_view_url: {}\nrecordings: {}",
            session["data"]["live_view_url"]
                .as_str()
                .unwrap_or("(none: the session is not running)"),
            pretty(&recordings)
        ))]))
    }

    #[tool(description = "Start a batch of count sessions at once; answers its batch_id.", input_schema = schema_for_type::<BatchArgs>())]
    async fn start_batch(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: BatchArgs = checked!(given);
        let mut session = serde_json::Map::new();
        if let Some(url) = arguments.initial_url {
            session.insert("initial_url".into(), json!(url));
        }
        if let Some(tags) = arguments.tags {
            session.insert("tags".into(), json!(tags));
        }
        let body = json!({"count": arguments.count, "configuration": {"session": session}});
        self.json_tool(&context, Method::POST, "/v1/batch-sessions", Some(body), |answer| {
            pretty(&answer["data"])
        })
        .await
    }

    #[tool(description = "A batch's state and its sessions (ids, statuses, CDP URLs).", input_schema = schema_for_type::<BatchIdArgs>())]
    async fn batch_status(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: BatchIdArgs = checked!(given);
        let path = format!("/v1/batch-sessions/{}", urlencode(&arguments.batch_id));
        self.json_tool(&context, Method::GET, &path, None, |answer| pretty(&answer["data"]))
            .await
    }

    #[tool(description = "Cancel a batch: its running sessions end, nothing more of it starts.", input_schema = schema_for_type::<BatchIdArgs>())]
    async fn cancel_batch(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: BatchIdArgs = checked!(given);
        let path = format!("/v1/batch-sessions/{}", urlencode(&arguments.batch_id));
        self.json_tool(
            &context,
            Method::PATCH,
            &path,
            Some(json!({"status": "cancelled"})),
            |answer| pretty(&answer["data"]),
        )
        .await
    }

    #[tool(
        description = "Run TypeScript beside the session (the body of an async function given page, browser and context as Playwright objects, sessionId and anchorClient); answers the JSON of what it returns. Many steps in one call, without a round trip each.",
        input_schema = schema_for_type::<CodeArgs>()
    )]
    async fn execute_code(
        &self,
        Parameters(given): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let arguments: CodeArgs = checked!(given);
        let path = format!("/v1/tools/execute-code?sessionId={}", urlencode(&arguments.session_id));
        Ok(
            match self
                .call(&context, Method::POST, &path, Some(json!({"code": arguments.code})))
                .await
            {
                Ok(Answer::Json(answer)) if answer["success"] == true => {
                    CallToolResult::success(vec![ContentBlock::text(
                        answer["output"].as_str().unwrap_or("(nothing returned)").to_owned(),
                    )])
                }
                Ok(Answer::Json(answer)) => failure(answer["error"].as_str().unwrap_or("the code failed").to_owned()),
                Ok(Answer::Bytes(..)) => failure("the answer was not JSON"),
                Err(message) => failure(message),
            },
        )
    }
}

/// A tab of a session.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TabArgs {
    /// The browser session.
    session_id: String,
    /// The tab's id (from list_tabs).
    page_id: String,
}

/// No arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl FleetTools {
    /// A click, double click, right click or hover at a reference or a point.
    async fn point(
        &self,
        context: &RequestContext<RoleServer>,
        arguments: PointArgs,
        action: &str,
    ) -> Result<CallToolResult, McpError> {
        match (arguments.reference, arguments.x, arguments.y) {
            (Some(reference), None, None) => {
                let path = path!(arguments.session_id, "/element");
                let body = json!({"ref": reference, "action": action});
                self.json_tool(context, Method::POST, &path, Some(body), |answer| {
                    answer["status"].as_str().unwrap_or("done").to_owned()
                })
                .await
            }
            (None, Some(x), Some(y)) => {
                let route = match action {
                    "double_click" => "/mouse/doubleClick",
                    "hover" => "/mouse/move",
                    _ => "/mouse/click",
                };
                let path = path!(arguments.session_id, route);
                let mut body = json!({"x": x, "y": y});
                if action == "right_click" {
                    body["button"] = json!("right");
                }
                self.json_tool(context, Method::POST, &path, Some(body), |_| "done".to_owned())
                    .await
            }
            _ => Ok(failure("give ref (from a snapshot), or both x and y")),
        }
    }
}

#[tool_handler]
impl ServerHandler for FleetTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("anchorage", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Browser sessions of your team on an anchorage fleet. Start one with start_session (or use list_sessions), \
                 then read its page with snapshot and act on elements by their [ref=eN] with click, type_text, hover, \
                 select_option and drag; navigate, scroll, press_keys, wait_for and screenshot work on the session's \
                 active page. Every tool takes the session_id it acts on. End sessions with end_session.",
            )
    }
}

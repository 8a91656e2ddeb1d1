//! `/v1/sessions/{session_id}/…`: what an agent does to a running session
//! over REST: a screenshot, mouse and wheel input, the keyboard, navigation.
//! Each call acts on the session's active page through a DevTools
//! connection of its own (`anchorage_browser::PageControl`), so it never
//! disturbs a CDP client or a live viewer of the same session.
//!
//! Errors: `404` for an unknown session, `409` for one that is not running
//! (ended, or still starting), `400` naming the field for bad parameters
//! (coordinates outside the viewport among them), `504` when the page does
//! not answer in time.

use std::sync::Arc;
use std::time::Duration;

use anchorage_browser::{Button, CdpError, Key, PageControl};
use anchorage_core::SessionId;
use std::os::unix::fs::PermissionsExt;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use url::Url;

use super::extract::{decode_body, field_to_file, unreadable_multipart, IdPath, JsonBody};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::fleet::LiveSession;
use crate::state::AppState;
use crate::wire::{
    ActionDone, ClickBody, ClipboardBody, ClipboardText, Copied, Data, DownloadList, DownloadRow, DragBody, GotoBody,
    PointBody, ScrollBody, ShortcutBody, TypeBody, UploadBody, Uploaded,
};

/// Most characters one `keyboard/type` call types.
const MAX_TYPED_CHARACTERS: usize = 10_000;
/// Most keys of one shortcut.
const MAX_SHORTCUT_KEYS: usize = 8;
/// How long a click by selector waits for a match, by default (ms).
const DEFAULT_SELECTOR_TIMEOUT_MS: f64 = 5_000.0;
/// Most bytes of text for the clipboard or a paste.
const MAX_CLIPBOARD_BYTES: usize = 1024 * 1024;

/// What a click aims at.
enum Target {
    Point(Option<f64>, Option<f64>),
    Selector(String, usize, Duration),
}

/// How long a `goto` waits for the page's load event.
const GOTO_TIMEOUT: Duration = Duration::from_secs(30);

/// The running session `session_id` of the caller's team: `404` if there is
/// none, `409` if it exists but is not running.
pub(super) async fn running(
    state: &AppState,
    caller: &Caller,
    session_id: SessionId,
) -> Result<Arc<LiveSession>, ApiError> {
    if let Some(session) = state.fleet.live_session(caller.0.team_id, session_id) {
        return Ok(session);
    }
    match state.store.session(caller.0.team_id, session_id).await? {
        Some(session) => Err(ApiError::Conflict(format!(
            "the session is {}, not running: actions need a running session",
            session.status
        ))),
        None => Err(ApiError::session_not_found()),
    }
}

/// What a failed conversation with the page means for the caller.
pub(super) fn page_error(error: CdpError) -> ApiError {
    match error {
        CdpError::Timeout(what) => ApiError::Timeout(format!("the page did not answer in time ({what})")),
        CdpError::Closed | CdpError::Unreachable(_) => {
            ApiError::Conflict("the session's browser went away during the action".to_owned())
        }
        gone if gone.is_page_gone() => ApiError::Conflict("the page closed during the action".to_owned()),
        other => ApiError::internal(other),
    }
}

/// Runs `act` on the session's active page, on the session's kept
/// connection when no other action is using it (one of its own otherwise).
pub(super) async fn on_page<T>(
    session: &LiveSession,
    act: impl AsyncFnOnce(&mut PageControl) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut slot = session.kept_page.try_lock().ok();
    let kept = slot.as_mut().and_then(|slot| slot.take());
    let mut page = match kept {
        Some(mut page) => match page.refresh().await {
            Ok(()) => page,
            Err(_) => {
                page.close().await;
                PageControl::open(&session.devtools).await.map_err(page_error)?
            }
        },
        None => PageControl::open(&session.devtools).await.map_err(page_error)?,
    };
    let outcome = act(&mut page).await;
    match slot {
        Some(mut slot) if page.is_usable() => *slot = Some(page),
        _ => page.close().await,
    }
    outcome
}

fn done(status: &'static str) -> Json<ActionDone> {
    Json(ActionDone { status })
}

fn button(name: Option<&str>) -> Result<Button, ApiError> {
    match name.unwrap_or("left") {
        "left" => Ok(Button::Left),
        "middle" => Ok(Button::Middle),
        "right" => Ok(Button::Right),
        _ => Err(ApiError::BadRequest("button must be left, middle or right".to_owned())),
    }
}

/// The message for a value of the wrong type in an action's body.
fn expected(path: &str) -> String {
    match path {
        "x" | "y" | "deltaX" | "deltaY" | "timeout" | "index" | "startX" | "startY" | "endX" | "endY" => {
            format!("{path} must be a number")
        }
        "button" | "selector" | "text" | "url" => format!("{path} must be a string"),
        "steps" | "delay" | "holdTime" => format!("{path} must be a whole number"),
        "keys" => "keys must be an array of key names".to_owned(),
        "useOs" => "useOs must be true or false".to_owned(),
        _ => format!("{path} has the wrong type"),
    }
}

/// Checks that `x`, `y` are given and fall inside the page's viewport.
async fn point(page: &mut PageControl, x: Option<f64>, y: Option<f64>) -> Result<(f64, f64), ApiError> {
    let (Some(x), Some(y)) = (x, y) else {
        return Err(ApiError::BadRequest("x and y are required".to_owned()));
    };
    let (width, height) = page.viewport().await.map_err(page_error)?;
    for (name, value, limit) in [("x", x, width), ("y", y, height)] {
        if !(value.is_finite() && value >= 0.0 && value < limit) {
            return Err(ApiError::BadRequest(format!(
                "{name} must be within the viewport: 0 to {} (the viewport is {width}x{height})",
                limit - 1.0
            )));
        }
    }
    Ok((x, y))
}

/// `GET /v1/sessions/{session_id}/screenshot`.
#[utoipa::path(
    operation_id = "get_session_screenshot",
    get,
    path = "/v1/sessions/{session_id}/screenshot",
    tag = "actions",
    summary = "A PNG of the active page's viewport",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "The PNG", content_type = "image/png", body = Vec<u8>))
)]
pub async fn screenshot(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
) -> Result<Response, ApiError> {
    let session = running(&state, &caller, session_id).await?;
    let png = on_page(&session, async |page| page.screenshot().await.map_err(page_error)).await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// `POST /v1/sessions/{session_id}/mouse/click`.
#[utoipa::path(
    operation_id = "mouse_click",
    post,
    path = "/v1/sessions/{session_id}/mouse/click",
    tag = "actions",
    summary = "Click at coordinates of the viewport",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = ClickBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Clicked", body = ActionDone))
)]
pub async fn mouse_click(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ActionDone>, ApiError> {
    let body: ClickBody = decode_body(&body, expected)?;
    let button = button(body.button.as_deref())?;
    let target = match &body.selector {
        Some(selector) => {
            if selector.trim().is_empty() || selector.len() > 4096 {
                return Err(ApiError::BadRequest(
                    "selector must be a CSS selector of 1 to 4096 bytes".to_owned(),
                ));
            }
            let wait = body.timeout.unwrap_or(DEFAULT_SELECTOR_TIMEOUT_MS);
            if !(0.0..=60_000.0).contains(&wait) {
                return Err(ApiError::BadRequest(
                    "timeout must be between 0 and 60000 ms".to_owned(),
                ));
            }
            let index = body.index.unwrap_or(0.0);
            if !(index >= 0.0 && index.fract() == 0.0 && index < 10_000.0) {
                return Err(ApiError::BadRequest("index must be a whole number from 0".to_owned()));
            }
            Target::Selector(selector.clone(), index as usize, Duration::from_millis(wait as u64))
        }
        None => Target::Point(body.x, body.y),
    };
    let session = running(&state, &caller, session_id).await?;
    on_page(&session, async |page| {
        let (x, y) = match &target {
            Target::Point(x, y) => point(page, *x, *y).await?,
            Target::Selector(selector, index, wait) => match page.element_centre(selector, *index, *wait).await {
                Ok(Some(centre)) => centre,
                Ok(None) => {
                    return Err(ApiError::BadRequest(format!(
                        "selector {selector:?} matched no element (index {index}) within {} ms",
                        wait.as_millis()
                    )))
                }
                Err(error) if error.is_page_gone() => return Err(page_error(error)),
                Err(CdpError::Failed { .. }) => {
                    return Err(ApiError::BadRequest(format!(
                        "selector {selector:?} is not a valid CSS selector"
                    )))
                }
                Err(error) => return Err(page_error(error)),
            },
        };
        page.click(x, y, button, 1).await.map_err(page_error)
    })
    .await?;
    Ok(done("clicked"))
}

/// The mouse routes that take a point and maybe a button.
async fn mouse_at(
    state: &AppState,
    caller: &Caller,
    session_id: SessionId,
    body: Value,
    act: &'static str,
) -> Result<Json<ActionDone>, ApiError> {
    let body: PointBody = decode_body(&body, expected)?;
    let button = button(body.button.as_deref())?;
    let session = running(state, caller, session_id).await?;
    on_page(&session, async |page| {
        let (x, y) = point(page, body.x, body.y).await?;
        match act {
            "doubleClick" => page.click(x, y, button, 2).await,
            "down" => page.mouse("mousePressed", x, y, Some(button), 1).await,
            "up" => page.mouse("mouseReleased", x, y, Some(button), 1).await,
            _ => page.mouse("mouseMoved", x, y, None, 0).await,
        }
        .map_err(page_error)
    })
    .await?;
    Ok(done(match act {
        "doubleClick" => "double-clicked",
        "down" => "pressed",
        "up" => "released",
        _ => "moved",
    }))
}

/// `POST /v1/sessions/{session_id}/mouse/doubleClick`.
#[utoipa::path(
    operation_id = "mouse_double_click",
    post,
    path = "/v1/sessions/{session_id}/mouse/doubleClick",
    tag = "actions",
    summary = "Double-click at coordinates of the viewport",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = PointBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Double-clicked", body = ActionDone))
)]
pub async fn mouse_double_click(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ActionDone>, ApiError> {
    mouse_at(&state, &caller, session_id, body, "doubleClick").await
}

/// `POST /v1/sessions/{session_id}/mouse/down`.
#[utoipa::path(
    operation_id = "mouse_down",
    post,
    path = "/v1/sessions/{session_id}/mouse/down",
    tag = "actions",
    summary = "Press a mouse button at coordinates of the viewport",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = PointBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Pressed", body = ActionDone))
)]
pub async fn mouse_down(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ActionDone>, ApiError> {
    mouse_at(&state, &caller, session_id, body, "down").await
}

/// `POST /v1/sessions/{session_id}/mouse/up`.
#[utoipa::path(
    operation_id = "mouse_up",
    post,
    path = "/v1/sessions/{session_id}/mouse/up",
    tag = "actions",
    summary = "Release a mouse button at coordinates of the viewport",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = PointBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Released", body = ActionDone))
)]
pub async fn mouse_up(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ActionDone>, ApiError> {
    mouse_at(&state, &caller, session_id, body, "up").await
}

/// `POST /v1/sessions/{session_id}/mouse/move`.
#[utoipa::path(
    operation_id = "mouse_move",
    post,
    path = "/v1/sessions/{session_id}/mouse/move",
    tag = "actions",
    summary = "Move the mouse to coordinates of the viewport",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = PointBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Moved", body = ActionDone))
)]
pub async fn mouse_move(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ActionDone>, ApiError> {
    mouse_at(&state, &caller, session_id, body, "move").await
}

/// `POST /v1/sessions/{session_id}/scroll`.
#[utoipa::path(
    operation_id = "scroll",
    post,
    path = "/v1/sessions/{session_id}/scroll",
    tag = "actions",
    summary = "Scroll with the wheel at coordinates of the viewport",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = ScrollBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Scrolled", body = ActionDone))
)]
pub async fn scroll(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ActionDone>, ApiError> {
    let body: ScrollBody = decode_body(&body, expected)?;
    let Some(delta_y) = body.delta_y.filter(|delta| delta.is_finite()) else {
        return Err(ApiError::BadRequest(
            "deltaY is required: a number of pixels".to_owned(),
        ));
    };
    let delta_x = body.delta_x.unwrap_or(0.0);
    if !delta_x.is_finite() {
        return Err(ApiError::BadRequest("deltaX must be a number of pixels".to_owned()));
    }
    let steps = body.steps.unwrap_or(1);
    if !(1..=100).contains(&steps) {
        return Err(ApiError::BadRequest("steps must be between 1 and 100".to_owned()));
    }
    let session = running(&state, &caller, session_id).await?;
    on_page(&session, async |page| {
        let (x, y) = point(page, body.x, body.y).await?;
        page.wheel(x, y, delta_x, delta_y, steps).await.map_err(page_error)
    })
    .await?;
    Ok(done("scrolled"))
}

/// `POST /v1/sessions/{session_id}/keyboard/type`.
#[utoipa::path(
    operation_id = "keyboard_type",
    post,
    path = "/v1/sessions/{session_id}/keyboard/type",
    tag = "actions",
    summary = "Type text into the focused element, a key per character",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = TypeBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Typed", body = ActionDone))
)]
pub async fn keyboard_type(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ActionDone>, ApiError> {
    let body: TypeBody = decode_body(&body, expected)?;
    let Some(text) = body.text else {
        return Err(ApiError::BadRequest("text is required".to_owned()));
    };
    if text.chars().count() > MAX_TYPED_CHARACTERS {
        return Err(ApiError::BadRequest(format!(
            "text must be at most {MAX_TYPED_CHARACTERS} characters long"
        )));
    }
    let delay = body.delay.unwrap_or(0);
    if delay > 1000 {
        return Err(ApiError::BadRequest("delay must be between 0 and 1000 ms".to_owned()));
    }
    let session = running(&state, &caller, session_id).await?;
    on_page(&session, async |page| {
        page.type_text(&text, Duration::from_millis(delay))
            .await
            .map_err(page_error)
    })
    .await?;
    Ok(done("typed"))
}

/// `POST /v1/sessions/{session_id}/keyboard/shortcut`.
#[utoipa::path(
    operation_id = "keyboard_shortcut",
    post,
    path = "/v1/sessions/{session_id}/keyboard/shortcut",
    tag = "actions",
    summary = "Press keys together (Control+A, Shift+Tab, Enter…)",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = ShortcutBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Pressed", body = ActionDone))
)]
pub async fn keyboard_shortcut(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ActionDone>, ApiError> {
    let body: ShortcutBody = decode_body(&body, expected)?;
    let names = body.keys.unwrap_or_default();
    if names.is_empty() || names.len() > MAX_SHORTCUT_KEYS {
        return Err(ApiError::BadRequest(format!(
            "keys must hold 1 to {MAX_SHORTCUT_KEYS} key names"
        )));
    }
    let keys = names
        .iter()
        .map(|name| {
            Key::named(name)
                .ok_or_else(|| ApiError::BadRequest(format!("keys: {name:?} is not a key name this server knows")))
        })
        .collect::<Result<Vec<Key>, ApiError>>()?;
    let hold = body.hold_time.unwrap_or(0);
    if hold > 10_000 {
        return Err(ApiError::BadRequest(
            "holdTime must be between 0 and 10000 ms".to_owned(),
        ));
    }
    let session = running(&state, &caller, session_id).await?;
    on_page(&session, async |page| {
        page.shortcut(&keys, Duration::from_millis(hold))
            .await
            .map_err(page_error)
    })
    .await?;
    Ok(done("pressed"))
}

/// `POST /v1/sessions/{session_id}/goto`.
#[utoipa::path(
    operation_id = "goto",
    post,
    path = "/v1/sessions/{session_id}/goto",
    tag = "actions",
    summary = "Navigate the active page and wait for it to load",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = GotoBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Loaded", body = ActionDone))
)]
pub async fn goto(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ActionDone>, ApiError> {
    let body: GotoBody = decode_body(&body, expected)?;
    let url = page_url(&state, body.url.as_deref())?;
    let session = running(&state, &caller, session_id).await?;
    on_page(&session, async |page| load(page, &url).await).await?;
    Ok(done("navigated"))
}

/// A URL a session may be sent to: given, `http`/`https` with a host, and
/// not private when `ANCHORAGE_BLOCK_PRIVATE_NETWORKS` is on.
pub(super) fn page_url(state: &AppState, text: Option<&str>) -> Result<Url, ApiError> {
    let Some(text) = text else {
        return Err(ApiError::BadRequest("url is required".to_owned()));
    };
    let url = Url::parse(text).map_err(|error| ApiError::BadRequest(format!("url is not a valid URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ApiError::BadRequest(
            "url must be an http or https URL with a host".to_owned(),
        ));
    }
    if state.block_private_networks && anchorage_core::network::is_private_url(&url) {
        return Err(ApiError::BadRequest(
            "url points to a private or loopback address, which this server does not let sessions reach \
             (ANCHORAGE_BLOCK_PRIVATE_NETWORKS)"
                .to_owned(),
        ));
    }
    Ok(url)
}

/// Navigates `page` to `url` and waits for its load event; a page the
/// browser cannot load is the caller's `400`.
pub(super) async fn load(page: &mut PageControl, url: &Url) -> Result<(), ApiError> {
    match page.goto(url, GOTO_TIMEOUT).await {
        Err(CdpError::Failed { error, .. }) => Err(ApiError::BadRequest(format!(
            "url could not be loaded: {}",
            error.as_str().unwrap_or("the browser refused it")
        ))),
        other => other.map_err(page_error),
    }
}

/// `POST /v1/sessions/{session_id}/drag-and-drop`.
#[utoipa::path(
    operation_id = "drag_and_drop",
    post,
    path = "/v1/sessions/{session_id}/drag-and-drop",
    tag = "actions",
    summary = "Press at one point of the viewport, move to another, release",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = DragBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Dragged", body = ActionDone))
)]
pub async fn drag_and_drop(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ActionDone>, ApiError> {
    let body: DragBody = decode_body(&body, expected)?;
    let button = button(body.button.as_deref())?;
    let session = running(&state, &caller, session_id).await?;
    on_page(&session, async |page| {
        let from = point(page, body.start_x, body.start_y)
            .await
            .map_err(start_end("start"))?;
        let to = point(page, body.end_x, body.end_y).await.map_err(start_end("end"))?;
        page.drag(from, to, button).await.map_err(page_error)
    })
    .await?;
    Ok(done("dragged"))
}

/// Names the point of a drag in a coordinate error (`x` → `startX`).
fn start_end(which: &'static str) -> impl Fn(ApiError) -> ApiError {
    move |error| match error {
        ApiError::BadRequest(message) => ApiError::BadRequest(format!("{which}: {message}")),
        other => other,
    }
}

/// The text of a clipboard or paste body.
fn clipboard_text(body: &Value) -> Result<String, ApiError> {
    let body: ClipboardBody = decode_body(body, expected)?;
    let text = body
        .text
        .ok_or_else(|| ApiError::BadRequest("text is required".to_owned()))?;
    if text.len() > MAX_CLIPBOARD_BYTES {
        return Err(ApiError::BadRequest(format!(
            "text must be at most {MAX_CLIPBOARD_BYTES} bytes long"
        )));
    }
    Ok(text)
}

/// `GET /v1/sessions/{session_id}/clipboard`.
#[utoipa::path(
    operation_id = "get_clipboard",
    get,
    path = "/v1/sessions/{session_id}/clipboard",
    tag = "actions",
    summary = "What was last set or copied in the session",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "The session's clipboard", body = Data<ClipboardText>))
)]
pub async fn get_clipboard(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
) -> Result<Json<Data<ClipboardText>>, ApiError> {
    let session = running(&state, &caller, session_id).await?;
    Ok(Data::of(ClipboardText {
        text: session.clipboard(),
    }))
}

/// `POST /v1/sessions/{session_id}/clipboard`.
#[utoipa::path(
    operation_id = "set_clipboard",
    post,
    path = "/v1/sessions/{session_id}/clipboard",
    tag = "actions",
    summary = "Set the session's clipboard",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = ClipboardBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Set", body = ActionDone))
)]
pub async fn set_clipboard(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ActionDone>, ApiError> {
    let text = clipboard_text(&body)?;
    let session = running(&state, &caller, session_id).await?;
    session.set_clipboard(text);
    Ok(done("set"))
}

/// `POST /v1/sessions/{session_id}/copy`.
#[utoipa::path(
    operation_id = "copy",
    post,
    path = "/v1/sessions/{session_id}/copy",
    tag = "actions",
    summary = "Copy the page's selected text to the session's clipboard",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "What was copied", body = Copied))
)]
pub async fn copy(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
) -> Result<Json<Copied>, ApiError> {
    let session = running(&state, &caller, session_id).await?;
    let text = on_page(&session, async |page| page.selected_text().await.map_err(page_error)).await?;
    session.set_clipboard(text.clone());
    Ok(Json(Copied { text }))
}

/// `POST /v1/sessions/{session_id}/paste`.
#[utoipa::path(
    operation_id = "paste",
    post,
    path = "/v1/sessions/{session_id}/paste",
    tag = "actions",
    summary = "Paste text at the caret, as a paste would (a paste event, then the text)",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = ClipboardBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Pasted", body = ActionDone))
)]
pub async fn paste(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ActionDone>, ApiError> {
    let text = clipboard_text(&body)?;
    let session = running(&state, &caller, session_id).await?;
    on_page(&session, async |page| page.paste(&text).await.map_err(page_error)).await?;
    session.set_clipboard(text);
    Ok(done("pasted"))
}

/// A file name safe to keep: its last component, letters, digits, `.`,
/// `-` and `_` kept, anything else `_`; never empty, never `.` or `..`.
fn safe_file_name(given: Option<&str>) -> String {
    let last = given.unwrap_or_default().rsplit(['/', '\\']).next().unwrap_or_default();
    let name: String = last
        .chars()
        .take(200)
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '.' | '-' | '_') {
                character
            } else {
                '_'
            }
        })
        .collect();
    if name.trim_matches('.').is_empty() {
        "upload".to_owned()
    } else {
        name
    }
}

/// `POST /v1/sessions/{session_id}/uploads`.
#[utoipa::path(
    operation_id = "upload_file",
    post,
    path = "/v1/sessions/{session_id}/uploads",
    tag = "actions",
    summary = "Put a file in the session's uploads folder, for a file input",
    description = "The file is streamed to disk (never held whole), up to ANCHORAGE_MAX_UPLOAD_BYTES, and removed \
                   with the session. The answer's message names its path: a CDP client gives it to a file input \
                   with DOM.setFileInputFiles.",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body(content = UploadBody, content_type = "multipart/form-data"),
    security(("api_key" = [])),
    responses((status = 200, description = "Saved", body = Data<Uploaded>))
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Data<Uploaded>>, ApiError> {
    let session = running(&state, &caller, session_id).await?;
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "the body must be multipart/form-data with a `file` part: {rejection}"
        ))
    })?;
    let Some(dir) = session.files_dir.as_ref().map(|dir| dir.join("uploads")) else {
        return Err(ApiError::Conflict("this session's browser keeps no files".to_owned()));
    };
    while let Some(mut field) = multipart.next_field().await.map_err(unreadable_multipart)? {
        if field.name() != Some("file") {
            continue;
        }
        tokio::fs::create_dir_all(&dir).await.map_err(ApiError::internal)?;
        let name = safe_file_name(field.file_name());
        let mut path = dir.join(&name);
        let mut copy = 1;
        while tokio::fs::try_exists(&path).await.unwrap_or(false) {
            copy += 1;
            path = dir.join(format!("{copy}-{name}"));
        }
        let written = field_to_file(&mut field, &path, state.max_upload_bytes).await?;
        // The browser may run as another user: it reads the file, nothing more.
        let readable = std::fs::Permissions::from_mode(0o644);
        tokio::fs::set_permissions(&path, readable)
            .await
            .map_err(ApiError::internal)?;
        return Ok(Data::of(Uploaded {
            status: "uploaded",
            message: format!(
                "saved as {} ({written} bytes); give it to a file input with DOM.setFileInputFiles",
                path.display()
            ),
        }));
    }
    Err(ApiError::BadRequest(
        "file is required: send it as the `file` part".to_owned(),
    ))
}

/// `GET /v1/sessions/{session_id}/downloads/{download_id}`: one downloaded
/// file's bytes, streamed from the session's folder.
#[utoipa::path(
    operation_id = "get_session_download_file",
    get,
    path = "/v1/sessions/{session_id}/downloads/{download_id}",
    tag = "actions",
    summary = "A file the session's browser downloaded (its `file_link`), while the session runs",
    params(
        ("session_id" = String, Path, description = "The session's id (a UUID)"),
        ("download_id" = String, Path, description = "The download's `id`"),
    ),
    security(("api_key" = [])),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>))
)]
pub async fn download_file(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path((raw_session, download_id)): axum::extract::Path<(String, String)>,
) -> Result<Response, ApiError> {
    let session_id: SessionId = raw_session.parse().map_err(|_| ApiError::session_not_found())?;
    let session = running(&state, &caller, session_id).await?;
    let not_found = || ApiError::NotFound("Download not found".to_owned());
    let download = session.downloads.completed(&download_id).ok_or_else(not_found)?;
    let folder = session.files_dir.as_ref().ok_or_else(not_found)?.join("downloads");
    let file = tokio::fs::File::open(anchorage_browser::download_path(&folder, &download))
        .await
        .map_err(|_| not_found())?;
    let length = file.metadata().await.map_err(ApiError::internal)?.len();
    let disposition = format!(
        "attachment; filename=\"{}\"",
        download
            .file_name
            .replace(['"', '\\'], "_")
            .replace(|c: char| c.is_control(), "_")
    );
    let mut response = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(axum::http::header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(axum::http::header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `GET /v1/sessions/{session_id}/downloads`.
#[utoipa::path(
    operation_id = "get_session_downloads",
    get,
    path = "/v1/sessions/{session_id}/downloads",
    tag = "actions",
    summary = "The files the session's browser finished downloading (into the session's own folder)",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "Its downloads, oldest first", body = Data<DownloadList>))
)]
pub async fn downloads(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
) -> Result<Json<Data<DownloadList>>, ApiError> {
    let session = running(&state, &caller, session_id).await?;
    let folder = session.files_dir.as_ref().map(|dir| dir.join("downloads"));
    let mut items = Vec::new();
    for download in session.downloads.list() {
        // Only finished files are listed: a listed file can be fetched.
        let (Some(folder), Some(completed)) = (&folder, download.completed_at_millis) else {
            continue;
        };
        let Ok(meta) = tokio::fs::metadata(anchorage_browser::download_path(folder, &download)).await else {
            continue;
        };
        items.push(DownloadRow {
            id: download.guid.clone(),
            original_download_url: download.url.clone(),
            suggested_file_name: download.file_name.clone(),
            file_link: state.api_url(&format!("v1/sessions/{session_id}/downloads/{}", download.guid)),
            duration: completed.saturating_sub(download.began_at_millis).max(0),
            size: meta.len(),
            created_at: anchorage_core::Timestamp::from_millis(download.began_at_millis).to_string(),
        });
    }
    Ok(Data::of(DownloadList {
        count: items.len(),
        items,
    }))
}

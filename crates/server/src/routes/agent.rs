//! What an agent needs of a page beyond the SDK's actions (anchorage's
//! own routes, which the MCP endpoint's tools use, and any client may):
//! an accessibility snapshot with element references and a size budget
//! (`POST /v1/sessions/{id}/snapshot`), an action on a referenced element
//! (`POST /v1/sessions/{id}/element`), and a wait for text or a selector
//! (`POST /v1/sessions/{id}/wait`). They act on the session's active page,
//! like the other actions.

use std::time::Duration;

use anchorage_browser::{parse_snapshot_ref, snapshot_text, Button, Key, PageControl};
use anchorage_core::SessionId;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::actions::{on_page, page_error, running};
use super::extract::{decode_body, IdPath, JsonBody};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::Data;

/// The default and largest size of a snapshot, in characters.
const DEFAULT_MAX_CHARS: usize = 20_000;
const LARGEST_MAX_CHARS: usize = 1_000_000;

/// What to read of the page.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SnapshotBody {
    /// At most this many characters (default 20000, up to 1000000); what
    /// does not fit is left out with a note saying so.
    pub max_chars: Option<usize>,
    /// Only the element this CSS selector matches first, and what is in it.
    pub selector: Option<String>,
    /// Only the lines new or changed since this session's last snapshot.
    pub changes_only: Option<bool>,
}

/// A snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotAnswer {
    /// The page's URL.
    pub url: String,
    /// Its title.
    pub title: String,
    /// One line per element: role, name, states and `[ref=eN]`, indented by depth.
    pub snapshot: String,
    /// Whether lines were left out to stay within `max_chars`.
    pub truncated: bool,
    /// Lines in the whole snapshot.
    pub lines: usize,
}

/// An action on an element named by a snapshot's reference.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ElementBody {
    /// The element's reference (`e123`) from a snapshot.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// `click` (default), `double_click`, `right_click`, `hover`, `focus`,
    /// `type` (focus, then type `text`), `select` (`values` of a
    /// `<select>`), `drag` (to `to_ref`).
    pub action: Option<String>,
    /// For `type`: the text.
    pub text: Option<String>,
    /// For `type`: press Enter after it.
    pub submit: Option<bool>,
    /// For `select`: option values or labels.
    pub values: Option<Vec<String>>,
    /// For `drag`: where to drop it (another reference).
    pub to_ref: Option<String>,
}

/// What an element action did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ElementDone {
    /// What was done.
    pub status: &'static str,
    /// For `select`: the values now chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected: Option<Vec<String>>,
}

/// What to wait for.
#[derive(Debug, Deserialize, ToSchema)]
pub struct WaitBody {
    /// Text to appear in the page.
    pub text: Option<String>,
    /// Text to be gone from the page.
    pub text_gone: Option<String>,
    /// A CSS selector to match an element.
    pub selector: Option<String>,
    /// Milliseconds to wait at most, up to 60000 (default 10000).
    pub timeout: Option<u64>,
}

/// How a wait ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct WaitDone {
    /// Whether what was waited for came.
    pub found: bool,
    /// How long it took, in ms.
    pub waited_ms: u64,
}

fn expected(path: &str) -> String {
    match path {
        "max_chars" | "timeout" => format!("{path} must be a positive whole number"),
        "changes_only" | "submit" => format!("{path} must be true or false"),
        "values" => "values must be a list of strings".to_owned(),
        other => format!("{other} must be a string"),
    }
}

fn stale(reference: &str) -> ApiError {
    ApiError::NotFound(format!(
        "element {reference} is not on the page any more: take a new snapshot for fresh references"
    ))
}

fn reference_of(text: Option<&str>, field: &str) -> Result<(String, i64), ApiError> {
    let text =
        text.ok_or_else(|| ApiError::BadRequest(format!("{field} is required: a reference from a snapshot (e12)")))?;
    let id = parse_snapshot_ref(text)
        .ok_or_else(|| ApiError::BadRequest(format!("{field} {text:?} is not a reference: they look like e12")))?;
    Ok((text.to_owned(), id))
}

/// `POST /v1/sessions/{session_id}/snapshot`.
#[utoipa::path(
    operation_id = "snapshot",
    post,
    path = "/v1/sessions/{session_id}/snapshot",
    tag = "actions",
    summary = "The active page as an accessibility snapshot with element references, within a size budget (anchorage)",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = SnapshotBody,
    security(("api_key" = [])),
    responses((status = 200, description = "The snapshot", body = Data<SnapshotAnswer>))
)]
pub async fn snapshot(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<Data<SnapshotAnswer>>, ApiError> {
    let body: SnapshotBody = decode_body(&body, expected)?;
    let max_chars = body.max_chars.unwrap_or(DEFAULT_MAX_CHARS);
    if !(100..=LARGEST_MAX_CHARS).contains(&max_chars) {
        return Err(ApiError::BadRequest(format!(
            "max_chars must be 100 to {LARGEST_MAX_CHARS}"
        )));
    }
    let selector = body.selector.filter(|selector| !selector.trim().is_empty());
    let session = running(&state, &caller, session_id).await?;
    let (lines, url, title) = on_page(&session, async |page: &mut PageControl| {
        let lines = page
            .snapshot_lines(selector.as_deref())
            .await
            .map_err(page_error)?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no element matches the selector {:?}",
                    selector.as_deref().unwrap_or_default()
                ))
            })?;
        let (url, title) = page.location().await.map_err(page_error)?;
        Ok((lines, url, title))
    })
    .await?;
    let previous = state.snapshots.swap(session_id, &url, lines.clone(), |id| {
        state.fleet.live_session_any_team(id).is_some()
    });
    let since = if body.changes_only.unwrap_or(false) {
        // The first snapshot of a page has nothing to compare with: all of it is new.
        Some(previous.unwrap_or_default())
    } else {
        None
    };
    let (text, truncated) = snapshot_text(&lines, max_chars, since.as_deref());
    Ok(Data::of(SnapshotAnswer {
        url,
        title,
        snapshot: text,
        truncated,
        lines: lines.len(),
    }))
}

/// `POST /v1/sessions/{session_id}/element`.
#[utoipa::path(
    operation_id = "element_action",
    post,
    path = "/v1/sessions/{session_id}/element",
    tag = "actions",
    summary = "Click, hover, focus, type into, select in or drag an element named by a snapshot's reference (anchorage)",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = ElementBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Done", body = ElementDone))
)]
pub async fn element(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<ElementDone>, ApiError> {
    let body: ElementBody = decode_body(&body, expected)?;
    let (reference, node) = reference_of(body.reference.as_deref(), "ref")?;
    let action = body.action.as_deref().unwrap_or("click");
    let target = match action {
        "drag" => Some(reference_of(body.to_ref.as_deref(), "to_ref")?),
        "click" | "double_click" | "right_click" | "hover" | "focus" | "type" | "select" => None,
        other => {
            return Err(ApiError::BadRequest(format!(
                "action {other:?} is not one of click, double_click, right_click, hover, focus, type, select, drag"
            )))
        }
    };
    let text = match action {
        "type" => {
            let text = body
                .text
                .ok_or_else(|| ApiError::BadRequest("text is required to type".to_owned()))?;
            if text.chars().count() > 10_000 {
                return Err(ApiError::BadRequest(
                    "text is too long: at most 10000 characters".to_owned(),
                ));
            }
            Some(text)
        }
        _ => None,
    };
    let values =
        match action {
            "select" => Some(body.values.filter(|values| !values.is_empty()).ok_or_else(|| {
                ApiError::BadRequest("values is required to select: option values or labels".to_owned())
            })?),
            _ => None,
        };
    let submit = body.submit.unwrap_or(false);
    let session = running(&state, &caller, session_id).await?;
    let answer = on_page(&session, async |page: &mut PageControl| {
        let centre = async |page: &mut PageControl, node: i64, reference: &str| {
            page.element_ref_centre(node)
                .await
                .map_err(page_error)?
                .ok_or_else(|| stale(reference))
        };
        match action {
            "click" | "double_click" | "right_click" => {
                let (x, y) = centre(page, node, &reference).await?;
                let (button, clicks) = match action {
                    "double_click" => (Button::Left, 2),
                    "right_click" => (Button::Right, 1),
                    _ => (Button::Left, 1),
                };
                page.click(x, y, button, clicks).await.map_err(page_error)?;
                Ok(ElementDone {
                    status: "clicked",
                    selected: None,
                })
            }
            "hover" => {
                let (x, y) = centre(page, node, &reference).await?;
                page.mouse("mouseMoved", x, y, None, 0).await.map_err(page_error)?;
                Ok(ElementDone {
                    status: "hovered",
                    selected: None,
                })
            }
            "focus" | "type" => {
                if !page.focus_ref(node).await.map_err(page_error)? {
                    return Err(stale(&reference));
                }
                if let Some(text) = &text {
                    page.type_text(text, Duration::ZERO).await.map_err(page_error)?;
                    if submit {
                        let enter = Key::named("Enter").ok_or_else(|| ApiError::internal("no Enter key"))?;
                        page.shortcut(&[enter], Duration::ZERO).await.map_err(page_error)?;
                    }
                    return Ok(ElementDone {
                        status: "typed",
                        selected: None,
                    });
                }
                Ok(ElementDone {
                    status: "focused",
                    selected: None,
                })
            }
            "select" => {
                let chosen = page
                    .select_ref(node, values.as_deref().unwrap_or_default())
                    .await
                    .map_err(page_error)?
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "element {reference} is not a <select> on the page (or is gone): take a new snapshot"
                        ))
                    })?;
                Ok(ElementDone {
                    status: "selected",
                    selected: Some(chosen),
                })
            }
            _ => {
                let from = centre(page, node, &reference).await?;
                let (to_reference, to_node) = target.clone().unwrap_or_default();
                let to = centre(page, to_node, &to_reference).await?;
                page.drag(from, to, Button::Left).await.map_err(page_error)?;
                Ok(ElementDone {
                    status: "dragged",
                    selected: None,
                })
            }
        }
    })
    .await?;
    Ok(Json(answer))
}

/// `POST /v1/sessions/{session_id}/wait`.
#[utoipa::path(
    operation_id = "wait_for",
    post,
    path = "/v1/sessions/{session_id}/wait",
    tag = "actions",
    summary = "Wait until text appears (or goes) or a selector matches on the active page (anchorage)",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = WaitBody,
    security(("api_key" = [])),
    responses((status = 200, description = "How the wait ended", body = Data<WaitDone>))
)]
pub async fn wait(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<Data<WaitDone>>, ApiError> {
    let body: WaitBody = decode_body(&body, expected)?;
    let timeout = body.timeout.unwrap_or(10_000);
    if timeout > 60_000 {
        return Err(ApiError::BadRequest("timeout must be at most 60000 ms".to_owned()));
    }
    let given = [body.text.is_some(), body.text_gone.is_some(), body.selector.is_some()];
    if given.iter().filter(|given| **given).count() != 1 {
        return Err(ApiError::BadRequest(
            "give one of text, text_gone or selector".to_owned(),
        ));
    }
    let condition: Value = serde_json::json!({"text": body.text, "gone": body.text_gone, "selector": body.selector});
    let session = running(&state, &caller, session_id).await?;
    let started = std::time::Instant::now();
    let found = on_page(&session, async |page: &mut PageControl| {
        page.wait_until(&condition, Duration::from_millis(timeout))
            .await
            .map_err(page_error)
    })
    .await?;
    Ok(Data::of(WaitDone {
        found,
        waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}

/// A tab to open.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OpenPageBody {
    /// What it loads (`http`/`https`; default `about:blank`).
    pub url: Option<String>,
}

/// The tab opened.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageOpened {
    /// Its id, as `GET /v1/sessions/{id}/pages` lists it.
    pub id: String,
}

/// `POST /v1/sessions/{session_id}/pages`.
#[utoipa::path(
    operation_id = "open_page",
    post,
    path = "/v1/sessions/{session_id}/pages",
    tag = "actions",
    summary = "Open a tab (it becomes the active page), answered once its url has loaded (anchorage)",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body = OpenPageBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Opened", body = Data<PageOpened>))
)]
pub async fn open_page(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<Json<Data<PageOpened>>, ApiError> {
    let body: OpenPageBody = decode_body(&body, expected)?;
    let url = match body.url.filter(|url| !url.is_empty()) {
        None => None,
        Some(url) => {
            let parsed = url::Url::parse(&url)
                .ok()
                .filter(|parsed| matches!(parsed.scheme(), "http" | "https"))
                .ok_or_else(|| ApiError::BadRequest(format!("url {url:?} is not an http or https URL")))?;
            if state.block_private_networks && anchorage_core::network::is_private_url(&parsed) {
                return Err(ApiError::BadRequest(format!(
                    "url {url:?} is a private or loopback address, which this server keeps sessions from"
                )));
            }
            Some(parsed)
        }
    };
    let session = running(&state, &caller, session_id).await?;
    let id = anchorage_browser::open_page(&session.devtools, "about:blank")
        .await
        .map_err(page_error)?;
    // Loaded as `goto` loads, so that the answer comes with the page there
    // (a new tab may wait to start, for the server's own set-up of it).
    if let Some(url) = url {
        let mut page = PageControl::open_target(&session.devtools, &id)
            .await
            .map_err(page_error)?;
        let loaded = super::actions::load(&mut page, &url).await;
        page.close().await;
        loaded?;
    }
    Ok(Data::of(PageOpened { id }))
}

/// `DELETE /v1/sessions/{session_id}/pages/{page_id}`.
#[utoipa::path(
    operation_id = "close_page",
    delete,
    path = "/v1/sessions/{session_id}/pages/{page_id}",
    tag = "actions",
    summary = "Close a tab; the newest open tab becomes the active page, unless the session was switched to another that is still open (anchorage)",
    params(("session_id" = String, Path, description = "The session's id (a UUID)"), ("page_id" = String, Path, description = "The page's id")),
    security(("api_key" = [])),
    responses((status = 200, description = "Closed", body = ElementDone))
)]
pub async fn close_page(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(path): axum::extract::Path<(String, String)>,
) -> Result<Json<ElementDone>, ApiError> {
    on_tab(&state, &caller, path, Tab::Close).await
}

/// What is done to a tab.
#[derive(Debug, Clone, Copy)]
enum Tab {
    Close,
    Activate,
}

/// Closes or switches to one of a session's tabs; `404` for a page that is
/// not one of the session's.
async fn on_tab(
    state: &AppState,
    caller: &Caller,
    (session_id, page_id): (String, String),
    action: Tab,
) -> Result<Json<ElementDone>, ApiError> {
    let session_id: SessionId = session_id.parse().map_err(|_| ApiError::session_not_found())?;
    let session = running(state, caller, session_id).await?;
    let done = match action {
        Tab::Close => anchorage_browser::close_page(&session.devtools, &page_id).await,
        Tab::Activate => anchorage_browser::switch_to_page(&session.devtools, &page_id).await,
    };
    if !done.map_err(page_error)? {
        return Err(ApiError::NotFound(format!("the session has no page {page_id:?}")));
    }
    Ok(Json(ElementDone {
        status: match action {
            Tab::Close => "closed",
            Tab::Activate => "activated",
        },
        selected: None,
    }))
}

/// `POST /v1/sessions/{session_id}/pages/{page_id}/activate`.
#[utoipa::path(
    operation_id = "activate_page",
    post,
    path = "/v1/sessions/{session_id}/pages/{page_id}/activate",
    tag = "actions",
    summary = "Switch to a tab: it becomes the active page (and the live view shows it) until it closes or another tab opens (anchorage)",
    params(("session_id" = String, Path, description = "The session's id (a UUID)"), ("page_id" = String, Path, description = "The page's id")),
    security(("api_key" = [])),
    responses((status = 200, description = "Switched", body = ElementDone))
)]
pub async fn activate_page(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(path): axum::extract::Path<(String, String)>,
) -> Result<Json<ElementDone>, ApiError> {
    on_tab(&state, &caller, path, Tab::Activate).await
}

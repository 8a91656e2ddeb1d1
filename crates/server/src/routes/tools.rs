//! `/v1/tools/…`: one-shot tools on a web page: a screenshot, a PDF, the
//! rendered HTML. With a `sessionId` they run in a tab of their own in that
//! running session and close it, leaving the session's pages as they were;
//! without one they start a session of the caller's team through the usual
//! pipeline (the warm pool serves it when the window is the default), and
//! end it before they answer (or when the caller hangs up).

use anchorage_browser::{Capture, PageControl};
use anchorage_core::{SessionId, SessionStatus};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use url::Url;

use super::actions::{load, page_error, page_url, running};
use super::extract::{decode_body, JsonBody, QueryMap};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::fleet::{EndWait, Fleet, StartOutcome};
use crate::state::AppState;
use crate::wire::{FetchToolBody, PdfToolBody, ScreenshotToolBody};

/// A session a tool (or a task's run) started for itself; ended when the
/// work is done, or by its drop if the caller went away first.
pub(super) struct ToolSession {
    fleet: std::sync::Arc<Fleet>,
    session_id: SessionId,
    ended: bool,
    reason: &'static str,
}

const TOOL_SESSION_END: &str = "a tool's session, ended once the tool answered";

impl ToolSession {
    /// Ends the session now.
    pub(super) async fn end(mut self) {
        self.ended = true;
        if let Err(error) = self
            .fleet
            .end_session_waiting(
                self.session_id,
                SessionStatus::Completed,
                self.reason,
                EndWait::Recorded,
            )
            .await
        {
            tracing::warn!(session_id = %self.session_id, %error, "could not end a tool's session");
        }
    }
}

impl Drop for ToolSession {
    fn drop(&mut self) {
        if !self.ended {
            let (fleet, session_id, reason) = (std::sync::Arc::clone(&self.fleet), self.session_id, self.reason);
            tokio::spawn(async move {
                let _ = fleet.end_session(session_id, SessionStatus::Completed, reason).await;
            });
        }
    }
}

/// Where a tool runs.
enum Place {
    /// A tab of its own in the caller's running session, with this window
    /// (the session's own when `None`).
    Session(SessionId, Option<(u32, u32)>),
    /// A session of its own, with this window.
    Own(Option<(u32, u32)>),
}

/// Runs `work` on a page at `url` (or, in a session and without a URL, on
/// its active page) and ends whatever it started.
async fn on_tool_page<T>(
    state: &AppState,
    caller: &Caller,
    place: Place,
    url: Option<&Url>,
    work: impl AsyncFnOnce(&mut PageControl) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let run = async |page: &mut PageControl| {
        if let Some(url) = url {
            load(page, url).await?;
        }
        work(page).await
    };
    match place {
        Place::Session(session_id, window) => {
            let session = running(state, caller, session_id).await?;
            let mut page = match url {
                Some(_) => PageControl::open_tab(&session.devtools, window).await,
                None => PageControl::open(&session.devtools).await,
            }
            .map_err(page_error)?;
            let outcome = run(&mut page).await;
            page.close().await;
            outcome
        }
        Place::Own(window) => {
            let mut configuration = Map::new();
            configuration.insert("session".to_owned(), json!({"tags": ["tool"]}));
            if let Some((width, height)) = window {
                configuration.insert(
                    "browser".to_owned(),
                    json!({"viewport": {"width": width, "height": height}}),
                );
            }
            let own = start_own_session(state, caller, Value::Object(configuration), TOOL_SESSION_END).await?;
            let session_id = own.session_id;
            let outcome = async {
                let session = state
                    .fleet
                    .live_session(caller.0.team_id, session_id)
                    .ok_or_else(|| ApiError::internal("the tool's session ended before it was used"))?;
                let mut page = PageControl::open(&session.devtools).await.map_err(page_error)?;
                let outcome = run(&mut page).await;
                page.close().await;
                outcome
            }
            .await;
            own.end().await;
            outcome
        }
    }
}

/// Starts a session of the caller's team served by this node (which then
/// drives it), and waits until it runs; it ends with `reason` when the
/// returned guard is ended or dropped.
pub(super) async fn start_own_session(
    state: &AppState,
    caller: &Caller,
    configuration: Value,
    reason: &'static str,
) -> Result<ToolSession, ApiError> {
    let request = super::sessions::new_request(state, caller, configuration).await?;
    let ticket = state.fleet.submit_waiting_here(request).await?;
    let session_id = match ticket.outcome().await {
        Some(StartOutcome::Started(session_id)) => session_id,
        Some(StartOutcome::Failed(reason)) => {
            return Err(ApiError::internal(format!("the browser could not start: {reason}")))
        }
        Some(StartOutcome::Unavailable(why)) => return Err(ApiError::Unavailable(why)),
        Some(StartOutcome::Cancelled) | None => {
            return Err(ApiError::Unavailable(
                "the server is shutting down; try again shortly".to_owned(),
            ))
        }
    };
    Ok(ToolSession {
        fleet: std::sync::Arc::clone(&state.fleet),
        session_id,
        ended: false,
        reason,
    })
}

impl ToolSession {
    /// The session's id.
    pub(super) fn session_id(&self) -> SessionId {
        self.session_id
    }

    /// Leaves the session running when the guard goes.
    pub(super) fn keep(mut self) {
        self.ended = true;
    }
}

/// The `sessionId` query parameter: a running session of the caller's team.
fn place(query: Option<&str>, window: Option<(u32, u32)>) -> Result<Place, ApiError> {
    match QueryMap::parse(query).get("sessionId") {
        Some(text) => text
            .parse::<SessionId>()
            .map(|session_id| Place::Session(session_id, window))
            .map_err(|_| ApiError::session_not_found()),
        None => Ok(Place::Own(window)),
    }
}

fn expected(path: &str) -> String {
    match path {
        "url" | "page_ranges" | "header_template" | "footer_template" => format!("{path} must be a string"),
        "landscape"
        | "display_header_footer"
        | "print_background"
        | "prefer_css_page_size"
        | "scroll_all_content"
        | "capture_full_height" => format!("{path} must be true or false"),
        _ => format!("{path} must be a number"),
    }
}

fn within(name: &str, value: Option<i64>, low: i64, high: i64) -> Result<Option<i64>, ApiError> {
    match value {
        Some(value) if !(low..=high).contains(&value) => {
            Err(ApiError::BadRequest(format!("{name} must be between {low} and {high}")))
        }
        other => Ok(other),
    }
}

/// `POST /v1/tools/screenshot`.
#[utoipa::path(
    operation_id = "screenshot_webpage",
    post,
    path = "/v1/tools/screenshot",
    tag = "tools",
    summary = "A screenshot of a web page",
    params(("sessionId" = Option<String>, Query, description = "Run in this running session (a tab of its own), or without a URL capture its active page")),
    request_body = ScreenshotToolBody,
    security(("api_key" = [])),
    responses((status = 200, description = "The image (PNG, or JPEG below quality 100)", content_type = "image/png", body = Vec<u8>))
)]
pub async fn screenshot(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    // Upstream uploads the picture to a presigned S3 URL; this server
    // reaches no outside storage, and says so instead of ignoring it.
    if body.get("s3_target_address").is_some_and(|value| !value.is_null()) {
        return Err(ApiError::BadRequest(
            "s3_target_address: uploading the picture to S3 is hosted-only; the picture is the answer".to_owned(),
        ));
    }
    let body: ScreenshotToolBody = decode_body(&body, expected)?;
    let width = within("width", body.width, 100, 7680)?;
    let height = within("height", body.height, 100, 4320)?;
    let quality = within("image_quality", body.image_quality, 1, 100)?;
    let wait = within("wait", body.wait, 0, 30_000)?.unwrap_or(0);
    let window = (width.is_some() || height.is_some()).then(|| {
        let defaults = anchorage_core::Viewport::default();
        (
            width.map_or(defaults.width, |value| value as u32),
            height.map_or(defaults.height, |value| value as u32),
        )
    });
    let place = place(query.as_deref(), window)?;
    let url = match (&place, body.url.as_deref()) {
        (Place::Session(..), None) => {
            // The session's own page is captured as its clients see it:
            // resizing it would change it under them.
            if window.is_some() {
                return Err(ApiError::BadRequest(
                    "width and height need a url when a session's own page is captured (its window stays as its \
                     clients set it); give a url to capture it in a tab of that size"
                        .to_owned(),
                ));
            }
            None
        }
        (_, text) => Some(page_url(&state, text)?),
    };
    let capture = Capture {
        jpeg_quality: quality.filter(|quality| *quality < 100).map(|quality| quality as u8),
        full_height: body.capture_full_height.unwrap_or(false),
        fast: false,
    };
    let scroll = body.scroll_all_content.unwrap_or(false);
    let image = on_tool_page(&state, &caller, place, url.as_ref(), async |page| {
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
        }
        if scroll {
            page.scroll_through().await.map_err(page_error)?;
        }
        page.capture(capture).await.map_err(page_error)
    })
    .await?;
    let content_type = if capture.jpeg_quality.is_some() {
        "image/jpeg"
    } else {
        "image/png"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], image).into_response())
}

/// `POST /v1/tools/page-pdf`.
#[utoipa::path(
    operation_id = "create_page_pdf",
    post,
    path = "/v1/tools/page-pdf",
    tag = "tools",
    summary = "A web page printed to PDF",
    params(("sessionId" = Option<String>, Query, description = "Run in this running session, in a tab of its own")),
    request_body = PdfToolBody,
    security(("api_key" = [])),
    responses((status = 200, description = "The PDF", content_type = "application/pdf", body = Vec<u8>))
)]
pub async fn page_pdf(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let body: PdfToolBody = decode_body(&body, expected)?;
    let url = page_url(&state, body.url.as_deref())?;
    let mut parameters = Map::new();
    let lengths = [
        ("paper_width", "paperWidth", body.paper_width, 1.0, 100.0),
        ("paper_height", "paperHeight", body.paper_height, 1.0, 100.0),
        ("margin_top", "marginTop", body.margin_top, 0.0, 50.0),
        ("margin_bottom", "marginBottom", body.margin_bottom, 0.0, 50.0),
        ("margin_left", "marginLeft", body.margin_left, 0.0, 50.0),
        ("margin_right", "marginRight", body.margin_right, 0.0, 50.0),
        ("scale", "scale", body.scale, 0.1, 2.0),
    ];
    for (name, cdp_name, value, low, high) in lengths {
        if let Some(value) = value {
            if !(low..=high).contains(&value) {
                return Err(ApiError::BadRequest(format!("{name} must be between {low} and {high}")));
            }
            parameters.insert(cdp_name.to_owned(), json!(value));
        }
    }
    let flags = [
        ("landscape", body.landscape),
        ("displayHeaderFooter", body.display_header_footer),
        ("printBackground", body.print_background),
        ("preferCSSPageSize", body.prefer_css_page_size),
    ];
    for (cdp_name, value) in flags {
        if let Some(value) = value {
            parameters.insert(cdp_name.to_owned(), json!(value));
        }
    }
    let texts = [
        ("pageRanges", body.page_ranges),
        ("headerTemplate", body.header_template),
        ("footerTemplate", body.footer_template),
    ];
    for (cdp_name, value) in texts {
        if let Some(value) = value {
            parameters.insert(cdp_name.to_owned(), json!(value));
        }
    }
    let place = place(query.as_deref(), None)?;
    let pdf = on_tool_page(&state, &caller, place, Some(&url), async |page| {
        page.pdf(Value::Object(parameters)).await.map_err(|error| match error {
            anchorage_browser::CdpError::Failed { error, .. } => {
                ApiError::BadRequest(format!("the PDF options were refused: {error}"))
            }
            other => page_error(other),
        })
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/pdf")], pdf).into_response())
}

/// `POST /v1/tools/fetch/webpage` (and `/v1/tools/fetch-webpage`, the npm SDK's path).
#[utoipa::path(
    operation_id = "fetch_webpage",
    post,
    path = "/v1/tools/fetch/webpage",
    tag = "tools",
    summary = "A web page's HTML once rendered, or Markdown (`format`); with a sessionId, a page of that session",
    params(("sessionId" = Option<String>, Query, description = "Run in this running session, in a tab of its own")),
    request_body = FetchToolBody,
    security(("api_key" = [])),
    responses((status = 200, description = "The rendered HTML (text/html), or Markdown (text/markdown)", content_type = "text/html", body = String))
)]
pub async fn fetch_webpage(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let body: FetchToolBody = decode_body(&body, expected)?;
    let markdown = match body.format.as_deref() {
        None | Some("html") => false,
        Some("markdown") => true,
        Some(_) => return Err(ApiError::BadRequest("format must be html or markdown".to_owned())),
    };
    let wait = within("wait", body.wait, 0, 30_000)?.unwrap_or(0);
    let page_index = within("page_index", body.page_index, 0, 1000)?;
    let partial = body.return_partial_on_timeout.unwrap_or(false);
    let given = body.url.as_deref().filter(|text| !text.trim().is_empty());
    let url = given.map(|text| page_url(&state, Some(text))).transpose()?;
    let work = async |page: &mut PageControl| {
        if let Some(url) = &url {
            match page.goto(url, FETCH_LOAD_TIMEOUT).await {
                Err(anchorage_browser::CdpError::Timeout(_)) if partial => {}
                Err(anchorage_browser::CdpError::Timeout(_)) => {
                    return Err(ApiError::Timeout(format!(
                        "the page did not load within {} s (return_partial_on_timeout gives what it shows by then)",
                        FETCH_LOAD_TIMEOUT.as_secs()
                    )))
                }
                Err(anchorage_browser::CdpError::Failed { error, .. }) => {
                    return Err(ApiError::BadRequest(format!(
                        "url could not be loaded: {}",
                        error.as_str().unwrap_or("the browser refused it")
                    )))
                }
                other => other.map_err(page_error)?,
            }
        }
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
        }
        page.html().await.map_err(page_error)
    };
    let html = match place(query.as_deref(), None)? {
        Place::Own(_) => {
            if page_index.is_some() {
                return Err(ApiError::BadRequest("page_index needs a sessionId".to_owned()));
            }
            if url.is_none() {
                return Err(ApiError::BadRequest("url is required without a sessionId".to_owned()));
            }
            on_tool_page(&state, &caller, Place::Own(None), None, work).await?
        }
        Place::Session(session_id, _) => {
            let session = running(&state, &caller, session_id).await?;
            let mut page = match (page_index, body.new_page, &url) {
                (Some(index), _, _) => {
                    let pages = anchorage_browser::list_pages(&session.devtools)
                        .await
                        .map_err(page_error)?;
                    let Some(chosen) = pages.get(index as usize) else {
                        return Err(ApiError::BadRequest(format!(
                            "page_index {index}: the session has {} page(s), numbered from 0",
                            pages.len()
                        )));
                    };
                    PageControl::open_target(&session.devtools, &chosen.id).await
                }
                (None, Some(false), _) | (None, _, None) => PageControl::open(&session.devtools).await,
                (None, _, Some(_)) => PageControl::open_tab(&session.devtools, None).await,
            }
            .map_err(page_error)?;
            let outcome = work(&mut page).await;
            page.close().await;
            outcome?
        }
    };
    if !markdown {
        return Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response());
    }
    let text = tokio::task::spawn_blocking(move || to_markdown(&html))
        .await
        .map_err(ApiError::internal)??;
    Ok(([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], text).into_response())
}

/// How long the fetch tool waits for a page's load.
const FETCH_LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A rendered page as Markdown: headings, links, lists, tables and code
/// kept; scripts, styles and other content no reader sees left out.
fn to_markdown(html: &str) -> Result<String, ApiError> {
    htmd::HtmlToMarkdown::builder()
        .skip_tags(vec!["script", "style", "noscript", "template", "head"])
        .build()
        .convert(html)
        .map_err(|error| ApiError::internal(format!("the page could not be turned into Markdown: {error}")))
}

/// `POST /v1/tools/fetch-webpage`: the same as `/v1/tools/fetch/webpage`.
#[utoipa::path(
    operation_id = "fetch_webpage_npm",
    post,
    path = "/v1/tools/fetch-webpage",
    tag = "tools",
    summary = "A web page's HTML once rendered (the npm SDK's path)",
    params(("sessionId" = Option<String>, Query, description = "Run in this running session, in a tab of its own")),
    request_body = FetchToolBody,
    security(("api_key" = [])),
    responses((status = 200, description = "The rendered HTML", content_type = "text/html", body = String))
)]
pub async fn fetch_webpage_npm(
    state: State<AppState>,
    caller: Caller,
    query: RawQuery,
    body: JsonBody,
) -> Result<Response, ApiError> {
    fetch_webpage(state, caller, query, body).await
}

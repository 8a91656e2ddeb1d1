//! The shapes of the HTTP API: every success body the routes answer with,
//! the error body, and the request bodies, as types. The routes build these
//! (not free-form JSON), and `/openapi.json` is generated from the same
//! types, so the document cannot drift from what is sent.
//!
//! Field names follow the upstream API exactly; descriptions are ours.
//! Request bodies are decoded leniently by the routes (unknown fields are
//! ignored, values are checked one by one so errors name the field); the
//! request types here describe what the routes read.

use anchorage_core::{BatchId, RequestId, SessionId, TeamId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Every success body: `{"data": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Data<T> {
    /// The answer.
    pub data: T,
}

impl<T> Data<T> {
    /// Wraps an answer.
    pub fn of(data: T) -> axum::Json<Self> {
        axum::Json(Self { data })
    }
}

/// Every error body: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status, repeated.
    pub code: u16,
    /// What went wrong and how to fix it.
    pub message: String,
}

/// `{"status": "ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusOk {
    /// `ok` (`ready` from `/readyz`).
    pub status: &'static str,
}

impl StatusOk {
    /// Done.
    pub const OK: Self = Self { status: "ok" };
    /// Ready to start sessions.
    pub const READY: Self = Self { status: "ready" };
}

// ---------------------------------------------------------------- sessions

/// A started session and where to reach it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionCreated {
    /// The session's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: SessionId,
    /// WebSocket URL for Playwright's `connectOverCDP` or Puppeteer's `connect`; carries a per-session token.
    pub cdp_url: String,
    /// Page that shows the session live; carries the same per-session token.
    pub live_view_url: String,
}

/// An accepted asynchronous start.
#[derive(Debug, Serialize, ToSchema)]
pub struct AsyncAccepted {
    /// Poll `GET /v1/sessions/async/{request_id}/status` with it.
    #[schema(value_type = String, format = Uuid)]
    pub request_id: RequestId,
    /// Always `pending`.
    pub status: &'static str,
    /// Always null: the session does not exist yet.
    #[schema(value_type = Option<String>)]
    pub session_id: Option<SessionId>,
}

/// Where an asynchronous start is.
#[derive(Debug, Serialize, ToSchema)]
pub struct AsyncStatus {
    /// The request.
    #[schema(value_type = String, format = Uuid)]
    pub request_id: RequestId,
    /// `pending`, `processing`, `ready` (connectable now), `completed` (its session has ended), `failed` or `cancelled`.
    pub status: &'static str,
    /// When the request was accepted.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The request's session, once it has one or has failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<BatchItem>,
    /// The phase it is in.
    pub progress: Phase,
}

/// A phase of provisioning.
#[derive(Debug, Serialize, ToSchema)]
pub struct Phase {
    /// `queued`, `provisioning` or `ready`.
    pub current_phase: &'static str,
}

/// One session in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDetail {
    /// The session.
    #[schema(value_type = String, format = Uuid)]
    pub session_id: SessionId,
    /// Its team.
    #[schema(value_type = String, format = Uuid)]
    pub team_id: TeamId,
    /// `starting`, `running`, `completed` or `failed`.
    pub status: &'static str,
    /// Seconds it has run (so far, while it runs).
    pub duration: i64,
    /// The start body it was created with, as sent.
    #[schema(value_type = Object)]
    pub configuration: Value,
    /// Its tags, as upstream gives them in this one answer: an object with
    /// each tag as a key (in order) whose value is `true`. Every other
    /// answer, and `/v1/sessions/{id}/tags`, gives them as a list.
    #[serde(serialize_with = "tags_as_object")]
    #[schema(value_type = Object)]
    pub tags: Vec<String>,
    /// When it was asked for.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When its browser was up.
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// When it ended.
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    /// Why it ended (a client, a timeout, a cancel, the browser dying…).
    pub end_reason: Option<String>,
    /// The batch it belongs to.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub batch_id: Option<BatchId>,
    /// Always 0: anchorage does not bill.
    pub credits_used: i64,
    /// Always 0: no proxy is in use.
    pub proxy_bytes: i64,
    /// Always 0: no agent steps are run.
    pub steps: i64,
    /// Always false.
    pub playground: bool,
}

/// The team's live sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveSessions {
    /// How many.
    pub count: i64,
    /// Them, newest first.
    pub items: Vec<LiveSessionItem>,
}

/// One live session.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveSessionItem {
    /// The session.
    #[schema(value_type = String, format = Uuid)]
    pub session_id: SessionId,
    /// `starting` or `running`.
    pub status: &'static str,
    /// Its tags.
    pub tags: Vec<String>,
    /// When it was asked for.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Its live view (an anchorage addition).
    pub live_view_url: String,
    /// The node its browser runs on (an anchorage addition; see `anchorage nodes`).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub node_id: Option<anchorage_core::NodeId>,
}

/// A page of the session history.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionHistory {
    /// The sessions of this page.
    pub sessions: Vec<HistoryRow>,
    /// Sessions matching the filters, on all pages.
    pub total: i64,
    /// This page, from 1.
    pub page: i64,
    /// Pages in all.
    pub total_pages: i64,
}

/// One session of the history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryRow {
    /// The session.
    #[schema(value_type = String, format = Uuid)]
    pub id: SessionId,
    /// `starting`, `running`, `completed` or `failed`.
    pub status: &'static str,
    /// Its tags.
    pub tags: Vec<String>,
    /// Whether a headless browser was asked for.
    pub headless: bool,
    /// Whether recording was asked for (recorded, not active yet).
    pub recording: bool,
    /// Always 0.
    pub used_credits: i64,
    /// Always 0.
    pub proxy_bytes: i64,
    /// Always null.
    pub proxy_type: Option<String>,
    /// Always 0.
    pub steps: i64,
    /// Seconds it ran.
    pub duration: i64,
    /// When it was asked for.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The start body, as sent.
    #[schema(value_type = Object)]
    pub user_configuration: Value,
    /// Always false.
    pub task_initiated: bool,
    /// Always 0.
    pub task_executions_count: i64,
    /// The name of the key that started it.
    pub api_key_name: String,
    /// Always empty.
    pub browser_ip: &'static str,
    /// Always empty.
    pub domains: Vec<String>,
    /// The batch it belongs to.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub batch_id: Option<BatchId>,
    /// Why it ended.
    pub end_reason: Option<String>,
}

/// The pages open in a session's browser.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPages {
    /// How many.
    pub count: usize,
    /// Them.
    pub items: Vec<PageItem>,
}

/// One open page.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageItem {
    /// The CDP target id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its URL.
    pub url: String,
    /// The session's live view.
    pub frontend_url: String,
    /// Whether it is the active page: the one REST actions, agents' tools
    /// and the live view act on (anchorage).
    pub active: bool,
}

// ---------------------------------------------------------------- batches

/// One item of a batch (and the session of an asynchronous start).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BatchItem {
    /// Its place in the batch, from 0.
    pub item_index: i64,
    /// Its session, once provisioning began.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub session_id: Option<SessionId>,
    /// `pending`, `processing`, `completed` (its session is up), `failed` or `cancelled`.
    pub status: &'static str,
    /// Given while its session runs.
    pub cdp_url: Option<String>,
    /// Given while its session runs.
    pub live_view_url: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Attempts after the first.
    pub retry_count: i64,
    /// When provisioning began.
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// When it reached its state.
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    /// Per-item metadata (none is set by anchorage).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// An accepted batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchCreated {
    /// The batch.
    #[schema(value_type = String, format = Uuid)]
    pub batch_id: BatchId,
    /// Always `pending`.
    pub status: &'static str,
    /// How many sessions it asks for.
    pub total_requests: i64,
    /// When it was accepted.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A page of batches.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchList {
    /// Newest first.
    pub batches: Vec<BatchRow>,
    /// Where this page is.
    pub pagination: Pagination,
}

/// One batch of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchRow {
    /// The batch.
    #[schema(value_type = String, format = Uuid)]
    pub batch_id: BatchId,
    /// `pending`, `processing`, `completed`, `failed` or `cancelled`.
    pub status: &'static str,
    /// Items in all.
    pub total_requests: i64,
    /// Items whose session came up.
    pub completed_requests: i64,
    /// Items that failed.
    pub failed_requests: i64,
    /// When it was accepted.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it reached a final state.
    #[schema(format = DateTime)]
    pub actual_completion_time: Option<String>,
}

/// Paging of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    /// This page, from 1.
    pub current_page: i64,
    /// Pages in all.
    pub total_pages: i64,
    /// Rows in all.
    pub total_records: i64,
    /// Whether a later page exists.
    pub has_next: bool,
    /// Whether an earlier page exists.
    pub has_prev: bool,
}

/// The full status of a batch. The counts always add up to `total_requests`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BatchStatusBody {
    /// The batch.
    #[schema(value_type = String, format = Uuid)]
    pub batch_id: BatchId,
    /// `pending`, `processing`, `completed`, `failed` or `cancelled`.
    pub status: &'static str,
    /// Items in all.
    pub total_requests: i64,
    /// Items whose session came up.
    pub completed_requests: i64,
    /// Items that failed.
    pub failed_requests: i64,
    /// Items being provisioned.
    pub processing_requests: i64,
    /// Items waiting.
    pub pending_requests: i64,
    /// Items cancelled (an anchorage addition; the remainder of the others).
    pub cancelled_requests: i64,
    /// When it was accepted.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it reached a final state.
    #[schema(format = DateTime)]
    pub actual_completion_time: Option<String>,
    /// A summary of its failures.
    pub error: Option<String>,
    /// The metadata it was created with.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// How far it is.
    pub progress: BatchProgress,
    /// Every item (absent in the events stream's `batch` events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<BatchItem>>,
}

/// How far a batch is.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BatchProgress {
    /// Items in a final state, in percent.
    pub percentage: f64,
    /// `queued`, `provisioning` or `ready`.
    pub current_phase: &'static str,
}

/// A cancelled batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchCancelled {
    /// The batch.
    #[schema(value_type = String, format = Uuid)]
    pub batch_id: BatchId,
    /// Always `cancelled`.
    pub status: &'static str,
    /// Running sessions that were ended.
    pub cancelled_sessions: usize,
    /// What happened.
    pub message: String,
}

/// A deleted batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchDeleted {
    /// The batch.
    #[schema(value_type = String, format = Uuid)]
    pub batch_id: BatchId,
    /// Running sessions that were ended.
    pub deleted_sessions: usize,
    /// Sessions that could not be ended.
    pub failed_deletions: usize,
    /// Why, per session (absent when none failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<DeletionError>>,
    /// What happened.
    pub message: String,
}

/// A session a delete could not end.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionError {
    /// The session.
    #[schema(value_type = String, format = Uuid)]
    pub session_id: SessionId,
    /// Why.
    pub error: String,
}

/// A retried batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchRetried {
    /// The batch.
    #[schema(value_type = String, format = Uuid)]
    pub batch_id: BatchId,
    /// Its status now.
    pub status: &'static str,
    /// Items queued again.
    pub retried_sessions: u64,
    /// What happened.
    pub message: String,
}

/// The `deleted` event of a batch's events stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchGone {
    /// The batch that was removed.
    #[schema(value_type = String, format = Uuid)]
    pub batch_id: BatchId,
}

// ---------------------------------------------------------------- others

/// What `GET /` answers a client that is not a web browser.
#[derive(Debug, Serialize, ToSchema)]
pub struct About {
    /// `anchorage`.
    pub name: &'static str,
    /// The server's version.
    pub version: &'static str,
    /// One line about it.
    pub description: &'static str,
    /// The API's base path.
    pub api: &'static str,
}

// ---------------------------------------------------------------- request bodies

/// The body of a session start: the typed request struct in core, which the
/// routes decode bodies through (and whose schema the document shows).
pub use anchorage_core::options::StartBody;

/// The body of a batch.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BatchBody {
    /// How many sessions, 1 to the server's cap (1000 by default).
    #[schema(value_type = u32)]
    pub count: Option<u64>,
    /// The start body every session of the batch gets (kept as given, to be
    /// recorded; decoded as a `StartBody`).
    #[schema(value_type = Option<StartBody>)]
    pub configuration: Option<Value>,
    /// Anything, kept with the batch.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// The body of a cancel.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CancelBody {
    /// Must be `cancelled`.
    #[schema(example = "cancelled", value_type = String)]
    pub status: Option<String>,
}

/// The body of a retry.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RetryBody {
    /// Retry only failed items (default), or also completed items whose session has ended.
    pub retry_failed_only: Option<bool>,
    /// Attempts per item, 1 to 3 (default 1).
    #[schema(value_type = Option<u8>)]
    pub max_retries: Option<i64>,
}

// ---------------------------------------------------------------- session actions

/// The answer of an action on a session (`Sessions…Response` upstream).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionDone {
    /// What was done (`"clicked"`, `"typed"`, …).
    pub status: &'static str,
}

/// A click, by coordinates (`mouse/click`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ClickBody {
    /// X coordinate in CSS pixels of the viewport.
    pub x: Option<f64>,
    /// Y coordinate in CSS pixels of the viewport.
    pub y: Option<f64>,
    /// `left` (default), `middle` or `right`.
    pub button: Option<String>,
    /// A CSS selector to click instead of coordinates: not supported yet (refused with `400`).
    pub selector: Option<String>,
    /// With a selector: how long to wait for it, in ms.
    pub timeout: Option<f64>,
    /// With a selector: which of its matches.
    pub index: Option<f64>,
}

/// A mouse event at coordinates (`mouse/doubleClick`, `mouse/down`, `mouse/up`, `mouse/move`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct PointBody {
    /// X coordinate in CSS pixels of the viewport.
    #[schema(value_type = f64)]
    pub x: Option<f64>,
    /// Y coordinate in CSS pixels of the viewport.
    #[schema(value_type = f64)]
    pub y: Option<f64>,
    /// `left` (default), `middle` or `right`; not for `move`.
    pub button: Option<String>,
}

/// A scroll with the wheel at coordinates.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScrollBody {
    /// X coordinate in CSS pixels of the viewport.
    #[schema(value_type = f64)]
    pub x: Option<f64>,
    /// Y coordinate in CSS pixels of the viewport.
    #[schema(value_type = f64)]
    pub y: Option<f64>,
    /// Horizontal amount in pixels (positive is right).
    pub delta_x: Option<f64>,
    /// Vertical amount in pixels (positive is down).
    #[schema(value_type = f64)]
    pub delta_y: Option<f64>,
    /// Steps to split the scroll into, 1 to 100 (default 1).
    pub steps: Option<u32>,
    /// Accepted and ignored: every scroll is real wheel input.
    #[expect(dead_code, reason = "accepted for the SDK's sake and never read")]
    pub use_os: Option<bool>,
}

/// Text to type.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TypeBody {
    /// The text, up to 10000 characters.
    #[schema(value_type = String)]
    pub text: Option<String>,
    /// Milliseconds between keys, 0 to 1000 (default 0).
    pub delay: Option<u64>,
}

/// Keys to press together.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShortcutBody {
    /// Key names (`Control`, `Shift`, `a`, `Enter`, `F5`…), 1 to 8, modifiers first.
    #[schema(value_type = Vec<String>)]
    pub keys: Option<Vec<String>>,
    /// Milliseconds to hold them, 0 to 10000 (default 0).
    pub hold_time: Option<u64>,
}

/// Where to navigate.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GotoBody {
    /// An `http` or `https` URL.
    #[schema(value_type = String)]
    pub url: Option<String>,
}

/// A drag from one point of the viewport to another.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DragBody {
    /// Where the drag starts (X).
    #[schema(value_type = f64)]
    pub start_x: Option<f64>,
    /// Where the drag starts (Y).
    #[schema(value_type = f64)]
    pub start_y: Option<f64>,
    /// Where it ends (X).
    #[schema(value_type = f64)]
    pub end_x: Option<f64>,
    /// Where it ends (Y).
    #[schema(value_type = f64)]
    pub end_y: Option<f64>,
    /// `left` (default), `middle` or `right`.
    pub button: Option<String>,
}

/// Text for the clipboard, or to paste.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ClipboardBody {
    /// The text, up to 1 MiB.
    #[schema(value_type = String)]
    pub text: Option<String>,
}

/// The session's clipboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClipboardText {
    /// What was last set or copied in the session.
    pub text: String,
}

/// What `copy` copied.
#[derive(Debug, Serialize, ToSchema)]
pub struct Copied {
    /// The selected text, now on the session's clipboard.
    pub text: String,
}

// ---------------------------------------------------------------- tools

/// A screenshot of a web page (`tools.screenshot_webpage`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ScreenshotToolBody {
    /// The page (`http`/`https`); without it, a given session's active page is captured.
    pub url: Option<String>,
    /// Viewport width, 100 to 7680 (default 1440).
    pub width: Option<i64>,
    /// Viewport height, 100 to 4320 (default 900).
    pub height: Option<i64>,
    /// 1 to 100: below 100 a JPEG of that quality, 100 (default) a PNG.
    pub image_quality: Option<i64>,
    /// Milliseconds to wait after the load, 0 to 30000.
    pub wait: Option<i64>,
    /// Scroll through the page first, so content loaded on scroll is there.
    pub scroll_all_content: Option<bool>,
    /// Capture the whole height of the page.
    pub capture_full_height: Option<bool>,
}

/// A PDF of a web page (`tools.create_page_pdf`); lengths in inches.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PdfToolBody {
    /// The page (`http`/`https`).
    #[schema(value_type = String)]
    pub url: Option<String>,
    /// Paper orientation.
    pub landscape: Option<bool>,
    /// Print the header and footer templates.
    pub display_header_footer: Option<bool>,
    /// Print background graphics.
    pub print_background: Option<bool>,
    /// Rendering scale, 0.1 to 2.
    pub scale: Option<f64>,
    /// Paper width (default 8.5).
    pub paper_width: Option<f64>,
    /// Paper height (default 11).
    pub paper_height: Option<f64>,
    /// Top margin.
    pub margin_top: Option<f64>,
    /// Bottom margin.
    pub margin_bottom: Option<f64>,
    /// Left margin.
    pub margin_left: Option<f64>,
    /// Right margin.
    pub margin_right: Option<f64>,
    /// Pages to print, e.g. `1-5, 8`.
    pub page_ranges: Option<String>,
    /// HTML of the header.
    pub header_template: Option<String>,
    /// HTML of the footer.
    pub footer_template: Option<String>,
    /// Prefer the page size the page's CSS gives.
    pub prefer_css_page_size: Option<bool>,
}

/// A page to fetch, rendered (`tools.fetch_webpage`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct FetchToolBody {
    /// The page (`http`/`https`); empty or absent with a `sessionId`: the
    /// session's page (its active one, or `page_index`'s) as it is.
    #[schema(value_type = String)]
    pub url: Option<String>,
    /// `html` (the default) or `markdown`.
    pub format: Option<String>,
    /// Milliseconds to wait after the load, for content that comes later (0 to 30000).
    pub wait: Option<i64>,
    /// With a `sessionId`: `true` (the default with a `url`) loads the URL in
    /// a tab of its own, closed afterwards; `false` loads it in the
    /// session's active page and leaves it there.
    pub new_page: Option<bool>,
    /// With a `sessionId`: the page to read (its place in
    /// `GET /v1/sessions/{id}/pages`, from 0), loaded with `url` if given;
    /// overrides `new_page`.
    pub page_index: Option<i64>,
    /// When the page has not loaded within 20 s: `true` answers what it
    /// shows by then, `false` (the default) a `504`.
    pub return_partial_on_timeout: Option<bool>,
}

/// A file for the session (`multipart/form-data`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadBody {
    /// The file; saved in the session's uploads folder under its own name.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// What an upload did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    /// `uploaded`.
    pub status: &'static str,
    /// Where the file is: the path a CDP client passes to
    /// `DOM.setFileInputFiles` to give it to a file input.
    pub message: String,
}

// ---------------------------------------------------------------- usage history

/// One period of the team's usage (`SessionHistoryDataPoint`). Metrics this
/// server does not track (proxy bytes, AI steps, credits, screenshots,
/// network bytes) are left out.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsagePoint {
    /// The period: `2026-12-01T13:00:00Z` (hour), `2026-12-01` (day, and a week by its Monday), `2026-12` (month).
    pub date: String,
    /// Sessions created in the period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_count: Option<f64>,
    /// Hours the sessions created in the period ran (to now for running ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_hours: Option<f64>,
}

/// Totals of the range (`SessionHistorySummary`).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageSummary {
    /// Sessions created in the range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_sessions: Option<f64>,
    /// Their hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_session_hours: Option<f64>,
}

/// The page of periods.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsagePagination {
    /// This page (from 1).
    pub current_page: i64,
    /// How many pages.
    pub total_pages: i64,
    /// How many periods.
    pub total_records: i64,
    /// Whether a next page exists.
    pub has_next: bool,
    /// Whether a previous page exists.
    pub has_prev: bool,
}

/// The team's usage by period (`SessionHistoryResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageHistory {
    /// The periods of this page, oldest first.
    pub data: Vec<UsagePoint>,
    /// Totals of the whole range.
    pub summary: UsageSummary,
    /// Where this page is.
    pub pagination: UsagePagination,
}

/// One download of a session (`DownloadItem`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DownloadRow {
    /// The browser's id for it.
    pub id: String,
    /// Where it was downloaded from.
    pub original_download_url: String,
    /// Its file name in the session's downloads folder.
    pub suggested_file_name: String,
    /// Where to fetch the file from this server (with the API key) while
    /// the session runs.
    pub file_link: String,
    /// How long the download took, in milliseconds.
    pub duration: i64,
    /// Its size in bytes.
    pub size: u64,
    /// When it began.
    pub created_at: String,
}

/// A session's downloads (`DownloadListResponse`'s data).
#[derive(Debug, Serialize, ToSchema)]
pub struct DownloadList {
    /// How many.
    pub count: usize,
    /// Oldest first.
    pub items: Vec<DownloadRow>,
}

/// `POST /v1/profiles` (`ProfileRequestSchema` upstream).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProfileBody {
    /// The profile's name, unique within the team (1 to 128 characters, no slashes).
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// `session`: save a running session's state into it when that session ends.
    pub source: Option<String>,
    /// The running session, with `source: "session"`.
    pub session_id: Option<String>,
    /// Hosted only (a dedicated residential IP); `true` is refused.
    pub dedicated_sticky_ip: Option<bool>,
}

/// One profile (`ProfileResponseSchema` upstream).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileItem {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// `session` when made from a session.
    pub source: Option<String>,
    /// The session it was made from.
    pub session_id: Option<String>,
    /// `pending` (its session has not ended yet), `saving` (a session's state
    /// is being written into it), `ready`, or `failed` (nothing could be saved).
    pub status: String,
    /// When it was made.
    pub created_at: String,
}

/// A team's profiles.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileList {
    /// How many.
    pub count: usize,
    /// Oldest first.
    pub items: Vec<ProfileItem>,
}

/// `{"status": "success"}`, upstream's `SuccessResponse` data.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success {
    /// `success`.
    pub status: &'static str,
}

/// One uploaded extension (`ExtensionResponseSchema` upstream).
#[derive(Debug, Serialize, ToSchema)]
pub struct ExtensionItem {
    /// Its id, for `browser.extensions`.
    pub id: String,
    /// The name given at upload.
    pub name: String,
    /// Its `manifest.json`.
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// When it was uploaded.
    #[serde(rename = "createdAt")]
    pub created_at: String,
    /// When it last changed.
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
}

/// `{"data": {"status": "success"}}` inside `data`, as upstream's delete of an
/// extension answers (`ExtensionsDeleteExtensionResponse`), and its pause and
/// resume of a recording.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// `{"status": "success"}`.
    pub data: Success,
}

/// One uploaded CA certificate (`CertificateResponseSchema` upstream).
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateItem {
    /// Its id.
    pub id: String,
    /// Its name, for `browser.certificates`.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// When it was uploaded.
    #[serde(rename = "createdAt")]
    pub created_at: String,
}

/// What a waiter of an event gets (`EventResponseSchema` upstream).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventData {
    /// The data the event was signalled with.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// A webhook as listed (`WebhookPublic` upstream): never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookItem {
    /// `wh_…`.
    pub id: String,
    /// The team's id.
    pub project_id: String,
    /// Where events are posted.
    pub url: String,
    /// What it is for (empty when not given).
    pub description: String,
    /// The event types it gets.
    pub subscribed_events: Vec<String>,
    /// Whether events fan out to it.
    pub enabled: bool,
    /// When it was made.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

/// A webhook with its signing secret (`WebhookWithSecret` upstream): only
/// the answers of create and rotate carry it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: WebhookItem,
    /// The HMAC-SHA256 key of `Anchor-Signature`.
    pub secret: String,
}

/// `{"webhooks": […]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// The team's webhooks, oldest first.
    pub webhooks: Vec<WebhookItem>,
}

/// `{"ok": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OkAnswer {
    /// Always true.
    pub ok: bool,
}

/// What a test event was recorded as.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookTestAnswer {
    /// The envelope's `id` the receiver gets.
    pub external_event_id: String,
    /// Its type.
    pub event_type: String,
}

/// One attempt at a delivery (`WebhookEventDeliveryRow` upstream).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryRow {
    /// The attempt's id.
    pub id: String,
    /// The event's `id` (the envelope's).
    pub external_event_id: String,
    /// `Anchor-Delivery-Id`: the same for every attempt of a delivery.
    pub delivery_id: String,
    /// The event's type.
    pub event_type: String,
    /// `pending`, `in_flight`, `succeeded`, `failed` or `dead`.
    pub status: String,
    /// 1 for the first attempt.
    pub attempt: i64,
    /// The receiver's HTTP status.
    pub response_status: Option<i64>,
    /// Why it did not succeed.
    pub error_message: Option<String>,
    /// When it was (or is) due.
    pub scheduled_at: Option<String>,
    /// When it ended.
    pub completed_at: Option<String>,
}

/// Paging of the delivery list.
#[derive(Debug, Serialize, ToSchema)]
pub struct OffsetPagination {
    /// Page size asked for.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
    /// Rows matching in all.
    pub total: i64,
}

/// `{"events": […], "pagination": {…}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    pub events: Vec<DeliveryRow>,
    /// Where this page is.
    pub pagination: OffsetPagination,
}

/// One recording of a session (`RecordingItem` upstream).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingItem {
    /// Its id.
    pub id: String,
    /// Whether it is the session's primary recording (its first).
    pub is_primary: bool,
    /// Where to fetch it (with the API key) once it is finished.
    pub file_link: String,
    /// A name for the file.
    pub suggested_file_name: String,
    /// Its length, `HH:MM:SS` (`00:00:00` until it is finished).
    pub duration: String,
    /// The file's size in bytes.
    pub size: f64,
    /// When it started.
    pub created_at: String,
    /// `recording`, `ready` or `failed` (beyond upstream).
    pub status: String,
    /// Why it failed, or how it was finished when not cleanly.
    pub error: Option<String>,
}

/// `{"count", "items"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingList {
    /// How many.
    pub count: usize,
    /// Oldest first.
    pub items: Vec<RecordingItem>,
}

/// Writes tags as `{"tag": true, …}`, in their order.
fn tags_as_object<S: serde::Serializer>(tags: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(tags.len()))?;
    for tag in tags {
        map.serialize_entry(tag, &true)?;
    }
    map.end()
}

/// One session's tags (`/v1/sessions/{session_id}/tags`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionTags {
    /// The session.
    #[schema(value_type = String, format = Uuid)]
    pub session_id: SessionId,
    /// Its tags, in order.
    pub tags: Vec<String>,
}

// ---------------------------------------------------------------- code

/// A snippet to run beside a session (`tools.execute_code`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ExecuteCodeBody {
    /// TypeScript (or JavaScript): the body of an async function that is
    /// given `page`, `browser`, `context`, `sessionId` and `anchorClient`.
    pub code: Option<String>,
}

/// How a snippet ran. Not wrapped in `data`, as upstream's is not.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecuteCodeAnswer {
    /// Whether the snippet returned.
    pub success: bool,
    /// What happened, in words.
    pub message: String,
    /// The JSON of its return value (absent for `undefined`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its execution's id.
    #[serde(rename = "executionResultId")]
    pub execution_result_id: String,
}

/// A new task (`POST /v1/task`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateTaskBody {
    /// Letters, digits, `_` and `-`; unique among the team's tasks.
    pub name: Option<String>,
    /// `typescript`.
    pub language: Option<String>,
    /// The code, base64; saved as the task's draft.
    pub code: Option<String>,
    /// What it does, at most 1000 characters.
    pub description: Option<String>,
    /// The `session` part of a start body its runs start with.
    #[schema(value_type = Object)]
    pub browser_configuration: Option<Value>,
}

/// A task's new name or description.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateTaskBody {
    /// Its new name.
    pub name: Option<String>,
    /// Its new description.
    pub description: Option<String>,
}

/// A version's content: a draft, a deploy, a published number.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskVersionBody {
    /// The code, base64.
    pub code: Option<String>,
    /// `typescript`.
    pub language: Option<String>,
    /// What this version is.
    pub description: Option<String>,
    /// The `session` part of a start body its runs start with.
    #[schema(value_type = Object)]
    pub browser_configuration: Option<Value>,
}

/// A task run (`POST /v1/task/run`, `POST /v1/task/run/{name}`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunTaskBody {
    /// The task (by id; the by-name route names it in the path).
    pub task_id: Option<String>,
    /// `draft`, `latest` (the default) or a number.
    pub version: Option<String>,
    /// A running session to run in; without it the run starts one.
    pub session_id: Option<String>,
    /// Answer at once and run in the background.
    #[serde(rename = "async")]
    pub run_async: Option<bool>,
    /// Session settings over the version's `browserConfiguration`.
    #[schema(value_type = Object)]
    pub override_browser_configuration: Option<Value>,
    /// `ANCHOR_*` names and their values, given to the code as environment variables.
    #[schema(value_type = Object)]
    pub inputs: Option<Map<String, Value>>,
    /// End the session the run started once it finishes (default true).
    pub cleanup_sessions: Option<bool>,
}

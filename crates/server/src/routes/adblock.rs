//! `GET /v1/adblock`: what this node blocks ads with (its filter lists,
//! their dates and sizes) and how much it blocked. It describes the node the
//! request reached; it changes nothing.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::Data;

/// One filter list of the node.
#[derive(Debug, Serialize, ToSchema)]
pub struct FilterListItem {
    /// The file.
    pub path: String,
    /// Its `! Title:` line.
    pub title: Option<String>,
    /// When the file was last changed (RFC 3339).
    pub modified: Option<String>,
    /// Rules the engine took from it.
    pub rules: usize,
    /// Lines it could not parse (skipped).
    pub skipped: usize,
}

/// The node's ad blocking.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdblockStatus {
    /// Whether the node blocks ads (a session may still turn it off).
    pub active: bool,
    /// The lists, in the order they were read.
    pub lists: Vec<FilterListItem>,
    /// How long compiling them took, in milliseconds.
    pub compile_ms: u64,
    /// Times they were compiled again after a file changed.
    pub reloads: u64,
    /// Requests blocked on this node since it started (as its browsers
    /// reported them: one blocked in a page's first moments may be missed).
    pub blocked_requests: u64,
    /// The lists' network lines the browsers block by (as the rules of
    /// Chromium's own subresource filter: requests are decided inside each
    /// page's renderer).
    pub browser_rules: usize,
    /// Network lines no rule of the filter can keep the meaning of (a
    /// `redirect`, a `csp`, a regex, an entity such as `example.*`, …): left
    /// out, so what they name is not blocked.
    pub left_out_rules: usize,
    /// Whether the lists' current compile is indexed for the browsers'
    /// filter (by an index launch, or found kept from an earlier run).
    /// Browsers launched before use the compile before, or, at a node's
    /// first start, wait for it; with index launches off, no request is
    /// blocked.
    pub indexed_ahead: bool,
    /// Why the current compile could not be indexed, if it could not
    /// (browsers then block requests by the compile before, if any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_error: Option<String>,
}

/// `GET /v1/adblock`.
#[utoipa::path(
    operation_id = "adblock_status",
    get,
    path = "/v1/adblock",
    tag = "operations",
    summary = "This node's ad blocking: its filter lists, their dates, rules and requests blocked (anchorage)",
    security(("api_key" = [])),
    responses((status = 200, description = "The node's ad blocking", body = Data<AdblockStatus>))
)]
pub async fn status(State(state): State<AppState>, _caller: Caller) -> Result<Json<Data<AdblockStatus>>, ApiError> {
    let Some(adblock) = state.fleet.adblock() else {
        return Ok(Data::of(AdblockStatus {
            active: false,
            lists: Vec::new(),
            compile_ms: 0,
            reloads: 0,
            blocked_requests: 0,
            browser_rules: 0,
            left_out_rules: 0,
            indexed_ahead: false,
            index_error: None,
        }));
    };
    let engine = adblock.engine();
    let lists = engine
        .lists()
        .iter()
        .map(|list| FilterListItem {
            path: list.path.display().to_string(),
            title: list.title.clone(),
            modified: list
                .modified
                .map(|time| DateTime::<Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            rules: list.rules,
            skipped: list.skipped,
        })
        .collect();
    Ok(Data::of(AdblockStatus {
        active: true,
        lists,
        compile_ms: u64::try_from(engine.compile_time().as_millis()).unwrap_or(u64::MAX),
        reloads: adblock.reloads(),
        blocked_requests: adblock.blocked(),
        browser_rules: engine.browser_rules().0,
        left_out_rules: engine.browser_rules().1,
        indexed_ahead: adblock.is_indexed(),
        index_error: adblock.index_failure(),
    }))
}

//! `GET /live/{session_id}?token=…`: the target of `live_view_url`.
//!
//! Live view (screencast and input forwarding) is not built yet. Rather than
//! pretend, the page says so and shows the session's state; the token is
//! checked exactly as it will be for the real viewer.

use anchorage_core::SessionId;
use axum::extract::{Path, RawQuery, State};
use axum::response::{Html, IntoResponse, Response};

use super::extract::QueryMap;
use crate::error::ApiError;
use crate::state::AppState;

/// The live view page.
pub async fn page(State(state): State<AppState>, Path(raw_id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let Ok(session_id) = raw_id.parse::<SessionId>() else {
        return ApiError::session_not_found().into_response();
    };
    let query = QueryMap::parse(raw.as_deref());
    if !query
        .get("token")
        .is_some_and(|token| state.tokens.verify(session_id, token))
    {
        return ApiError::Unauthorized.into_response();
    }
    let running = state.fleet.live_session_any_team(session_id).is_some();
    let status = if running { "running" } else { "ended" };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>anchorage live view</title></head>\
         <body style=\"font-family: sans-serif; margin: 3em\"><h1>Session {session_id}</h1>\
         <p>Status: <strong>{status}</strong>.</p>\
         <p>Live view is not available in this version of anchorage yet. Connect to the session with its \
         <code>cdp_url</code> to drive and watch it.</p></body></html>"
    ))
    .into_response()
}

//! `POST /v1/events/{event_name}` and `POST /v1/events/{event_name}/wait`:
//! signal a team's named event, and wait for it (see [`crate::events`]).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;

use super::extract::JsonBody;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{Data, EventData, Success};

/// How long a wait lasts when the body does not say.
const DEFAULT_WAIT_MS: u64 = 60_000;
/// The longest wait.
const MAX_WAIT_MS: u64 = 600_000;

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "event_name must be 1 to 256 characters, without control characters".to_owned(),
        ));
    }
    Ok(())
}

/// `POST /v1/events/{event_name}`.
#[utoipa::path(
    operation_id = "signal_event",
    post,
    path = "/v1/events/{event_name}",
    tag = "events",
    summary = "Signal a named event of the team: every client waiting for it now gets `data`",
    params(("event_name" = String, Path, description = "The event's name")),
    request_body(content = Object, description = "`{\"data\": {…}}`"),
    security(("api_key" = [])),
    responses((status = 200, description = "Signalled", body = Data<Success>))
)]
pub async fn signal(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Data<Success>>, ApiError> {
    check_name(&name)?;
    let Some(data) = body.get("data").filter(|data| data.is_object()).cloned() else {
        return Err(ApiError::BadRequest(
            "data is required: an object for the waiters".to_owned(),
        ));
    };
    state.events.signal(caller.0.team_id, &name, data.clone());
    // Waiters on the other nodes of the database hear it too.
    state.cluster.pass_event(caller.0.team_id, &name, &data).await;
    Ok(Data::of(Success { status: "success" }))
}

/// `POST /v1/events/{event_name}/wait`.
#[utoipa::path(
    operation_id = "wait_for_event",
    post,
    path = "/v1/events/{event_name}/wait",
    tag = "events",
    summary = "Wait until the team's named event is signalled (or timeoutMs passes: 504)",
    params(("event_name" = String, Path, description = "The event's name")),
    request_body(content = Object, description = "`{\"timeoutMs\": 60000}` (1 to 600000; default 60000)"),
    security(("api_key" = [])),
    responses((status = 200, description = "The signalled data", body = EventData))
)]
pub async fn wait(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<EventData>, ApiError> {
    check_name(&name)?;
    let timeout_ms = match body.get("timeoutMs") {
        None | Some(Value::Null) => DEFAULT_WAIT_MS,
        Some(value) => value
            .as_u64()
            .filter(|ms| (1..=MAX_WAIT_MS).contains(ms))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "timeoutMs must be a whole number of milliseconds from 1 to {MAX_WAIT_MS}"
                ))
            })?,
    };
    let mut waiter = state.events.wait(caller.0.team_id, &name);
    tokio::select! {
        data = waiter.signalled() => match data {
            Some(data) => Ok(Json(EventData { data })),
            None => Err(ApiError::Unavailable("the server is shutting down".to_owned())),
        },
        () = tokio::time::sleep(Duration::from_millis(timeout_ms)) => Err(ApiError::Timeout(format!(
            "event {name:?} was not signalled within {timeout_ms} ms"
        ))),
        () = state.fleet.shutting_down() => Err(ApiError::Unavailable("the server is shutting down".to_owned())),
    }
}

//! `POST /v1/tools/execute-code`: a snippet of the caller's code run beside
//! one of its running sessions; and the run itself, shared with code tasks
//! (`tasks.rs`): an execution recorded, run in the node's sandbox
//! (`crate::code`), and recorded as it ended.
//!
//! A run is carried by a task of its own, so a caller that hangs up does
//! not stop it half way: it finishes (or times out) and is recorded.

use std::sync::Arc;

use anchorage_core::{ExecutionStatus, SessionId, TeamId};
use anchorage_store::ExecutionRecord;
use axum::extract::{RawQuery, State};
use axum::Json;

use super::actions::running;
use super::extract::{decode_body, JsonBody, QueryMap};
use crate::auth::Caller;
use crate::code::{finished, Job, RunKind};
use crate::error::ApiError;
use crate::fleet::LiveSession;
use crate::state::AppState;
use crate::wire::{ExecuteCodeAnswer, ExecuteCodeBody};

/// What a run needs besides its session.
pub(super) struct Work {
    /// Snippet or task.
    pub kind: RunKind,
    /// The code, decoded.
    pub code: String,
    /// `ANCHOR_*` inputs.
    pub inputs: Vec<(String, String)>,
}

/// Runs `work` beside `session` (a live session of this node) as the
/// recorded `execution` (stored as `running` by the caller), in a task of its own; resolves to the execution
/// as it ended. `slot` is the run's place, taken by the caller.
pub(super) fn spawn_run(
    state: &AppState,
    slot: crate::code::RunSlot,
    session: Arc<LiveSession>,
    execution: ExecutionRecord,
    work: Work,
) -> tokio::task::JoinHandle<ExecutionRecord> {
    let state = state.clone();
    tokio::spawn(async move {
        let api_key = state.tokens.run_key(execution.id);
        let job = Job {
            kind: work.kind,
            code: work.code,
            session: Some((session.id, state.cdp_url_with_key(session.id, &api_key))),
            api_key,
            inputs: work.inputs,
        };
        let ending = Arc::clone(&session);
        let cancelled = async move {
            ending.ending().await;
            "the session ended before the code finished".to_owned()
        };
        let (end, elapsed) = state.code.run(&slot, &job, &state.public_url, cancelled).await;
        drop(slot);
        let execution = finished(execution, &end, elapsed);
        record_end(&state, &execution).await;
        execution
    })
}

/// Stores how a run ended, trying a few times: a run that finished must not
/// stay `running` because the database blinked.
pub(super) async fn record_end(state: &AppState, execution: &ExecutionRecord) {
    for attempt in 0..5_u32 {
        match state.store.update_execution(execution).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, execution = %execution.id, attempt, "could not record how a run ended");
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt + 1))).await;
            }
        }
    }
}

/// What the caller is told when a run's task itself failed (a panic).
pub(super) fn lost(mut execution: ExecutionRecord, error: &tokio::task::JoinError) -> ExecutionRecord {
    tracing::error!(%error, execution = %execution.id, "a run's task failed");
    execution.status = ExecutionStatus::Failure;
    execution.error_message = Some("the run failed inside the server; see its log".to_owned());
    execution
}

/// A new execution of `team_id`, `running` on this node.
pub(super) fn execution_for(
    state: &AppState,
    team_id: TeamId,
    session_id: Option<SessionId>,
    task: Option<(anchorage_core::TaskId, anchorage_core::TaskVersionId, String)>,
) -> ExecutionRecord {
    crate::code::new_execution(team_id, state.node, session_id, task)
}

fn expected(path: &str) -> String {
    match path {
        "code" => "code must be a string: the body of an async function".to_owned(),
        other => format!("{other} has the wrong type"),
    }
}

/// The words of a finished run's `message`.
pub(super) fn message_of(status: ExecutionStatus) -> &'static str {
    match status {
        ExecutionStatus::Success => "the code ran and returned",
        ExecutionStatus::Failure => "the code failed",
        ExecutionStatus::Timeout => "the code ran out of time",
        ExecutionStatus::Cancelled => "the code was stopped before it finished",
        ExecutionStatus::Queued | ExecutionStatus::Running => "the code runs",
    }
}

/// `POST /v1/tools/execute-code?sessionId=…`: runs a snippet beside a running
/// session and answers how it went (a snippet that throws is a `200` with
/// `success: false`, as upstream answers).
#[utoipa::path(
    operation_id = "execute_code",
    post,
    path = "/v1/tools/execute-code",
    tag = "tools",
    summary = "Run a TypeScript snippet beside a running session (page, browser, context, sessionId and anchorClient are given)",
    params(("sessionId" = String, Query, description = "The running session the snippet drives")),
    request_body = ExecuteCodeBody,
    security(("api_key" = [])),
    responses((status = 200, description = "The snippet finished (or failed, or ran out of time)", body = ExecuteCodeAnswer))
)]
pub async fn execute_code(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Json<ExecuteCodeAnswer>, ApiError> {
    let query = QueryMap::parse(query.as_deref());
    let session_id: SessionId = match query.get("sessionId") {
        None | Some("") => {
            return Err(ApiError::BadRequest(
                "sessionId is required: the running session the code drives".to_owned(),
            ))
        }
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("sessionId {text:?} is not a session id (a UUID)")))?,
    };
    let body: ExecuteCodeBody = decode_body(&body, expected)?;
    let code = match body.code {
        Some(code) if !code.trim().is_empty() => code,
        _ => {
            return Err(ApiError::BadRequest(
                "code is required: the body of an async function, as text".to_owned(),
            ))
        }
    };
    let session = running(&state, &caller, session_id).await?;
    let slot = state.code.admit(caller.0.team_id).await?;
    let execution = execution_for(&state, caller.0.team_id, Some(session_id), None);
    state.store.insert_execution(&execution).await?;
    let work = Work {
        kind: RunKind::Snippet,
        code,
        inputs: Vec::new(),
    };
    let pending = execution.clone();
    let execution = match spawn_run(&state, slot, session, execution, work).await {
        Ok(execution) => execution,
        Err(error) => lost(pending, &error),
    };
    Ok(Json(ExecuteCodeAnswer {
        success: execution.status == ExecutionStatus::Success,
        message: message_of(execution.status).to_owned(),
        output: execution.output,
        error: execution.error_message,
        execution_result_id: execution.id.to_string(),
    }))
}

//! `/v1/batch-sessions…`: create, list, inspect, cancel, delete and retry
//! batches, and the Server-Sent Events stream of a batch's changes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use anchorage_core::{failure_summary, BatchId, BatchStatus, TeamId, Timestamp};
use anchorage_store::{BatchFilter, BatchItem, BatchRecord, BatchSummary, RequestRecord, RetryOutcome};
use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast::error::RecvError;

use super::extract::{decode_body, IdPath, JsonBody, QueryMap};
use super::sessions::{batch_item, check_named_resources, validate_start};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::fleet::BatchEnd;
use crate::state::AppState;
use crate::wire::{BatchBody, CancelBody, RetryBody};
use crate::wire::{
    BatchCancelled, BatchCreated, BatchDeleted, BatchGone, BatchItem as WireItem, BatchList, BatchProgress,
    BatchRetried, BatchRow, BatchStatusBody, Data, DeletionError, Pagination,
};

type ApiResult<T> = Result<Json<Data<T>>, ApiError>;

fn batch_not_found() -> ApiError {
    ApiError::NotFound("Batch not found".to_owned())
}

/// `POST /v1/batch-sessions`: accept a batch and answer at once.
#[utoipa::path(
    operation_id = "create_batch_session",
    post,
    path = "/v1/batch-sessions",
    tag = "batches",
    summary = "Ask for a batch of sessions; provisioning runs in the background",
    request_body = BatchBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Accepted", body = Data<BatchCreated>)   )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<BatchCreated> {
    let max_batch = state.max_batch;
    let count_message = || format!("count must be an integer between 1 and {max_batch}");
    let body: BatchBody = decode_body(&body, |path| match path {
        "configuration" => "configuration must be an object (a session start body)".to_owned(),
        "metadata" => "metadata must be an object".to_owned(),
        _ => count_message(),
    })?;
    // Whole numbers from 1 to the cap; `2.5`, `"3"` and `null` are refused, not coerced.
    let count = body
        .count
        .filter(|count| (1..=max_batch as u64).contains(count))
        .ok_or_else(|| ApiError::BadRequest(count_message()))? as usize;
    let (configuration, options) = match body.configuration {
        None | Some(Value::Null) => (Value::Object(Map::new()), anchorage_core::SessionOptions::default()),
        Some(configuration @ Value::Object(_)) => {
            let options = validate_start(&state, &configuration)
                .map_err(|message| ApiError::BadRequest(format!("configuration.{message}")))?;
            check_named_resources(&state, &caller, &options, "configuration.").await?;
            let mut configuration = configuration;
            anchorage_core::redact_configuration(&mut configuration);
            (configuration, options)
        }
        Some(_) => {
            return Err(ApiError::BadRequest(
                "configuration must be an object (a session start body)".to_owned(),
            ))
        }
    };
    let metadata = body.metadata.map(Value::Object);
    let created_at = Timestamp::now();
    let batch = BatchRecord {
        id: BatchId::new_random(),
        team_id: caller.0.team_id,
        api_key_id: Some(caller.0.key_id),
        total_requests: count as i64,
        configuration: configuration.clone(),
        metadata,
        created_at,
    };
    let items = (0..count)
        .map(|index| RequestRecord {
            batch_id: Some(batch.id),
            item_index: index as i64,
            ..RequestRecord::pending(
                caller.0.team_id,
                Some((caller.0.key_id, caller.0.key_name.clone())),
                configuration.clone(),
                options.clone(),
                created_at,
            )
        })
        .collect();
    state.fleet.submit_batch(&batch, items).await?;
    Ok(Data::of(BatchCreated {
        batch_id: batch.id,
        status: BatchStatus::Pending.as_str(),
        total_requests: batch.total_requests,
        created_at: created_at.to_string(),
    }))
}

/// The list row of a batch.
fn batch_row(batch: &BatchSummary) -> BatchRow {
    BatchRow {
        batch_id: batch.id,
        status: batch.status().as_str(),
        total_requests: batch.total_requests,
        completed_requests: batch.counts.completed,
        failed_requests: batch.counts.failed,
        created_at: batch.created_at.to_string(),
        actual_completion_time: batch.actual_completion_time().map(|at| at.to_string()),
    }
}

/// The full status of a batch, without its items.
fn batch_status(batch: &BatchSummary) -> BatchStatusBody {
    let cancelled = batch.cancelled_at.is_some();
    BatchStatusBody {
        batch_id: batch.id,
        status: batch.status().as_str(),
        total_requests: batch.total_requests,
        completed_requests: batch.counts.completed,
        failed_requests: batch.counts.failed,
        processing_requests: batch.counts.processing,
        pending_requests: batch.counts.pending,
        cancelled_requests: batch.counts.cancelled,
        created_at: batch.created_at.to_string(),
        actual_completion_time: batch.actual_completion_time().map(|at| at.to_string()),
        error: failure_summary(&batch.counts, batch.first_error.as_deref()),
        metadata: batch.metadata.clone(),
        progress: BatchProgress {
            percentage: batch.counts.percentage(),
            current_phase: batch.counts.phase(cancelled).as_str(),
        },
        sessions: None,
    }
}

fn batch_items(state: &AppState, items: &[BatchItem]) -> Vec<WireItem> {
    items
        .iter()
        .map(|item| batch_item(state, &item.request, item.session_status))
        .collect()
}

async fn owned_batch(state: &AppState, team_id: TeamId, batch_id: BatchId) -> Result<BatchSummary, ApiError> {
    state.store.batch(team_id, batch_id).await?.ok_or_else(batch_not_found)
}

/// `GET /v1/batch-sessions`: newest first, with filters and paging.
#[utoipa::path(
    operation_id = "list_batch_sessions",
    get,
    path = "/v1/batch-sessions",
    tag = "batches",
    summary = "The team's batches, newest first",
    params(("status" = Option<String>, Query, description = "pending, processing, completed, failed or cancelled"), ("page" = Option<i64>, Query, description = "Page, from 1"), ("limit" = Option<i64>, Query, description = "Rows per page, 1 to 100 (default 20)"), ("created_after" = Option<String>, Query, description = "RFC 3339 time"), ("created_before" = Option<String>, Query, description = "RFC 3339 time")),
    security(("api_key" = [])),
    responses((status = 200, description = "One page", body = Data<BatchList>) )
)]
pub async fn list(State(state): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> ApiResult<BatchList> {
    let query = QueryMap::parse(raw.as_deref());
    let status = query
        .get("status")
        .map(|text| {
            text.parse::<BatchStatus>().map_err(|_| {
                ApiError::BadRequest(
                    "status must be one of pending, processing, completed, failed, cancelled".to_owned(),
                )
            })
        })
        .transpose()?;
    let filter = BatchFilter {
        team_id: caller.0.team_id,
        status,
        created_after: query.timestamp("created_after")?,
        created_before: query.timestamp("created_before")?,
        page: query.integer("page", 1, i64::from(i32::MAX))?.unwrap_or(1),
        limit: query.integer("limit", 1, 100)?.unwrap_or(20),
    };
    let (batches, total) = state.store.list_batches(&filter).await?;
    let total_pages = (total + filter.limit - 1) / filter.limit;
    Ok(Data::of(BatchList {
        batches: batches.iter().map(batch_row).collect(),
        pagination: Pagination {
            current_page: filter.page,
            total_pages,
            total_records: total,
            has_next: filter.page < total_pages,
            has_prev: filter.page > 1,
        },
    }))
}

/// `GET /v1/batch-sessions/{batch_id}`: the full status with every item.
#[utoipa::path(
    operation_id = "get_batch_session",
    get,
    path = "/v1/batch-sessions/{batch_id}",
    tag = "batches",
    summary = "A batch's full status with every item",
    params(("batch_id" = String, Path, description = "The batch's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "The batch", body = Data<BatchStatusBody>) )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(batch_id): IdPath<BatchId>,
) -> ApiResult<BatchStatusBody> {
    let batch = owned_batch(&state, caller.0.team_id, batch_id).await?;
    let items = state.store.batch_items(batch_id).await?;
    Ok(Data::of(BatchStatusBody {
        sessions: Some(batch_items(&state, &items)),
        ..batch_status(&batch)
    }))
}

fn conflict_message(status: BatchStatus, action: &str) -> String {
    format!("the batch is already {status}; only a pending or processing batch can be {action}")
}

/// `PATCH /v1/batch-sessions/{batch_id}` with `{"status": "cancelled"}`.
#[utoipa::path(
    operation_id = "update_batch_session",
    patch,
    path = "/v1/batch-sessions/{batch_id}",
    tag = "batches",
    summary = "Cancel a pending or processing batch",
    params(("batch_id" = String, Path, description = "The batch's id (a UUID)")),
    request_body = CancelBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Cancelled: its running sessions ended, nothing of it starts later", body = Data<BatchCancelled>)   )
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(batch_id): IdPath<BatchId>,
    JsonBody(body): JsonBody,
) -> ApiResult<BatchCancelled> {
    let refused = "status must be \"cancelled\": cancelling is the only change a batch accepts";
    let body: CancelBody = decode_body(&body, |_| refused.to_owned())?;
    match body.status.as_deref() {
        Some("cancelled") => {}
        None => {
            return Err(ApiError::BadRequest(
                "status is required: send {\"status\": \"cancelled\"}".to_owned(),
            ))
        }
        Some(_) => return Err(ApiError::BadRequest(refused.to_owned())),
    }
    match state.fleet.cancel_batch(caller.0.team_id, batch_id).await? {
        BatchEnd::NotFound => Err(batch_not_found()),
        BatchEnd::Conflict(status) => Err(ApiError::Conflict(conflict_message(status, "cancelled"))),
        BatchEnd::Done(ended) => Ok(Data::of(BatchCancelled {
            batch_id,
            status: BatchStatus::Cancelled.as_str(),
            cancelled_sessions: ended.ended,
            message: format!(
                "batch cancelled: {} running session(s) ended; nothing else of it will start",
                ended.ended
            ),
        })),
    }
}

/// `DELETE /v1/batch-sessions/{batch_id}`: end its sessions, remove it.
#[utoipa::path(
    operation_id = "delete_batch_session",
    delete,
    path = "/v1/batch-sessions/{batch_id}",
    tag = "batches",
    summary = "End every session of a batch and remove it",
    params(("batch_id" = String, Path, description = "The batch's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "Deleted", body = Data<BatchDeleted>)  )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(batch_id): IdPath<BatchId>,
) -> ApiResult<BatchDeleted> {
    match state.fleet.delete_batch(caller.0.team_id, batch_id).await? {
        BatchEnd::NotFound => Err(batch_not_found()),
        BatchEnd::Conflict(status) => Err(ApiError::Conflict(conflict_message(status, "deleted"))),
        BatchEnd::Done(ended) => {
            let errors: Vec<DeletionError> = ended
                .errors
                .iter()
                .map(|(session_id, error)| DeletionError {
                    session_id: *session_id,
                    error: error.clone(),
                })
                .collect();
            Ok(Data::of(BatchDeleted {
                batch_id,
                deleted_sessions: ended.ended,
                failed_deletions: errors.len(),
                errors: (!errors.is_empty()).then_some(errors),
                message: format!("batch deleted: {} running session(s) ended", ended.ended),
            }))
        }
    }
}

/// `POST /v1/batch-sessions/{batch_id}/retry`.
#[utoipa::path(
    operation_id = "retry_batch_session",
    post,
    path = "/v1/batch-sessions/{batch_id}/retry",
    tag = "batches",
    summary = "Provision a batch's failed items again",
    params(("batch_id" = String, Path, description = "The batch's id (a UUID)")),
    request_body = RetryBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Queued again", body = Data<BatchRetried>)   )
)]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(batch_id): IdPath<BatchId>,
    JsonBody(body): JsonBody,
) -> ApiResult<BatchRetried> {
    let attempts_message = "max_retries must be an integer between 1 and 3";
    let body: RetryBody = decode_body(&body, |path| match path {
        "retry_failed_only" => "retry_failed_only must be true or false".to_owned(),
        _ => attempts_message.to_owned(),
    })?;
    let failed_only = body.retry_failed_only.unwrap_or(true);
    let attempts = match body.max_retries {
        None => 1,
        Some(value @ 1..=3) => value,
        Some(_) => return Err(ApiError::BadRequest(attempts_message.to_owned())),
    };
    match state
        .fleet
        .retry_batch(caller.0.team_id, batch_id, failed_only, attempts)
        .await?
    {
        RetryOutcome::NotFound => Err(batch_not_found()),
        RetryOutcome::Conflict(_) => Err(ApiError::Conflict(
            "the batch is cancelled; a cancelled batch cannot be retried".to_owned(),
        )),
        RetryOutcome::Retried { retried, .. } => {
            let batch = owned_batch(&state, caller.0.team_id, batch_id).await?;
            let message = if retried == 0 {
                "nothing to retry: no item of the batch has failed".to_owned()
            } else {
                format!("{retried} item(s) queued again, with up to {attempts} attempt(s) each")
            };
            Ok(Data::of(BatchRetried {
                batch_id,
                status: batch.status().as_str(),
                retried_sessions: retried,
                message,
            }))
        }
    }
}

/// Where an events stream is.
enum Watch {
    /// Send the whole batch first.
    Start,
    /// Send what changed.
    Follow,
    /// The stream is over.
    Over,
}

struct Watcher {
    state: AppState,
    team_id: TeamId,
    batch_id: BatchId,
    changes: tokio::sync::broadcast::Receiver<BatchId>,
    sent_items: HashMap<i64, WireItem>,
    sent_batch: Option<BatchStatusBody>,
    watch: Watch,
}

/// Changes arriving together are sent together, at most this often.
const EVENTS_COALESCE: Duration = Duration::from_millis(100);

/// How often a stream looks at the database for changes made by other
/// nodes (this node's own changes wake it at once).
const OTHER_NODES_LOOK: Duration = Duration::from_secs(1);

impl Watcher {
    /// Waits until this batch changed (or the server stops); `false` when the
    /// stream must end.
    async fn changed(&mut self) -> bool {
        loop {
            let next = tokio::select! {
                next = self.changes.recv() => next,
                () = self.state.fleet.shutting_down() => return false,
                // Other nodes change the batch too (they launch and end its
                // sessions): a look at the database catches what they did.
                () = tokio::time::sleep(OTHER_NODES_LOOK) => break,
            };
            match next {
                Ok(batch_id) if batch_id == self.batch_id => break,
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return false,
            }
        }
        tokio::time::sleep(EVENTS_COALESCE).await;
        while self.changes.try_recv().is_ok() {}
        true
    }

    /// The events that bring a watcher up to date; ends the stream once the
    /// batch is final or gone.
    async fn events(&mut self) -> Vec<Event> {
        let summary = match self.state.store.batch(self.team_id, self.batch_id).await {
            Ok(Some(summary)) => summary,
            Ok(None) => {
                self.watch = Watch::Over;
                return vec![json_event(
                    "deleted",
                    &BatchGone {
                        batch_id: self.batch_id,
                    },
                )];
            }
            Err(error) => {
                tracing::error!(batch_id = %self.batch_id, %error, "events stream cannot read its batch");
                self.watch = Watch::Over;
                return vec![Event::default()
                    .event("error")
                    .data(json!({"message": "the server failed to read the batch"}).to_string())];
            }
        };
        let items = self.state.store.batch_items(self.batch_id).await.unwrap_or_default();
        let mut events = Vec::new();
        for item in &items {
            let body = batch_item(&self.state, &item.request, item.session_status);
            if self.sent_items.get(&item.request.item_index) != Some(&body) {
                events.push(json_event("item", &body));
                self.sent_items.insert(item.request.item_index, body);
            }
        }
        let batch = batch_status(&summary);
        if self.sent_batch.as_ref() != Some(&batch) {
            events.push(json_event("batch", &batch));
            self.sent_batch = Some(batch);
        }
        self.watch = if summary.status().is_final() {
            Watch::Over
        } else {
            Watch::Follow
        };
        events
    }
}

/// An event whose data is one JSON value.
fn json_event(name: &str, body: &impl serde::Serialize) -> Event {
    let data = serde_json::to_string(body).unwrap_or_else(|_| "null".to_owned());
    Event::default().event(name).data(data)
}

/// `GET /v1/batch-sessions/{batch_id}/events`: Server-Sent Events of item and
/// batch changes (`item`, `batch`; `deleted` if the batch is removed), from a
/// full snapshot on, ending once the batch is final.
#[utoipa::path(
    operation_id = "batch_session_events",
    get,
    path = "/v1/batch-sessions/{batch_id}/events",
    tag = "batches",
    summary = "Server-Sent Events of a batch's changes",
    params(("batch_id" = String, Path, description = "The batch's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "text/event-stream: `item` events (a BatchItem), `batch` events (a BatchStatusBody without sessions), `deleted` (a BatchGone); a full snapshot first, ending once the batch is final", content_type = "text/event-stream", body = String) )
)]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(batch_id): IdPath<BatchId>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    owned_batch(&state, caller.0.team_id, batch_id).await?;
    // Subscribed before the first snapshot, so no change falls in between.
    let changes = state.fleet.batch_changes();
    let watcher = Watcher {
        state,
        team_id: caller.0.team_id,
        batch_id,
        changes,
        sent_items: HashMap::new(),
        sent_batch: None,
        watch: Watch::Start,
    };
    let stream = stream::unfold(watcher, |mut watcher| async move {
        match watcher.watch {
            Watch::Over => None,
            Watch::Start => {
                let events = watcher.events().await;
                Some((events, watcher))
            }
            Watch::Follow => {
                if !watcher.changed().await {
                    return None;
                }
                let events = watcher.events().await;
                Some((events, watcher))
            }
        }
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok)));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

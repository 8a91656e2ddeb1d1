//! `/v1/webhooks…`: a team's webhooks (at most [`MAX_WEBHOOKS`]), their
//! secrets (shown by create and rotate only), test events and the list of
//! delivery attempts. Delivery itself is [`crate::webhooks`].

use anchorage_core::webhook::{check_event_type, WebhookEvent, EVENT_TYPES};
use anchorage_core::DeliveryStatus;
use anchorage_core::Timestamp;
use anchorage_store::{DeliveryAttempt, DeliveryFilter, WebhookChange, WebhookRecord};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{Map, Value};

use super::extract::{JsonBody, QueryMap};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::{check_target, new_secret, OLD_SECRET_VALIDITY};
use crate::wire::{
    DeliveryList, DeliveryRow, OffsetPagination, OkAnswer, WebhookItem, WebhookList, WebhookTestAnswer,
    WebhookWithSecret,
};

/// Most webhooks a team may have.
pub const MAX_WEBHOOKS: i64 = 5;
/// Longest description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 256;

fn not_found() -> ApiError {
    ApiError::NotFound("Webhook not found".to_owned())
}

fn item(webhook: &WebhookRecord) -> WebhookItem {
    WebhookItem {
        id: webhook.id.clone(),
        project_id: webhook.team_id.to_string(),
        url: webhook.url.clone(),
        description: webhook.description.clone().unwrap_or_default(),
        subscribed_events: webhook.events.clone(),
        enabled: webhook.enabled,
        created_at: webhook.created_at.to_string(),
        updated_at: webhook.updated_at.to_string(),
    }
}

fn with_secret(webhook: &WebhookRecord) -> WebhookWithSecret {
    WebhookWithSecret {
        webhook: item(webhook),
        secret: webhook.secret.clone(),
    }
}

fn object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(fields) => Ok(fields),
        _ => Err(ApiError::BadRequest("the body must be a JSON object".to_owned())),
    }
}

async fn url_of(state: &AppState, value: &Value) -> Result<String, ApiError> {
    let Some(text) = value.as_str() else {
        return Err(ApiError::BadRequest("url must be a string".to_owned()));
    };
    let url = check_target(text, state.block_private_networks)
        .await
        .map_err(ApiError::BadRequest)?;
    Ok(url.to_string())
}

fn description_of(value: &Value) -> Result<Option<String>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) if text.chars().count() <= MAX_DESCRIPTION_CHARS => {
            Ok(Some(text.clone()).filter(|text| !text.is_empty()))
        }
        _ => Err(ApiError::BadRequest(format!(
            "description must be a string of at most {MAX_DESCRIPTION_CHARS} characters"
        ))),
    }
}

fn events_of(value: &Value) -> Result<Vec<String>, ApiError> {
    let Some(items) = value.as_array().filter(|items| !items.is_empty()) else {
        return Err(ApiError::BadRequest(
            "subscribed_events must be a non-empty array of event types".to_owned(),
        ));
    };
    let mut events: Vec<String> = Vec::new();
    for item in items {
        let Some(name) = item.as_str() else {
            return Err(ApiError::BadRequest("subscribed_events must hold strings".to_owned()));
        };
        let name =
            check_event_type(name).map_err(|error| ApiError::BadRequest(format!("subscribed_events: {error}")))?;
        if !events.iter().any(|known| known == name) {
            events.push(name.to_owned());
        }
    }
    Ok(events)
}

fn refuse_unknown_fields(fields: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match fields.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(ApiError::BadRequest(format!(
            "{key} is not a webhook field; the fields are {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// `POST /v1/webhooks`.
#[utoipa::path(
    operation_id = "create_webhook",
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    summary = "Register a URL for the team's events; the answer carries the signing secret, shown this once",
    request_body(content = Object, description = "`{\"url\", \"subscribed_events\": [\"batch.completed\", …], \"description\"}`"),
    security(("api_key" = [])),
    responses((status = 201, description = "Made", body = WebhookWithSecret))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<WebhookWithSecret>), ApiError> {
    let fields = object(body)?;
    refuse_unknown_fields(&fields, &["url", "description", "subscribed_events"])?;
    let url = url_of(
        &state,
        fields
            .get("url")
            .ok_or_else(|| ApiError::BadRequest("url is required".to_owned()))?,
    )
    .await?;
    let events = events_of(fields.get("subscribed_events").unwrap_or(&Value::Null))?;
    let description = description_of(fields.get("description").unwrap_or(&Value::Null))?;
    let now = Timestamp::now();
    let webhook = WebhookRecord {
        id: format!("wh_{}", uuid::Uuid::new_v4().simple()),
        team_id: caller.0.team_id,
        url,
        description,
        events,
        enabled: true,
        secret: new_secret(),
        previous_secret: None,
        created_at: now,
        updated_at: now,
    };
    if !state.store.create_webhook(&webhook, MAX_WEBHOOKS).await? {
        return Err(ApiError::Conflict(format!(
            "your team has {MAX_WEBHOOKS} webhooks, the most it may have: delete one first"
        )));
    }
    Ok((StatusCode::CREATED, Json(with_secret(&webhook))))
}

/// `GET /v1/webhooks`.
#[utoipa::path(
    operation_id = "list_webhooks",
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    summary = "The team's webhooks, oldest first (never their secrets)",
    security(("api_key" = [])),
    responses((status = 200, description = "Every webhook", body = WebhookList))
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<WebhookList>, ApiError> {
    let webhooks = state.store.list_webhooks(caller.0.team_id).await?;
    Ok(Json(WebhookList {
        webhooks: webhooks.iter().map(item).collect(),
    }))
}

/// `GET /v1/webhooks/{id}`.
#[utoipa::path(
    operation_id = "get_webhook",
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    summary = "One webhook (never its secret)",
    params(("id" = String, Path, description = "The webhook's id")),
    security(("api_key" = [])),
    responses((status = 200, description = "The webhook", body = WebhookItem))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookItem>, ApiError> {
    let webhook = state
        .store
        .webhook(caller.0.team_id, &id, false)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(item(&webhook)))
}

/// `PATCH /v1/webhooks/{id}`.
#[utoipa::path(
    operation_id = "update_webhook",
    patch,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    summary = "Change a webhook's url, description, subscribed_events or enabled; only the fields given",
    params(("id" = String, Path, description = "The webhook's id")),
    request_body(content = Object, description = "Any of `url`, `description`, `subscribed_events`, `enabled`"),
    security(("api_key" = [])),
    responses((status = 200, description = "The webhook as it is now", body = WebhookItem))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<WebhookItem>, ApiError> {
    let fields = object(body)?;
    refuse_unknown_fields(&fields, &["url", "description", "subscribed_events", "enabled"])?;
    let mut change = WebhookChange::default();
    if let Some(value) = fields.get("url") {
        change.url = Some(url_of(&state, value).await?);
    }
    if let Some(value) = fields.get("description") {
        change.description = Some(description_of(value)?);
    }
    if let Some(value) = fields.get("subscribed_events") {
        change.events = Some(events_of(value)?);
    }
    if let Some(value) = fields.get("enabled") {
        change.enabled = Some(
            value
                .as_bool()
                .ok_or_else(|| ApiError::BadRequest("enabled must be true or false".to_owned()))?,
        );
    }
    let webhook = state
        .store
        .update_webhook(caller.0.team_id, &id, &change, Timestamp::now())
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(item(&webhook)))
}

/// `DELETE /v1/webhooks/{id}`.
#[utoipa::path(
    operation_id = "delete_webhook",
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    summary = "Delete a webhook: no event goes to it any more; its delivery list stays readable",
    params(("id" = String, Path, description = "The webhook's id")),
    security(("api_key" = [])),
    responses((status = 200, description = "Deleted", body = OkAnswer))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OkAnswer>, ApiError> {
    if !state
        .store
        .delete_webhook(caller.0.team_id, &id, Timestamp::now())
        .await?
    {
        return Err(not_found());
    }
    Ok(Json(OkAnswer { ok: true }))
}

/// `POST /v1/webhooks/{id}/rotate-secret`.
#[utoipa::path(
    operation_id = "rotate_webhook_secret",
    post,
    path = "/v1/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    summary = "A new signing secret, shown this once; the old one keeps signing (a second v1) for 24 hours",
    params(("id" = String, Path, description = "The webhook's id")),
    security(("api_key" = [])),
    responses((status = 200, description = "The webhook with its new secret", body = WebhookWithSecret))
)]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookWithSecret>, ApiError> {
    let now = Timestamp::now();
    let old_valid_until = Timestamp::from_millis(now.as_millis() + OLD_SECRET_VALIDITY.as_millis() as i64);
    let webhook = state
        .store
        .rotate_webhook_secret(caller.0.team_id, &id, &new_secret(), old_valid_until, now)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(with_secret(&webhook)))
}

/// `POST /v1/webhooks/{id}/test`.
#[utoipa::path(
    operation_id = "send_webhook_test_event",
    post,
    path = "/v1/webhooks/{id}/test",
    tag = "webhooks",
    summary = "Send a synthetic event of a type to this webhook, signed and retried like any other",
    params(("id" = String, Path, description = "The webhook's id")),
    request_body(content = Object, description = "`{\"event_type\": \"session.completed\"}`"),
    security(("api_key" = [])),
    responses((status = 202, description = "Recorded; it is being delivered", body = WebhookTestAnswer))
)]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<WebhookTestAnswer>), ApiError> {
    let fields = object(body)?;
    refuse_unknown_fields(&fields, &["event_type"])?;
    let Some(name) = fields.get("event_type").and_then(Value::as_str) else {
        return Err(ApiError::BadRequest(
            "event_type is required: the type of the test event".to_owned(),
        ));
    };
    let event_type = check_event_type(name).map_err(|error| ApiError::BadRequest(format!("event_type: {error}")))?;
    let event = WebhookEvent::test(event_type, caller.0.team_id, Timestamp::now());
    if !state.store.record_test_event(&id, &event).await? {
        return Err(not_found());
    }
    state.deliverer.wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(WebhookTestAnswer {
            external_event_id: event.id,
            event_type: event_type.to_owned(),
        }),
    ))
}

fn row(attempt: DeliveryAttempt) -> DeliveryRow {
    DeliveryRow {
        id: attempt.id.to_string(),
        external_event_id: attempt.event_id,
        delivery_id: attempt.delivery_id.to_string(),
        event_type: attempt.event_type,
        status: attempt.status.as_str().to_owned(),
        attempt: attempt.attempt,
        response_status: attempt.response_status,
        error_message: attempt.error_message,
        scheduled_at: Some(attempt.scheduled_at.to_string()),
        completed_at: attempt.completed_at.map(|at| at.to_string()),
    }
}

/// `GET /v1/webhooks/{id}/events`.
#[utoipa::path(
    operation_id = "list_webhook_events",
    get,
    path = "/v1/webhooks/{id}/events",
    tag = "webhooks",
    summary = "Every delivery attempt of a webhook (deleted ones too), newest first",
    params(
        ("id" = String, Path, description = "The webhook's id"),
        ("limit" = Option<i64>, Query, description = "1 to 100 (default 25)"),
        ("offset" = Option<i64>, Query, description = "Rows to skip"),
        ("status" = Option<String>, Query, description = "pending, in_flight, succeeded, failed or dead"),
        ("event_type" = Option<String>, Query, description = "One event type"),
        ("since" = Option<String>, Query, description = "Scheduled at or after (ISO 8601)"),
        ("until" = Option<String>, Query, description = "Scheduled at or before (ISO 8601)")
    ),
    security(("api_key" = [])),
    responses((status = 200, description = "One page", body = DeliveryList))
)]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DeliveryList>, ApiError> {
    let query = QueryMap::parse(raw.as_deref());
    let status = match query.get("status") {
        None => None,
        Some(text) => Some(text.parse::<DeliveryStatus>().map_err(|_| {
            let names: Vec<&str> = DeliveryStatus::ALL.iter().map(DeliveryStatus::as_str).collect();
            ApiError::BadRequest(format!("status must be one of {}", names.join(", ")))
        })?),
    }
    .map(|status| status.as_str().to_owned());
    let event_type = query.get("event_type").map(str::to_owned);
    if event_type.as_deref().is_some_and(|name| !EVENT_TYPES.contains(&name)) {
        return Err(ApiError::BadRequest(format!(
            "event_type must be one of {}",
            EVENT_TYPES.join(", ")
        )));
    }
    let filter = DeliveryFilter {
        team_id: caller.0.team_id,
        webhook_id: id,
        status,
        event_type,
        since: query.timestamp("since")?,
        until: query.timestamp("until")?,
        limit: query.integer("limit", 1, 100)?.unwrap_or(25),
        offset: query.integer("offset", 0, i64::from(i32::MAX))?.unwrap_or(0),
    };
    if state
        .store
        .webhook(caller.0.team_id, &filter.webhook_id, true)
        .await?
        .is_none()
    {
        return Err(not_found());
    }
    let (attempts, total) = state.store.list_delivery_attempts(&filter).await?;
    Ok(Json(DeliveryList {
        events: attempts.into_iter().map(row).collect(),
        pagination: OffsetPagination {
            limit: filter.limit,
            offset: filter.offset,
            total,
        },
    }))
}

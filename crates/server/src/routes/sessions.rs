//! `/v1/sessions…`: start, inspect, list and end sessions.

use anchorage_core::{RequestId, RequestStatus, SessionId, SessionOptions, SessionStatus, Timestamp};
use anchorage_store::{RequestRecord, SessionFilter, SessionPage, SessionRecord, SessionSort};
use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::Value;

use super::extract::{IdPath, JsonBody, QueryMap};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::fleet::{EndWait, StartOutcome};
use crate::state::AppState;
use crate::wire::StartBody;
use crate::wire::{
    AsyncAccepted, AsyncStatus, BatchItem, Data, HistoryRow, LiveSessionItem, LiveSessions, PageItem, Phase,
    SessionCreated, SessionDetail, SessionHistory, SessionPages, SessionTags, StatusOk,
};

type ApiResult<T> = Result<Json<Data<T>>, ApiError>;

/// Validates a start body, and its `initial_url` against the server's
/// private-network setting; the error names the field.
pub fn validate_start(state: &AppState, configuration: &Value) -> Result<SessionOptions, String> {
    let options = SessionOptions::from_configuration(configuration).map_err(|error| error.0)?;
    if state.block_private_networks
        && options
            .initial_url
            .as_ref()
            .is_some_and(anchorage_core::network::is_private_url)
    {
        return Err(
            "session.initial_url points to a private or loopback address, which this server does not let \
                    sessions reach (ANCHORAGE_BLOCK_PRIVATE_NETWORKS)"
                .to_owned(),
        );
    }
    Ok(options)
}

/// Refuses a start that names a profile, an extension or a certificate its team does not have.
pub(super) async fn check_named_resources(
    state: &AppState,
    caller: &Caller,
    options: &SessionOptions,
    field_prefix: &str,
) -> Result<(), ApiError> {
    for id in &options.extensions {
        if state.files.extension_dir(*id).is_none() || state.store.extension(caller.0.team_id, *id).await?.is_none() {
            return Err(ApiError::BadRequest(format!(
                "{field_prefix}browser.extensions: your team has no extension {id} (upload it with POST /v1/extensions)"
            )));
        }
    }
    if !options.certificates.is_empty() {
        let known = state.store.list_certificates(Some(caller.0.team_id)).await?;
        if let Some(missing) = options
            .certificates
            .iter()
            .find(|name| !known.iter().any(|certificate| &&certificate.name == name))
        {
            return Err(ApiError::BadRequest(format!(
                "{field_prefix}browser.certificates: your team has no certificate named {missing:?} (upload it with POST /v1/certificates)"
            )));
        }
    }
    let Some(profile) = &options.profile else {
        return Ok(());
    };
    if state.files.profiles.as_ref().is_none() {
        return Err(ApiError::BadRequest(format!(
            "{field_prefix}browser.profile: this server keeps no profiles"
        )));
    }
    match state.store.profile(caller.0.team_id, &profile.name).await? {
        // One being saved is waited for when the session launches.
        Some(_) => match state.fleet.profile_readiness(caller.0.team_id, &profile.name).await {
            Ok(_) => Ok(()),
            Err(why) => Err(ApiError::BadRequest(format!("{field_prefix}{why}"))),
        },
        None => Err(ApiError::BadRequest(format!(
            "{field_prefix}browser.profile.name: your team has no profile named {:?} (make it with POST /v1/profiles)",
            profile.name
        ))),
    }
}

/// Validates a start body, checks the team's quota, and makes the request row.
pub(super) async fn new_request(
    state: &AppState,
    caller: &Caller,
    configuration: Value,
) -> Result<RequestRecord, ApiError> {
    let options = validate_start(state, &configuration).map_err(ApiError::BadRequest)?;
    check_named_resources(state, caller, &options, "").await?;
    // The options keep the proxy's password; the body as kept and shown does not.
    let mut configuration = configuration;
    anchorage_core::redact_configuration(&mut configuration);
    if state.fleet.team_over_quota(caller.0.team_id).await? {
        return Err(ApiError::TooManyRequests {
            message:
                "your team has as many sessions running and queued as its quota allows; end one or try again later"
                    .to_owned(),
            retry_after_seconds: 5,
        });
    }
    Ok(RequestRecord::pending(
        caller.0.team_id,
        Some((caller.0.key_id, caller.0.key_name.clone())),
        configuration,
        options,
        Timestamp::now(),
    ))
}

/// `POST /v1/sessions`: start a session and answer once it is connectable.
#[utoipa::path(
    operation_id = "create_session",
    post,
    path = "/v1/sessions",
    tag = "sessions",
    summary = "Start a session and wait until it is connectable",
    request_body = StartBody,
    security(("api_key" = [])),
    responses((status = 200, description = "The session runs", body = Data<SessionCreated>)     )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<SessionCreated> {
    let request = new_request(&state, &caller, body).await?;
    // A client that hangs up from here on drops the ticket, which withdraws
    // the start (see `StartTicket`).
    let ticket = state.fleet.submit_waiting(request).await?;
    let request_id = ticket.request_id();
    match ticket.outcome().await {
        Some(StartOutcome::Started(session_id)) => Ok(Data::of(SessionCreated {
            id: session_id,
            cdp_url: state.cdp_url(session_id),
            live_view_url: state.live_view_url(session_id),
        })),
        Some(StartOutcome::Failed(reason)) => Err(ApiError::internal(format!(
            "session start {request_id} failed: {reason}"
        ))),
        Some(StartOutcome::Cancelled) => Err(ApiError::Unavailable(
            "the session was ended before its browser was ready; start a new one".to_owned(),
        )),
        Some(StartOutcome::Unavailable(why)) => Err(ApiError::Unavailable(format!(
            "{why}; the start was withdrawn, try again later"
        ))),
        None => Err(ApiError::Unavailable(
            "the server is shutting down; try again shortly".to_owned(),
        )),
    }
}

/// `POST /v1/sessions/async`: accept a start and answer at once.
#[utoipa::path(
    operation_id = "create_session_async",
    post,
    path = "/v1/sessions/async",
    tag = "sessions",
    summary = "Accept a session start and answer at once",
    request_body = StartBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Accepted; poll its status", body = Data<AsyncAccepted>)    )
)]
pub async fn create_async(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<AsyncAccepted> {
    let request = new_request(&state, &caller, body).await?;
    let request_id = request.id;
    // Nobody waits on the receiver; the poller reads the store.
    state.fleet.submit(request).await?;
    Ok(Data::of(AsyncAccepted {
        request_id,
        status: RequestStatus::Pending.as_str(),
        session_id: None,
    }))
}

/// The wire status of an async request: `ready` while its session runs.
fn async_status(request: &RequestRecord, session: Option<&SessionRecord>) -> &'static str {
    match request.status {
        RequestStatus::Completed => match session.map(|session| session.status) {
            Some(SessionStatus::Running) | Some(SessionStatus::Starting) => "ready",
            _ => "completed",
        },
        other => other.as_str(),
    }
}

/// The batch-item shape of a request (the SDK's `BatchSessionItemSchema`).
/// `cdp_url` and `live_view_url` are given while the item's session runs.
pub fn batch_item(state: &AppState, request: &RequestRecord, session_status: Option<SessionStatus>) -> BatchItem {
    let connectable = session_status == Some(SessionStatus::Running);
    let session_id = request.session_id;
    BatchItem {
        item_index: request.item_index,
        session_id,
        status: request.status.as_str(),
        cdp_url: session_id.filter(|_| connectable).map(|id| state.cdp_url(id)),
        live_view_url: session_id.filter(|_| connectable).map(|id| state.live_view_url(id)),
        error: request.error.clone(),
        retry_count: request.retry_count,
        started_at: request.started_at.map(|at| at.to_string()),
        completed_at: request.completed_at.map(|at| at.to_string()),
        metadata: request.metadata.clone(),
    }
}

/// `GET /v1/sessions/async/{request_id}/status`.
#[utoipa::path(
    operation_id = "get_async_session_status",
    get,
    path = "/v1/sessions/async/{request_id}/status",
    tag = "sessions",
    summary = "Where an asynchronous start is",
    params(("request_id" = String, Path, description = "The request id from the asynchronous start")),
    security(("api_key" = [])),
    responses((status = 200, description = "Its status", body = Data<AsyncStatus>) )
)]
pub async fn async_status_of(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(request_id): IdPath<RequestId>,
) -> ApiResult<AsyncStatus> {
    let request = state
        .store
        .request(caller.0.team_id, request_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Request not found".to_owned()))?;
    let session = match request.session_id {
        Some(session_id) => state.store.session(caller.0.team_id, session_id).await?,
        None => None,
    };
    let has_session = request.session_id.is_some() || request.error.is_some();
    Ok(Data::of(AsyncStatus {
        request_id: request.id,
        status: async_status(&request, session.as_ref()),
        created_at: request.created_at.to_string(),
        session: has_session.then(|| batch_item(&state, &request, session.as_ref().map(|session| session.status))),
        progress: Phase {
            current_phase: request.status.phase().as_str(),
        },
    }))
}

/// The caller's session, or the same `404` whether it is missing or another
/// team's.
async fn owned_session(state: &AppState, caller: &Caller, session_id: SessionId) -> Result<SessionRecord, ApiError> {
    state
        .store
        .session(caller.0.team_id, session_id)
        .await?
        .ok_or_else(ApiError::session_not_found)
}

fn duration_seconds(session: &SessionRecord) -> i64 {
    match session.started_at {
        Some(started) => started.seconds_until(session.ended_at.unwrap_or_else(Timestamp::now)),
        None => 0,
    }
}

/// `GET /v1/sessions/{session_id}`.
#[utoipa::path(
    operation_id = "get_session",
    get,
    path = "/v1/sessions/{session_id}",
    tag = "sessions",
    summary = "One session",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "The session", body = Data<SessionDetail>) )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
) -> ApiResult<SessionDetail> {
    let session = owned_session(&state, &caller, session_id).await?;
    Ok(Data::of(SessionDetail {
        session_id: session.id,
        team_id: session.team_id,
        status: session.status.as_str(),
        duration: duration_seconds(&session),
        started_at: session.started_at.map(|at| at.to_string()),
        ended_at: session.ended_at.map(|at| at.to_string()),
        created_at: session.created_at.to_string(),
        configuration: session.configuration,
        tags: session.tags,
        end_reason: session.end_reason,
        batch_id: session.batch_id,
        credits_used: 0,
        proxy_bytes: 0,
        steps: 0,
        playground: false,
    }))
}

/// `GET /v1/sessions/{session_id}/tags`.
#[utoipa::path(
    operation_id = "get_session_tags",
    get,
    path = "/v1/sessions/{session_id}/tags",
    tag = "sessions",
    summary = "One session's tags, as a list in order",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "Its tags", body = Data<SessionTags>))
)]
pub async fn tags(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
) -> ApiResult<SessionTags> {
    let session = owned_session(&state, &caller, session_id).await?;
    Ok(Data::of(SessionTags {
        session_id,
        tags: session.tags,
    }))
}

/// `PUT /v1/sessions/{session_id}/tags`: replaces them.
#[utoipa::path(
    operation_id = "put_session_tags",
    put,
    path = "/v1/sessions/{session_id}/tags",
    tag = "sessions",
    summary = "Replace one session's tags (running or ended); the listings' tags filters see the change",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    request_body(content = Object, description = "`{\"tags\": [\"…\", …]}`: at most 100 tags of 1 to 256 characters; repeats are dropped"),
    security(("api_key" = [])),
    responses((status = 200, description = "Its tags now", body = Data<SessionTags>))
)]
pub async fn put_tags(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
    JsonBody(body): JsonBody,
) -> ApiResult<SessionTags> {
    let Value::Object(fields) = body else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object: {\"tags\": [...]}".to_owned(),
        ));
    };
    if let Some(key) = fields.keys().find(|key| key.as_str() != "tags") {
        return Err(ApiError::BadRequest(format!(
            "{key} is not a field here; send {{\"tags\": [...]}}"
        )));
    }
    let given: Vec<String> = match fields.get("tags") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::BadRequest("tags must be an array of strings".to_owned()))?,
        Some(_) => return Err(ApiError::BadRequest("tags must be an array of strings".to_owned())),
        None => return Err(ApiError::BadRequest("tags is required: {\"tags\": [...]}".to_owned())),
    };
    let tags = anchorage_core::check_tags("tags", &given).map_err(|error| ApiError::BadRequest(error.0))?;
    if !state.store.set_tags(caller.0.team_id, session_id, &tags).await? {
        return Err(ApiError::session_not_found());
    }
    Ok(Data::of(SessionTags { session_id, tags }))
}

/// `DELETE /v1/sessions/{session_id}/tags`: removes them all.
#[utoipa::path(
    operation_id = "delete_session_tags",
    delete,
    path = "/v1/sessions/{session_id}/tags",
    tag = "sessions",
    summary = "Remove every tag of one session",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "Its tags now (none)", body = Data<SessionTags>))
)]
pub async fn delete_tags(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
) -> ApiResult<SessionTags> {
    if !state.store.set_tags(caller.0.team_id, session_id, &[]).await? {
        return Err(ApiError::session_not_found());
    }
    Ok(Data::of(SessionTags {
        session_id,
        tags: Vec::new(),
    }))
}

/// `DELETE /v1/sessions/{session_id}`: end it; ending an ended one is fine.
#[utoipa::path(
    operation_id = "delete_session",
    delete,
    path = "/v1/sessions/{session_id}",
    tag = "sessions",
    summary = "End a session (ending an ended one is fine)",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "Ended: the browser was killed and the end recorded", body = Data<StatusOk>) )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
) -> ApiResult<StatusOk> {
    // A session running here belongs to the team the fleet says it does;
    // only for any other is the store asked (ended, launching, or unknown).
    if state.fleet.live_session(caller.0.team_id, session_id).is_none() {
        owned_session(&state, &caller, session_id).await?;
    }
    state
        .fleet
        .end_session_waiting(
            session_id,
            SessionStatus::Completed,
            "ended by a client (DELETE)",
            EndWait::Recorded,
        )
        .await?;
    Ok(Data::of(StatusOk::OK))
}

fn live_filter(caller: &Caller, query: &QueryMap) -> Result<SessionFilter, ApiError> {
    Ok(SessionFilter {
        team_id: Some(caller.0.team_id),
        status: None,
        live_only: true,
        tags: query.list("tags"),
        batch_id: batch_filter(query)?,
        created_from: query.timestamp("created_from")?,
        created_to: query.timestamp("created_to")?,
    })
}

fn batch_filter(query: &QueryMap) -> Result<Option<anchorage_core::BatchId>, ApiError> {
    query
        .get("batch_id")
        .map(|text| {
            text.parse::<anchorage_core::BatchId>()
                .map_err(|_| ApiError::BadRequest("batch_id must be a UUID".to_owned()))
        })
        .transpose()
}

const ALL_ROWS: SessionPage = SessionPage {
    sort: SessionSort::CreatedAt,
    descending: true,
    page: 1,
    limit: None,
};

/// `DELETE /v1/sessions/all`: end every live session of the team.
#[utoipa::path(
    operation_id = "delete_all_sessions",
    delete,
    path = "/v1/sessions/all",
    tag = "sessions",
    summary = "End every running session of the team",
    security(("api_key" = [])),
    responses((status = 200, description = "All ended", body = Data<StatusOk>))
)]
pub async fn delete_all(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusOk> {
    let filter = SessionFilter {
        team_id: Some(caller.0.team_id),
        live_only: true,
        ..SessionFilter::default()
    };
    let (sessions, _) = state.store.list_sessions(&filter, &ALL_ROWS).await?;
    let ends = sessions.iter().map(|session| {
        state.fleet.end_session_waiting(
            session.id,
            SessionStatus::Completed,
            "ended by a client (DELETE all)",
            EndWait::Recorded,
        )
    });
    for result in futures_util::future::join_all(ends).await {
        result?;
    }
    Ok(Data::of(StatusOk::OK))
}

/// `GET /v1/sessions/all/status`: the team's live sessions.
#[utoipa::path(
    operation_id = "get_all_sessions_status",
    get,
    path = "/v1/sessions/all/status",
    tag = "sessions",
    summary = "The team's live sessions",
    params(("tags" = Option<String>, Query, description = "Only sessions carrying every one of these tags (comma-separated or repeated)"), ("batch_id" = Option<String>, Query, description = "Only sessions of this batch"), ("created_from" = Option<String>, Query, description = "Created at or after this RFC 3339 time"), ("created_to" = Option<String>, Query, description = "Created at or before this RFC 3339 time")),
    security(("api_key" = [])),
    responses((status = 200, description = "Starting and running sessions, newest first", body = Data<LiveSessions>) )
)]
pub async fn all_status(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<LiveSessions> {
    let query = QueryMap::parse(raw.as_deref());
    let (sessions, total) = state
        .store
        .list_sessions(&live_filter(&caller, &query)?, &ALL_ROWS)
        .await?;
    let items = sessions
        .into_iter()
        .map(|session| LiveSessionItem {
            session_id: session.id,
            status: session.status.as_str(),
            created_at: session.created_at.to_string(),
            live_view_url: state.live_view_url(session.id),
            tags: session.tags,
            node_id: session.node_id,
        })
        .collect();
    Ok(Data::of(LiveSessions { count: total, items }))
}

/// `GET /v1/sessions`: the history page.
#[utoipa::path(
    operation_id = "list_sessions",
    get,
    path = "/v1/sessions",
    tag = "sessions",
    summary = "The team's session history, a page at a time",
    params(("page" = Option<i64>, Query, description = "Page, from 1"), ("limit" = Option<i64>, Query, description = "Rows per page: 10, 20 (default) or 50"), ("sort_by" = Option<String>, Query, description = "created_at (default), session_id or status"), ("sort_order" = Option<String>, Query, description = "desc (default) or asc"), ("status" = Option<String>, Query, description = "starting, running, completed or failed"), ("tags" = Option<String>, Query, description = "Only sessions carrying every one of these tags (comma-separated or repeated)"), ("batch_id" = Option<String>, Query, description = "Only sessions of this batch"), ("created_from" = Option<String>, Query, description = "Created at or after this RFC 3339 time"), ("created_to" = Option<String>, Query, description = "Created at or before this RFC 3339 time")),
    security(("api_key" = [])),
    responses((status = 200, description = "One page", body = Data<SessionHistory>) )
)]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<SessionHistory> {
    let query = QueryMap::parse(raw.as_deref());
    let page = query.integer("page", 1, i64::from(i32::MAX))?.unwrap_or(1);
    let limit = match query.get("limit") {
        None => 20,
        Some("10") => 10,
        Some("20") => 20,
        Some("50") => 50,
        Some(_) => return Err(ApiError::BadRequest("limit must be 10, 20 or 50".to_owned())),
    };
    let sort = match query.get("sort_by") {
        None | Some("created_at") => SessionSort::CreatedAt,
        Some("session_id") => SessionSort::SessionId,
        Some("status") => SessionSort::Status,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "sort_by must be created_at, session_id or status".to_owned(),
            ))
        }
    };
    let descending = match query.get("sort_order") {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(ApiError::BadRequest("sort_order must be asc or desc".to_owned())),
    };
    let status = query
        .get("status")
        .map(|text| {
            text.parse::<SessionStatus>().map_err(|_| {
                ApiError::BadRequest("status must be one of starting, running, completed, failed".to_owned())
            })
        })
        .transpose()?;
    let filter = SessionFilter {
        status,
        live_only: false,
        ..live_filter(&caller, &query)?
    };
    let (sessions, total) = state
        .store
        .list_sessions(
            &filter,
            &SessionPage {
                sort,
                descending,
                page,
                limit: Some(limit),
            },
        )
        .await?;
    let rows = sessions
        .into_iter()
        .map(|session| HistoryRow {
            id: session.id,
            status: session.status.as_str(),
            headless: session.headless,
            recording: session.recording,
            used_credits: 0,
            proxy_bytes: 0,
            proxy_type: None,
            steps: 0,
            duration: duration_seconds(&session),
            created_at: session.created_at.to_string(),
            tags: session.tags,
            user_configuration: session.configuration,
            task_initiated: false,
            task_executions_count: 0,
            api_key_name: session.api_key_name,
            browser_ip: "",
            domains: Vec::new(),
            batch_id: session.batch_id,
            end_reason: session.end_reason,
        })
        .collect();
    let total_pages = (total + limit - 1) / limit;
    Ok(Data::of(SessionHistory {
        sessions: rows,
        total,
        page,
        total_pages,
    }))
}

/// `GET /v1/sessions/{session_id}/pages`: the browser's open pages.
#[utoipa::path(
    operation_id = "get_session_pages",
    get,
    path = "/v1/sessions/{session_id}/pages",
    tag = "sessions",
    summary = "The pages open in a session's browser",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "Its pages (none once it has ended)", body = Data<SessionPages>)  )
)]
pub async fn pages(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(session_id): IdPath<SessionId>,
) -> ApiResult<SessionPages> {
    owned_session(&state, &caller, session_id).await?;
    let Some(live) = state.fleet.live_session(caller.0.team_id, session_id) else {
        return Ok(Data::of(SessionPages {
            count: 0,
            items: Vec::new(),
        }));
    };
    let pages = anchorage_browser::list_pages(&live.devtools)
        .await
        .map_err(|error| ApiError::internal(format!("listing pages of {session_id}: {error}")))?;
    let frontend_url = state.live_view_url(session_id);
    let items: Vec<PageItem> = pages
        .into_iter()
        .map(|page| PageItem {
            id: page.id,
            title: page.title,
            url: page.url,
            frontend_url: frontend_url.clone(),
            active: page.active,
        })
        .collect();
    Ok(Data::of(SessionPages {
        count: items.len(),
        items,
    }))
}

//! `/v1/task…`: code tasks (the SDK's `tasks_legacy`). A task is the
//! team's TypeScript under a name, kept as a draft and numbered versions,
//! and run beside a session with `ANCHOR_*` inputs; each run is an
//! execution, kept and listed.
//!
//! Decisions where upstream is silent (the README lists them): a task made
//! with code keeps it as its draft; `latest` is the highest number, or the
//! draft while nothing is published; a deploy without code publishes the
//! draft; a run without a `sessionId` starts a session of its own from the
//! version's `browserConfiguration` with the run's override laid over it
//! (key by key), and ends it afterwards unless `cleanupSessions` is false;
//! a session the caller names is never ended by the run. `output` is the
//! JSON of what the default export returned.

use anchorage_core::{ExecutionId, ExecutionStatus, TaskId, TaskVersionId, Timestamp};
use anchorage_store::{ExecutionFilter, ExecutionRecord, TaskRecord, TaskVersionRecord};
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::code::{execution_for, lost, message_of, record_end, spawn_run, Work};
use super::extract::{decode_body, JsonBody, QueryMap};
use crate::auth::Caller;
use crate::code::RunKind;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{CreateTaskBody, Data, RunTaskBody, TaskVersionBody, UpdateTaskBody};

const LANGUAGE: &str = "typescript";
const DRAFT: &str = "draft";
/// Why a session a run started for itself ended.
const RUN_SESSION_END: &str = "a task run's session, ended once the run finished (cleanupSessions)";

// ------------------------------------------------------------------ answers

/// A task as created and listed (`Task`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskAnswer {
    id: String,
    name: String,
    team_id: String,
    description: Option<String>,
    latest_version: String,
    code: String,
    language: &'static str,
    #[schema(value_type = Object)]
    browser_configuration: Option<Value>,
    deleted: bool,
    created_at: String,
    updated_at: String,
}

/// A task without its code (`TaskMetadata`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskMetadataAnswer {
    id: String,
    name: String,
    team_id: String,
    description: Option<String>,
    latest: String,
    deleted: bool,
    created_at: String,
    updated_at: String,
}

/// One version (`TaskVersion`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskVersionAnswer {
    id: String,
    task_id: String,
    version: String,
    code: String,
    language: String,
    description: Option<String>,
    #[schema(value_type = Object)]
    browser_configuration: Option<Value>,
    deleted: bool,
    created_at: String,
    updated_at: String,
}

/// One execution (`TaskExecutionResult`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionAnswer {
    id: String,
    task_version_id: String,
    version: String,
    status: &'static str,
    output: Option<String>,
    error_message: Option<String>,
    start_time: String,
    execution_time: Option<i64>,
}

/// How a run went, or that it started (`RunTaskResponse`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunAnswer {
    success: bool,
    #[serde(rename = "async")]
    run_async: bool,
    message: String,
    task_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    execution_result_id: String,
}

/// A deletion's answer (`DeleteTaskResponse`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeletedAnswer {
    success: bool,
    message: String,
}

fn version_answer(version: TaskVersionRecord) -> TaskVersionAnswer {
    TaskVersionAnswer {
        id: version.id.to_string(),
        task_id: version.task_id.to_string(),
        version: version.version,
        code: version.code,
        language: version.language,
        description: version.description,
        browser_configuration: version.browser_configuration,
        deleted: version.deleted,
        created_at: version.created_at.to_string(),
        updated_at: version.updated_at.to_string(),
    }
}

fn execution_answer(execution: ExecutionRecord) -> ExecutionAnswer {
    ExecutionAnswer {
        id: execution.id.to_string(),
        // Every task run names its version; a snippet's run is not listed here.
        task_version_id: execution.task_version_id.map(|id| id.to_string()).unwrap_or_default(),
        version: execution.version,
        status: execution.status.as_str(),
        output: execution.output,
        error_message: execution.error_message,
        start_time: execution.started_at.to_string(),
        execution_time: execution.execution_time_ms,
    }
}

/// The version `latest` means: the highest number, else the draft.
fn latest_of(versions: &[TaskVersionRecord]) -> Option<&TaskVersionRecord> {
    versions
        .iter()
        .filter(|version| version.version != DRAFT)
        .max_by_key(|version| version.version.parse::<i64>().unwrap_or_default())
        .or_else(|| versions.iter().find(|version| version.version == DRAFT))
}

async fn task_answer(state: &AppState, task: TaskRecord) -> Result<TaskAnswer, ApiError> {
    let versions = state.store.task_versions(task.id).await?;
    let latest = latest_of(&versions);
    Ok(TaskAnswer {
        id: task.id.to_string(),
        name: task.name,
        team_id: task.team_id.to_string(),
        description: task.description,
        latest_version: latest.map_or_else(|| DRAFT.to_owned(), |version| version.version.clone()),
        code: latest.map(|version| version.code.clone()).unwrap_or_default(),
        language: LANGUAGE,
        browser_configuration: latest.and_then(|version| version.browser_configuration.clone()),
        deleted: task.deleted,
        created_at: task.created_at.to_string(),
        updated_at: task.updated_at.to_string(),
    })
}

async fn metadata_answer(state: &AppState, task: TaskRecord) -> Result<TaskMetadataAnswer, ApiError> {
    let versions = state.store.task_versions(task.id).await?;
    Ok(TaskMetadataAnswer {
        id: task.id.to_string(),
        name: task.name,
        team_id: task.team_id.to_string(),
        description: task.description,
        latest: latest_of(&versions).map_or_else(|| DRAFT.to_owned(), |version| version.version.clone()),
        deleted: task.deleted,
        created_at: task.created_at.to_string(),
        updated_at: task.updated_at.to_string(),
    })
}

// --------------------------------------------------------------- checking

fn task_not_found() -> ApiError {
    ApiError::NotFound("Task not found".to_owned())
}

fn version_not_found(version: &str) -> ApiError {
    ApiError::NotFound(format!("Task version {version:?} not found"))
}

fn expected(path: &str) -> String {
    match path {
        "name" | "language" | "code" | "description" | "version" | "taskId" | "sessionId" => {
            format!("{path} must be a string")
        }
        "async" | "cleanupSessions" => format!("{path} must be true or false"),
        "browserConfiguration" | "overrideBrowserConfiguration" | "inputs" => format!("{path} must be an object"),
        other => format!("{other} has the wrong type"),
    }
}

/// A task id from the path; a malformed one is the same `404` as an unknown one.
fn task_id(text: &str) -> Result<TaskId, ApiError> {
    text.parse().map_err(|_| task_not_found())
}

/// The caller's live task named by `text`.
async fn own_task(state: &AppState, caller: &Caller, text: &str) -> Result<TaskRecord, ApiError> {
    let id = task_id(text)?;
    state.store.task(caller.0.team_id, id).await?.ok_or_else(task_not_found)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let fine = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if fine {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "name {name:?} is not valid: 1 to 255 letters, digits, '_' or '-'"
        )))
    }
}

fn check_description(description: Option<String>) -> Result<Option<String>, ApiError> {
    match description {
        Some(text) if text.chars().count() > 1000 => Err(ApiError::BadRequest(
            "description is too long: at most 1000 characters".to_owned(),
        )),
        other => Ok(other),
    }
}

fn check_language(language: Option<&str>) -> Result<(), ApiError> {
    match language {
        None | Some(LANGUAGE) => Ok(()),
        Some(other) => Err(ApiError::BadRequest(format!(
            "language {other:?} is not supported: tasks are written in typescript"
        ))),
    }
}

/// A task's code as given (base64): it must decode to UTF-8 text.
fn check_code(code: &str) -> Result<String, ApiError> {
    decode_code(code).map(|_| code.to_owned())
}

/// The source text of stored or given base64 code.
fn decode_code(code: &str) -> Result<String, ApiError> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(code.trim())
        .map_err(|error| ApiError::BadRequest(format!("code is not base64: {error}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ApiError::BadRequest("code is not base64 of UTF-8 text (TypeScript source)".to_owned()))?;
    if text.trim().is_empty() {
        return Err(ApiError::BadRequest("code is empty".to_owned()));
    }
    Ok(text)
}

/// A `browserConfiguration`: the `session` part of a start body, checked
/// as a start would check it.
fn check_configuration(state: &AppState, field: &str, value: Option<Value>) -> Result<Option<Value>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => {
            super::sessions::validate_start(state, &json!({ "session": object }))
                .map_err(|error| ApiError::BadRequest(format!("{field}: {error}")))?;
            Ok(Some(Value::Object(object)))
        }
        Some(_) => Err(ApiError::BadRequest(format!("{field} must be an object"))),
    }
}

/// A version name in a path: `draft`, `latest` or a number.
fn check_version_name(text: &str) -> Result<(), ApiError> {
    let number = !text.is_empty() && text.len() <= 18 && text.bytes().all(|byte| byte.is_ascii_digit());
    if text == DRAFT || text == "latest" || number {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "version {text:?} is not valid: draft, latest or a number"
        )))
    }
}

/// The live version `name` (`draft`, `latest`, a number) names.
fn resolve(versions: &[TaskVersionRecord], name: &str) -> Option<TaskVersionRecord> {
    if name == "latest" {
        return latest_of(versions).cloned();
    }
    let wanted = name.trim_start_matches('0');
    versions
        .iter()
        .find(|version| version.version == name || (version.version != DRAFT && version.version == wanted))
        .cloned()
}

/// `page` and `limit` of a list (strings of digits; limit at most 100).
fn paging(query: &QueryMap) -> Result<(i64, i64), ApiError> {
    let page = query.integer("page", 1, 1_000_000)?.unwrap_or(1);
    let limit = query.integer("limit", 1, 100)?.unwrap_or(10);
    Ok((page, limit))
}

// ----------------------------------------------------------------- routes

/// `POST /v1/task`: a new task, with its code as its draft.
#[utoipa::path(
    operation_id = "create_task",
    post,
    path = "/v1/task",
    tag = "tasks",
    summary = "Create a code task (its code becomes its draft)",
    request_body = CreateTaskBody,
    security(("api_key" = [])),
    responses((status = 200, description = "The task", body = Data<TaskAnswer>))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<Data<TaskAnswer>>, ApiError> {
    let body: CreateTaskBody = decode_body(&body, expected)?;
    let name = body
        .name
        .ok_or_else(|| ApiError::BadRequest("name is required".to_owned()))?;
    check_name(&name)?;
    match body.language.as_deref() {
        None => return Err(ApiError::BadRequest("language is required: typescript".to_owned())),
        language => check_language(language)?,
    }
    let description = check_description(body.description)?;
    let code = body.code.as_deref().map(check_code).transpose()?;
    let configuration = check_configuration(&state, "browserConfiguration", body.browser_configuration)?;
    let now = Timestamp::now();
    let task = TaskRecord {
        id: TaskId::new_random(),
        team_id: caller.0.team_id,
        name,
        description: description.clone(),
        deleted: false,
        created_at: now,
        updated_at: now,
    };
    let draft = code.map(|code| TaskVersionRecord {
        id: TaskVersionId::new_random(),
        task_id: task.id,
        version: DRAFT.to_owned(),
        code,
        language: LANGUAGE.to_owned(),
        description,
        browser_configuration: configuration,
        deleted: false,
        created_at: now,
        updated_at: now,
    });
    match state.store.create_task(&task, draft.as_ref()).await {
        Ok(()) => {}
        Err(anchorage_store::StoreError::AlreadyExists(_)) => {
            return Err(ApiError::Conflict(format!(
                "your team has a task named {:?} already",
                task.name
            )))
        }
        Err(error) => return Err(error.into()),
    }
    Ok(Data::of(task_answer(&state, task).await?))
}

/// The list's data (`TaskListResponse.data`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskList {
    tasks: Vec<TaskAnswer>,
    total: i64,
    page: i64,
    limit: i64,
}

/// `GET /v1/task`: the team's tasks, oldest first, a page at a time.
#[utoipa::path(
    operation_id = "list_tasks",
    get,
    path = "/v1/task",
    tag = "tasks",
    summary = "List the team's tasks",
    params(("page" = Option<String>, Query, description = "Page, from 1"), ("limit" = Option<String>, Query, description = "Tasks per page, 1 to 100 (10)")),
    security(("api_key" = [])),
    responses((status = 200, description = "A page of tasks", body = Data<TaskList>))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Data<TaskList>>, ApiError> {
    let (page, limit) = paging(&QueryMap::parse(query.as_deref()))?;
    let (tasks, total) = state
        .store
        .list_tasks(caller.0.team_id, (page - 1) * limit, limit)
        .await?;
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task_answer(&state, task).await?);
    }
    Ok(Data::of(TaskList {
        tasks: answers,
        total,
        page,
        limit,
    }))
}

/// `GET /v1/task/{task_id}`: a task's name and description.
#[utoipa::path(
    operation_id = "get_task",
    get,
    path = "/v1/task/{task_id}",
    tag = "tasks",
    summary = "A task, without its code",
    params(("task_id" = String, Path, description = "The task")),
    security(("api_key" = [])),
    responses((status = 200, description = "The task", body = Data<TaskMetadataAnswer>))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
) -> Result<Json<Data<TaskMetadataAnswer>>, ApiError> {
    let task = own_task(&state, &caller, &task).await?;
    Ok(Data::of(metadata_answer(&state, task).await?))
}

/// `PUT /v1/task/{task_id}`: a new name or description.
#[utoipa::path(
    operation_id = "update_task",
    put,
    path = "/v1/task/{task_id}",
    tag = "tasks",
    summary = "Rename a task or change its description",
    params(("task_id" = String, Path, description = "The task")),
    request_body = UpdateTaskBody,
    security(("api_key" = [])),
    responses((status = 200, description = "The task", body = Data<TaskMetadataAnswer>))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Data<TaskMetadataAnswer>>, ApiError> {
    let body: UpdateTaskBody = decode_body(&body, expected)?;
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    let description = check_description(body.description)?;
    let mut task = own_task(&state, &caller, &task).await?;
    if let Some(name) = body.name {
        task.name = name;
    }
    if description.is_some() {
        task.description = description;
    }
    task.updated_at = Timestamp::now();
    match state.store.update_task(&task).await {
        Ok(()) => {}
        Err(anchorage_store::StoreError::AlreadyExists(_)) => {
            return Err(ApiError::Conflict(format!(
                "your team has a task named {:?} already",
                task.name
            )))
        }
        Err(error) => return Err(error.into()),
    }
    Ok(Data::of(metadata_answer(&state, task).await?))
}

/// `DELETE /v1/task/{task_id}`: the task and its versions, kept as deleted.
#[utoipa::path(
    operation_id = "delete_task",
    delete,
    path = "/v1/task/{task_id}",
    tag = "tasks",
    summary = "Delete a task and its versions",
    params(("task_id" = String, Path, description = "The task")),
    security(("api_key" = [])),
    responses((status = 200, description = "Deleted", body = Data<DeletedAnswer>))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
) -> Result<Json<Data<DeletedAnswer>>, ApiError> {
    let id = task_id(&task)?;
    if !state.store.delete_task(caller.0.team_id, id, Timestamp::now()).await? {
        return Err(task_not_found());
    }
    Ok(Data::of(DeletedAnswer {
        success: true,
        message: "the task and its versions are deleted".to_owned(),
    }))
}

/// The versions list's data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionList {
    task_id: String,
    versions: Vec<VersionSummary>,
}

/// One version in the list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionSummary {
    version: String,
    description: Option<String>,
    created_at: String,
    updated_at: String,
}

/// `GET /v1/task/{task_id}/versions`: the draft and the published numbers.
#[utoipa::path(
    operation_id = "list_task_versions",
    get,
    path = "/v1/task/{task_id}/versions",
    tag = "tasks",
    summary = "A task's versions: its draft and published numbers",
    params(("task_id" = String, Path, description = "The task")),
    security(("api_key" = [])),
    responses((status = 200, description = "The versions", body = Data<VersionList>))
)]
pub async fn versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
) -> Result<Json<Data<VersionList>>, ApiError> {
    let task = own_task(&state, &caller, &task).await?;
    let versions = state.store.task_versions(task.id).await?;
    Ok(Data::of(VersionList {
        task_id: task.id.to_string(),
        versions: versions
            .into_iter()
            .map(|version| VersionSummary {
                version: version.version,
                description: version.description,
                created_at: version.created_at.to_string(),
                updated_at: version.updated_at.to_string(),
            })
            .collect(),
    }))
}

async fn named_version(
    state: &AppState,
    caller: &Caller,
    task: &str,
    name: &str,
) -> Result<Json<Data<TaskVersionAnswer>>, ApiError> {
    check_version_name(name)?;
    let task = own_task(state, caller, task).await?;
    let versions = state.store.task_versions(task.id).await?;
    let version = resolve(&versions, name).ok_or_else(|| version_not_found(name))?;
    Ok(Data::of(version_answer(version)))
}

/// `GET /v1/task/{task_id}/latest`: the version runs use by default.
#[utoipa::path(
    operation_id = "get_latest_task_version",
    get,
    path = "/v1/task/{task_id}/latest",
    tag = "tasks",
    summary = "A task's latest version (the highest number, or the draft while none is published), with its code",
    params(("task_id" = String, Path, description = "The task")),
    security(("api_key" = [])),
    responses((status = 200, description = "The version", body = Data<TaskVersionAnswer>))
)]
pub async fn latest(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
) -> Result<Json<Data<TaskVersionAnswer>>, ApiError> {
    named_version(&state, &caller, &task, "latest").await
}

/// `GET /v1/task/{task_id}/draft`.
#[utoipa::path(
    operation_id = "get_task_draft",
    get,
    path = "/v1/task/{task_id}/draft",
    tag = "tasks",
    summary = "A task's draft",
    params(("task_id" = String, Path, description = "The task")),
    security(("api_key" = [])),
    responses((status = 200, description = "The draft", body = Data<TaskVersionAnswer>))
)]
pub async fn draft(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
) -> Result<Json<Data<TaskVersionAnswer>>, ApiError> {
    named_version(&state, &caller, &task, DRAFT).await
}

/// `GET /v1/task/{task_id}/{task_version}`.
#[utoipa::path(
    operation_id = "get_task_version",
    get,
    path = "/v1/task/{task_id}/{task_version}",
    tag = "tasks",
    summary = "One version of a task: draft, latest or a number",
    params(("task_id" = String, Path, description = "The task"), ("task_version" = String, Path, description = "draft, latest or a number")),
    security(("api_key" = [])),
    responses((status = 200, description = "The version", body = Data<TaskVersionAnswer>))
)]
pub async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((task, version)): Path<(String, String)>,
) -> Result<Json<Data<TaskVersionAnswer>>, ApiError> {
    named_version(&state, &caller, &task, &version).await
}

/// A version body, checked; `code` stays base64.
struct CheckedVersion {
    code: Option<String>,
    description: Option<String>,
    browser_configuration: Option<Value>,
}

fn checked_version(state: &AppState, body: &Value) -> Result<CheckedVersion, ApiError> {
    let body: TaskVersionBody = decode_body(body, expected)?;
    check_language(body.language.as_deref())?;
    Ok(CheckedVersion {
        code: body.code.as_deref().map(check_code).transpose()?,
        description: check_description(body.description)?,
        browser_configuration: check_configuration(state, "browserConfiguration", body.browser_configuration)?,
    })
}

/// A version record named `name` from a body over what was there (`base`).
fn version_record(
    task_id: TaskId,
    name: &str,
    body: CheckedVersion,
    base: Option<&TaskVersionRecord>,
) -> Result<TaskVersionRecord, ApiError> {
    let now = Timestamp::now();
    let code = body
        .code
        .or_else(|| base.map(|base| base.code.clone()))
        .ok_or_else(|| ApiError::BadRequest("code is required for a new version".to_owned()))?;
    Ok(TaskVersionRecord {
        id: TaskVersionId::new_random(),
        task_id,
        version: name.to_owned(),
        code,
        language: LANGUAGE.to_owned(),
        description: body
            .description
            .or_else(|| base.and_then(|base| base.description.clone())),
        browser_configuration: body
            .browser_configuration
            .or_else(|| base.and_then(|base| base.browser_configuration.clone())),
        deleted: false,
        created_at: base.map_or(now, |base| base.created_at),
        updated_at: now,
    })
}

/// `POST /v1/task/{task_id}/draft`: saves the draft.
#[utoipa::path(
    operation_id = "save_task_draft",
    post,
    path = "/v1/task/{task_id}/draft",
    tag = "tasks",
    summary = "Save a task's draft",
    params(("task_id" = String, Path, description = "The task")),
    request_body = TaskVersionBody,
    security(("api_key" = [])),
    responses((status = 200, description = "The draft", body = Data<TaskVersionAnswer>))
)]
pub async fn save_draft(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Data<TaskVersionAnswer>>, ApiError> {
    let body = checked_version(&state, &body)?;
    if body.code.is_none() {
        return Err(ApiError::BadRequest(
            "code is required: the draft's code, base64".to_owned(),
        ));
    }
    let task = own_task(&state, &caller, &task).await?;
    let versions = state.store.task_versions(task.id).await?;
    let existing = versions.iter().find(|version| version.version == DRAFT);
    let record = version_record(task.id, DRAFT, body, existing)?;
    Ok(Data::of(version_answer(state.store.save_task_version(&record).await?)))
}

/// `POST /v1/task/{task_id}/deploy`: publishes the next number.
#[utoipa::path(
    operation_id = "deploy_task",
    post,
    path = "/v1/task/{task_id}/deploy",
    tag = "tasks",
    summary = "Publish a new numbered version (the body's code, or the draft's)",
    params(("task_id" = String, Path, description = "The task")),
    request_body = TaskVersionBody,
    security(("api_key" = [])),
    responses((status = 200, description = "The new version", body = Data<TaskVersionAnswer>))
)]
pub async fn deploy(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Data<TaskVersionAnswer>>, ApiError> {
    let body = checked_version(&state, &body)?;
    let task = own_task(&state, &caller, &task).await?;
    let versions = state.store.task_versions(task.id).await?;
    let draft = versions.iter().find(|version| version.version == DRAFT);
    if body.code.is_none() && draft.is_none() {
        return Err(ApiError::BadRequest(
            "code is required: the task has no draft to deploy".to_owned(),
        ));
    }
    let record = version_record(task.id, "", body, draft)?;
    Ok(Data::of(version_answer(
        state.store.deploy_task_version(&record).await?,
    )))
}

/// `POST /v1/task/{task_id}/{task_version}`: publishes a number (new, or
/// over what it was).
#[utoipa::path(
    operation_id = "publish_task_version",
    post,
    path = "/v1/task/{task_id}/{task_version}",
    tag = "tasks",
    summary = "Publish a version under a number, or change it",
    params(("task_id" = String, Path, description = "The task"), ("task_version" = String, Path, description = "A number")),
    request_body = TaskVersionBody,
    security(("api_key" = [])),
    responses((status = 200, description = "The version", body = Data<TaskVersionAnswer>))
)]
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Path((task, version)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Data<TaskVersionAnswer>>, ApiError> {
    check_version_name(&version)?;
    if version == DRAFT || version == "latest" {
        return Err(ApiError::BadRequest(format!(
            "Cannot publish to {version} version: publish under a number (or save the draft with POST …/draft)"
        )));
    }
    let number: i64 = version
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("version {version:?} is not a number")))?;
    if number < 1 {
        return Err(ApiError::BadRequest("version numbers start at 1".to_owned()));
    }
    let body = checked_version(&state, &body)?;
    let task = own_task(&state, &caller, &task).await?;
    let name = number.to_string();
    let versions = state.store.task_versions(task.id).await?;
    let existing = versions.iter().find(|version| version.version == name);
    let record = version_record(task.id, &name, body, existing)?;
    Ok(Data::of(version_answer(state.store.save_task_version(&record).await?)))
}

/// `DELETE /v1/task/{task_id}/{task_version}`.
#[utoipa::path(
    operation_id = "delete_task_version",
    delete,
    path = "/v1/task/{task_id}/{task_version}",
    tag = "tasks",
    summary = "Delete one version of a task",
    params(("task_id" = String, Path, description = "The task"), ("task_version" = String, Path, description = "draft, latest or a number")),
    security(("api_key" = [])),
    responses((status = 200, description = "Deleted", body = Data<DeletedAnswer>))
)]
pub async fn delete_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((task, version)): Path<(String, String)>,
) -> Result<Json<Data<DeletedAnswer>>, ApiError> {
    remove_version(&state, &caller, &task, &version).await
}

/// `DELETE /v1/task/{task_id}/draft` (the SDK's `delete_task_version` of `draft`).
#[utoipa::path(
    operation_id = "delete_task_draft",
    delete,
    path = "/v1/task/{task_id}/draft",
    tag = "tasks",
    summary = "Delete a task's draft",
    params(("task_id" = String, Path, description = "The task")),
    security(("api_key" = [])),
    responses((status = 200, description = "Deleted", body = Data<DeletedAnswer>))
)]
pub async fn delete_draft(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
) -> Result<Json<Data<DeletedAnswer>>, ApiError> {
    remove_version(&state, &caller, &task, DRAFT).await
}

/// `DELETE /v1/task/{task_id}/latest` (the SDK's `delete_task_version` of `latest`).
#[utoipa::path(
    operation_id = "delete_latest_task_version",
    delete,
    path = "/v1/task/{task_id}/latest",
    tag = "tasks",
    summary = "Delete a task's latest version",
    params(("task_id" = String, Path, description = "The task")),
    security(("api_key" = [])),
    responses((status = 200, description = "Deleted", body = Data<DeletedAnswer>))
)]
pub async fn delete_latest(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
) -> Result<Json<Data<DeletedAnswer>>, ApiError> {
    remove_version(&state, &caller, &task, "latest").await
}

/// `POST /v1/task/{task_id}/latest`: the SDK's `publish_task_version` of
/// `latest`, which names no number: refused.
#[utoipa::path(
    operation_id = "publish_latest_task_version",
    post,
    path = "/v1/task/{task_id}/latest",
    tag = "tasks",
    summary = "Refused: a version is published under a number",
    params(("task_id" = String, Path, description = "The task")),
    security(("api_key" = [])),
    responses((status = 400, description = "Always", body = crate::wire::ErrorBody))
)]
pub async fn publish_latest(
    Path(_task): Path<String>,
    // Read, so that the connection can carry the next request.
    JsonBody(_body): JsonBody,
) -> Result<Json<Data<TaskVersionAnswer>>, ApiError> {
    Err(ApiError::BadRequest(
        "Cannot publish to latest version: publish under a number (or save the draft with POST …/draft)".to_owned(),
    ))
}

async fn remove_version(
    state: &AppState,
    caller: &Caller,
    task: &str,
    version: &str,
) -> Result<Json<Data<DeletedAnswer>>, ApiError> {
    check_version_name(version)?;
    let task = own_task(state, caller, task).await?;
    let versions = state.store.task_versions(task.id).await?;
    let found = resolve(&versions, version).ok_or_else(|| version_not_found(version))?;
    if !state
        .store
        .delete_task_version(task.id, &found.version, Timestamp::now())
        .await?
    {
        return Err(version_not_found(version));
    }
    Ok(Data::of(DeletedAnswer {
        success: true,
        message: format!("version {} is deleted", found.version),
    }))
}

/// The executions list's data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionList {
    results: Vec<ExecutionAnswer>,
    pagination: Pagination,
}

/// Where a page is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    page: i64,
    limit: i64,
    total: i64,
    total_pages: i64,
}

/// `GET /v1/task/{task_id}/executions`: the task's runs, newest first.
#[utoipa::path(
    operation_id = "list_task_executions",
    get,
    path = "/v1/task/{task_id}/executions",
    tag = "tasks",
    summary = "A task's runs, newest first",
    params(
        ("task_id" = String, Path, description = "The task"),
        ("page" = Option<String>, Query, description = "Page, from 1"),
        ("limit" = Option<String>, Query, description = "Runs per page, 1 to 100 (10)"),
        ("status" = Option<String>, Query, description = "Only runs in this state"),
        ("version" = Option<String>, Query, description = "Only runs of this version (draft or a number)"),
    ),
    security(("api_key" = [])),
    responses((status = 200, description = "A page of runs", body = Data<ExecutionList>))
)]
pub async fn executions(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Data<ExecutionList>>, ApiError> {
    let query = QueryMap::parse(query.as_deref());
    let (page, limit) = paging(&query)?;
    let status = query
        .get("status")
        .filter(|text| !text.is_empty())
        .map(|text| {
            text.parse::<ExecutionStatus>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "status {text:?} is not valid: success, failure, timeout, cancelled, queued or running"
                ))
            })
        })
        .transpose()?;
    let task = own_task(&state, &caller, &task).await?;
    let version = match query.get("version").filter(|text| !text.is_empty()) {
        None => None,
        Some(name) => {
            check_version_name(name)?;
            if name == "latest" {
                let versions = state.store.task_versions(task.id).await?;
                Some(latest_of(&versions).map_or_else(|| DRAFT.to_owned(), |version| version.version.clone()))
            } else {
                Some(name.to_owned())
            }
        }
    };
    let (found, total) = state
        .store
        .list_executions(&ExecutionFilter {
            team_id: caller.0.team_id,
            task_id: task.id,
            status,
            version,
            offset: (page - 1) * limit,
            limit,
        })
        .await?;
    Ok(Data::of(ExecutionList {
        results: found.into_iter().map(execution_answer).collect(),
        pagination: Pagination {
            page,
            limit,
            total,
            total_pages: (total + limit - 1) / limit,
        },
    }))
}

/// `GET /v1/task/{task_id}/executions/{execution_id}`: one run.
#[utoipa::path(
    operation_id = "get_task_execution",
    get,
    path = "/v1/task/{task_id}/executions/{execution_id}",
    tag = "tasks",
    summary = "One run of a task (poll it for an async run)",
    params(("task_id" = String, Path, description = "The task"), ("execution_id" = String, Path, description = "The run (executionResultId)")),
    security(("api_key" = [])),
    responses((status = 200, description = "The run", body = Data<ExecutionAnswer>))
)]
pub async fn execution(
    State(state): State<AppState>,
    caller: Caller,
    Path((task, execution)): Path<(String, String)>,
) -> Result<Json<Data<ExecutionAnswer>>, ApiError> {
    let not_found = || ApiError::NotFound("Execution not found".to_owned());
    let task = task_id(&task)?;
    let id: ExecutionId = execution.parse().map_err(|_| not_found())?;
    let found = state
        .store
        .execution(caller.0.team_id, id)
        .await?
        .filter(|execution| execution.task_id == Some(task))
        .ok_or_else(not_found)?;
    Ok(Data::of(execution_answer(found)))
}

// ------------------------------------------------------------------- runs

/// Names the run's code may not be given: the run sets them itself.
const RESERVED_INPUTS: [&str; 2] = ["ANCHOR_API_KEY", "ANCHOR_SESSION_ID"];

fn check_inputs(inputs: Option<Map<String, Value>>) -> Result<Vec<(String, String)>, ApiError> {
    let inputs = inputs.unwrap_or_default();
    if inputs.len() > 100 {
        return Err(ApiError::BadRequest("inputs: at most 100".to_owned()));
    }
    inputs
        .into_iter()
        .map(|(name, value)| {
            let fine = name.len() > "ANCHOR_".len()
                && name.len() <= 128
                && name.starts_with("ANCHOR_")
                && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
            if !fine {
                return Err(ApiError::BadRequest(format!(
                    "inputs: {name:?} is not valid: names start with ANCHOR_ and hold letters, digits and '_'"
                )));
            }
            if RESERVED_INPUTS.contains(&name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "inputs: {name} is set by the run itself and cannot be given"
                )));
            }
            let value = match value {
                Value::String(text) => text,
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "inputs: {name} must be a string (or a number or boolean)"
                    )))
                }
            };
            if value.len() > 64 * 1024 || value.contains('\0') {
                return Err(ApiError::BadRequest(format!(
                    "inputs: {name} is too long (64 KiB) or holds a NUL"
                )));
            }
            Ok((name, value))
        })
        .collect()
}

/// The `session` part a run's own session starts with: the version's
/// configuration with the override laid over it, key by key.
fn merged_configuration(version: Option<&Value>, run_override: Option<&Value>) -> Value {
    let mut merged = version.and_then(Value::as_object).cloned().unwrap_or_default();
    if let Some(Value::Object(over)) = run_override {
        for (key, value) in over {
            merged.insert(key.clone(), value.clone());
        }
    }
    json!({ "session": merged })
}

async fn run_task(
    state: AppState,
    caller: Caller,
    task: TaskRecord,
    version_name: &str,
    body: RunTaskBody,
) -> Result<Json<Data<RunAnswer>>, ApiError> {
    let inputs = check_inputs(body.inputs)?;
    let run_override = check_configuration(
        &state,
        "overrideBrowserConfiguration",
        body.override_browser_configuration,
    )?;
    let named_session = match body.session_id.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<anchorage_core::SessionId>()
                .map_err(|_| ApiError::BadRequest(format!("sessionId {text:?} is not a session id (a UUID)")))?,
        ),
    };
    let run_async = body.run_async.unwrap_or(false);
    let cleanup = body.cleanup_sessions.unwrap_or(true);
    let versions = state.store.task_versions(task.id).await?;
    let version = resolve(&versions, version_name).ok_or_else(|| version_not_found(version_name))?;
    let code = decode_code(&version.code)?;
    // The session: the caller's, running here (the call was passed to the
    // node that runs it), or one of its own.
    let (session, own) = match named_session {
        Some(session_id) => (super::actions::running(&state, &caller, session_id).await?, None),
        None => {
            let configuration = merged_configuration(version.browser_configuration.as_ref(), run_override.as_ref());
            let own = super::tools::start_own_session(&state, &caller, configuration, RUN_SESSION_END).await?;
            let session = state
                .fleet
                .live_session(caller.0.team_id, own.session_id())
                .ok_or_else(|| ApiError::internal("the run's session ended before it was used"))?;
            (session, Some(own))
        }
    };
    let slot = state.code.admit(caller.0.team_id).await?;
    let execution = execution_for(
        &state,
        caller.0.team_id,
        Some(session.id),
        Some((task.id, version.id, version.version.clone())),
    );
    state.store.insert_execution(&execution).await?;
    let execution_id = execution.id;
    let work = Work {
        kind: RunKind::Task,
        code,
        inputs,
    };
    let pending = execution.clone();
    let running = spawn_run(&state, slot, session, execution, work);
    let finishing = {
        let state = state.clone();
        tokio::spawn(async move {
            let execution = match running.await {
                Ok(execution) => execution,
                Err(error) => {
                    let execution = lost(pending, &error);
                    record_end(&state, &execution).await;
                    execution
                }
            };
            if let Some(own) = own {
                if cleanup {
                    own.end().await;
                } else {
                    own.keep();
                }
            }
            execution
        })
    };
    if run_async {
        // The run goes on in its task; its execution is polled.
        drop(finishing);
        return Ok(Data::of(RunAnswer {
            success: true,
            run_async: true,
            message: "Task execution started".to_owned(),
            task_id: task.id.to_string(),
            execution_time: None,
            output: None,
            error: None,
            execution_result_id: execution_id.to_string(),
        }));
    }
    let execution = finishing
        .await
        .map_err(|error| ApiError::internal(format!("a task run failed: {error}")))?;
    Ok(Data::of(RunAnswer {
        success: execution.status == ExecutionStatus::Success,
        run_async: false,
        message: message_of(execution.status).to_owned(),
        task_id: task.id.to_string(),
        execution_time: execution.execution_time_ms,
        output: execution.output,
        error: execution.error_message,
        execution_result_id: execution.id.to_string(),
    }))
}

/// `POST /v1/task/run`: runs a version of a task (by id).
#[utoipa::path(
    operation_id = "run_task",
    post,
    path = "/v1/task/run",
    tag = "tasks",
    summary = "Run a task (by id), in a named running session or in one of its own; sync, or async with an execution to poll",
    request_body = RunTaskBody,
    security(("api_key" = [])),
    responses((status = 200, description = "How the run went, or that it started", body = Data<RunAnswer>))
)]
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<Data<RunAnswer>>, ApiError> {
    let body: RunTaskBody = decode_body(&body, expected)?;
    let task = match body.task_id.as_deref() {
        None | Some("") => return Err(ApiError::BadRequest("taskId is required".to_owned())),
        Some(text) => {
            let id: TaskId = text
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("taskId {text:?} is not a task id (a UUID)")))?;
            state
                .store
                .task(caller.0.team_id, id)
                .await?
                .ok_or_else(task_not_found)?
        }
    };
    let version = body.version.clone().unwrap_or_else(|| "latest".to_owned());
    check_version_name(&version)?;
    run_task(state, caller, task, &version, body).await
}

/// `POST /v1/task/run/{task_name}`: runs the latest version of a task (by name).
#[utoipa::path(
    operation_id = "run_task_by_name",
    post,
    path = "/v1/task/run/{task_name}",
    tag = "tasks",
    summary = "Run the latest version of a task named in the path",
    params(("task_name" = String, Path, description = "The task's name")),
    request_body = RunTaskBody,
    security(("api_key" = [])),
    responses((status = 200, description = "How the run went, or that it started", body = Data<RunAnswer>))
)]
pub async fn run_by_name(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Data<RunAnswer>>, ApiError> {
    let body: RunTaskBody = decode_body(&body, expected)?;
    let task = state
        .store
        .task_named(caller.0.team_id, &name)
        .await?
        .ok_or_else(task_not_found)?;
    run_task(state, caller, task, "latest", body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(name: &str) -> TaskVersionRecord {
        TaskVersionRecord {
            id: TaskVersionId::new_random(),
            task_id: TaskId::new_random(),
            version: name.to_owned(),
            code: String::new(),
            language: LANGUAGE.to_owned(),
            description: None,
            browser_configuration: None,
            deleted: false,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        }
    }

    #[test]
    fn latest_is_the_highest_number_else_the_draft() {
        let versions = vec![version("draft"), version("2"), version("10")];
        assert_eq!(latest_of(&versions).map(|found| found.version.as_str()), Some("10"));
        assert_eq!(
            resolve(&versions, "latest").map(|found| found.version),
            Some("10".to_owned())
        );
        assert_eq!(
            resolve(&versions, "02").map(|found| found.version),
            Some("2".to_owned())
        );
        assert_eq!(resolve(&versions, "3"), None);
        let only_draft = vec![version("draft")];
        assert_eq!(
            latest_of(&only_draft).map(|found| found.version.as_str()),
            Some("draft")
        );
        assert!(latest_of(&[]).is_none());
    }

    #[test]
    fn inputs_are_anchor_names_with_text_values() {
        let given = json!({"ANCHOR_URL": "https://x", "ANCHOR_PAGES": 3, "ANCHOR_FAST": true});
        let mut checked = check_inputs(given.as_object().cloned()).expect("fine");
        checked.sort();
        assert_eq!(
            checked,
            vec![
                ("ANCHOR_FAST".to_owned(), "true".to_owned()),
                ("ANCHOR_PAGES".to_owned(), "3".to_owned()),
                ("ANCHOR_URL".to_owned(), "https://x".to_owned())
            ]
        );
        for bad in [
            json!({"URL": "x"}),
            json!({"ANCHOR_": "x"}),
            json!({"ANCHOR_A-B": "x"}),
            json!({"ANCHOR_API_KEY": "x"}),
            json!({"ANCHOR_X": {"a": 1}}),
            json!({"ANCHOR_X": null}),
        ] {
            assert!(check_inputs(bad.as_object().cloned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn code_is_base64_of_text_and_configurations_merge_key_by_key() {
        assert_eq!(decode_code("cmV0dXJuIDE=").ok().as_deref(), Some("return 1"));
        assert_eq!(decode_code("cmV0dXJuIDE").ok().as_deref(), Some("return 1"));
        assert!(decode_code("string").is_err());
        assert!(decode_code("@@@").is_err());
        assert!(decode_code("").is_err());
        let merged = merged_configuration(
            Some(&json!({"tags": ["a"], "recording": {"active": false}})),
            Some(&json!({"tags": ["b"]})),
        );
        assert_eq!(
            merged,
            json!({"session": {"tags": ["b"], "recording": {"active": false}}})
        );
        assert_eq!(merged_configuration(None, None), json!({"session": {}}));
    }
}

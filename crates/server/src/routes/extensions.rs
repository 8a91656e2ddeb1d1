//! `/v1/extensions…`: browser extensions a team uploads as a zip (checked
//! and unpacked by [`crate::extensions`]) and loads into sessions with
//! `browser.extensions`.

use anchorage_core::{ExtensionId, Timestamp};
use anchorage_store::ExtensionRecord;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::Json;

use super::extract::{field_to_file, unreadable_multipart};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extensions::ExtensionError;
use crate::state::AppState;
use crate::wire::{Data, Deleted, ExtensionItem, Success};

/// Longest extension name, in characters.
const MAX_NAME_CHARS: usize = 255;

fn item(extension: ExtensionRecord) -> ExtensionItem {
    ExtensionItem {
        id: extension.id.to_string(),
        name: extension.name,
        manifest: extension.manifest,
        created_at: extension.created_at.to_string(),
        updated_at: extension.updated_at.to_string(),
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("Extension not found".to_owned())
}

fn id_of(raw: &str) -> Result<ExtensionId, ApiError> {
    raw.parse().map_err(|_| not_found())
}

/// `POST /v1/extensions` (multipart: `name`, `file`).
#[utoipa::path(
    operation_id = "upload_extension",
    post,
    path = "/v1/extensions",
    tag = "extensions",
    summary = "Upload an extension as a zip with manifest.json at its root (multipart: name, file)",
    security(("api_key" = [])),
    responses((status = 200, description = "Checked, unpacked and kept", body = Data<ExtensionItem>))
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Data<ExtensionItem>>, ApiError> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "the body must be multipart/form-data with `name` and `file` parts: {rejection}"
        ))
    })?;
    let id = ExtensionId::new_random();
    let Some(folder) = state.files.extension_dir(id) else {
        return Err(ApiError::BadRequest("this server keeps no extensions".to_owned()));
    };
    let root = folder.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    tokio::fs::create_dir_all(&root).await.map_err(ApiError::internal)?;
    // The zip waits in a temp file next to the extensions until it is unpacked.
    let zip = tempfile::Builder::new()
        .prefix(".upload-")
        .tempfile_in(&root)
        .map_err(ApiError::internal)?
        .into_temp_path();
    let (mut name, mut received) = (None, false);
    while let Some(mut field) = multipart.next_field().await.map_err(unreadable_multipart)? {
        match field.name() {
            Some("name") => name = Some(field.text().await.map_err(unreadable_multipart)?),
            Some("file") => {
                field_to_file(&mut field, &zip, state.max_extension_bytes).await?;
                received = true;
            }
            _ => {}
        }
    }
    let name = name
        .map(|name| name.trim().to_owned())
        .filter(|name| {
            !name.is_empty() && name.chars().count() <= MAX_NAME_CHARS && !name.chars().any(char::is_control)
        })
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "name is required: 1 to {MAX_NAME_CHARS} characters, without control characters"
            ))
        })?;
    if !received {
        return Err(ApiError::BadRequest(
            "file is required: the extension as a zip, in the `file` part".to_owned(),
        ));
    }
    let (limit, into, from) = (state.max_extension_bytes, folder.clone(), zip.to_path_buf());
    let manifest = tokio::task::spawn_blocking(move || crate::extensions::unpack(&from, &into, limit))
        .await
        .map_err(ApiError::internal)?
        .map_err(|error| match error {
            ExtensionError::Invalid(message) => ApiError::BadRequest(format!("file: {message}")),
            ExtensionError::TooLarge(limit) => ApiError::PayloadTooLarge(usize::try_from(limit).unwrap_or(usize::MAX)),
            ExtensionError::Io(error) => ApiError::internal(error),
        })?;
    let size = folder_size(&folder).await;
    let now = Timestamp::now();
    let extension = ExtensionRecord {
        id,
        team_id: caller.0.team_id,
        name,
        manifest,
        size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        created_at: now,
        updated_at: now,
    };
    if let Err(error) = state.store.create_extension(&extension).await {
        let _ = tokio::fs::remove_dir_all(&folder).await;
        return Err(error.into());
    }
    Ok(Data::of(item(extension)))
}

async fn folder_size(folder: &std::path::Path) -> u64 {
    let folder = folder.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut total = 0;
        let mut pending = vec![folder];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                match entry.file_type() {
                    Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                    Ok(_) => total += entry.metadata().map(|meta| meta.len()).unwrap_or(0),
                    Err(_) => {}
                }
            }
        }
        total
    })
    .await
    .unwrap_or(0)
}

/// `GET /v1/extensions`.
#[utoipa::path(
    operation_id = "list_extensions",
    get,
    path = "/v1/extensions",
    tag = "extensions",
    summary = "The team's extensions",
    security(("api_key" = [])),
    responses((status = 200, description = "Oldest first", body = Data<Vec<ExtensionItem>>))
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Data<Vec<ExtensionItem>>>, ApiError> {
    let items = state
        .store
        .list_extensions(Some(caller.0.team_id))
        .await?
        .into_iter()
        .map(item)
        .collect();
    Ok(Data::of(items))
}

/// `GET /v1/extensions/{id}`: the extension itself, not wrapped in `data`
/// (as upstream's SDK reads it).
#[utoipa::path(
    operation_id = "get_extension",
    get,
    path = "/v1/extensions/{id}",
    tag = "extensions",
    summary = "One extension of the team",
    params(("id" = String, Path, description = "The extension's id")),
    security(("api_key" = [])),
    responses((status = 200, description = "The extension", body = ExtensionItem))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<ExtensionItem>, ApiError> {
    let extension = state
        .store
        .extension(caller.0.team_id, id_of(&raw)?)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(item(extension)))
}

/// `DELETE /v1/extensions/{id}`.
#[utoipa::path(
    operation_id = "delete_extension",
    delete,
    path = "/v1/extensions/{id}",
    tag = "extensions",
    summary = "Delete an extension and its files (running sessions keep their copy)",
    params(("id" = String, Path, description = "The extension's id")),
    security(("api_key" = [])),
    responses((status = 200, description = "Deleted", body = Data<Deleted>))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Data<Deleted>>, ApiError> {
    let extension = state
        .store
        .delete_extension(caller.0.team_id, id_of(&raw)?)
        .await?
        .ok_or_else(not_found)?;
    if let Some(folder) = state.files.extension_dir(extension.id) {
        let _ = tokio::fs::remove_dir_all(folder).await;
    }
    Ok(Data::of(Deleted {
        data: Success { status: "success" },
    }))
}

//! `/v1/sessions/{session_id}/recordings…`: a session's recordings (listed,
//! fetched once finished, deleted), and pausing and resuming the one under
//! way. Recording itself is [`crate::recordings`].

use anchorage_core::RecordingStatus;
use anchorage_core::SessionId;
use anchorage_store::RecordingRecord;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::actions::running;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{Data, Deleted, RecordingItem, RecordingList, Success};

fn session_of(raw: &str) -> Result<SessionId, ApiError> {
    raw.parse().map_err(|_| ApiError::session_not_found())
}

/// The session's recordings; `404` when the team has no such session.
async fn recordings_of(
    state: &AppState,
    caller: &Caller,
    session_id: SessionId,
) -> Result<Vec<RecordingRecord>, ApiError> {
    if state.store.session(caller.0.team_id, session_id).await?.is_none() {
        return Err(ApiError::session_not_found());
    }
    Ok(state.store.session_recordings(caller.0.team_id, session_id).await?)
}

/// `GET /v1/sessions/{session_id}/recordings`.
#[utoipa::path(
    operation_id = "list_recordings",
    get,
    path = "/v1/sessions/{session_id}/recordings",
    tag = "recordings",
    summary = "A session's recordings: the one under way and the finished ones",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "Its recordings", body = Data<RecordingList>))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Data<RecordingList>>, ApiError> {
    let session_id = session_of(&raw)?;
    let recordings = recordings_of(&state, &caller, session_id).await?;
    let fetch = state.api_url(&format!("v1/sessions/{session_id}/recordings/primary/fetch"));
    let items: Vec<RecordingItem> = recordings
        .into_iter()
        .enumerate()
        .map(|(index, recording)| RecordingItem {
            is_primary: index == 0,
            file_link: fetch.clone(),
            suggested_file_name: format!("session-{session_id}.mp4"),
            duration: crate::recordings::clock(recording.duration_ms),
            size: recording.size_bytes as f64,
            created_at: recording.created_at.to_string(),
            status: recording.status.as_str().to_owned(),
            error: recording.error,
            id: recording.id.to_string(),
        })
        .collect();
    Ok(Data::of(RecordingList {
        count: items.len(),
        items,
    }))
}

/// How long a fetch waits for the recording of a session that has ended to
/// be finished (its encoder writing the last frames, the file probed): the
/// natural `delete; fetch` gets the video instead of a `409`.
const FINISH_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The session's primary recording; while it is still `recording` for a
/// session that has ended (it is being finished), waits up to
/// [`FINISH_WAIT`] for it to be `ready` or `failed`.
async fn finished_primary(
    state: &AppState,
    caller: &Caller,
    session_id: SessionId,
) -> Result<RecordingRecord, ApiError> {
    let deadline = tokio::time::Instant::now() + FINISH_WAIT;
    loop {
        let recordings = recordings_of(state, caller, session_id).await?;
        let Some(primary) = recordings.into_iter().next() else {
            return Err(ApiError::NotFound(
                "the session has no recording (session.recording.active was off, or it was deleted)".to_owned(),
            ));
        };
        let finishing = primary.status == RecordingStatus::Recording
            && state.fleet.live_session(caller.0.team_id, session_id).is_none()
            && state
                .store
                .session(caller.0.team_id, session_id)
                .await?
                .is_some_and(|session| session.status.is_final());
        if !finishing || tokio::time::Instant::now() >= deadline {
            return Ok(primary);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `GET /v1/sessions/{session_id}/recordings/primary/fetch`.
#[utoipa::path(
    operation_id = "fetch_primary_recording",
    get,
    path = "/v1/sessions/{session_id}/recordings/primary/fetch",
    tag = "recordings",
    summary = "The session's primary recording, an MP4 (H.264), once finished (409 while it records; for a session that has ended, waits up to 30 s for it to be finished)",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "The video", content_type = "video/mp4", body = Vec<u8>))
)]
pub async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let session_id = session_of(&raw)?;
    let primary = finished_primary(&state, &caller, session_id).await?;
    match primary.status {
        RecordingStatus::Ready => {}
        RecordingStatus::Recording => {
            return Err(ApiError::Conflict(format!(
                "the recording is not finished: it is finished when the session ends (a session that \
                 ended is waited for up to {} s)",
                FINISH_WAIT.as_secs()
            )))
        }
        RecordingStatus::Failed => {
            return Err(ApiError::NotFound(format!(
                "the recording failed: {}",
                primary.error.unwrap_or_default()
            )))
        }
    }
    let Some(recordings) = state.files.recordings.as_ref() else {
        return Err(ApiError::NotFound("recordings are not kept on this server".to_owned()));
    };
    let file = tokio::fs::File::open(recordings.file(session_id, primary.id))
        .await
        .map_err(|_| ApiError::NotFound("the recording's file is gone".to_owned()))?;
    let length = file.metadata().await.map_err(ApiError::internal)?.len();
    let mut response = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    headers.insert(axum::http::header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"session-{session_id}.mp4\"")) {
        headers.insert(axum::http::header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `DELETE /v1/sessions/{session_id}/recordings/{recording_id}`.
#[utoipa::path(
    operation_id = "delete_recording",
    delete,
    path = "/v1/sessions/{session_id}/recordings/{recording_id}",
    tag = "recordings",
    summary = "Delete a finished recording (`primary` names the first); 409 while it records",
    params(
        ("session_id" = String, Path, description = "The session's id (a UUID)"),
        ("recording_id" = String, Path, description = "The recording's id, or `primary`"),
    ),
    security(("api_key" = [])),
    responses((status = 200, description = "Deleted", body = Data<Success>))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((raw, recording_id)): Path<(String, String)>,
) -> Result<Json<Data<Success>>, ApiError> {
    let session_id = session_of(&raw)?;
    let recordings = recordings_of(&state, &caller, session_id).await?;
    let target = if recording_id == "primary" {
        recordings.into_iter().next()
    } else {
        recordings
            .into_iter()
            .find(|recording| recording.id.to_string() == recording_id)
    };
    let Some(target) = target else {
        return Err(ApiError::NotFound("Recording not found".to_owned()));
    };
    if target.status == RecordingStatus::Recording {
        return Err(ApiError::Conflict(
            "the recording is under way: end the session first, or pause it".to_owned(),
        ));
    }
    if let Some(recordings) = state.files.recordings.as_ref() {
        recordings.remove_file(session_id, target.id).await;
    }
    state
        .store
        .delete_recording(caller.0.team_id, session_id, target.id)
        .await?;
    Ok(Data::of(Success { status: "success" }))
}

async fn set_paused(
    state: &AppState,
    caller: &Caller,
    raw: &str,
    paused: bool,
) -> Result<Json<Data<Deleted>>, ApiError> {
    let session_id = session_of(raw)?;
    let session = running(state, caller, session_id).await?;
    let Some((_, control)) = session.recording() else {
        return Err(ApiError::Conflict(
            "the session is not recorded (start it with session.recording.active: true)".to_owned(),
        ));
    };
    control.set_paused(paused);
    Ok(Data::of(Deleted {
        data: Success { status: "success" },
    }))
}

/// `POST /v1/sessions/{session_id}/recordings/pause`.
#[utoipa::path(
    operation_id = "pause_recording",
    post,
    path = "/v1/sessions/{session_id}/recordings/pause",
    tag = "recordings",
    summary = "Pause the session's recording: what happens until the resume is not in the video",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "Paused (or already paused)", body = Data<Deleted>))
)]
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Data<Deleted>>, ApiError> {
    set_paused(&state, &caller, &raw, true).await
}

/// `POST /v1/sessions/{session_id}/recordings/resume`.
#[utoipa::path(
    operation_id = "resume_recording",
    post,
    path = "/v1/sessions/{session_id}/recordings/resume",
    tag = "recordings",
    summary = "Resume the session's paused recording",
    params(("session_id" = String, Path, description = "The session's id (a UUID)")),
    security(("api_key" = [])),
    responses((status = 200, description = "Recording (or already recording)", body = Data<Deleted>))
)]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Data<Deleted>>, ApiError> {
    set_paused(&state, &caller, &raw, false).await
}

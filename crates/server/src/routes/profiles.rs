//! `/v1/profiles…`: a team's saved browser profiles (cookies, local
//! storage, IndexedDB, cache). A profile is filled by a session: one made
//! with `source: "session"` from that running session when it ends, and any
//! profile by a session started with `browser.profile.persist: true`. The
//! files are [`crate::profiles::ProfileFiles`]'.

use anchorage_core::{check_profile_name, ProfileId, SessionId, Timestamp};
use anchorage_store::{ProfileRecord, StoreError};
use axum::extract::{Path, State};
use axum::Json;

use super::actions::running;
use super::extract::{decode_body, JsonBody};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{Data, ProfileBody, ProfileItem, ProfileList, Success};

/// Longest description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1000;

/// A profile as answered: `saving` while a session's state is being
/// written into it.
fn item(state: &AppState, profile: ProfileRecord) -> ProfileItem {
    let saving = state
        .files
        .profiles
        .as_ref()
        .is_some_and(|files| files.is_saving(profile.id));
    ProfileItem {
        name: profile.name,
        description: profile.description,
        source: profile.source,
        session_id: profile.session_id.map(|id| id.to_string()),
        status: if saving {
            "saving".to_owned()
        } else {
            profile.status.as_str().to_owned()
        },
        created_at: profile.created_at.to_string(),
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("Profile not found".to_owned())
}

fn expected(path: &str) -> String {
    match path {
        "dedicated_sticky_ip" => "dedicated_sticky_ip must be true or false".to_owned(),
        // A missing field (the body itself is known to be an object).
        "" => "name is required: the profile's name, a string".to_owned(),
        field => format!("{field} must be a string"),
    }
}

/// `POST /v1/profiles`.
#[utoipa::path(
    operation_id = "create_profile",
    post,
    path = "/v1/profiles",
    tag = "profiles",
    summary = "Make a profile: empty, or saved from a running session when it ends",
    request_body = ProfileBody,
    security(("api_key" = [])),
    responses((status = 200, description = "Made", body = Data<Success>))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<Data<Success>>, ApiError> {
    let body: ProfileBody = decode_body(&body, expected)?;
    check_profile_name(&body.name, "name").map_err(|error| ApiError::BadRequest(error.0))?;
    if body
        .description
        .as_ref()
        .is_some_and(|text| text.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(ApiError::BadRequest(format!(
            "description must be at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    if body.dedicated_sticky_ip == Some(true) {
        return Err(ApiError::BadRequest(
            "dedicated_sticky_ip is a hosted AnchorBrowser service (a residential IP); anchorage has none: \
             leave it out, or give sessions a proxy of your own (session.proxy)"
                .to_owned(),
        ));
    }
    if state.files.profiles.as_ref().is_none() {
        return Err(ApiError::BadRequest("this server keeps no profiles".to_owned()));
    }
    let session = match (body.source.as_deref(), body.session_id.as_deref()) {
        (None, None) => None,
        (Some("session"), Some(raw)) => {
            let id: SessionId = raw
                .parse()
                .map_err(|_| ApiError::BadRequest("session_id must be a session's id (a UUID)".to_owned()))?;
            let session = running(&state, &caller, id).await?;
            if session.devtools.scope().is_some() {
                return Err(ApiError::BadRequest(format!(
                    "session {id} is a context session (a browser context in a shared browser): it has no \
                     profile directory to save; start the session with {{\"anchorage\": {{\"isolation\": \"browser\"}}}} \
                     to make a profile from it"
                )));
            }
            Some(session)
        }
        (Some("session"), None) => {
            return Err(ApiError::BadRequest(
                "session_id is required with source \"session\"".to_owned(),
            ))
        }
        (None, Some(_)) => {
            return Err(ApiError::BadRequest(
                "source must be \"session\" when a session_id is given".to_owned(),
            ))
        }
        (Some(_), _) => {
            return Err(ApiError::BadRequest(
                "source must be \"session\" (the only source there is)".to_owned(),
            ))
        }
    };
    let now = Timestamp::now();
    let profile = ProfileRecord {
        id: ProfileId::new_random(),
        team_id: caller.0.team_id,
        name: body.name.clone(),
        description: body.description.clone(),
        source: session.as_ref().map(|_| "session".to_owned()),
        session_id: session.as_ref().map(|session| session.id),
        status: if session.is_some() {
            anchorage_core::ProfileStatus::Pending
        } else {
            anchorage_core::ProfileStatus::Ready
        },
        version: None,
        size_bytes: 0,
        created_at: now,
        updated_at: now,
    };
    match state.store.create_profile(&profile).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists(_)) => {
            return Err(ApiError::Conflict(format!(
                "your team already has a profile named {:?}",
                body.name
            )))
        }
        Err(error) => return Err(error.into()),
    }
    if let Some(session) = session {
        session.save_into_on_end(profile.id);
    }
    Ok(Data::of(Success { status: "success" }))
}

/// `GET /v1/profiles`.
#[utoipa::path(
    operation_id = "list_profiles",
    get,
    path = "/v1/profiles",
    tag = "profiles",
    summary = "The team's profiles",
    security(("api_key" = [])),
    responses((status = 200, description = "Its profiles, oldest first", body = Data<ProfileList>))
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Data<ProfileList>>, ApiError> {
    let items: Vec<ProfileItem> = state
        .store
        .list_profiles(caller.0.team_id)
        .await?
        .into_iter()
        .map(|profile| item(&state, profile))
        .collect();
    Ok(Data::of(ProfileList {
        count: items.len(),
        items,
    }))
}

/// `GET /v1/profiles/{name}`.
#[utoipa::path(
    operation_id = "get_profile",
    get,
    path = "/v1/profiles/{name}",
    tag = "profiles",
    summary = "One profile of the team",
    params(("name" = String, Path, description = "The profile's name")),
    security(("api_key" = [])),
    responses((status = 200, description = "The profile", body = Data<ProfileItem>))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Data<ProfileItem>>, ApiError> {
    let profile = state
        .store
        .profile(caller.0.team_id, &name)
        .await?
        .ok_or_else(not_found)?;
    Ok(Data::of(item(&state, profile)))
}

/// `DELETE /v1/profiles/{name}`.
#[utoipa::path(
    operation_id = "delete_profile",
    delete,
    path = "/v1/profiles/{name}",
    tag = "profiles",
    summary = "Delete a profile and its saved files (sessions already started from it keep their copy)",
    params(("name" = String, Path, description = "The profile's name")),
    security(("api_key" = [])),
    responses((status = 200, description = "Deleted", body = Data<Success>))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Data<Success>>, ApiError> {
    let profile = state
        .store
        .delete_profile(caller.0.team_id, &name)
        .await?
        .ok_or_else(not_found)?;
    if let Some(files) = state.files.profiles.as_ref() {
        files.remove(profile.id).await;
    }
    Ok(Data::of(Success { status: "success" }))
}

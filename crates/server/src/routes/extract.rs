//! Request decoding that answers with the contract's JSON errors: bodies,
//! query strings and path ids.

use std::collections::HashMap;

use anchorage_core::Timestamp;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body; an empty body reads as `{}`. Malformed JSON is `400`, an
/// oversized body `413`.
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.max_body_bytes;
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::BadRequest(format!("the request body could not be read: {rejection}"))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Value::Object(Default::default())));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|error| ApiError::BadRequest(format!("the request body is not valid JSON: {error}")))
    }
}

/// Decodes a JSON body (an object) into its typed request struct; a value of
/// the wrong type is refused with `expected(path)` (see
/// `anchorage_core::options::decode_with`).
pub fn decode_body<T: serde::de::DeserializeOwned>(
    body: &Value,
    expected: impl FnOnce(&str) -> String,
) -> Result<T, ApiError> {
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".to_owned(),
        ));
    }
    anchorage_core::options::decode_with(body, expected).map_err(ApiError::BadRequest)
}

/// The session a URL with a per-session token names (`/…/{session_id}?token=…`,
/// the `cdp_url` and `live_view_url` forms): `404` for a path id that is not
/// a session id, `401` for a missing or wrong token.
pub fn session_by_token(
    state: &crate::state::AppState,
    raw_id: &str,
    query: Option<&str>,
) -> Result<anchorage_core::SessionId, ApiError> {
    let session_id = raw_id
        .parse::<anchorage_core::SessionId>()
        .map_err(|_| ApiError::session_not_found())?;
    let query = QueryMap::parse(query);
    if query
        .get("token")
        .is_some_and(|token| state.tokens.verify(session_id, token))
    {
        Ok(session_id)
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The query string as name → value (the last one wins).
#[derive(Debug, Default)]
pub struct QueryMap(pub HashMap<String, String>);

impl QueryMap {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// A value, treating empty as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|value| !value.is_empty())
    }

    /// An integer within bounds, or `400` naming the parameter.
    pub fn integer(&self, name: &str, low: i64, high: i64) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        match text.parse::<i64>() {
            Ok(value) if (low..=high).contains(&value) => Ok(Some(value)),
            _ => Err(ApiError::BadRequest(format!(
                "{name} must be an integer between {low} and {high}"
            ))),
        }
    }

    /// A date-time, or `400` naming the parameter.
    pub fn timestamp(&self, name: &str) -> Result<Option<Timestamp>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        Timestamp::parse(text).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name} must be an ISO 8601 date-time such as 2026-01-31T12:00:00Z"
            ))
        })
    }

    /// A comma-separated list, without empty items.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|text| {
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What a path id answers when it is malformed or unknown.
pub trait PathId: std::str::FromStr + Send {
    /// The `404` for this kind of id.
    fn not_found() -> ApiError;
}

impl PathId for anchorage_core::SessionId {
    fn not_found() -> ApiError {
        ApiError::session_not_found()
    }
}

impl PathId for anchorage_core::BatchId {
    fn not_found() -> ApiError {
        ApiError::NotFound("Batch not found".to_owned())
    }
}

impl PathId for anchorage_core::RequestId {
    fn not_found() -> ApiError {
        ApiError::NotFound("Request not found".to_owned())
    }
}

/// One id from the path; a malformed one is the same `404` as an unknown one.
#[derive(Debug)]
pub struct IdPath<T>(pub T);

impl<T: PathId> axum::extract::FromRequestParts<AppState> for IdPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| T::not_found())?;
        raw.parse().map(Self).map_err(|_| T::not_found())
    }
}

/// Streams one multipart field into a new file at `path`, at most `limit`
/// bytes (`413` beyond); on any error the file is removed. Returns the bytes
/// written.
pub async fn field_to_file(
    field: &mut axum::extract::multipart::Field<'_>,
    path: &std::path::Path,
    limit: u64,
) -> Result<u64, ApiError> {
    use tokio::io::AsyncWriteExt;

    let mut file = tokio::fs::File::create(path).await.map_err(ApiError::internal)?;
    let mut written: u64 = 0;
    let outcome = async {
        while let Some(chunk) = field.chunk().await.map_err(unreadable_multipart)? {
            written += chunk.len() as u64;
            if written > limit {
                return Err(ApiError::PayloadTooLarge(usize::try_from(limit).unwrap_or(usize::MAX)));
            }
            file.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
        file.flush().await.map_err(ApiError::internal)
    }
    .await;
    if let Err(error) = outcome {
        drop(file);
        let _ = tokio::fs::remove_file(path).await;
        return Err(error);
    }
    Ok(written)
}

/// A multipart body that could not be read.
pub fn unreadable_multipart(error: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::BadRequest(format!("the multipart body could not be read: {error}"))
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_query_string_is_read_or_refused_without_a_panic(raw in "(page|limit|created_from|%|=|&|[0-9a-zA-Z:+.-]){0,80}") {
            let query = QueryMap::parse(Some(&raw));
            if let Ok(Some(page)) = query.integer("page", 1, 100) {
                prop_assert!((1..=100).contains(&page));
            }
            let _ = query.timestamp("created_from");
            let _ = query.list("tags");
        }
    }
}

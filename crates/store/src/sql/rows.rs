//! Reading rows into records; a value this version cannot read is
//! [`StoreError::Corrupt`], never a panic.

use std::str::FromStr;

use anchorage_core::Timestamp;
use sqlx::Row;

use super::DbRow;

use crate::records::{ApiKeyRecord, RequestRecord, SessionRecord, TeamRecord};
use crate::{StoreError, StoreResult};

pub(super) fn parse_id<T: FromStr>(row: &DbRow, column: &str) -> StoreResult<T> {
    let text: String = row.try_get(column)?;
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{column} holds {text:?}")))
}

/// Session ids as a statement's `RETURNING id` gave them.
pub(super) fn session_ids(texts: &[String]) -> StoreResult<Vec<anchorage_core::SessionId>> {
    texts
        .iter()
        .map(|text| {
            text.parse()
                .map_err(|_| StoreError::Corrupt(format!("session id {text:?}")))
        })
        .collect()
}

fn parse_optional_id<T: FromStr>(row: &DbRow, column: &str) -> StoreResult<Option<T>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|text| {
        text.parse()
            .map_err(|_| StoreError::Corrupt(format!("{column} holds {text:?}")))
    })
    .transpose()
}

fn time(row: &DbRow, column: &str) -> StoreResult<Timestamp> {
    Ok(Timestamp::from_millis(row.try_get(column)?))
}

fn optional_time(row: &DbRow, column: &str) -> StoreResult<Option<Timestamp>> {
    let millis: Option<i64> = row.try_get(column)?;
    Ok(millis.map(Timestamp::from_millis))
}

fn json(row: &DbRow, column: &str) -> StoreResult<serde_json::Value> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|error| StoreError::Corrupt(format!("{column}: {error}")))
}

pub(super) fn team_from_row(row: &DbRow) -> StoreResult<TeamRecord> {
    Ok(TeamRecord {
        id: parse_id(row, "id")?,
        name: row.try_get("name")?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn api_key_from_row(row: &DbRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: parse_id(row, "id")?,
        team_id: parse_id(row, "team_id")?,
        team_name: row.try_get("team_name")?,
        name: row.try_get("name")?,
        prefix: row.try_get("key_prefix")?,
        created_at: time(row, "created_at")?,
        revoked_at: optional_time(row, "revoked_at")?,
    })
}

pub(super) fn session_from_row(row: &DbRow) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        id: parse_id(row, "id")?,
        team_id: parse_id(row, "team_id")?,
        api_key_id: parse_optional_id(row, "api_key_id")?,
        api_key_name: row.try_get("api_key_name")?,
        request_id: parse_optional_id(row, "request_id")?,
        batch_id: parse_optional_id(row, "batch_id")?,
        status: parse_id(row, "status")?,
        configuration: json(row, "configuration")?,
        tags: Vec::new(),
        headless: row.try_get("headless")?,
        recording: row.try_get("recording")?,
        proxy: row.try_get("proxy")?,
        created_at: time(row, "created_at")?,
        started_at: optional_time(row, "started_at")?,
        ended_at: optional_time(row, "ended_at")?,
        end_reason: row.try_get("end_reason")?,
        node_id: parse_optional_id(row, "node_id")?,
    })
}

pub(super) fn request_from_row(row: &DbRow) -> StoreResult<RequestRecord> {
    let metadata: Option<String> = row.try_get("metadata")?;
    let configuration = json(row, "configuration")?;
    let stored_options: Option<String> = row.try_get("options")?;
    let options = match stored_options {
        Some(text) => serde_json::from_str(&text).map_err(|error| StoreError::Corrupt(format!("options: {error}")))?,
        // A row of a version before the typed column: derived from its body,
        // which that version validated (one that no longer passes cannot be
        // acted on).
        None => anchorage_core::SessionOptions::from_configuration(&configuration)
            .map_err(|error| StoreError::Corrupt(format!("a stored start body is not valid: {error}")))?,
    };
    Ok(RequestRecord {
        id: parse_id(row, "id")?,
        team_id: parse_id(row, "team_id")?,
        api_key_id: parse_optional_id(row, "api_key_id")?,
        api_key_name: row.try_get("api_key_name")?,
        batch_id: parse_optional_id(row, "batch_id")?,
        item_index: row.try_get("item_index")?,
        status: parse_id(row, "status")?,
        session_id: parse_optional_id(row, "session_id")?,
        configuration,
        options,
        error: row.try_get("error")?,
        retry_count: row.try_get("retry_count")?,
        metadata: metadata
            .map(|text| serde_json::from_str(&text).map_err(|error| StoreError::Corrupt(format!("metadata: {error}"))))
            .transpose()?,
        created_at: time(row, "created_at")?,
        started_at: optional_time(row, "started_at")?,
        completed_at: optional_time(row, "completed_at")?,
    })
}

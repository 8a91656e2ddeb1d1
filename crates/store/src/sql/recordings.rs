//! Session recordings in SQLite.

use anchorage_core::webhook::WebhookEvent;
use anchorage_core::{RecordingStatus, SessionId, TeamId, Timestamp};
use sqlx::Row;

use super::DbRow;

use super::rows::parse_id;
use super::SqlStore;
use crate::records::RecordingRecord;
use crate::StoreResult;

const COLUMNS: &str = "id, session_id, team_id, status, size_bytes, duration_ms, error, created_at, ended_at";

fn recording_from_row(row: &DbRow) -> StoreResult<RecordingRecord> {
    let ended_at: Option<i64> = row.try_get("ended_at")?;
    Ok(RecordingRecord {
        id: parse_id(row, "id")?,
        session_id: parse_id(row, "session_id")?,
        team_id: parse_id(row, "team_id")?,
        status: super::rows::parse_id(row, "status")?,
        size_bytes: row.try_get("size_bytes")?,
        duration_ms: row.try_get("duration_ms")?,
        error: row.try_get("error")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        ended_at: ended_at.map(Timestamp::from_millis),
    })
}

impl SqlStore {
    pub(super) async fn insert_recording(&self, recording: &RecordingRecord) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO recordings ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(recording.id.to_string())
        .bind(recording.session_id.to_string())
        .bind(recording.team_id.to_string())
        .bind(recording.status.as_str())
        .bind(recording.size_bytes)
        .bind(recording.duration_ms)
        .bind(&recording.error)
        .bind(recording.created_at.as_millis())
        .bind(recording.ended_at.map(|at| at.as_millis()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn end_recording(
        &self,
        id: anchorage_core::RecordingId,
        status: RecordingStatus,
        size_bytes: i64,
        duration_ms: i64,
        error: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let mut transaction = super::write(&self.pool).await?;
        let row = sqlx::query(&format!(
            "UPDATE recordings SET status = $1, size_bytes = $2, duration_ms = $3, error = $4, ended_at = $5 \
             WHERE id = $6 AND status = 'recording' RETURNING {COLUMNS}"
        ))
        .bind(status.as_str())
        .bind(size_bytes)
        .bind(duration_ms)
        .bind(error)
        .bind(at.as_millis())
        .bind(id.to_string())
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(row) = row else {
            transaction.rollback().await?;
            return Ok(false);
        };
        let recording = recording_from_row(&row)?;
        if status == RecordingStatus::Ready
            && super::webhooks::wanted(&mut transaction, recording.team_id, "session.recording.ready").await?
        {
            let event = WebhookEvent::recording_ready(
                recording.session_id,
                recording.team_id,
                &recording.id.to_string(),
                duration_ms,
                size_bytes,
                at,
            );
            super::webhooks::record_event(&mut transaction, &event, None).await?;
        }
        transaction.commit().await?;
        Ok(true)
    }

    pub(super) async fn recordings_of(
        &self,
        team_id: TeamId,
        session_id: SessionId,
    ) -> StoreResult<Vec<RecordingRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM recordings WHERE team_id = $1 AND session_id = $2 ORDER BY created_at, id"
        ))
        .bind(team_id.to_string())
        .bind(session_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(recording_from_row).collect()
    }

    pub(super) async fn remove_recording(
        &self,
        team_id: TeamId,
        session_id: SessionId,
        id: anchorage_core::RecordingId,
    ) -> StoreResult<Option<RecordingRecord>> {
        let row = sqlx::query(&format!(
            "DELETE FROM recordings WHERE team_id = $1 AND session_id = $2 AND id = $3 RETURNING {COLUMNS}"
        ))
        .bind(team_id.to_string())
        .bind(session_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(recording_from_row).transpose()
    }

    pub(super) async fn recordings_with(
        &self,
        status: RecordingStatus,
        ended_before: Option<Timestamp>,
        node: Option<anchorage_core::NodeId>,
    ) -> StoreResult<Vec<RecordingRecord>> {
        // A session without a node is from before nodes were recorded.
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM recordings WHERE status = $1 AND ($2 IS NULL OR ended_at < $3) \
             AND ($4 IS NULL OR session_id IN (SELECT s.id FROM sessions s WHERE s.node_id = $5 OR s.node_id IS NULL)) \
             ORDER BY created_at, id"
        ))
        .bind(status.as_str())
        .bind(ended_before.map(|at| at.as_millis()))
        .bind(ended_before.map(|at| at.as_millis()))
        .bind(node.map(|node| node.to_string()))
        .bind(node.map(|node| node.to_string()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(recording_from_row).collect()
    }
}

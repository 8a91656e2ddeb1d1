//! Batches in SQLite. The status of a batch is computed from its items, in
//! Rust by `BatchCounts::status` and in SQL by [`STATUS_EXPRESSION`] (for the
//! list filter); a contract test keeps the two in agreement.

use anchorage_core::webhook::WebhookEvent;
use anchorage_core::{
    BatchCounts, BatchId, BatchStatus, RequestId, RequestMove, RequestStatus, SessionId, SessionMove, SessionStatus,
    TeamId, Timestamp,
};
use sqlx::{QueryBuilder, Row};

use super::DbRow;

use super::Db;

use super::rows::{parse_id, request_from_row};
use super::store::json_text;
use super::SqlStore;
use crate::records::{BatchChange, BatchFilter, BatchItem, BatchRecord, BatchSummary, RequestRecord, RetryOutcome};
use crate::{StoreError, StoreResult};

const SUMMARY_SELECT: &str = "SELECT b.id, b.team_id, b.total_requests, b.configuration, b.metadata, b.created_at, \
     b.cancelled_at, \
     COALESCE(SUM(CASE WHEN r.status = 'pending' THEN 1 ELSE 0 END), 0) AS pending_count, \
     COALESCE(SUM(CASE WHEN r.status = 'processing' THEN 1 ELSE 0 END), 0) AS processing_count, \
     COALESCE(SUM(CASE WHEN r.status = 'completed' THEN 1 ELSE 0 END), 0) AS completed_count, \
     COALESCE(SUM(CASE WHEN r.status = 'failed' THEN 1 ELSE 0 END), 0) AS failed_count, \
     COALESCE(SUM(CASE WHEN r.status = 'cancelled' THEN 1 ELSE 0 END), 0) AS cancelled_count, \
     COALESCE(SUM(CASE WHEN r.status <> 'pending' OR r.retry_count > 0 OR r.started_at IS NOT NULL \
       THEN 1 ELSE 0 END), 0) AS attempted_count, \
     MAX(r.completed_at) AS last_completed_at, \
     MIN(CASE WHEN r.status = 'failed' THEN r.error END) AS first_error \
     FROM batches b LEFT JOIN start_requests r ON r.batch_id = b.id";

const SUMMARY_GROUP: &str =
    " GROUP BY b.id, b.team_id, b.total_requests, b.configuration, b.metadata, b.created_at, b.cancelled_at";

/// The batch status in SQL, over the grouped items; mirrors `BatchCounts::status`.
const STATUS_EXPRESSION: &str = "CASE WHEN b.cancelled_at IS NOT NULL THEN 'cancelled' \
     WHEN COALESCE(SUM(CASE WHEN r.status IN ('pending', 'processing') THEN 1 ELSE 0 END), 0) = 0 THEN \
       CASE WHEN COALESCE(SUM(CASE WHEN r.status = 'completed' THEN 1 ELSE 0 END), 0) > 0 \
         THEN 'completed' ELSE 'failed' END \
     WHEN COALESCE(SUM(CASE WHEN r.status <> 'pending' OR r.retry_count > 0 OR r.started_at IS NOT NULL \
       THEN 1 ELSE 0 END), 0) = 0 THEN 'pending' \
     ELSE 'processing' END";

fn summary_from_row(row: &DbRow) -> StoreResult<BatchSummary> {
    let json = |column: &str| -> StoreResult<Option<serde_json::Value>> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|text| serde_json::from_str(&text).map_err(|error| StoreError::Corrupt(format!("{column}: {error}"))))
            .transpose()
    };
    let cancelled_at: Option<i64> = row.try_get("cancelled_at")?;
    let last_completed_at: Option<i64> = row.try_get("last_completed_at")?;
    Ok(BatchSummary {
        id: parse_id(row, "id")?,
        team_id: parse_id(row, "team_id")?,
        total_requests: row.try_get("total_requests")?,
        configuration: json("configuration")?.unwrap_or(serde_json::Value::Null),
        metadata: json("metadata")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        cancelled_at: cancelled_at.map(Timestamp::from_millis),
        counts: BatchCounts {
            pending: row.try_get("pending_count")?,
            processing: row.try_get("processing_count")?,
            completed: row.try_get("completed_count")?,
            failed: row.try_get("failed_count")?,
            cancelled: row.try_get("cancelled_count")?,
            attempted: row.try_get("attempted_count")?,
        },
        last_completed_at: last_completed_at.map(Timestamp::from_millis),
        first_error: row.try_get("first_error")?,
    })
}

/// Items are inserted this many to a statement.
const INSERT_CHUNK: usize = 100;

impl SqlStore {
    pub(super) async fn insert_batch_rows(&self, batch: &BatchRecord, items: &[RequestRecord]) -> StoreResult<()> {
        let mut transaction = super::write(&self.pool).await?;
        sqlx::query(
            "INSERT INTO batches (id, team_id, api_key_id, total_requests, configuration, metadata, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(batch.id.to_string())
        .bind(batch.team_id.to_string())
        .bind(batch.api_key_id.map(|id| id.to_string()))
        .bind(batch.total_requests)
        .bind(json_text(&batch.configuration))
        .bind(batch.metadata.as_ref().map(json_text))
        .bind(batch.created_at.as_millis())
        .execute(&mut *transaction)
        .await?;
        for chunk in items.chunks(INSERT_CHUNK) {
            let options = chunk
                .iter()
                .map(|item| super::store::options_text(&item.options))
                .collect::<StoreResult<Vec<String>>>()?;
            let mut builder: QueryBuilder<'_, Db> = QueryBuilder::new(
                "INSERT INTO start_requests (id, team_id, api_key_id, api_key_name, batch_id, item_index, status, \
                 session_id, configuration, options, error, retry_count, metadata, created_at, started_at, completed_at) ",
            );
            builder.push_values(chunk.iter().zip(options), |mut values, (item, options)| {
                values
                    .push_bind(item.id.to_string())
                    .push_bind(item.team_id.to_string())
                    .push_bind(item.api_key_id.map(|id| id.to_string()))
                    .push_bind(item.api_key_name.clone())
                    .push_bind(item.batch_id.map(|id| id.to_string()))
                    .push_bind(item.item_index)
                    .push_bind(item.status.as_str())
                    .push_bind(item.session_id.map(|id| id.to_string()))
                    .push_bind(json_text(&item.configuration))
                    .push_bind(options)
                    .push_bind(item.error.clone())
                    .push_bind(item.retry_count)
                    .push_bind(item.metadata.as_ref().map(json_text))
                    .push_bind(item.created_at.as_millis())
                    .push_bind(item.started_at.map(|at| at.as_millis()))
                    .push_bind(item.completed_at.map(|at| at.as_millis()));
            });
            builder.build().execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    pub(super) async fn batch_summary(&self, team_id: TeamId, batch_id: BatchId) -> StoreResult<Option<BatchSummary>> {
        let query = format!("{SUMMARY_SELECT} WHERE b.id = $1 AND b.team_id = $2{SUMMARY_GROUP}");
        let row = sqlx::query(&query)
            .bind(batch_id.to_string())
            .bind(team_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(summary_from_row).transpose()
    }

    pub(super) async fn batch_item_rows(&self, batch_id: BatchId) -> StoreResult<Vec<BatchItem>> {
        let rows = sqlx::query(
            "SELECT r.*, s.status AS session_status FROM start_requests r \
             LEFT JOIN sessions s ON s.id = r.session_id \
             WHERE r.batch_id = $1 ORDER BY r.item_index",
        )
        .bind(batch_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let session_status: Option<String> = row.try_get("session_status")?;
                Ok(BatchItem {
                    request: request_from_row(row)?,
                    session_status: session_status
                        .map(|text| {
                            text.parse()
                                .map_err(|_| StoreError::Corrupt(format!("session status {text:?}")))
                        })
                        .transpose()?,
                })
            })
            .collect()
    }

    pub(super) async fn batch_page(&self, filter: &BatchFilter) -> StoreResult<(Vec<BatchSummary>, i64)> {
        let push_filter = |builder: &mut QueryBuilder<'_, Db>| {
            builder
                .push(" WHERE b.team_id = ")
                .push_bind(filter.team_id.to_string());
            if let Some(after) = filter.created_after {
                builder.push(" AND b.created_at >= ").push_bind(after.as_millis());
            }
            if let Some(before) = filter.created_before {
                builder.push(" AND b.created_at <= ").push_bind(before.as_millis());
            }
            builder.push(SUMMARY_GROUP);
            if let Some(status) = filter.status {
                builder
                    .push(format!(" HAVING {STATUS_EXPRESSION} = "))
                    .push_bind(status.as_str());
            }
        };
        let mut count: QueryBuilder<'_, Db> = QueryBuilder::new(format!("SELECT COUNT(*) FROM ({SUMMARY_SELECT}"));
        push_filter(&mut count);
        count.push(") matching");
        // One read transaction: the total and the page share a snapshot.
        let mut transaction = super::read(&self.pool).await?;
        let total: i64 = count.build_query_scalar().fetch_one(&mut *transaction).await?;

        let mut select: QueryBuilder<'_, Db> = QueryBuilder::new(SUMMARY_SELECT);
        push_filter(&mut select);
        select
            .push(" ORDER BY b.created_at DESC, b.id DESC LIMIT ")
            .push_bind(filter.limit);
        select
            .push(" OFFSET ")
            .push_bind((filter.page.max(1) - 1).saturating_mul(filter.limit));
        let rows = select.build().fetch_all(&mut *transaction).await?;
        transaction.commit().await?;
        let batches = rows.iter().map(summary_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok((batches, total))
    }

    pub(super) async fn all_batch_item_counts(&self) -> StoreResult<BatchCounts> {
        let row = sqlx::query(
            "SELECT \
             COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS pending_count, \
             COALESCE(SUM(CASE WHEN status = 'processing' THEN 1 ELSE 0 END), 0) AS processing_count, \
             COALESCE(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0) AS completed_count, \
             COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed_count, \
             COALESCE(SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END), 0) AS cancelled_count \
             FROM start_requests WHERE batch_id IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(BatchCounts {
            pending: row.try_get("pending_count")?,
            processing: row.try_get("processing_count")?,
            completed: row.try_get("completed_count")?,
            failed: row.try_get("failed_count")?,
            cancelled: row.try_get("cancelled_count")?,
            attempted: 0,
        })
    }

    /// The status a batch of this team has now, for a refusal; `None` if
    /// there is no such batch.
    async fn status_of(&self, team_id: TeamId, batch_id: BatchId) -> StoreResult<Option<BatchStatus>> {
        Ok(self.batch_summary(team_id, batch_id).await?.map(|batch| batch.status()))
    }

    /// Records `batch.completed`/`batch.failed` when the batch of a request
    /// (if it has one) has just become final and its event is not recorded
    /// yet. Called by every transaction that makes a batch item final.
    pub(super) async fn batch_event_of_request(
        transaction: &mut sqlx::Transaction<'_, Db>,
        request_id: RequestId,
        at: Timestamp,
    ) -> StoreResult<()> {
        let batch_id: Option<String> = sqlx::query_scalar("SELECT batch_id FROM start_requests WHERE id = $1")
            .bind(request_id.to_string())
            .fetch_optional(&mut **transaction)
            .await?
            .flatten();
        let Some(batch_id) = batch_id else { return Ok(()) };
        // Most items that become final leave others still open: stop at the first.
        let open: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM start_requests WHERE batch_id = $1 AND status IN ('pending', 'processing') LIMIT 1",
        )
        .bind(&batch_id)
        .fetch_optional(&mut **transaction)
        .await?;
        if open.is_some() {
            return Ok(());
        }
        let query = format!("{SUMMARY_SELECT} WHERE b.id = $1 AND b.final_event_at IS NULL{SUMMARY_GROUP}");
        let row = sqlx::query(&query)
            .bind(&batch_id)
            .fetch_optional(&mut **transaction)
            .await?;
        let Some(summary) = row.as_ref().map(summary_from_row).transpose()? else {
            return Ok(());
        };
        if summary.cancelled_at.is_some() || !summary.status().is_final() {
            return Ok(());
        }
        sqlx::query("UPDATE batches SET final_event_at = $1 WHERE id = $2 AND final_event_at IS NULL")
            .bind(at.as_millis())
            .bind(&batch_id)
            .execute(&mut **transaction)
            .await?;
        if let Some(event) = WebhookEvent::batch_ended(
            summary.id,
            summary.team_id,
            &summary.counts,
            summary.first_error.as_deref(),
            at,
        ) {
            if super::webhooks::wanted(transaction, summary.team_id, event.event_type).await? {
                super::webhooks::record_event(transaction, &event, None).await?;
            }
        }
        Ok(())
    }

    /// Ends the batch's sessions that are still launching; their launches
    /// then find the session ended and kill what they started.
    async fn end_starting_sessions(
        transaction: &mut sqlx::Transaction<'_, Db>,
        batch_id: BatchId,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        // Launching sessions only: running ones are handed back to the
        // fleet, whose supervisors end them.
        let ended: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET status = 'completed', end_reason = $1, ended_at = $2 \
             WHERE batch_id = $3 AND status = 'starting' RETURNING id",
        )
        .bind(reason)
        .bind(at.as_millis())
        .bind(batch_id.to_string())
        .fetch_all(&mut **transaction)
        .await?;
        let ended = super::rows::session_ids(&ended)?;
        super::webhooks::session_events(transaction, &ended).await?;
        Ok(())
    }

    async fn running_sessions(
        transaction: &mut sqlx::Transaction<'_, Db>,
        batch_id: BatchId,
    ) -> StoreResult<Vec<SessionId>> {
        let rows = sqlx::query("SELECT id FROM sessions WHERE batch_id = $1 AND status = 'running' ORDER BY id")
            .bind(batch_id.to_string())
            .fetch_all(&mut **transaction)
            .await?;
        rows.iter().map(|row| parse_id(row, "id")).collect()
    }

    pub(super) async fn cancel_batch_rows(
        &self,
        team_id: TeamId,
        batch_id: BatchId,
        at: Timestamp,
    ) -> StoreResult<BatchChange> {
        let mut transaction = super::write(&self.pool).await?;
        // The conditional write comes first: it takes the write lock, so of
        // two racing cancels the second waits and then finds nothing to do.
        let cancelled = sqlx::query(
            "UPDATE batches SET cancelled_at = $1 WHERE id = $2 AND team_id = $3 AND cancelled_at IS NULL \
             AND EXISTS (SELECT 1 FROM start_requests r WHERE r.batch_id = batches.id \
                         AND r.status IN ('pending', 'processing'))",
        )
        .bind(at.as_millis())
        .bind(batch_id.to_string())
        .bind(team_id.to_string())
        .execute(&mut *transaction)
        .await?;
        if cancelled.rows_affected() == 0 {
            transaction.rollback().await?;
            return Ok(match self.status_of(team_id, batch_id).await? {
                None => BatchChange::NotFound,
                Some(status) => BatchChange::Conflict(status),
            });
        }
        Self::end_starting_sessions(&mut transaction, batch_id, "the batch was cancelled", at).await?;
        sqlx::query(&format!(
            "UPDATE start_requests SET status = 'cancelled', completed_at = $1 WHERE batch_id = $2 AND {}",
            super::store::request_guard(RequestMove::Cancel)
        ))
        .bind(at.as_millis())
        .bind(batch_id.to_string())
        .execute(&mut *transaction)
        .await?;
        let running = Self::running_sessions(&mut transaction, batch_id).await?;
        transaction.commit().await?;
        Ok(BatchChange::Done(running))
    }

    pub(super) async fn delete_batch_rows(
        &self,
        team_id: TeamId,
        batch_id: BatchId,
        at: Timestamp,
    ) -> StoreResult<BatchChange> {
        let mut transaction = super::write(&self.pool).await?;
        let deleted_items = sqlx::query(
            "DELETE FROM start_requests WHERE batch_id = $1 \
             AND EXISTS (SELECT 1 FROM batches b WHERE b.id = $2 AND b.team_id = $3)",
        )
        .bind(batch_id.to_string())
        .bind(batch_id.to_string())
        .bind(team_id.to_string())
        .execute(&mut *transaction)
        .await?;
        let deleted = sqlx::query("DELETE FROM batches WHERE id = $1 AND team_id = $2")
            .bind(batch_id.to_string())
            .bind(team_id.to_string())
            .execute(&mut *transaction)
            .await?;
        if deleted.rows_affected() == 0 {
            transaction.rollback().await?;
            return Ok(BatchChange::NotFound);
        }
        tracing::debug!(%batch_id, items = deleted_items.rows_affected(), "batch deleted");
        Self::end_starting_sessions(&mut transaction, batch_id, "the batch was deleted", at).await?;
        let running = Self::running_sessions(&mut transaction, batch_id).await?;
        transaction.commit().await?;
        Ok(BatchChange::Done(running))
    }

    pub(super) async fn retry_batch_rows(
        &self,
        team_id: TeamId,
        batch_id: BatchId,
        failed_only: bool,
        attempts: i64,
    ) -> StoreResult<RetryOutcome> {
        let mut transaction = super::write(&self.pool).await?;
        // A retry starts from the states `RequestMove::Retry` allows: failed
        // items, and (unless only failed ones are asked for) completed items
        // whose session has ended.
        debug_assert_eq!(
            RequestMove::Retry.from(),
            &[RequestStatus::Failed, RequestStatus::Completed]
        );
        let which = if failed_only {
            "status = 'failed'".to_owned()
        } else {
            format!(
                "{} AND (status = 'failed' OR NOT EXISTS (SELECT 1 FROM sessions s \
                 WHERE s.id = start_requests.session_id AND {}))",
                super::store::request_guard(RequestMove::Retry),
                super::store::status_in("s.status", SessionMove::End.from().iter().map(SessionStatus::as_str)),
            )
        };
        let retried = sqlx::query(&format!(
            "UPDATE start_requests SET status = 'pending', retry_count = retry_count + 1, attempts_left = $1, \
             session_id = NULL, started_at = NULL, completed_at = NULL, claimed_by = NULL \
             WHERE batch_id = $2 AND {which} \
             AND EXISTS (SELECT 1 FROM batches b WHERE b.id = start_requests.batch_id AND b.team_id = $3 \
                         AND b.cancelled_at IS NULL)"
        ))
        .bind(attempts.max(1) - 1)
        .bind(batch_id.to_string())
        .bind(team_id.to_string())
        .execute(&mut *transaction)
        .await?;
        if retried.rows_affected() == 0 {
            transaction.rollback().await?;
            return Ok(match self.status_of(team_id, batch_id).await? {
                None => RetryOutcome::NotFound,
                Some(BatchStatus::Cancelled) => RetryOutcome::Conflict(BatchStatus::Cancelled),
                Some(_) => RetryOutcome::Retried {
                    retried: 0,
                    pending: Vec::new(),
                },
            });
        }
        // Once its retried items are final again, the batch has a new event.
        sqlx::query("UPDATE batches SET final_event_at = NULL WHERE id = $1")
            .bind(batch_id.to_string())
            .execute(&mut *transaction)
            .await?;
        let rows =
            sqlx::query("SELECT * FROM start_requests WHERE batch_id = $1 AND status = 'pending' ORDER BY item_index")
                .bind(batch_id.to_string())
                .fetch_all(&mut *transaction)
                .await?;
        let pending = rows.iter().map(request_from_row).collect::<StoreResult<Vec<_>>>()?;
        transaction.commit().await?;
        Ok(RetryOutcome::Retried {
            retried: retried.rows_affected(),
            pending,
        })
    }
}

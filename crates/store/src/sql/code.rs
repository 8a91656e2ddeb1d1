//! Code tasks, their versions, and executions (runs of user code).
//!
//! Deletes are soft, as upstream's are: a deleted task or version keeps its
//! row (`deleted = 1`) and is no longer served; a deleted task frees its
//! name. Version numbers are never reused: a deploy takes one past the
//! largest number the task ever had.

use anchorage_core::webhook::{EndedTaskRun, WebhookEvent};
use anchorage_core::{ExecutionId, ExecutionStatus, NodeId, TaskId, TeamId, Timestamp};
use async_trait::async_trait;
use sqlx::Row;

use super::rows::parse_id;
use super::{DbRow, SqlStore};
use crate::records::{ExecutionFilter, ExecutionRecord, TaskRecord, TaskVersionRecord};
use crate::{CodeStore, StoreError, StoreResult};

const TASK_COLUMNS: &str = "id, team_id, name, description, deleted, created_at, updated_at";
const VERSION_COLUMNS: &str =
    "id, task_id, version, code, language, description, browser_configuration, deleted, created_at, updated_at";
const EXECUTION_COLUMNS: &str = "id, team_id, task_id, task_version_id, version, status, output, error_message, \
     session_id, node_id, started_at, execution_time";

fn optional_id<T: std::str::FromStr>(row: &DbRow, column: &str) -> StoreResult<Option<T>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|text| {
        text.parse()
            .map_err(|_| StoreError::Corrupt(format!("{column} holds {text:?}")))
    })
    .transpose()
}

fn task_from_row(row: &DbRow) -> StoreResult<TaskRecord> {
    Ok(TaskRecord {
        id: parse_id(row, "id")?,
        team_id: parse_id(row, "team_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

fn version_from_row(row: &DbRow) -> StoreResult<TaskVersionRecord> {
    let configuration: Option<String> = row.try_get("browser_configuration")?;
    Ok(TaskVersionRecord {
        id: parse_id(row, "id")?,
        task_id: parse_id(row, "task_id")?,
        version: row.try_get("version")?,
        code: row.try_get("code")?,
        language: row.try_get("language")?,
        description: row.try_get("description")?,
        browser_configuration: configuration
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|error| StoreError::Corrupt(format!("browser_configuration: {error}")))
            })
            .transpose()?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

fn execution_from_row(row: &DbRow) -> StoreResult<ExecutionRecord> {
    let status: String = row.try_get("status")?;
    Ok(ExecutionRecord {
        id: parse_id(row, "id")?,
        team_id: parse_id(row, "team_id")?,
        task_id: optional_id(row, "task_id")?,
        task_version_id: optional_id(row, "task_version_id")?,
        version: row.try_get("version")?,
        status: status
            .parse::<ExecutionStatus>()
            .map_err(|_| StoreError::Corrupt(format!("execution status {status:?}")))?,
        output: row.try_get("output")?,
        error_message: row.try_get("error_message")?,
        session_id: optional_id(row, "session_id")?,
        node_id: optional_id(row, "node_id")?,
        started_at: Timestamp::from_millis(row.try_get("started_at")?),
        execution_time_ms: row.try_get("execution_time")?,
    })
}

/// The number of a version name (`None` for `draft`).
fn number_of(version: &str) -> Option<i64> {
    version.parse().ok()
}

fn configuration_text(version: &TaskVersionRecord) -> Option<String> {
    version.browser_configuration.as_ref().map(serde_json::Value::to_string)
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation())
}

impl SqlStore {
    async fn insert_version(
        connection: &mut super::DbConnection,
        version: &TaskVersionRecord,
    ) -> StoreResult<TaskVersionRecord> {
        let row = sqlx::query(&format!(
            "INSERT INTO task_versions (id, task_id, version, number, code, language, description, \
             browser_configuration, deleted, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9) \
             ON CONFLICT (task_id, version) DO UPDATE SET code = excluded.code, language = excluded.language, \
             description = excluded.description, browser_configuration = excluded.browser_configuration, \
             deleted = 0, updated_at = excluded.updated_at \
             RETURNING {VERSION_COLUMNS}"
        ))
        .bind(version.id.to_string())
        .bind(version.task_id.to_string())
        .bind(&version.version)
        .bind(number_of(&version.version))
        .bind(&version.code)
        .bind(&version.language)
        .bind(&version.description)
        .bind(configuration_text(version))
        .bind(version.updated_at.as_millis())
        .fetch_one(&mut *connection)
        .await?;
        version_from_row(&row)
    }
}

#[async_trait]
impl CodeStore for SqlStore {
    async fn create_task(&self, task: &TaskRecord, draft: Option<&TaskVersionRecord>) -> StoreResult<()> {
        let mut transaction = super::write(&self.pool).await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, 0, $5, $6) \
             ON CONFLICT (team_id, name) WHERE deleted = 0 DO NOTHING"
        ))
        .bind(task.id.to_string())
        .bind(task.team_id.to_string())
        .bind(&task.name)
        .bind(&task.description)
        .bind(task.created_at.as_millis())
        .bind(task.updated_at.as_millis())
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists(format!("task {:?}", task.name)));
        }
        if let Some(draft) = draft {
            Self::insert_version(&mut transaction, draft).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn list_tasks(&self, team_id: TeamId, offset: i64, limit: i64) -> StoreResult<(Vec<TaskRecord>, i64)> {
        let mut transaction = super::read(&self.pool).await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE team_id = $1 AND deleted = 0")
            .bind(team_id.to_string())
            .fetch_one(&mut *transaction)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE team_id = $1 AND deleted = 0 \
             ORDER BY created_at, id LIMIT $2 OFFSET $3"
        ))
        .bind(team_id.to_string())
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok((rows.iter().map(task_from_row).collect::<StoreResult<_>>()?, total))
    }

    async fn task(&self, team_id: TeamId, task_id: TaskId) -> StoreResult<Option<TaskRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND team_id = $2 AND deleted = 0"
        ))
        .bind(task_id.to_string())
        .bind(team_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn task_named(&self, team_id: TeamId, name: &str) -> StoreResult<Option<TaskRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE team_id = $1 AND name = $2 AND deleted = 0"
        ))
        .bind(team_id.to_string())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn update_task(&self, task: &TaskRecord) -> StoreResult<()> {
        let updated = sqlx::query(
            "UPDATE tasks SET name = $1, description = $2, updated_at = $3 WHERE id = $4 AND team_id = $5 AND deleted = 0",
        )
        .bind(&task.name)
        .bind(&task.description)
        .bind(task.updated_at.as_millis())
        .bind(task.id.to_string())
        .bind(task.team_id.to_string())
        .execute(&self.pool)
        .await;
        match updated {
            Ok(_) => Ok(()),
            Err(error) if is_unique_violation(&error) => {
                Err(StoreError::AlreadyExists(format!("task {:?}", task.name)))
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn delete_task(&self, team_id: TeamId, task_id: TaskId, at: Timestamp) -> StoreResult<bool> {
        let mut transaction = super::write(&self.pool).await?;
        let deleted =
            sqlx::query("UPDATE tasks SET deleted = 1, updated_at = $1 WHERE id = $2 AND team_id = $3 AND deleted = 0")
                .bind(at.as_millis())
                .bind(task_id.to_string())
                .bind(team_id.to_string())
                .execute(&mut *transaction)
                .await?;
        if deleted.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE task_versions SET deleted = 1, updated_at = $1 WHERE task_id = $2 AND deleted = 0")
            .bind(at.as_millis())
            .bind(task_id.to_string())
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(true)
    }

    async fn task_versions(&self, task_id: TaskId) -> StoreResult<Vec<TaskVersionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM task_versions WHERE task_id = $1 AND deleted = 0 \
             ORDER BY number IS NOT NULL, number"
        ))
        .bind(task_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    async fn save_task_version(&self, version: &TaskVersionRecord) -> StoreResult<TaskVersionRecord> {
        let mut transaction = super::write(&self.pool).await?;
        let saved = Self::insert_version(&mut transaction, version).await?;
        transaction.commit().await?;
        Ok(saved)
    }

    async fn deploy_task_version(&self, version: &TaskVersionRecord) -> StoreResult<TaskVersionRecord> {
        let mut transaction = super::write(&self.pool).await?;
        // The task's row first: two deploys of one task take turns here
        // (PostgreSQL's row lock; SQLite's one writer), so each sees the
        // other's number.
        sqlx::query("UPDATE tasks SET updated_at = updated_at WHERE id = $1")
            .bind(version.task_id.to_string())
            .execute(&mut *transaction)
            .await?;
        let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM task_versions WHERE task_id = $1")
            .bind(version.task_id.to_string())
            .fetch_one(&mut *transaction)
            .await?;
        let numbered = TaskVersionRecord {
            version: next.to_string(),
            ..version.clone()
        };
        let saved = Self::insert_version(&mut transaction, &numbered).await?;
        transaction.commit().await?;
        Ok(saved)
    }

    async fn delete_task_version(&self, task_id: TaskId, version: &str, at: Timestamp) -> StoreResult<bool> {
        let deleted = sqlx::query(
            "UPDATE task_versions SET deleted = 1, updated_at = $1 WHERE task_id = $2 AND version = $3 AND deleted = 0",
        )
        .bind(at.as_millis())
        .bind(task_id.to_string())
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn insert_execution(&self, execution: &ExecutionRecord) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO executions ({EXECUTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(execution.id.to_string())
        .bind(execution.team_id.to_string())
        .bind(execution.task_id.map(|id| id.to_string()))
        .bind(execution.task_version_id.map(|id| id.to_string()))
        .bind(&execution.version)
        .bind(execution.status.as_str())
        .bind(&execution.output)
        .bind(&execution.error_message)
        .bind(execution.session_id.map(|id| id.to_string()))
        .bind(execution.node_id.map(|id| id.to_string()))
        .bind(execution.started_at.as_millis())
        .bind(execution.execution_time_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_execution(&self, execution: &ExecutionRecord) -> StoreResult<()> {
        let mut transaction = super::write(&self.pool).await?;
        let updated = sqlx::query(
            "UPDATE executions SET status = $1, output = $2, error_message = $3, session_id = $4, \
             execution_time = $5 WHERE id = $6",
        )
        .bind(execution.status.as_str())
        .bind(&execution.output)
        .bind(&execution.error_message)
        .bind(execution.session_id.map(|id| id.to_string()))
        .bind(execution.execution_time_ms)
        .bind(execution.id.to_string())
        .execute(&mut *transaction)
        .await?;
        // A task's run that finished tells the team's webhooks, in the same
        // transaction (the outbox): the event is recorded if and only if
        // the end is.
        if let Some(task_id) = execution.task_id.filter(|_| updated.rows_affected() > 0) {
            let ended = EndedTaskRun {
                task_id,
                execution_id: execution.id,
                team_id: execution.team_id,
                version: execution.version.clone(),
                status: execution.status,
                session_id: execution.session_id,
                error: execution.error_message.clone(),
                execution_time_ms: execution.execution_time_ms,
                started_at: execution.started_at,
                ended_at: Timestamp::now(),
            };
            if let Some(event) = WebhookEvent::task_run_ended(&ended) {
                if super::webhooks::wanted(&mut transaction, execution.team_id, event.event_type).await? {
                    super::webhooks::record_event(&mut transaction, &event, None).await?;
                }
            }
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn execution(&self, team_id: TeamId, execution_id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1 AND team_id = $2"
        ))
        .bind(execution_id.to_string())
        .bind(team_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(execution_from_row).transpose()
    }

    async fn execution_by_id(&self, execution_id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        let row = sqlx::query(&format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1"))
            .bind(execution_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(execution_from_row).transpose()
    }

    async fn list_executions(&self, filter: &ExecutionFilter) -> StoreResult<(Vec<ExecutionRecord>, i64)> {
        let status = filter.status.map(|status| status.as_str());
        let mut transaction = super::read(&self.pool).await?;
        const MATCHING: &str = "FROM executions WHERE team_id = $1 AND task_id = $2 \
             AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR version = $4)";
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) {MATCHING}"))
            .bind(filter.team_id.to_string())
            .bind(filter.task_id.to_string())
            .bind(status)
            .bind(&filter.version)
            .fetch_one(&mut *transaction)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {EXECUTION_COLUMNS} {MATCHING} ORDER BY started_at DESC, id LIMIT $5 OFFSET $6"
        ))
        .bind(filter.team_id.to_string())
        .bind(filter.task_id.to_string())
        .bind(status)
        .bind(&filter.version)
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok((rows.iter().map(execution_from_row).collect::<StoreResult<_>>()?, total))
    }

    async fn cancel_executions_of(&self, node: NodeId, at: Timestamp, reason: &str) -> StoreResult<u64> {
        let cancelled = sqlx::query(
            "UPDATE executions SET status = 'cancelled', error_message = $1, \
             execution_time = CASE WHEN $2 > started_at THEN $2 - started_at ELSE 0 END \
             WHERE node_id = $3 AND status IN ('queued', 'running')",
        )
        .bind(reason)
        .bind(at.as_millis())
        .bind(node.to_string())
        .execute(&self.pool)
        .await?;
        Ok(cancelled.rows_affected())
    }
}

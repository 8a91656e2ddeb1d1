//! The [`Store`] implementation shared by both backends, written once
//! against the `Db`, `DbRow`, `DbConnection` and `SqlStore` names and the
//! dialect helpers (`write`, `read`, `NEW_ID`, …) that the backend module
//! including this file defines. Placeholders are `$1`, `$2`, … (both
//! SQLite and PostgreSQL read them), times `BIGINT` milliseconds, ids and
//! JSON `TEXT`.

use anchorage_core::{
    ApiKeyId, BatchId, RequestId, RequestMove, RequestStatus, SessionId, SessionMove, SessionStatus, TeamId, Timestamp,
};
use async_trait::async_trait;
use sqlx::{QueryBuilder, Row};

use super::rows::{self, api_key_from_row, request_from_row, session_from_row, team_from_row};
use super::{webhooks, Db, SqlStore};
use crate::records::{
    ApiKeyRecord, AttemptOutcome, AuthenticatedKey, BatchChange, BatchFilter, BatchItem, BatchRecord, BatchSummary,
    CertificateRecord, DeliveryAttempt, DeliveryFilter, DueAttempt, ExtensionRecord, LaunchFailure, NodeRecord,
    ProfileRecord, RecordingRecord, RecoveryReport, RequestRecord, RetryOutcome, SessionFilter, SessionPage,
    SessionRecord, SessionSort, TeamRecord, WebhookChange, WebhookRecord,
};
use crate::{
    BatchStore, FileStore, NodeStore, QueueStore, SessionStore, StoreError, StoreResult, TeamStore, WebhookStore,
};

const SESSION_COLUMNS: &str = "s.id, s.team_id, s.api_key_id, s.api_key_name, s.request_id, s.batch_id, s.status, \
     s.configuration, s.headless, s.recording, s.proxy, s.created_at, s.started_at, s.ended_at, s.end_reason, \
     s.node_id";

/// The table of applied migrations; the one table every database has.
pub(super) const MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

impl SqlStore {
    /// Brings the schema up to date: runs each of `migrations` not yet
    /// recorded, in order, in one write transaction (so two nodes starting
    /// together on one database migrate once).
    pub(super) async fn migrate(&self, migrations: &[&str]) -> StoreResult<()> {
        let mut transaction = super::write(&self.pool).await?;
        sqlx::query(MIGRATIONS_TABLE).execute(&mut *transaction).await?;
        let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *transaction)
            .await?;
        for (index, migration) in migrations.iter().enumerate() {
            let version = index as i64 + 1;
            if version <= current {
                continue;
            }
            sqlx::raw_sql(migration).execute(&mut *transaction).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(Timestamp::now().as_millis())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }
}

pub(super) fn json_text(value: &serde_json::Value) -> String {
    value.to_string()
}

/// A request's validated options as stored (see `schema_3.sql`).
pub(super) fn options_text(options: &anchorage_core::SessionOptions) -> StoreResult<String> {
    serde_json::to_string(options).map_err(|error| StoreError::Corrupt(format!("options: {error}")))
}

fn push_session_filter(builder: &mut QueryBuilder<'_, Db>, filter: &SessionFilter) {
    builder.push(" WHERE 1 = 1");
    if let Some(team_id) = filter.team_id {
        builder.push(" AND s.team_id = ").push_bind(team_id.to_string());
    }
    if let Some(status) = filter.status {
        builder.push(" AND s.status = ").push_bind(status.as_str());
    }
    if filter.live_only {
        builder.push(" AND s.status IN ('starting', 'running')");
    }
    if let Some(batch_id) = filter.batch_id {
        builder.push(" AND s.batch_id = ").push_bind(batch_id.to_string());
    }
    if let Some(from) = filter.created_from {
        builder.push(" AND s.created_at >= ").push_bind(from.as_millis());
    }
    if let Some(to) = filter.created_to {
        builder.push(" AND s.created_at <= ").push_bind(to.as_millis());
    }
    for tag in &filter.tags {
        builder
            .push(" AND EXISTS (SELECT 1 FROM session_tags t WHERE t.session_id = s.id AND t.tag = ")
            .push_bind(tag.clone())
            .push(")");
    }
}

impl SqlStore {
    async fn tags_of(&self, sessions: &mut [SessionRecord]) -> StoreResult<()> {
        if sessions.is_empty() {
            return Ok(());
        }
        let mut builder: QueryBuilder<'_, Db> =
            QueryBuilder::new("SELECT session_id, tag FROM session_tags WHERE session_id IN (");
        let mut separated = builder.separated(", ");
        for session in sessions.iter() {
            separated.push_bind(session.id.to_string());
        }
        builder.push(") ORDER BY session_id, position");
        let rows = builder.build().fetch_all(&self.pool).await?;
        for row in rows {
            let session_id: String = row.try_get("session_id")?;
            let tag: String = row.try_get("tag")?;
            if let Some(session) = sessions.iter_mut().find(|session| session.id.to_string() == session_id) {
                session.tags.push(tag);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl TeamStore for SqlStore {
    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        self.setting(key)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("setting {key} vanished after insert")))
    }

    async fn create_team(&self, name: &str) -> StoreResult<TeamRecord> {
        let team = TeamRecord {
            id: TeamId::new_random(),
            name: name.to_owned(),
            created_at: Timestamp::now(),
        };
        let inserted =
            sqlx::query("INSERT INTO teams (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                .bind(team.id.to_string())
                .bind(&team.name)
                .bind(team.created_at.as_millis())
                .execute(&self.pool)
                .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists(format!("team {name:?}")));
        }
        Ok(team)
    }

    async fn team_by_name(&self, name: &str) -> StoreResult<Option<TeamRecord>> {
        let row = sqlx::query("SELECT id, name, created_at FROM teams WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(team_from_row).transpose()
    }

    async fn team_count(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM teams")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn create_api_key(
        &self,
        team_id: TeamId,
        name: &str,
        key_hash: &str,
        key_prefix: &str,
    ) -> StoreResult<ApiKeyRecord> {
        let id = ApiKeyId::new_random();
        let created_at = Timestamp::now();
        let inserted = sqlx::query(
            "INSERT INTO api_keys (id, team_id, name, key_hash, key_prefix, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(team_id.to_string())
        .bind(name)
        .bind(key_hash)
        .bind(key_prefix)
        .bind(created_at.as_millis())
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists("an API key with this value".to_owned()));
        }
        let keys = self.list_api_keys().await?;
        keys.into_iter()
            .find(|key| key.id == id)
            .ok_or_else(|| StoreError::Corrupt("API key vanished after insert".to_owned()))
    }

    async fn authenticate(&self, key_hash: &str) -> StoreResult<Option<AuthenticatedKey>> {
        let row = sqlx::query("SELECT id, name, team_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AuthenticatedKey {
            key_id: rows::parse_id(&row, "id")?,
            key_name: row.try_get("name")?,
            team_id: rows::parse_id(&row, "team_id")?,
        }))
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows = sqlx::query(
            "SELECT k.id, k.team_id, t.name AS team_name, k.name, k.key_prefix, k.created_at, k.revoked_at \
             FROM api_keys k JOIN teams t ON t.id = k.team_id ORDER BY k.created_at, k.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, id_or_prefix: &str) -> StoreResult<u64> {
        let result = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE revoked_at IS NULL AND (id = $2 OR key_prefix = $3)",
        )
        .bind(Timestamp::now().as_millis())
        .bind(id_or_prefix)
        .bind(id_or_prefix)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}

#[async_trait]
impl QueueStore for SqlStore {
    async fn insert_request(
        &self,
        request: &RequestRecord,
        claimed_by: Option<anchorage_core::NodeId>,
        team_quota: Option<i64>,
    ) -> StoreResult<bool> {
        let (Some(node), Some(quota)) = (claimed_by, team_quota) else {
            insert_request_row(&self.pool, request, claimed_by).await?;
            return Ok(claimed_by.is_some());
        };
        // Written first, then weighed (the load counts it): SQLite's
        // transactions must write before they read what they decide on.
        let mut transaction = super::write(&self.pool).await?;
        insert_request_row(&mut *transaction, request, Some(node)).await?;
        let load = self
            .load_of_team_in(&mut transaction, request.team_id, Timestamp::now())
            .await?;
        let claimed = load <= quota;
        if !claimed {
            sqlx::query("UPDATE start_requests SET claimed_by = NULL WHERE id = $1")
                .bind(request.id.to_string())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(claimed)
    }

    async fn claim_requests(
        &self,
        node: anchorage_core::NodeId,
        wanted: i64,
        team_quota: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<Vec<RequestRecord>> {
        self.claim_queued(node, wanted, team_quota, now).await
    }

    async fn team_load(&self, team_id: TeamId, now: Timestamp) -> StoreResult<i64> {
        self.load_of_team(team_id, now).await
    }

    async fn queued_requests(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM start_requests WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn request(&self, team_id: TeamId, request_id: RequestId) -> StoreResult<Option<RequestRecord>> {
        let row = sqlx::query("SELECT * FROM start_requests WHERE id = $1 AND team_id = $2")
            .bind(request_id.to_string())
            .bind(team_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    async fn cancel_pending_request(&self, request_id: RequestId, at: Timestamp) -> StoreResult<bool> {
        let mut transaction = super::write(&self.pool).await?;
        let result = sqlx::query(&format!(
            "UPDATE start_requests SET status = 'cancelled', completed_at = $1 WHERE id = $2 AND {}",
            request_guard(RequestMove::Withdraw)
        ))
        .bind(at.as_millis())
        .bind(request_id.to_string())
        .execute(&mut *transaction)
        .await?;
        if result.rows_affected() > 0 {
            Self::batch_event_of_request(&mut transaction, request_id, at).await?;
        }
        transaction.commit().await?;
        Ok(result.rows_affected() > 0)
    }

    async fn begin_launch(&self, request_id: RequestId, session: &SessionRecord) -> StoreResult<bool> {
        let mut transaction = super::write(&self.pool).await?;
        let moved = sqlx::query(&format!(
            "UPDATE start_requests SET status = 'processing', session_id = $1, started_at = $2 WHERE id = $3 AND {}",
            request_guard(RequestMove::Begin)
        ))
        .bind(session.id.to_string())
        .bind(session.created_at.as_millis())
        .bind(request_id.to_string())
        .execute(&mut *transaction)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO sessions (id, team_id, api_key_id, api_key_name, request_id, batch_id, status, configuration, \
             headless, recording, proxy, created_at, started_at, ended_at, end_reason, node_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(session.id.to_string())
        .bind(session.team_id.to_string())
        .bind(session.api_key_id.map(|id| id.to_string()))
        .bind(&session.api_key_name)
        .bind(session.request_id.map(|id| id.to_string()))
        .bind(session.batch_id.map(|id| id.to_string()))
        .bind(session.status.as_str())
        .bind(json_text(&session.configuration))
        .bind(session.headless)
        .bind(session.recording)
        .bind(session.proxy)
        .bind(session.created_at.as_millis())
        .bind(session.started_at.map(|at| at.as_millis()))
        .bind(session.ended_at.map(|at| at.as_millis()))
        .bind(&session.end_reason)
        .bind(session.node_id.map(|id| id.to_string()))
        .execute(&mut *transaction)
        .await?;
        for (position, tag) in session.tags.iter().enumerate() {
            sqlx::query("INSERT INTO session_tags (session_id, position, tag) VALUES ($1, $2, $3)")
                .bind(session.id.to_string())
                .bind(position as i64)
                .bind(tag)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(true)
    }

    async fn finish_launch(&self, request_id: RequestId, session_id: SessionId, at: Timestamp) -> StoreResult<bool> {
        let mut transaction = super::write(&self.pool).await?;
        let request = sqlx::query(&format!(
            "UPDATE start_requests SET status = 'completed', completed_at = $1 WHERE id = $2 AND {}",
            request_guard(RequestMove::Complete)
        ))
        .bind(at.as_millis())
        .bind(request_id.to_string())
        .execute(&mut *transaction)
        .await?;
        let session = sqlx::query(&format!(
            "UPDATE sessions SET status = 'running', started_at = $1 WHERE id = $2 AND {}",
            session_guard(SessionMove::Run)
        ))
        .bind(at.as_millis())
        .bind(session_id.to_string())
        .execute(&mut *transaction)
        .await?;
        if request.rows_affected() == 0 || session.rows_affected() == 0 {
            // Leave both as the winner of the race set them.
            transaction.rollback().await?;
            return Ok(false);
        }
        Self::batch_event_of_request(&mut transaction, request_id, at).await?;
        transaction.commit().await?;
        Ok(true)
    }

    async fn fail_launch(
        &self,
        request_id: RequestId,
        session_id: SessionId,
        error: &str,
        at: Timestamp,
    ) -> StoreResult<LaunchFailure> {
        let mut transaction = super::write(&self.pool).await?;
        // A requeue with attempts left, a failure without; both start from
        // the same states.
        debug_assert_eq!(RequestMove::Requeue.from(), RequestMove::Fail.from());
        sqlx::query(&format!(
            "UPDATE start_requests SET \
             status = CASE WHEN attempts_left > 0 THEN 'pending' ELSE 'failed' END, \
             retry_count = CASE WHEN attempts_left > 0 THEN retry_count + 1 ELSE retry_count END, \
             completed_at = CASE WHEN attempts_left > 0 THEN NULL ELSE $1 END, \
             started_at = CASE WHEN attempts_left > 0 THEN NULL ELSE started_at END, \
             session_id = CASE WHEN attempts_left > 0 THEN NULL ELSE session_id END, \
             attempts_left = CASE WHEN attempts_left > 0 THEN attempts_left - 1 ELSE 0 END, \
             error = $2 \
             WHERE id = $3 AND {}",
            request_guard(RequestMove::Fail)
        ))
        .bind(at.as_millis())
        .bind(error)
        .bind(request_id.to_string())
        .execute(&mut *transaction)
        .await?;
        sqlx::query(&format!(
            "UPDATE sessions SET status = 'failed', end_reason = $1, ended_at = $2 WHERE id = $3 AND {}",
            session_guard(SessionMove::End)
        ))
        .bind(error)
        .bind(at.as_millis())
        .bind(session_id.to_string())
        .execute(&mut *transaction)
        .await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM start_requests WHERE id = $1")
            .bind(request_id.to_string())
            .fetch_optional(&mut *transaction)
            .await?;
        webhooks::session_events(&mut transaction, &[session_id]).await?;
        Self::batch_event_of_request(&mut transaction, request_id, at).await?;
        transaction.commit().await?;
        Ok(if status.as_deref() == Some("pending") {
            LaunchFailure::Requeued
        } else {
            LaunchFailure::Failed
        })
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn set_tags(&self, team_id: TeamId, session_id: SessionId, tags: &[String]) -> StoreResult<bool> {
        let mut transaction = super::write(&self.pool).await?;
        // Written first (SQLite's transactions must write before they read):
        // the old tags go only if the session is the team's.
        sqlx::query(
            "DELETE FROM session_tags WHERE session_id = $1 \
             AND EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND team_id = $2)",
        )
        .bind(session_id.to_string())
        .bind(team_id.to_string())
        .execute(&mut *transaction)
        .await?;
        let owned: Option<(String,)> = sqlx::query_as("SELECT id FROM sessions WHERE id = $1 AND team_id = $2")
            .bind(session_id.to_string())
            .bind(team_id.to_string())
            .fetch_optional(&mut *transaction)
            .await?;
        if owned.is_none() {
            return Ok(false);
        }
        for (position, tag) in tags.iter().enumerate() {
            sqlx::query("INSERT INTO session_tags (session_id, position, tag) VALUES ($1, $2, $3)")
                .bind(session_id.to_string())
                .bind(position as i64)
                .bind(tag)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(true)
    }

    async fn session(&self, team_id: TeamId, session_id: SessionId) -> StoreResult<Option<SessionRecord>> {
        let query = format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = $1 AND s.team_id = $2");
        let row = sqlx::query(&query)
            .bind(session_id.to_string())
            .bind(team_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut sessions = vec![session_from_row(&row)?];
        self.tags_of(&mut sessions).await?;
        Ok(sessions.pop())
    }

    async fn end_session(
        &self,
        session_id: SessionId,
        status: SessionStatus,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        if !status.is_final() {
            return Err(StoreError::Corrupt(format!(
                "end_session called with live status {status}"
            )));
        }
        let mut transaction = super::write(&self.pool).await?;
        let ended = sqlx::query(&format!(
            "UPDATE sessions SET status = $1, end_reason = $2, ended_at = $3 WHERE id = $4 AND {}",
            session_guard(SessionMove::End)
        ))
        .bind(status.as_str())
        .bind(reason)
        .bind(at.as_millis())
        .bind(session_id.to_string())
        .execute(&mut *transaction)
        .await?;
        // A request still launching this session will never see it come up.
        let request_move = if status == SessionStatus::Failed {
            RequestMove::Fail
        } else {
            RequestMove::Cancel
        };
        sqlx::query(&format!(
            "UPDATE start_requests SET status = $1, error = $2, completed_at = $3 WHERE session_id = $4 AND {}",
            request_guard(request_move)
        ))
        .bind(request_move.to().as_str())
        .bind(reason)
        .bind(at.as_millis())
        .bind(session_id.to_string())
        .execute(&mut *transaction)
        .await?;
        if ended.rows_affected() > 0 {
            webhooks::session_events(&mut transaction, &[session_id]).await?;
            let request_id: Option<String> = sqlx::query_scalar("SELECT request_id FROM sessions WHERE id = $1")
                .bind(session_id.to_string())
                .fetch_optional(&mut *transaction)
                .await?
                .flatten();
            if let Some(request_id) = request_id.and_then(|text| text.parse().ok()) {
                Self::batch_event_of_request(&mut transaction, request_id, at).await?;
            }
        }
        transaction.commit().await?;
        Ok(ended.rows_affected() > 0)
    }

    async fn list_sessions(
        &self,
        filter: &SessionFilter,
        page: &SessionPage,
    ) -> StoreResult<(Vec<SessionRecord>, i64)> {
        let mut count: QueryBuilder<'_, Db> = QueryBuilder::new("SELECT COUNT(*) FROM sessions s");
        push_session_filter(&mut count, filter);
        // One read transaction: the total and the page share a snapshot.
        let mut transaction = super::read(&self.pool).await?;
        let total: i64 = count.build_query_scalar().fetch_one(&mut *transaction).await?;

        let mut select: QueryBuilder<'_, Db> = QueryBuilder::new(format!("SELECT {SESSION_COLUMNS} FROM sessions s"));
        push_session_filter(&mut select, filter);
        let column = match page.sort {
            SessionSort::CreatedAt => "s.created_at",
            SessionSort::SessionId => "s.id",
            SessionSort::Status => "s.status",
        };
        let direction = if page.descending { "DESC" } else { "ASC" };
        select.push(format!(" ORDER BY {column} {direction}, s.id {direction}"));
        if let Some(limit) = page.limit {
            select.push(" LIMIT ").push_bind(limit);
            select
                .push(" OFFSET ")
                .push_bind((page.page.max(1) - 1).saturating_mul(limit));
        }
        let rows = select.build().fetch_all(&mut *transaction).await?;
        transaction.commit().await?;
        let mut sessions = rows.iter().map(session_from_row).collect::<StoreResult<Vec<_>>>()?;
        self.tags_of(&mut sessions).await?;
        Ok((sessions, total))
    }
}

#[async_trait]
impl BatchStore for SqlStore {
    async fn insert_batch(&self, batch: &BatchRecord, items: &[RequestRecord]) -> StoreResult<()> {
        self.insert_batch_rows(batch, items).await
    }

    async fn batch(&self, team_id: TeamId, batch_id: BatchId) -> StoreResult<Option<BatchSummary>> {
        self.batch_summary(team_id, batch_id).await
    }

    async fn batch_items(&self, batch_id: BatchId) -> StoreResult<Vec<BatchItem>> {
        self.batch_item_rows(batch_id).await
    }

    async fn list_batches(&self, filter: &BatchFilter) -> StoreResult<(Vec<BatchSummary>, i64)> {
        self.batch_page(filter).await
    }

    async fn cancel_batch(&self, team_id: TeamId, batch_id: BatchId, at: Timestamp) -> StoreResult<BatchChange> {
        self.cancel_batch_rows(team_id, batch_id, at).await
    }

    async fn delete_batch(&self, team_id: TeamId, batch_id: BatchId, at: Timestamp) -> StoreResult<BatchChange> {
        self.delete_batch_rows(team_id, batch_id, at).await
    }

    async fn retry_batch(
        &self,
        team_id: TeamId,
        batch_id: BatchId,
        failed_only: bool,
        attempts: i64,
    ) -> StoreResult<RetryOutcome> {
        self.retry_batch_rows(team_id, batch_id, failed_only, attempts).await
    }

    async fn batch_item_counts(&self) -> StoreResult<anchorage_core::BatchCounts> {
        self.all_batch_item_counts().await
    }
}

#[async_trait]
impl FileStore for SqlStore {
    async fn create_profile(&self, profile: &ProfileRecord) -> StoreResult<()> {
        self.insert_profile(profile).await
    }

    async fn profile(&self, team_id: TeamId, name: &str) -> StoreResult<Option<ProfileRecord>> {
        Ok(self.profile_rows(Some(team_id), Some(name)).await?.into_iter().next())
    }

    async fn list_profiles(&self, team_id: TeamId) -> StoreResult<Vec<ProfileRecord>> {
        self.profile_rows(Some(team_id), None).await
    }

    async fn all_profiles(&self) -> StoreResult<Vec<ProfileRecord>> {
        self.profile_rows(None, None).await
    }

    async fn delete_profile(&self, team_id: TeamId, name: &str) -> StoreResult<Option<ProfileRecord>> {
        self.remove_profile(team_id, name).await
    }

    async fn profile_saved(
        &self,
        id: anchorage_core::ProfileId,
        saved: Option<(&str, i64)>,
        status: anchorage_core::ProfileStatus,
        at: Timestamp,
    ) -> StoreResult<Option<Option<String>>> {
        self.record_profile_save(id, saved, status, at).await
    }

    async fn create_extension(&self, extension: &ExtensionRecord) -> StoreResult<()> {
        self.insert_extension(extension).await
    }

    async fn extension(
        &self,
        team_id: TeamId,
        id: anchorage_core::ExtensionId,
    ) -> StoreResult<Option<ExtensionRecord>> {
        Ok(self.extension_rows(Some(team_id), Some(id)).await?.into_iter().next())
    }

    async fn list_extensions(&self, team_id: Option<TeamId>) -> StoreResult<Vec<ExtensionRecord>> {
        self.extension_rows(team_id, None).await
    }

    async fn delete_extension(
        &self,
        team_id: TeamId,
        id: anchorage_core::ExtensionId,
    ) -> StoreResult<Option<ExtensionRecord>> {
        self.remove_extension(team_id, id).await
    }

    async fn create_certificate(&self, certificate: &CertificateRecord) -> StoreResult<()> {
        self.insert_certificate(certificate).await
    }

    async fn list_certificates(&self, team_id: Option<TeamId>) -> StoreResult<Vec<CertificateRecord>> {
        self.certificate_rows(team_id).await
    }

    async fn delete_certificate(&self, team_id: TeamId, name: &str) -> StoreResult<Option<CertificateRecord>> {
        self.remove_certificate(team_id, name).await
    }

    async fn create_recording(&self, recording: &RecordingRecord) -> StoreResult<()> {
        self.insert_recording(recording).await
    }

    async fn finish_recording(
        &self,
        id: anchorage_core::RecordingId,
        status: anchorage_core::RecordingStatus,
        size_bytes: i64,
        duration_ms: i64,
        error: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<bool> {
        self.end_recording(id, status, size_bytes, duration_ms, error, at).await
    }

    async fn session_recordings(&self, team_id: TeamId, session_id: SessionId) -> StoreResult<Vec<RecordingRecord>> {
        self.recordings_of(team_id, session_id).await
    }

    async fn delete_recording(
        &self,
        team_id: TeamId,
        session_id: SessionId,
        id: anchorage_core::RecordingId,
    ) -> StoreResult<Option<RecordingRecord>> {
        self.remove_recording(team_id, session_id, id).await
    }

    async fn recordings_in(
        &self,
        status: anchorage_core::RecordingStatus,
        ended_before: Option<Timestamp>,
        node: Option<anchorage_core::NodeId>,
    ) -> StoreResult<Vec<RecordingRecord>> {
        self.recordings_with(status, ended_before, node).await
    }
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn create_webhook(&self, webhook: &WebhookRecord, max_per_team: i64) -> StoreResult<bool> {
        self.insert_webhook(webhook, max_per_team).await
    }

    async fn list_webhooks(&self, team_id: TeamId) -> StoreResult<Vec<WebhookRecord>> {
        self.webhook_rows(team_id).await
    }

    async fn webhook(&self, team_id: TeamId, id: &str, deleted_too: bool) -> StoreResult<Option<WebhookRecord>> {
        self.webhook_row(team_id, id, deleted_too).await
    }

    async fn update_webhook(
        &self,
        team_id: TeamId,
        id: &str,
        change: &WebhookChange,
        at: Timestamp,
    ) -> StoreResult<Option<WebhookRecord>> {
        self.change_webhook(team_id, id, change, at).await
    }

    async fn delete_webhook(&self, team_id: TeamId, id: &str, at: Timestamp) -> StoreResult<bool> {
        self.remove_webhook(team_id, id, at).await
    }

    async fn rotate_webhook_secret(
        &self,
        team_id: TeamId,
        id: &str,
        secret: &str,
        old_valid_until: Timestamp,
        at: Timestamp,
    ) -> StoreResult<Option<WebhookRecord>> {
        self.new_webhook_secret(team_id, id, secret, old_valid_until, at).await
    }

    async fn record_test_event(
        &self,
        webhook_id: &str,
        event: &anchorage_core::webhook::WebhookEvent,
    ) -> StoreResult<bool> {
        self.test_event(webhook_id, event).await
    }

    async fn list_delivery_attempts(&self, filter: &DeliveryFilter) -> StoreResult<(Vec<DeliveryAttempt>, i64)> {
        self.attempt_page(filter).await
    }

    async fn claim_due_attempts(
        &self,
        node: anchorage_core::NodeId,
        now: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<DueAttempt>> {
        self.claim_attempts(node, now, limit).await
    }

    async fn finish_attempt(
        &self,
        attempt_id: &anchorage_core::AttemptId,
        outcome: &AttemptOutcome,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.end_attempt(attempt_id, outcome, at).await
    }

    async fn next_attempt_due(&self) -> StoreResult<Option<Timestamp>> {
        self.first_due().await
    }

    async fn release_in_flight_attempts(&self, node: anchorage_core::NodeId, now: Timestamp) -> StoreResult<u64> {
        self.release_attempts(node, now).await
    }

    async fn prune_deliveries(&self, before: Timestamp) -> StoreResult<u64> {
        self.prune_attempts(before).await
    }
}

#[async_trait]
impl NodeStore for SqlStore {
    async fn register_node(&self, record: &NodeRecord) -> StoreResult<()> {
        self.upsert_node(record).await
    }

    async fn renew_node(&self, id: anchorage_core::NodeId, lease_until: Timestamp) -> StoreResult<bool> {
        self.extend_lease(id, lease_until).await
    }

    async fn session_node(&self, session_id: SessionId) -> StoreResult<Option<anchorage_core::NodeId>> {
        let node: Option<Option<String>> = sqlx::query_scalar("SELECT node_id FROM sessions WHERE id = $1")
            .bind(session_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        node.flatten()
            .map(|text| {
                text.parse()
                    .map_err(|_| StoreError::Corrupt(format!("node_id holds {text:?}")))
            })
            .transpose()
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        self.node_rows().await
    }

    async fn leave(&self, id: anchorage_core::NodeId) -> StoreResult<()> {
        self.remove_node(id).await
    }

    async fn notify(&self, topic: &str) -> StoreResult<()> {
        super::notify(self, topic).await
    }

    async fn listen(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<String>>> {
        super::listen(self).await
    }

    async fn recover_node(
        &self,
        node: anchorage_core::NodeId,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<RecoveryReport> {
        let mut transaction = super::write(&self.pool).await?;
        // Sessions without a node are from before nodes were recorded, when
        // one node was all there was.
        let on_node = |placeholder: &str| format!("(node_id = {placeholder} OR node_id IS NULL)");
        let failed: Vec<String> = sqlx::query_scalar(&format!(
            "UPDATE sessions SET status = 'failed', end_reason = $1, ended_at = $2 WHERE {} AND {} RETURNING id",
            session_guard(SessionMove::End),
            on_node("$3")
        ))
        .bind(reason)
        .bind(at.as_millis())
        .bind(node.to_string())
        .fetch_all(&mut *transaction)
        .await?;
        let failed = rows::session_ids(&failed)?;
        webhooks::session_events(&mut transaction, &failed).await?;
        let requests = sqlx::query(&format!(
            "UPDATE start_requests SET status = 'pending', session_id = NULL, started_at = NULL WHERE {} \
             AND session_id IN (SELECT id FROM sessions WHERE {})",
            request_guard(RequestMove::Requeue),
            on_node("$1")
        ))
        .bind(node.to_string())
        .execute(&mut *transaction)
        .await?;
        // What it had claimed but not begun is anybody's again.
        sqlx::query("UPDATE start_requests SET claimed_by = NULL WHERE status = 'pending' AND claimed_by = $1")
            .bind(node.to_string())
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(RecoveryReport {
            sessions_failed: failed.len() as u64,
            requests_requeued: requests.rows_affected(),
        })
    }
}

/// `status IN ('…', …)`: the states a request move may start from, as the
/// condition of the store's write (see `anchorage_core::RequestMove`).
pub(crate) fn request_guard(step: RequestMove) -> String {
    status_in("status", step.from().iter().map(RequestStatus::as_str))
}

/// `status IN ('…', …)`: the states a session move may start from.
pub(crate) fn session_guard(step: SessionMove) -> String {
    status_in("status", step.from().iter().map(SessionStatus::as_str))
}

/// `column IN ('a', 'b')` for state names (fixed words, never input).
pub(crate) fn status_in<'a>(column: &str, states: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<String> = states.into_iter().map(|state| format!("'{state}'")).collect();
    format!("{column} IN ({})", names.join(", "))
}

/// Writes a new start request's row, claimed by `claimed_by` or not.
async fn insert_request_row<'e>(
    executor: impl sqlx::Executor<'e, Database = super::Db>,
    request: &RequestRecord,
    claimed_by: Option<anchorage_core::NodeId>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO start_requests (id, team_id, api_key_id, api_key_name, batch_id, item_index, status, session_id, \
         configuration, options, error, retry_count, metadata, created_at, started_at, completed_at, claimed_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(request.id.to_string())
    .bind(request.team_id.to_string())
    .bind(request.api_key_id.map(|id| id.to_string()))
    .bind(&request.api_key_name)
    .bind(request.batch_id.map(|id| id.to_string()))
    .bind(request.item_index)
    .bind(request.status.as_str())
    .bind(request.session_id.map(|id| id.to_string()))
    .bind(json_text(&request.configuration))
    .bind(options_text(&request.options)?)
    .bind(&request.error)
    .bind(request.retry_count)
    .bind(request.metadata.as_ref().map(json_text))
    .bind(request.created_at.as_millis())
    .bind(request.started_at.map(|at| at.as_millis()))
    .bind(request.completed_at.map(|at| at.as_millis()))
    .bind(claimed_by.map(|node| node.to_string()))
    .execute(executor)
    .await?;
    Ok(())
}

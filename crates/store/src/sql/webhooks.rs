//! Webhooks and their outbox in SQLite.
//!
//! An event is recorded by the transaction that makes the change it tells of
//! ([`record_event`], [`session_events`]), with one first attempt per
//! subscribed webhook; so a change is never committed without its event, nor
//! an event without its change. The delivery worker claims due attempts,
//! and records each outcome, scheduling the next attempt of the same
//! delivery when it is to be retried.

use anchorage_core::webhook::{EndedSession, WebhookEvent};
use anchorage_core::DeliveryStatus;
use anchorage_core::{SessionId, SessionStatus, TeamId, Timestamp};
use sqlx::{QueryBuilder, Row};

use super::DbRow;

use super::{Db, DbConnection};
use uuid::Uuid;

use super::rows::parse_id;
use super::SqlStore;
use crate::records::{AttemptOutcome, DeliveryAttempt, DeliveryFilter, DueAttempt, WebhookChange, WebhookRecord};
use crate::{StoreError, StoreResult};

const COLUMNS: &str = "id, team_id, url, description, enabled, secret, previous_secret, previous_secret_until, \
     created_at, updated_at";

const ATTEMPT_COLUMNS: &str = "d.id, d.delivery_id, d.event_id, e.event_type, d.status, d.attempt, \
     d.response_status, d.error_message, d.scheduled_at, d.completed_at";

fn webhook_from_row(row: &DbRow, events: Vec<String>) -> StoreResult<WebhookRecord> {
    let previous: Option<String> = row.try_get("previous_secret")?;
    let previous_until: Option<i64> = row.try_get("previous_secret_until")?;
    Ok(WebhookRecord {
        id: row.try_get("id")?,
        team_id: parse_id(row, "team_id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        events,
        enabled: row.try_get("enabled")?,
        secret: row.try_get("secret")?,
        previous_secret: previous.zip(previous_until.map(Timestamp::from_millis)),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

fn attempt_from_row(row: &DbRow) -> StoreResult<DeliveryAttempt> {
    let completed_at: Option<i64> = row.try_get("completed_at")?;
    Ok(DeliveryAttempt {
        id: row.try_get::<String, _>("id")?.into(),
        delivery_id: row.try_get::<String, _>("delivery_id")?.into(),
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        status: super::rows::parse_id(row, "status")?,
        attempt: row.try_get("attempt")?,
        response_status: row.try_get("response_status")?,
        error_message: row.try_get("error_message")?,
        scheduled_at: Timestamp::from_millis(row.try_get("scheduled_at")?),
        completed_at: completed_at.map(Timestamp::from_millis),
    })
}

/// The event types a webhook is subscribed to, in the order given.
async fn subscriptions(connection: &mut DbConnection, webhook_id: &str) -> StoreResult<Vec<String>> {
    let rows = sqlx::query(&format!(
        "SELECT event_type FROM webhook_subscriptions WHERE webhook_id = $1 ORDER BY {}",
        super::INSERTION_ORDER
    ))
    .bind(webhook_id)
    .fetch_all(&mut *connection)
    .await?;
    rows.iter()
        .map(|row| row.try_get("event_type").map_err(StoreError::from))
        .collect()
}

async fn subscribe(connection: &mut DbConnection, webhook_id: &str, events: &[String]) -> StoreResult<()> {
    sqlx::query("DELETE FROM webhook_subscriptions WHERE webhook_id = $1")
        .bind(webhook_id)
        .execute(&mut *connection)
        .await?;
    for event_type in events {
        sqlx::query(
            "INSERT INTO webhook_subscriptions (webhook_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(webhook_id)
        .bind(event_type)
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

async fn webhook_in(
    connection: &mut DbConnection,
    team_id: TeamId,
    id: &str,
    deleted_too: bool,
) -> StoreResult<Option<WebhookRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE id = $1 AND team_id = $2 AND ($3 OR deleted_at IS NULL)"
    ))
    .bind(id)
    .bind(team_id.to_string())
    .bind(deleted_too)
    .fetch_optional(&mut *connection)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let events = subscriptions(connection, id).await?;
    webhook_from_row(&row, events).map(Some)
}

/// Records `event` with a first attempt, due now, for each live, enabled
/// webhook of its team subscribed to its type (or for `only` alone, however
/// subscribed): two statements. Callers check [`wanted`] first, so that
/// nothing is written when no webhook wants the event. Returns how many
/// deliveries were made.
pub(super) async fn record_event(
    connection: &mut DbConnection,
    event: &WebhookEvent,
    only: Option<&str>,
) -> StoreResult<u64> {
    sqlx::query("INSERT INTO webhook_events (id, team_id, event_type, body, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&event.id)
        .bind(event.team_id.to_string())
        .bind(event.event_type)
        .bind(event.body())
        .bind(event.created.as_millis())
        .execute(&mut *connection)
        .await?;
    // One row per target; each gets random attempt and delivery ids.
    let targets = match only {
        Some(_) => "SELECT w.id FROM webhooks w WHERE w.id = $3 AND w.team_id = $4 AND w.deleted_at IS NULL",
        None => {
            "SELECT w.id FROM webhooks w JOIN webhook_subscriptions s ON s.webhook_id = w.id \
             WHERE w.team_id = $4 AND w.enabled AND w.deleted_at IS NULL AND s.event_type = $5"
        }
    };
    let made = sqlx::query(&format!(
        "INSERT INTO webhook_deliveries (id, delivery_id, event_id, webhook_id, attempt, status, scheduled_at) \
         SELECT {id}, {id}, $1, target.id, 1, 'pending', $2 FROM ({targets}) AS target",
        id = super::NEW_ID
    ))
    .bind(&event.id)
    .bind(event.created.as_millis())
    .bind(only.unwrap_or_default())
    .bind(event.team_id.to_string())
    .bind(event.event_type)
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if made == 0 {
        // No target after all (a webhook deleted meanwhile, or an unknown one).
        sqlx::query("DELETE FROM webhook_events WHERE id = $1")
            .bind(&event.id)
            .execute(&mut *connection)
            .await?;
    }
    Ok(made)
}

/// Records `session.completed`/`session.failed` for each of `ids` that has
/// ended, for the webhooks that want it.
pub(super) async fn session_events(connection: &mut DbConnection, ids: &[SessionId]) -> StoreResult<()> {
    for id in ids {
        let row = sqlx::query(
            "SELECT id, team_id, batch_id, status, end_reason, created_at, started_at, ended_at, \
             EXISTS (SELECT 1 FROM webhooks w JOIN webhook_subscriptions s ON s.webhook_id = w.id \
                     WHERE w.team_id = sessions.team_id AND w.enabled AND w.deleted_at IS NULL \
                     AND s.event_type = CASE sessions.status WHEN 'failed' THEN 'session.failed' \
                                         ELSE 'session.completed' END) AS wanted \
             FROM sessions WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *connection)
        .await?;
        let Some(row) = row else { continue };
        if !row.try_get::<bool, _>("wanted")? {
            continue;
        }
        let status: String = row.try_get("status")?;
        let status: SessionStatus = status
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("session status {status:?}")))?;
        let ended_at: Option<i64> = row.try_get("ended_at")?;
        let (Some(ended_at), true) = (ended_at, status.is_final()) else {
            continue;
        };
        let team_id: TeamId = parse_id(&row, "team_id")?;
        let tags: Vec<String> =
            sqlx::query_scalar("SELECT tag FROM session_tags WHERE session_id = $1 ORDER BY position")
                .bind(id.to_string())
                .fetch_all(&mut *connection)
                .await?;
        let batch_id: Option<String> = row.try_get("batch_id")?;
        let started_at: Option<i64> = row.try_get("started_at")?;
        let ended = EndedSession {
            id: *id,
            team_id,
            batch_id: batch_id
                .map(|text| {
                    text.parse()
                        .map_err(|_| StoreError::Corrupt(format!("batch_id holds {text:?}")))
                })
                .transpose()?,
            status,
            reason: row.try_get("end_reason")?,
            created_at: Timestamp::from_millis(row.try_get("created_at")?),
            started_at: started_at.map(Timestamp::from_millis),
            ended_at: Timestamp::from_millis(ended_at),
            tags,
        };
        if let Some(event) = WebhookEvent::session_ended(&ended) {
            record_event(connection, &event, None).await?;
        }
    }
    Ok(())
}

/// Whether any live, enabled webhook of the team is subscribed to `event_type`.
pub(super) async fn wanted(connection: &mut DbConnection, team_id: TeamId, event_type: &str) -> StoreResult<bool> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM webhooks w JOIN webhook_subscriptions s ON s.webhook_id = w.id \
         WHERE w.team_id = $1 AND w.enabled AND w.deleted_at IS NULL AND s.event_type = $2 LIMIT 1",
    )
    .bind(team_id.to_string())
    .bind(event_type)
    .fetch_optional(&mut *connection)
    .await?;
    Ok(found.is_some())
}

impl SqlStore {
    pub(super) async fn insert_webhook(&self, webhook: &WebhookRecord, max_per_team: i64) -> StoreResult<bool> {
        let mut transaction = super::write(&self.pool).await?;
        // The write comes first: it takes the write lock, so two racing
        // creates cannot both see room for one more.
        let inserted = sqlx::query(&format!(
            "INSERT INTO webhooks ({COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, NULL, NULL, $7, $8 \
             WHERE (SELECT COUNT(*) FROM webhooks WHERE team_id = $9 AND deleted_at IS NULL) < $10"
        ))
        .bind(&webhook.id)
        .bind(webhook.team_id.to_string())
        .bind(&webhook.url)
        .bind(&webhook.description)
        .bind(webhook.enabled)
        .bind(&webhook.secret)
        .bind(webhook.created_at.as_millis())
        .bind(webhook.updated_at.as_millis())
        .bind(webhook.team_id.to_string())
        .bind(max_per_team)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            transaction.rollback().await?;
            return Ok(false);
        }
        subscribe(&mut transaction, &webhook.id, &webhook.events).await?;
        transaction.commit().await?;
        Ok(true)
    }

    pub(super) async fn webhook_rows(&self, team_id: TeamId) -> StoreResult<Vec<WebhookRecord>> {
        let mut connection = self.pool.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhooks WHERE team_id = $1 AND deleted_at IS NULL ORDER BY created_at, id"
        ))
        .bind(team_id.to_string())
        .fetch_all(&mut *connection)
        .await?;
        let mut webhooks = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let events = subscriptions(&mut connection, &id).await?;
            webhooks.push(webhook_from_row(row, events)?);
        }
        Ok(webhooks)
    }

    pub(super) async fn webhook_row(
        &self,
        team_id: TeamId,
        id: &str,
        deleted_too: bool,
    ) -> StoreResult<Option<WebhookRecord>> {
        let mut connection = self.pool.acquire().await?;
        webhook_in(&mut connection, team_id, id, deleted_too).await
    }

    pub(super) async fn change_webhook(
        &self,
        team_id: TeamId,
        id: &str,
        change: &WebhookChange,
        at: Timestamp,
    ) -> StoreResult<Option<WebhookRecord>> {
        let mut transaction = super::write(&self.pool).await?;
        let mut update: QueryBuilder<'_, Db> = QueryBuilder::new("UPDATE webhooks SET updated_at = ");
        update.push_bind(at.as_millis());
        if let Some(url) = &change.url {
            update.push(", url = ").push_bind(url.clone());
        }
        if let Some(description) = &change.description {
            update.push(", description = ").push_bind(description.clone());
        }
        if let Some(enabled) = change.enabled {
            update.push(", enabled = ").push_bind(enabled);
        }
        update
            .push(" WHERE id = ")
            .push_bind(id.to_owned())
            .push(" AND team_id = ")
            .push_bind(team_id.to_string())
            .push(" AND deleted_at IS NULL");
        if update.build().execute(&mut *transaction).await?.rows_affected() == 0 {
            transaction.rollback().await?;
            return Ok(None);
        }
        if let Some(events) = &change.events {
            subscribe(&mut transaction, id, events).await?;
        }
        let webhook = webhook_in(&mut transaction, team_id, id, false).await?;
        transaction.commit().await?;
        Ok(webhook)
    }

    pub(super) async fn remove_webhook(&self, team_id: TeamId, id: &str, at: Timestamp) -> StoreResult<bool> {
        let mut transaction = super::write(&self.pool).await?;
        let deleted = sqlx::query(
            "UPDATE webhooks SET deleted_at = $1, updated_at = $2, enabled = FALSE \
             WHERE id = $3 AND team_id = $4 AND deleted_at IS NULL",
        )
        .bind(at.as_millis())
        .bind(at.as_millis())
        .bind(id)
        .bind(team_id.to_string())
        .execute(&mut *transaction)
        .await?;
        if deleted.rows_affected() == 0 {
            transaction.rollback().await?;
            return Ok(false);
        }
        // Attempts not yet made are not made: nothing is posted for a deleted webhook.
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'dead', error_message = 'the webhook was deleted', \
             completed_at = $1 WHERE webhook_id = $2 AND status = 'pending'",
        )
        .bind(at.as_millis())
        .bind(id)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(true)
    }

    pub(super) async fn new_webhook_secret(
        &self,
        team_id: TeamId,
        id: &str,
        secret: &str,
        old_valid_until: Timestamp,
        at: Timestamp,
    ) -> StoreResult<Option<WebhookRecord>> {
        let mut transaction = super::write(&self.pool).await?;
        let rotated = sqlx::query(
            "UPDATE webhooks SET previous_secret = secret, previous_secret_until = $1, secret = $2, updated_at = $3 \
             WHERE id = $4 AND team_id = $5 AND deleted_at IS NULL",
        )
        .bind(old_valid_until.as_millis())
        .bind(secret)
        .bind(at.as_millis())
        .bind(id)
        .bind(team_id.to_string())
        .execute(&mut *transaction)
        .await?;
        if rotated.rows_affected() == 0 {
            transaction.rollback().await?;
            return Ok(None);
        }
        let webhook = webhook_in(&mut transaction, team_id, id, false).await?;
        transaction.commit().await?;
        Ok(webhook)
    }

    pub(super) async fn test_event(&self, webhook_id: &str, event: &WebhookEvent) -> StoreResult<bool> {
        let mut transaction = super::write(&self.pool).await?;
        let live: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM webhooks WHERE id = $1 AND team_id = $2 AND deleted_at IS NULL")
                .bind(webhook_id)
                .bind(event.team_id.to_string())
                .fetch_optional(&mut *transaction)
                .await?;
        if live.is_none() {
            transaction.rollback().await?;
            return Ok(false);
        }
        let made = record_event(&mut transaction, event, Some(webhook_id)).await?;
        transaction.commit().await?;
        Ok(made > 0)
    }

    pub(super) async fn attempt_page(&self, filter: &DeliveryFilter) -> StoreResult<(Vec<DeliveryAttempt>, i64)> {
        let conditions = |builder: &mut QueryBuilder<'_, Db>| {
            builder
                .push(
                    " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
                       JOIN webhooks w ON w.id = d.webhook_id WHERE d.webhook_id = ",
                )
                .push_bind(filter.webhook_id.clone())
                .push(" AND w.team_id = ")
                .push_bind(filter.team_id.to_string());
            if let Some(status) = &filter.status {
                builder.push(" AND d.status = ").push_bind(status.clone());
            }
            if let Some(event_type) = &filter.event_type {
                builder.push(" AND e.event_type = ").push_bind(event_type.clone());
            }
            if let Some(since) = filter.since {
                builder.push(" AND d.scheduled_at >= ").push_bind(since.as_millis());
            }
            if let Some(until) = filter.until {
                builder.push(" AND d.scheduled_at <= ").push_bind(until.as_millis());
            }
        };
        // One read transaction, so the total and the page come from the same
        // snapshot even while deliveries finish.
        let mut transaction = super::read(&self.pool).await?;
        let mut count: QueryBuilder<'_, Db> = QueryBuilder::new("SELECT COUNT(*)");
        conditions(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(&mut *transaction).await?;
        let mut select: QueryBuilder<'_, Db> = QueryBuilder::new(format!("SELECT {ATTEMPT_COLUMNS}"));
        conditions(&mut select);
        select
            .push(" ORDER BY d.scheduled_at DESC, d.attempt DESC, d.id LIMIT ")
            .push_bind(filter.limit)
            .push(" OFFSET ")
            .push_bind(filter.offset);
        let rows = select.build().fetch_all(&mut *transaction).await?;
        transaction.commit().await?;
        let attempts = rows.iter().map(attempt_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok((attempts, total))
    }

    pub(super) async fn claim_attempts(
        &self,
        node: anchorage_core::NodeId,
        now: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<DueAttempt>> {
        let mut transaction = super::write(&self.pool).await?;
        // The write comes first, so the transaction holds the write lock
        // from its first statement and no other claim takes the same rows.
        let claimed: Vec<String> = sqlx::query_scalar(&format!(
            "UPDATE webhook_deliveries SET status = 'in_flight', claimed_by = $1 WHERE id IN \
             (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND scheduled_at <= $2 \
              ORDER BY scheduled_at, id LIMIT $3{}) RETURNING id",
            super::SKIP_LOCKED
        ))
        .bind(node.to_string())
        .bind(now.as_millis())
        .bind(limit)
        .fetch_all(&mut *transaction)
        .await?;
        if claimed.is_empty() {
            transaction.rollback().await?;
            return Ok(Vec::new());
        }
        let mut select: QueryBuilder<'_, Db> = QueryBuilder::new(format!(
            "SELECT {ATTEMPT_COLUMNS}, e.body, w.id AS webhook_id, w.url, w.secret, w.previous_secret, \
             w.previous_secret_until FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
             JOIN webhooks w ON w.id = d.webhook_id WHERE d.id IN ("
        ));
        let mut ids = select.separated(", ");
        for id in &claimed {
            ids.push_bind(id.clone());
        }
        select.push(") ORDER BY d.scheduled_at, d.id");
        let rows = select.build().fetch_all(&mut *transaction).await?;
        transaction.commit().await?;
        rows.iter()
            .map(|row| {
                let mut secrets = vec![row.try_get::<String, _>("secret")?];
                let previous: Option<String> = row.try_get("previous_secret")?;
                let until: Option<i64> = row.try_get("previous_secret_until")?;
                if let (Some(previous), Some(until)) = (previous, until) {
                    if until > now.as_millis() {
                        secrets.push(previous);
                    }
                }
                Ok(DueAttempt {
                    attempt: attempt_from_row(row)?,
                    webhook_id: row.try_get("webhook_id")?,
                    url: row.try_get("url")?,
                    secrets,
                    body: row.try_get("body")?,
                })
            })
            .collect()
    }

    pub(super) async fn end_attempt(
        &self,
        attempt_id: &anchorage_core::AttemptId,
        outcome: &AttemptOutcome,
        at: Timestamp,
    ) -> StoreResult<()> {
        let mut transaction = super::write(&self.pool).await?;
        let (status, response_status, error) = match outcome {
            AttemptOutcome::Succeeded { response_status } => (DeliveryStatus::Succeeded, Some(*response_status), None),
            AttemptOutcome::NotDelivered {
                response_status,
                error,
                retry_at,
                refused,
            } => {
                let status = if *refused || retry_at.is_some() {
                    DeliveryStatus::Failed
                } else {
                    DeliveryStatus::Dead
                };
                (status, *response_status, Some(error.as_str()))
            }
        };
        let ended = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, response_status = $2, error_message = $3, completed_at = $4 \
             WHERE id = $5 AND status = 'in_flight'",
        )
        .bind(status.as_str())
        .bind(response_status)
        .bind(error)
        .bind(at.as_millis())
        .bind(attempt_id.as_str())
        .execute(&mut *transaction)
        .await?;
        if ended.rows_affected() == 0 {
            // Released and claimed again elsewhere: that claim records it.
            transaction.rollback().await?;
            return Ok(());
        }
        if let AttemptOutcome::NotDelivered {
            retry_at: Some(retry_at),
            refused: false,
            ..
        } = outcome
        {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, delivery_id, event_id, webhook_id, attempt, status, scheduled_at) \
                 SELECT $1, delivery_id, event_id, webhook_id, attempt + 1, 'pending', $2 \
                 FROM webhook_deliveries WHERE id = $3",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(retry_at.as_millis())
            .bind(attempt_id.as_str())
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    pub(super) async fn first_due(&self) -> StoreResult<Option<Timestamp>> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT MIN(scheduled_at) FROM webhook_deliveries WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        Ok(at.map(Timestamp::from_millis))
    }

    pub(super) async fn release_attempts(&self, node: anchorage_core::NodeId, now: Timestamp) -> StoreResult<u64> {
        // Its own claims (it restarted), and those of nodes that are gone:
        // not registered, or past their lease.
        let released = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', claimed_by = NULL WHERE status = 'in_flight' \
             AND (claimed_by IS NULL OR claimed_by = $1 OR NOT EXISTS \
                  (SELECT 1 FROM nodes n WHERE n.id = webhook_deliveries.claimed_by AND n.lease_until >= $2))",
        )
        .bind(node.to_string())
        .bind(now.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(released.rows_affected())
    }

    pub(super) async fn prune_attempts(&self, before: Timestamp) -> StoreResult<u64> {
        let mut transaction = super::write(&self.pool).await?;
        let attempts = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE status NOT IN ('pending', 'in_flight') AND completed_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries later WHERE later.delivery_id = webhook_deliveries.delivery_id \
                             AND later.status IN ('pending', 'in_flight'))",
        )
        .bind(before.as_millis())
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "DELETE FROM webhook_events WHERE created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
        )
        .bind(before.as_millis())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(attempts.rows_affected())
    }
}

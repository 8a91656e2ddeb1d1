//! Saved browser profiles in SQLite (the rows; their files are the server's).

use anchorage_core::{ProfileId, TeamId, Timestamp};
use sqlx::Row;

use super::DbRow;

use super::rows::parse_id;
use super::SqlStore;
use crate::records::ProfileRecord;
use crate::{StoreError, StoreResult};

const COLUMNS: &str =
    "id, team_id, name, description, source, session_id, status, version, size_bytes, created_at, updated_at";

fn profile_from_row(row: &DbRow) -> StoreResult<ProfileRecord> {
    let session: Option<String> = row.try_get("session_id")?;
    Ok(ProfileRecord {
        id: parse_id(row, "id")?,
        team_id: parse_id(row, "team_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        source: row.try_get("source")?,
        session_id: session
            .map(|text| {
                text.parse()
                    .map_err(|_| StoreError::Corrupt(format!("session_id holds {text:?}")))
            })
            .transpose()?,
        status: super::rows::parse_id(row, "status")?,
        version: row.try_get("version")?,
        size_bytes: row.try_get("size_bytes")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

impl SqlStore {
    pub(super) async fn insert_profile(&self, profile: &ProfileRecord) -> StoreResult<()> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO profiles ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (team_id, name) DO NOTHING"
        ))
        .bind(profile.id.to_string())
        .bind(profile.team_id.to_string())
        .bind(&profile.name)
        .bind(&profile.description)
        .bind(&profile.source)
        .bind(profile.session_id.map(|id| id.to_string()))
        .bind(profile.status.as_str())
        .bind(&profile.version)
        .bind(profile.size_bytes)
        .bind(profile.created_at.as_millis())
        .bind(profile.updated_at.as_millis())
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists(format!("profile {:?}", profile.name)));
        }
        Ok(())
    }

    pub(super) async fn profile_rows(
        &self,
        team_id: Option<TeamId>,
        name: Option<&str>,
    ) -> StoreResult<Vec<ProfileRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM profiles WHERE ($1 IS NULL OR team_id = $1) AND ($2 IS NULL OR name = $2) \
             ORDER BY created_at, id"
        ))
        .bind(team_id.map(|id| id.to_string()))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(profile_from_row).collect()
    }

    pub(super) async fn remove_profile(&self, team_id: TeamId, name: &str) -> StoreResult<Option<ProfileRecord>> {
        let row = sqlx::query(&format!(
            "DELETE FROM profiles WHERE team_id = $1 AND name = $2 RETURNING {COLUMNS}"
        ))
        .bind(team_id.to_string())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(profile_from_row).transpose()
    }

    pub(super) async fn record_profile_save(
        &self,
        id: ProfileId,
        saved: Option<(&str, i64)>,
        status: anchorage_core::ProfileStatus,
        at: Timestamp,
    ) -> StoreResult<Option<Option<String>>> {
        let mut transaction = super::write(&self.pool).await?;
        let previous: Option<Option<String>> = sqlx::query_scalar("SELECT version FROM profiles WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *transaction)
            .await?;
        let Some(previous) = previous else {
            return Ok(None);
        };
        match saved {
            Some((version, size)) => {
                sqlx::query(
                    "UPDATE profiles SET version = $1, size_bytes = $2, status = $3, updated_at = $4 WHERE id = $5",
                )
                .bind(version)
                .bind(size)
                .bind(status.as_str())
                .bind(at.as_millis())
                .bind(id.to_string())
                .execute(&mut *transaction)
                .await?;
            }
            None => {
                sqlx::query("UPDATE profiles SET status = $1, updated_at = $2 WHERE id = $3")
                    .bind(status.as_str())
                    .bind(at.as_millis())
                    .bind(id.to_string())
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        transaction.commit().await?;
        Ok(Some(previous))
    }
}

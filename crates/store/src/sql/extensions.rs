//! Uploaded browser extensions in SQLite (the rows; their files are the server's).

use anchorage_core::{ExtensionId, TeamId, Timestamp};
use sqlx::Row;

use super::DbRow;

use super::rows::parse_id;
use super::SqlStore;
use crate::records::ExtensionRecord;
use crate::{StoreError, StoreResult};

const COLUMNS: &str = "id, team_id, name, manifest, size_bytes, created_at, updated_at";

fn extension_from_row(row: &DbRow) -> StoreResult<ExtensionRecord> {
    let manifest: String = row.try_get("manifest")?;
    Ok(ExtensionRecord {
        id: parse_id(row, "id")?,
        team_id: parse_id(row, "team_id")?,
        name: row.try_get("name")?,
        manifest: serde_json::from_str(&manifest).map_err(|error| StoreError::Corrupt(format!("manifest: {error}")))?,
        size_bytes: row.try_get("size_bytes")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

impl SqlStore {
    pub(super) async fn insert_extension(&self, extension: &ExtensionRecord) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO extensions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(extension.id.to_string())
        .bind(extension.team_id.to_string())
        .bind(&extension.name)
        .bind(extension.manifest.to_string())
        .bind(extension.size_bytes)
        .bind(extension.created_at.as_millis())
        .bind(extension.updated_at.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn extension_rows(
        &self,
        team_id: Option<TeamId>,
        id: Option<ExtensionId>,
    ) -> StoreResult<Vec<ExtensionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM extensions WHERE ($1 IS NULL OR team_id = $1) AND ($2 IS NULL OR id = $2) \
             ORDER BY created_at, id"
        ))
        .bind(team_id.map(|id| id.to_string()))
        .bind(id.map(|id| id.to_string()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(extension_from_row).collect()
    }

    pub(super) async fn remove_extension(
        &self,
        team_id: TeamId,
        id: ExtensionId,
    ) -> StoreResult<Option<ExtensionRecord>> {
        let row = sqlx::query(&format!(
            "DELETE FROM extensions WHERE team_id = $1 AND id = $2 RETURNING {COLUMNS}"
        ))
        .bind(team_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(extension_from_row).transpose()
    }
}

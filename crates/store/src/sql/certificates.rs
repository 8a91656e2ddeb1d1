//! CA certificates in SQLite.

use anchorage_core::{TeamId, Timestamp};
use sqlx::Row;

use super::DbRow;

use super::rows::parse_id;
use super::SqlStore;
use crate::records::CertificateRecord;
use crate::{StoreError, StoreResult};

const COLUMNS: &str = "id, team_id, name, description, pem, created_at";

fn certificate_from_row(row: &DbRow) -> StoreResult<CertificateRecord> {
    Ok(CertificateRecord {
        id: parse_id(row, "id")?,
        team_id: parse_id(row, "team_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        pem: row.try_get("pem")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

impl SqlStore {
    pub(super) async fn insert_certificate(&self, certificate: &CertificateRecord) -> StoreResult<()> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO certificates ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (team_id, name) DO NOTHING"
        ))
        .bind(certificate.id.to_string())
        .bind(certificate.team_id.to_string())
        .bind(&certificate.name)
        .bind(&certificate.description)
        .bind(&certificate.pem)
        .bind(certificate.created_at.as_millis())
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists(format!("certificate {:?}", certificate.name)));
        }
        Ok(())
    }

    pub(super) async fn certificate_rows(&self, team_id: Option<TeamId>) -> StoreResult<Vec<CertificateRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM certificates WHERE ($1 IS NULL OR team_id = $1) ORDER BY created_at, id"
        ))
        .bind(team_id.map(|id| id.to_string()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(certificate_from_row).collect()
    }

    pub(super) async fn remove_certificate(
        &self,
        team_id: TeamId,
        name: &str,
    ) -> StoreResult<Option<CertificateRecord>> {
        let row = sqlx::query(&format!(
            "DELETE FROM certificates WHERE team_id = $1 AND name = $2 RETURNING {COLUMNS}"
        ))
        .bind(team_id.to_string())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(certificate_from_row).transpose()
    }
}

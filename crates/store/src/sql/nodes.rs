//! Nodes and their leases in SQLite.

use anchorage_core::{NodeId, Timestamp};
use sqlx::Row;

use super::DbRow;

use super::rows::parse_id;
use super::SqlStore;
use crate::records::NodeRecord;
use crate::StoreResult;

fn node_from_row(row: &DbRow) -> StoreResult<NodeRecord> {
    Ok(NodeRecord {
        id: parse_id(row, "id")?,
        url: row.try_get("url")?,
        max_sessions: row.try_get("max_sessions")?,
        started_at: Timestamp::from_millis(row.try_get("started_at")?),
        lease_until: Timestamp::from_millis(row.try_get("lease_until")?),
        live_sessions: row.try_get("live_sessions")?,
    })
}

impl SqlStore {
    pub(super) async fn upsert_node(&self, node: &NodeRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO nodes (id, url, max_sessions, started_at, lease_until) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, max_sessions = excluded.max_sessions, \
             started_at = excluded.started_at, lease_until = excluded.lease_until",
        )
        .bind(node.id.to_string())
        .bind(&node.url)
        .bind(node.max_sessions)
        .bind(node.started_at.as_millis())
        .bind(node.lease_until.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn extend_lease(&self, id: NodeId, lease_until: Timestamp) -> StoreResult<bool> {
        let renewed = sqlx::query("UPDATE nodes SET lease_until = $1 WHERE id = $2")
            .bind(lease_until.as_millis())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(renewed.rows_affected() > 0)
    }

    pub(super) async fn node_rows(&self) -> StoreResult<Vec<NodeRecord>> {
        let rows = sqlx::query(
            "SELECT n.id, n.url, n.max_sessions, n.started_at, n.lease_until, \
             (SELECT COUNT(*) FROM sessions s WHERE s.node_id = n.id AND s.status IN ('starting', 'running')) \
             AS live_sessions FROM nodes n ORDER BY n.started_at, n.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(node_from_row).collect()
    }

    pub(super) async fn remove_node(&self, id: NodeId) -> StoreResult<()> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

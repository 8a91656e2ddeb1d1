//! The shared queue of start requests: nodes claim pending requests into
//! their own queues as they have room (see `Store::claim_requests`).

use std::collections::HashMap;

use anchorage_core::{NodeId, TeamId, Timestamp};
use sqlx::Row;

use super::rows::request_from_row;
use super::SqlStore;
use crate::records::RequestRecord;
use crate::StoreResult;

/// Requests in nobody's queue: unclaimed, or claimed by a node whose lease
/// ran out (`$1` is now).
/// A pending request another node may take: unclaimed, or claimed by a node
/// whose lease ran out. Never one the claiming node holds itself: a node whose
/// own lease lapsed for a moment (a database locked longer than the lease)
/// still has those requests in its queue or launching, and taking them again
/// would start one request twice. `now` and `me` are the placeholders of the
/// time and the claiming node.
fn claimable(now: &str, me: &str) -> String {
    format!(
        "r.status = 'pending' AND (r.claimed_by IS NULL OR (r.claimed_by <> {me} AND r.claimed_by NOT IN \
         (SELECT n.id FROM nodes n WHERE n.lease_until >= {now})))"
    )
}

impl SqlStore {
    pub(super) async fn claim_queued(
        &self,
        node: NodeId,
        wanted: i64,
        team_quota: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<Vec<RequestRecord>> {
        if wanted <= 0 {
            return Ok(Vec::new());
        }
        // A look without the write lock first: an idle node asks often.
        let any: Option<i32> = sqlx::query_scalar(&format!(
            "SELECT 1 FROM start_requests r WHERE {} LIMIT 1",
            claimable("$1", "$2")
        ))
        .bind(now.as_millis())
        .bind(node.to_string())
        .fetch_optional(&self.pool)
        .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut transaction = super::write(&self.pool).await?;
        // The teams with pending work, each found by one probe of the queue
        // index (a loose index scan: no pass over every pending request),
        // with the oldest request it could give and its last turn.
        let order = super::INSERTION_ORDER;
        let rows = sqlx::query(&format!(
            "WITH RECURSIVE waiting (team_id) AS ( \
               SELECT MIN(team_id) FROM start_requests WHERE status = 'pending' \
               UNION ALL SELECT (SELECT MIN(s.team_id) FROM start_requests s \
                                 WHERE s.status = 'pending' AND s.team_id > w.team_id) \
               FROM waiting w WHERE w.team_id IS NOT NULL) \
             SELECT w.team_id, t.turn, \
               (SELECT MIN(r.{order}) FROM start_requests r WHERE {claimable} AND r.team_id = w.team_id) AS head \
             FROM waiting w LEFT JOIN team_turns t ON t.team_id = w.team_id WHERE w.team_id IS NOT NULL",
            claimable = claimable("$1", "$2")
        ))
        .bind(now.as_millis())
        .bind(node.to_string())
        .fetch_all(&mut *transaction)
        .await?;
        // Least recently served first (never served before all), then by
        // their oldest request.
        let mut teams = Vec::new();
        for row in &rows {
            let head: Option<i64> = row.try_get("head")?;
            if let Some(head) = head {
                let turn: Option<i64> = row.try_get("turn")?;
                teams.push((turn.is_some(), turn, head, row.try_get::<String, _>("team_id")?));
            }
        }
        teams.sort();
        if teams.is_empty() {
            transaction.rollback().await?;
            return Ok(Vec::new());
        }
        let loads = match team_quota {
            Some(_) => team_loads(&mut transaction, None, Pending::Claimed, now).await?,
            None => HashMap::new(),
        };
        // The next requests of as many teams as could take a turn (each
        // gives one per round), as many each as it may have and no more
        // than wanted in all; then the teams take turns.
        let mut lines = Vec::new();
        for (_, _, _, team) in teams {
            if lines.len() as i64 >= wanted {
                break;
            }
            let room = match team_quota {
                Some(quota) => quota - loads.get(&team).copied().unwrap_or(0),
                None => wanted,
            }
            .min(wanted);
            if room <= 0 {
                continue;
            }
            let rows = sqlx::query(&format!(
                "SELECT r.* FROM start_requests r WHERE {} AND r.team_id = $3 \
                 ORDER BY r.{order} LIMIT $4{}",
                claimable("$1", "$2"),
                super::SKIP_LOCKED
            ))
            .bind(now.as_millis())
            .bind(node.to_string())
            .bind(&team)
            .bind(room)
            .fetch_all(&mut *transaction)
            .await?;
            let line = rows.iter().map(request_from_row).collect::<StoreResult<Vec<_>>>()?;
            lines.push(line.into_iter());
        }
        let mut claimed = Vec::new();
        let mut served = Vec::new();
        'turns: loop {
            let mut any = false;
            for line in &mut lines {
                if claimed.len() as i64 >= wanted {
                    break 'turns;
                }
                if let Some(request) = line.next() {
                    if !served.contains(&request.team_id) {
                        served.push(request.team_id);
                    }
                    claimed.push(request);
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        for request in &claimed {
            sqlx::query("UPDATE start_requests SET claimed_by = $1 WHERE id = $2")
                .bind(node.to_string())
                .bind(request.id.to_string())
                .execute(&mut *transaction)
                .await?;
        }
        // The teams served now go to the back, in the order they were served.
        for team in served {
            sqlx::query(
                "INSERT INTO team_turns (team_id, turn) \
                 VALUES ($1, (SELECT COALESCE(MAX(turn), 0) + 1 FROM team_turns)) \
                 ON CONFLICT (team_id) DO UPDATE SET turn = excluded.turn",
            )
            .bind(team.to_string())
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(claimed)
    }

    pub(super) async fn load_of_team(&self, team_id: TeamId, now: Timestamp) -> StoreResult<i64> {
        let mut connection = self.pool.acquire().await?;
        self.load_of_team_in(&mut connection, team_id, now).await
    }

    /// As [`Self::load_of_team`], on `connection` (inside a transaction).
    pub(super) async fn load_of_team_in(
        &self,
        connection: &mut super::DbConnection,
        team_id: TeamId,
        now: Timestamp,
    ) -> StoreResult<i64> {
        let loads = team_loads(connection, Some(team_id), Pending::All, now).await?;
        Ok(loads.get(&team_id.to_string()).copied().unwrap_or(0))
    }
}

/// Which pending requests count towards a team's load.
enum Pending {
    /// Those in some live node's queue (what a claim weighs: the rest is
    /// what it shares out).
    Claimed,
    /// Every one (what a new start is weighed against).
    All,
}

/// Each team's browsers (launching and running, on every node) and its
/// pending requests as `pending` says; with `only`, that team's alone.
async fn team_loads(
    connection: &mut super::DbConnection,
    only: Option<TeamId>,
    pending: Pending,
    now: Timestamp,
) -> StoreResult<HashMap<String, i64>> {
    let team = match only {
        Some(_) => " AND team_id = $2",
        None => "",
    };
    let claimed = match pending {
        Pending::Claimed => " AND claimed_by IN (SELECT n.id FROM nodes n WHERE n.lease_until >= $1)",
        Pending::All => " AND $1 = $1",
    };
    let rows = sqlx::query(&format!(
        "SELECT team_id, COUNT(*) AS load FROM (\
           SELECT team_id FROM sessions WHERE status IN ('starting', 'running'){team} \
           UNION ALL SELECT team_id FROM start_requests WHERE status = 'pending'{team}{claimed}\
         ) AS live GROUP BY team_id"
    ))
    .bind(now.as_millis())
    .bind(only.map(|team| team.to_string()).unwrap_or_default())
    .fetch_all(&mut *connection)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("team_id")?, row.try_get("load")?)))
        .collect()
}

//! What a node's claim of queued work costs as a cluster grows: 100 nodes
//! with live leases, and 1,000 to 100,000 pending start requests of 100
//! teams, in a fresh schema of the PostgreSQL database at `$1`.
//!
//! ```sh
//! cargo run --release -p anchorage-store --example claim_cost -- postgres://…/postgres
//! ```
//!
//! For each size it times `Store::claim_requests` (4 wanted, with and
//! without a team quota) 50 times each and prints the median and p90 in
//! milliseconds, as JSON lines. Asserts nothing about time.

use std::time::Instant;

use anchorage_core::{NodeId, Timestamp};
use anchorage_store::{NodeRecord, NodeStore, PostgresStore, QueueStore, TeamStore};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args()
        .nth(1)
        .ok_or("usage: claim_cost postgres://USER@HOST:PORT/DATABASE")?;
    for pending in [1_000_i64, 10_000, 100_000] {
        let schema = format!("claim_cost_{pending}_{}", std::process::id());
        let admin = sqlx::PgPool::connect(&base).await?;
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await?;
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
        let store = PostgresStore::open(&url).await?;
        let now = Timestamp::now();
        let lease = Timestamp::from_millis(now.as_millis() + 3_600_000);
        let mut nodes = Vec::new();
        for index in 0..100_u128 {
            let id = NodeId::from_u128(0x1000 + index);
            store
                .register_node(&NodeRecord {
                    id,
                    url: format!("http://node{index}.test"),
                    max_sessions: 20,
                    started_at: now,
                    lease_until: lease,
                    live_sessions: 0,
                })
                .await?;
            nodes.push(id);
        }
        let pool = sqlx::PgPool::connect(&url).await?;
        let mut teams = Vec::new();
        for index in 0..100 {
            teams.push(store.create_team(&format!("team{index}")).await?.id.to_string());
        }
        // The pending requests, written in bulk (as batches would be).
        sqlx::query(
            "INSERT INTO start_requests (id, team_id, api_key_name, item_index, status, configuration, \
             retry_count, created_at) \
             SELECT md5(n::text)::uuid::text, ($1::text[])[1 + n % 100], 'bench', n, 'pending', '{}', 0, $2 + n \
             FROM generate_series(1, $3) AS n",
        )
        .bind(&teams)
        .bind(now.as_millis())
        .bind(pending)
        .execute(&pool)
        .await?;
        sqlx::query("ANALYZE").execute(&pool).await?;
        for quota in [None, Some(20_i64)] {
            let mut times = Vec::new();
            for round in 0..50 {
                let node = nodes[round % nodes.len()];
                let started = Instant::now();
                let claimed = store.claim_requests(node, 4, quota, Timestamp::now()).await?;
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(claimed.len(), 4);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "{{\"pending\": {pending}, \"nodes\": 100, \"teams\": 100, \"quota\": {}, \"p50_ms\": {:.2}, \"p90_ms\": {:.2}}}",
                quota.map_or("null".to_owned(), |quota| quota.to_string()),
                times[times.len() / 2],
                times[times.len() * 9 / 10]
            );
        }
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&admin)
            .await?;
    }
    Ok(())
}

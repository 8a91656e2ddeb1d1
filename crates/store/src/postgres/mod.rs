//! The PostgreSQL backend of [`Store`](crate::Store), for several nodes on
//! one database (`ANCHORAGE_DATABASE_URL=postgres://…`). It runs the same
//! statements as the SQLite backend (`../sql/`), with a schema of its own
//! (`schema.sql`).
//!
//! SQLite lets one writer in at a time, and the shared code's transactions
//! are written for that: a transaction of several statements decides on
//! what it read (is every item of this batch done? is the team under its
//! limit?) and no other write slips in between. PostgreSQL's default
//! isolation would let one, so every such transaction here first takes one
//! transaction-scoped advisory lock: changes that span statements happen
//! one at a time, as in SQLite, while reads and single-statement changes
//! (which PostgreSQL makes atomic by row locks) run in parallel. Claims of
//! queued work skip rows another node has locked (`FOR UPDATE SKIP LOCKED`).

#[path = "../sql/batches.rs"]
mod batches;
#[path = "../sql/certificates.rs"]
mod certificates;
#[path = "../sql/code.rs"]
mod code;
#[path = "../sql/extensions.rs"]
mod extensions;
#[path = "../sql/nodes.rs"]
mod nodes;
#[path = "../sql/profiles.rs"]
mod profiles;
#[path = "../sql/queue.rs"]
mod queue;
#[path = "../sql/recordings.rs"]
mod recordings;
#[path = "../sql/rows.rs"]
mod rows;
#[path = "../sql/store.rs"]
mod store;
#[path = "../sql/webhooks.rs"]
mod webhooks;

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Transaction};

use crate::{StoreError, StoreResult};

/// The database the shared code speaks to here.
type Db = sqlx::Postgres;
/// A row of [`Db`].
type DbRow = sqlx::postgres::PgRow;
/// A connection (or open transaction) of [`Db`].
type DbConnection = sqlx::PgConnection;
/// The store the shared code implements here.
type SqlStore = PostgresStore;

/// A new random id of 32 lowercase hex digits, as SQL.
const NEW_ID: &str = "replace(gen_random_uuid()::text, '-', '')";
/// The column that orders a table's rows as they were inserted (start
/// requests, a webhook's subscriptions).
const INSERTION_ORDER: &str = "seq";
/// A claim passes over rows another node's claim holds.
const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";

/// The key of the advisory lock that write transactions take ("anchor").
const WRITE_LOCK: i64 = 0x616e_6368_6f72;

/// Each migration, in order; the index plus one is its version.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema_2.sql"),
    include_str!("schema_3.sql"),
];

/// A store in a PostgreSQL database, shared by every node that opens it.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The channel its nodes notify each other on: one per schema, so that
    /// deployments sharing a database in schemas of their own keep apart.
    channel: String,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://…` or
    /// `postgresql://…`) and brings its schema up to date.
    pub async fn open(url: &str) -> StoreResult<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await?;
        let mut channel = format!("anchorage:{schema}");
        // A channel is a name: at most 63 bytes.
        while channel.len() > 63 {
            channel.pop();
        }
        let store = Self { pool, channel };
        store.migrate(MIGRATIONS).await?;
        Ok(store)
    }
}

/// A transaction for a change: it waits for the write lock first, so it
/// runs as if alone among changes (see the module's documentation).
async fn write(pool: &PgPool) -> StoreResult<Transaction<'static, Db>> {
    let mut transaction = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(WRITE_LOCK)
        .execute(&mut *transaction)
        .await?;
    Ok(transaction)
}

/// `NOTIFY`s every listening node of `topic` (see [`crate::Store::notify`]).
async fn notify(store: &PostgresStore, topic: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(&store.channel)
        .bind(topic)
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// Listens on the channel with a connection of its own, in a task that
/// hands each topic on until the receiver is dropped (see
/// [`crate::Store::listen`]). sqlx reconnects a lost connection on the
/// next receive; what was notified meanwhile is lost, as documented.
async fn listen(store: &PostgresStore) -> StoreResult<Option<tokio::sync::mpsc::Receiver<String>>> {
    let mut listener = sqlx::postgres::PgListener::connect_with(&store.pool).await?;
    listener.listen(&store.channel).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                received = listener.recv() => received,
                () = sender.closed() => return,
            };
            match received {
                Ok(notification) => {
                    if sender.send(notification.payload().to_owned()).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "listening for other nodes' changes failed; trying again in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(Some(receiver))
}

/// A transaction for several reads that must agree (a count and a page):
/// one snapshot for all its statements.
async fn read(pool: &PgPool) -> StoreResult<Transaction<'static, Db>> {
    Ok(pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?)
}

/// Nothing to keep: a test's schema stays in the throwaway cluster.
#[cfg(test)]
type TestDatabase = ();

/// A new, empty schema for one test in the cluster the test command
/// started (`ANCHORAGE_TEST_POSTGRES_URL`), and the URL that selects it.
/// Without that setting a plain `cargo test` has no PostgreSQL: the
/// PostgreSQL half of the contract suite says so and passes without
/// running, unless `ANCHORAGE_TEST_REQUIRE_POSTGRES` is set (the README's
/// test command sets both), when that is a failure.
#[cfg(test)]
async fn test_database() -> Option<(TestDatabase, String)> {
    let Ok(base) = std::env::var("ANCHORAGE_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("ANCHORAGE_TEST_REQUIRE_POSTGRES").is_none(),
            "ANCHORAGE_TEST_POSTGRES_URL is not set, and ANCHORAGE_TEST_REQUIRE_POSTGRES says the PostgreSQL \
             tests must run: run the tests with ./scripts/test, which starts a throwaway PostgreSQL cluster"
        );
        eprintln!(
            "skipped on PostgreSQL: ANCHORAGE_TEST_POSTGRES_URL is not set (./scripts/test starts a throwaway \
             cluster and sets it)"
        );
        return None;
    };
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPool::connect(&base).await.expect("connect to the test cluster");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("create the test's schema");
    admin.close().await;
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(((), format!("{base}{separator}options=-c%20search_path%3D{schema}")))
}

#[cfg(test)]
#[path = "../sql/tests.rs"]
mod tests;

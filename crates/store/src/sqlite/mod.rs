//! The SQLite backend of [`Store`](crate::Store), the embedded default: one
//! file, WAL mode, a small pool. SQLite lets one writer in at a time, so a
//! write transaction sees every earlier write and no other write can slip
//! in between its statements; the shared code (`../sql/`) relies on that.

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

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlitePool, Transaction};

use crate::{StoreError, StoreResult};
use store::MIGRATIONS_TABLE;

/// The database the shared code speaks to here.
type Db = sqlx::Sqlite;
/// A row of [`Db`].
type DbRow = sqlx::sqlite::SqliteRow;
/// A connection (or open transaction) of [`Db`].
type DbConnection = sqlx::SqliteConnection;
/// The store the shared code implements here.
type SqlStore = SqliteStore;

/// A new random id of 32 lowercase hex digits, as SQL.
const NEW_ID: &str = "lower(hex(randomblob(16)))";
/// The column that orders a table's rows as they were inserted (start
/// requests, a webhook's subscriptions).
const INSERTION_ORDER: &str = "rowid";
/// Claims need no row locks here: the one writer has the rows to itself.
const SKIP_LOCKED: &str = "";

/// Each migration, in order; the index plus one is its version.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema_2.sql"),
    include_str!("schema_3.sql"),
    include_str!("schema_4.sql"),
    include_str!("schema_5.sql"),
    include_str!("schema_6.sql"),
    include_str!("schema_7.sql"),
    include_str!("schema_8.sql"),
    include_str!("schema_9.sql"),
    include_str!("schema_10.sql"),
    include_str!("schema_11.sql"),
];

/// A store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://PATH` or
    /// `sqlite::memory:`) and brings its schema up to date.
    pub async fn open(url: &str) -> StoreResult<Self> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let in_memory = url.contains(":memory:");
        let pool = SqlitePoolOptions::new()
            // An in-memory database lives in one connection.
            .max_connections(if in_memory { 1 } else { 8 })
            .min_connections(1)
            .connect_with(options)
            .await?;
        // Every change's transaction takes its lock on this table (`write`).
        sqlx::query(MIGRATIONS_TABLE).execute(&pool).await?;
        let store = Self { pool };
        store.migrate(MIGRATIONS).await?;
        Ok(store)
    }
}

/// A transaction for a change, holding SQLite's write lock from its start.
///
/// A deferred transaction that reads and then writes fails at once ("database
/// is locked", no busy wait) when another connection committed in between:
/// its snapshot is stale. A write that matches nothing, made first, takes the
/// lock while the transaction has no snapshot yet, so it waits out the busy
/// timeout like any write, and the reads after it see the latest state.
/// (`BEGIN IMMEDIATE` would do the same, but sqlx keeps believing a
/// transaction is open when that statement fails, as on a full disk.)
async fn write(pool: &SqlitePool) -> StoreResult<Transaction<'static, Db>> {
    let mut transaction = pool.begin().await?;
    sqlx::query("DELETE FROM schema_migrations WHERE 0")
        .execute(&mut *transaction)
        .await?;
    Ok(transaction)
}

/// Nobody else uses an SQLite database: nobody to tell (see
/// [`crate::Store::notify`]).
async fn notify(_store: &SqliteStore, _topic: &str) -> StoreResult<()> {
    Ok(())
}

/// No channel between nodes here (see [`crate::Store::listen`]).
async fn listen(_store: &SqliteStore) -> StoreResult<Option<tokio::sync::mpsc::Receiver<String>>> {
    Ok(None)
}

/// A transaction for several reads that must agree (a count and a page):
/// in WAL mode its first read fixes the snapshot the rest see.
async fn read(pool: &SqlitePool) -> StoreResult<Transaction<'static, Db>> {
    Ok(pool.begin().await?)
}

/// What keeps a test's database alive: its folder.
#[cfg(test)]
type TestDatabase = tempfile::TempDir;

/// A new, empty database for one test, and its URL.
#[cfg(test)]
async fn test_database() -> Option<(TestDatabase, String)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    Some((dir, url))
}

#[cfg(test)]
#[path = "../sql/tests.rs"]
mod tests;

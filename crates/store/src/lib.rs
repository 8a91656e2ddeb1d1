//! Persistence for anchorage.
//!
//! [`Store`] is the one interface the rest of the server uses; nothing outside
//! this crate writes SQL. It is the union of role traits ([`TeamStore`],
//! [`QueueStore`], [`SessionStore`], [`BatchStore`], [`FileStore`],
//! [`WebhookStore`], [`NodeStore`]), so that a part of the server can hold
//! the one role it uses and a test can fake that role alone. Two backends implement it with the same statements
//! (`src/sql/`, compiled once into each): [`SqliteStore`], the embedded
//! default, and [`PostgresStore`], which several nodes share. The SQL keeps
//! to forms both accept: `$1` placeholders, `BIGINT` milliseconds for time,
//! `TEXT` for ids and JSON, conditional `UPDATE … WHERE status = …` for
//! state changes; what differs (random ids, row locks, the write lock, the
//! schema) is defined by each backend's module.

// Each backend compiles the shared statements (`src/sql/`) into itself, so
// the same files are loaded as two modules on purpose.
#![allow(clippy::duplicate_mod)]

pub mod postgres;
mod records;
pub mod sqlite;

use anchorage_core::{BatchId, RequestId, SessionId, SessionStatus, TeamId, Timestamp};
use async_trait::async_trait;

pub use postgres::PostgresStore;
pub use records::{
    ApiKeyRecord, AttemptOutcome, AuthenticatedKey, BatchChange, BatchFilter, BatchItem, BatchRecord, BatchSummary,
    CertificateRecord, DeliveryAttempt, DeliveryFilter, DueAttempt, ExecutionFilter, ExecutionRecord, ExtensionRecord,
    LaunchFailure, NodeRecord, ProfileRecord, RecordingRecord, RecoveryReport, RequestRecord, RetryOutcome,
    SessionFilter, SessionPage, SessionRecord, SessionSort, TaskRecord, TaskVersionRecord, TeamRecord, WebhookChange,
    WebhookRecord,
};
pub use sqlite::SqliteStore;

/// What can go wrong in the store. Backend errors are sorted into these
/// variants where they arise, so that no caller sees a driver's types or
/// a database's numeric codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot take work right now: locked by another process,
    /// out of space, read-only, failing to read or write its files, or not
    /// answering in time. Nothing was changed; trying again later can work.
    #[error("{0}")]
    Unavailable(&'static str),
    /// The database refused or failed otherwise.
    #[error("database error: {0}")]
    Database(String),
    /// A row holds something this version cannot read.
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
    /// A unique value (a team name, say) is taken.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The database URL names a backend this build does not have.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// Why the database cannot take work right now, if that is the trouble
    /// (see [`StoreError::Unavailable`]).
    pub fn unavailable(&self) -> Option<&'static str> {
        match self {
            Self::Unavailable(why) => Some(why),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let unavailable = match &error {
            sqlx::Error::PoolTimedOut => Some("the database did not answer in time"),
            sqlx::Error::Io(_) => Some("the database cannot be reached, read or written"),
            sqlx::Error::Database(database)
                if database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() =>
            {
                // PostgreSQL's SQLSTATE: its class is the first two characters.
                match database.code().as_deref().map(|code| code.get(..2).unwrap_or(code)) {
                    Some("08") => Some("the connection to the database failed"),
                    Some("53") => Some("the database server is out of resources (disk, memory or connections)"),
                    Some("57") => Some("the database server is shutting down or not yet accepting work"),
                    Some("25") if database.code().as_deref() == Some("25006") => Some("the database is read-only"),
                    _ => None,
                }
            }
            sqlx::Error::Database(database) => {
                // SQLite's primary result code is the low byte of the extended one.
                match database
                    .code()
                    .and_then(|code| code.parse::<i32>().ok())
                    .map(|code| code & 0xff)
                {
                    Some(5 | 6) => Some("the database is locked by another process"),
                    Some(8) => Some("the database is read-only"),
                    Some(10) => Some("the database files cannot be read or written"),
                    Some(13) => Some("the disk holding the database is full"),
                    Some(14) => Some("the database file cannot be opened"),
                    _ => None,
                }
            }
            _ => None,
        };
        match unavailable {
            Some(why) => Self::Unavailable(why),
            None => Self::Database(error.to_string()),
        }
    }
}

/// Opens the store `url` names: `sqlite://PATH` (or `sqlite::memory:`) or
/// `postgres://…` (`postgresql://…`).
pub async fn open(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if is_shared(url) {
        Ok(std::sync::Arc::new(PostgresStore::open(url).await?))
    } else {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    }
}

/// Whether the database `url` names can be shared by several nodes
/// (PostgreSQL); a SQLite file belongs to one process.
pub fn is_shared(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the server keeps: every role below, in one object. Each role
/// is a trait of its own, so that a part of the server can say which it
/// uses (the fleet's queue calls go through a [`QueueStore`]) and a test's
/// fake implements only the role under test. Implementations must make
/// each method atomic; the state changes are conditional so that two
/// callers racing on the same row see exactly one winner (the `bool`
/// results say who won).
pub trait Store:
    TeamStore + QueueStore + SessionStore + BatchStore + FileStore + WebhookStore + NodeStore + CodeStore
{
}

impl<T> Store for T where
    T: TeamStore + QueueStore + SessionStore + BatchStore + FileStore + WebhookStore + NodeStore + CodeStore
{
}

/// Teams, their API keys, and server-wide settings.
#[async_trait]
pub trait TeamStore: Send + Sync + 'static {
    /// Reads a server-wide setting.
    async fn setting(&self, key: &str) -> StoreResult<Option<String>>;
    /// Stores `value` under `key` unless a value is there; returns the value
    /// that is there afterwards.
    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String>;
    /// Creates a team; `AlreadyExists` if the name is taken.
    async fn create_team(&self, name: &str) -> StoreResult<TeamRecord>;
    /// Finds a team by name.
    async fn team_by_name(&self, name: &str) -> StoreResult<Option<TeamRecord>>;
    /// How many teams there are.
    async fn team_count(&self) -> StoreResult<i64>;
    /// Stores a new API key given by its hash.
    async fn create_api_key(
        &self,
        team_id: TeamId,
        name: &str,
        key_hash: &str,
        key_prefix: &str,
    ) -> StoreResult<ApiKeyRecord>;
    /// Finds the live (not revoked) key with this hash.
    async fn authenticate(&self, key_hash: &str) -> StoreResult<Option<AuthenticatedKey>>;
    /// Every key, revoked ones included, oldest first.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revokes the key whose id or prefix is given; returns how many were revoked.
    async fn revoke_api_key(&self, id_or_prefix: &str) -> StoreResult<u64>;
}

/// Start requests: the shared queue, the claims nodes make on it, and a launch's steps.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Persists a new start request (status `pending`), in the queue of
    /// node `claimed_by` or, with `None`, of whichever node claims it.
    /// With a `team_quota`, it is claimed by that node only if its team's
    /// load (see [`QueueStore::team_load`]: live sessions on every node and
    /// every pending request) is under the quota, weighed in the same transaction as the insert (so two nodes
    /// never both take the last place), and otherwise goes to the shared
    /// queue. Whether `claimed_by` got it.
    async fn insert_request(
        &self,
        request: &RequestRecord,
        claimed_by: Option<anchorage_core::NodeId>,
        team_quota: Option<i64>,
    ) -> StoreResult<bool>;
    /// Claims up to `wanted` pending requests for `node`'s queue: those
    /// nobody claimed and those claimed by nodes whose lease ran out before
    /// `now`. Fair across teams (the team served least recently first,
    /// then taking turns), creation order within a team; with a
    /// `team_quota`, a team whose browsers and claimed requests on every
    /// node together reach it gets nothing more.
    async fn claim_requests(
        &self,
        node: anchorage_core::NodeId,
        wanted: i64,
        team_quota: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<Vec<RequestRecord>>;
    /// A team's load on every node together: its live sessions and its
    /// pending requests (claimed or not).
    async fn team_load(&self, team_id: TeamId, now: Timestamp) -> StoreResult<i64>;
    /// How many start requests are pending, on every node together.
    async fn queued_requests(&self) -> StoreResult<i64>;
    /// A team's request.
    async fn request(&self, team_id: TeamId, request_id: RequestId) -> StoreResult<Option<RequestRecord>>;
    /// Cancels a request that has not started; `false` if it had.
    async fn cancel_pending_request(&self, request_id: RequestId, at: Timestamp) -> StoreResult<bool>;
    /// Moves a `pending` request to `processing` and inserts its session as
    /// `starting`, together. `false` if the request was no longer pending.
    async fn begin_launch(&self, request_id: RequestId, session: &SessionRecord) -> StoreResult<bool>;
    /// The browser is up: the session becomes `running`, its request
    /// `completed`. `false` if either had moved on (a cancel or an end won):
    /// the caller must then kill the browser.
    async fn finish_launch(&self, request_id: RequestId, session_id: SessionId, at: Timestamp) -> StoreResult<bool>;
    /// The browser did not come up: the session is `failed`; the request is
    /// `pending` again if it has attempts left (one is used up), else `failed`.
    async fn fail_launch(
        &self,
        request_id: RequestId,
        session_id: SessionId,
        error: &str,
        at: Timestamp,
    ) -> StoreResult<LaunchFailure>;
}

/// Sessions as recorded: one, its end, and the listings.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// A team's session.
    async fn session(&self, team_id: TeamId, session_id: SessionId) -> StoreResult<Option<SessionRecord>>;
    /// Ends a live session with a final status; `false` if it had already ended.
    async fn end_session(
        &self,
        session_id: SessionId,
        status: SessionStatus,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// A page of a team's sessions, with the total count of matches.
    async fn list_sessions(&self, filter: &SessionFilter, page: &SessionPage)
        -> StoreResult<(Vec<SessionRecord>, i64)>;
    /// Replaces a team's session's tags with `tags` (in that order, already
    /// checked), whatever its status; `false` if the team has no such session.
    async fn set_tags(&self, team_id: TeamId, session_id: SessionId, tags: &[String]) -> StoreResult<bool>;
}

/// Batches and their items.
#[async_trait]
pub trait BatchStore: Send + Sync + 'static {
    /// Persists a batch and all its items (`pending`) together.
    async fn insert_batch(&self, batch: &BatchRecord, items: &[RequestRecord]) -> StoreResult<()>;
    /// A team's batch with its counts.
    async fn batch(&self, team_id: TeamId, batch_id: BatchId) -> StoreResult<Option<BatchSummary>>;
    /// Every item of a batch, by index.
    async fn batch_items(&self, batch_id: BatchId) -> StoreResult<Vec<BatchItem>>;
    /// A page of a team's batches, newest first, with the total count.
    async fn list_batches(&self, filter: &BatchFilter) -> StoreResult<(Vec<BatchSummary>, i64)>;
    /// Cancels a `pending` or `processing` batch, atomically: its waiting and
    /// launching items become `cancelled` (and launching sessions ended), and
    /// its running sessions are returned to be ended. Of two racing cancels,
    /// exactly one gets `Done`.
    async fn cancel_batch(&self, team_id: TeamId, batch_id: BatchId, at: Timestamp) -> StoreResult<BatchChange>;
    /// Removes a batch and its items; launching sessions are ended and
    /// running ones returned to be ended.
    async fn delete_batch(&self, team_id: TeamId, batch_id: BatchId, at: Timestamp) -> StoreResult<BatchChange>;
    /// Sets failed items (and, unless `failed_only`, completed items whose
    /// session has ended) back to `pending` with `attempts` attempts, raising
    /// their `retry_count`.
    async fn retry_batch(
        &self,
        team_id: TeamId,
        batch_id: BatchId,
        failed_only: bool,
        attempts: i64,
    ) -> StoreResult<RetryOutcome>;
    /// Every batch item of every team, counted by state (for metrics).
    async fn batch_item_counts(&self) -> StoreResult<anchorage_core::BatchCounts>;
}

/// What the server keeps beside files in its data dir: profiles, extensions, certificates, recordings.
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Records a new profile; `AlreadyExists` if its team has one of that name.
    async fn create_profile(&self, profile: &ProfileRecord) -> StoreResult<()>;
    /// A team's profile by name.
    async fn profile(&self, team_id: TeamId, name: &str) -> StoreResult<Option<ProfileRecord>>;
    /// A team's profiles, oldest first.
    async fn list_profiles(&self, team_id: TeamId) -> StoreResult<Vec<ProfileRecord>>;
    /// Every team's profiles (for the metrics and the start-up sweep of
    /// their folders).
    async fn all_profiles(&self) -> StoreResult<Vec<ProfileRecord>>;
    /// Removes a team's profile and hands it back (its folder is the
    /// caller's to remove).
    async fn delete_profile(&self, team_id: TeamId, name: &str) -> StoreResult<Option<ProfileRecord>>;
    /// A save of a profile ended: with `Some(version)` it now uses that
    /// copy (`ready`), with `None` it keeps what it had and takes `status`.
    /// Hands back the version it used before (its folder is the caller's
    /// to remove), or `None` if the profile is gone.
    async fn profile_saved(
        &self,
        id: anchorage_core::ProfileId,
        saved: Option<(&str, i64)>,
        status: anchorage_core::ProfileStatus,
        at: Timestamp,
    ) -> StoreResult<Option<Option<String>>>;
    /// Records an uploaded extension.
    async fn create_extension(&self, extension: &ExtensionRecord) -> StoreResult<()>;
    /// One extension of a team.
    async fn extension(&self, team_id: TeamId, id: anchorage_core::ExtensionId)
        -> StoreResult<Option<ExtensionRecord>>;
    /// A team's extensions (every team's with `None`), oldest first.
    async fn list_extensions(&self, team_id: Option<TeamId>) -> StoreResult<Vec<ExtensionRecord>>;
    /// Removes a team's extension and hands it back (its folder is the
    /// caller's to remove).
    async fn delete_extension(
        &self,
        team_id: TeamId,
        id: anchorage_core::ExtensionId,
    ) -> StoreResult<Option<ExtensionRecord>>;
    /// Records an uploaded CA certificate; `AlreadyExists` if its team has
    /// one of that name.
    async fn create_certificate(&self, certificate: &CertificateRecord) -> StoreResult<()>;
    /// A team's certificates (every team's with `None`), oldest first.
    async fn list_certificates(&self, team_id: Option<TeamId>) -> StoreResult<Vec<CertificateRecord>>;
    /// Removes a team's certificate by name and hands it back.
    async fn delete_certificate(&self, team_id: TeamId, name: &str) -> StoreResult<Option<CertificateRecord>>;
    /// Records a recording that has started.
    async fn create_recording(&self, recording: &RecordingRecord) -> StoreResult<()>;
    /// Ends a `recording` recording as `ready` or `failed`, with its size,
    /// length and error; a `ready` one records `session.recording.ready` for
    /// the webhooks that want it, in the same transaction. `false` if it
    /// was not `recording` (or is gone).
    async fn finish_recording(
        &self,
        id: anchorage_core::RecordingId,
        status: anchorage_core::RecordingStatus,
        size_bytes: i64,
        duration_ms: i64,
        error: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// A team's session's recordings, oldest first.
    async fn session_recordings(&self, team_id: TeamId, session_id: SessionId) -> StoreResult<Vec<RecordingRecord>>;
    /// Removes a team's session's recording; what it was.
    async fn delete_recording(
        &self,
        team_id: TeamId,
        session_id: SessionId,
        id: anchorage_core::RecordingId,
    ) -> StoreResult<Option<RecordingRecord>>;
    /// Recordings in a status (every team's), oldest first: `recording` ones
    /// after a restart, and finished ones ended before `ended_before`
    /// (retention); with `node`, only those of sessions that ran on it.
    async fn recordings_in(
        &self,
        status: anchorage_core::RecordingStatus,
        ended_before: Option<Timestamp>,
        node: Option<anchorage_core::NodeId>,
    ) -> StoreResult<Vec<RecordingRecord>>;
}

/// Webhooks and their outbox of delivery attempts.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Records a new webhook unless its team already has `max_per_team`
    /// (deleted ones do not count); `false` then.
    async fn create_webhook(&self, webhook: &WebhookRecord, max_per_team: i64) -> StoreResult<bool>;
    /// A team's webhooks (not deleted), oldest first.
    async fn list_webhooks(&self, team_id: TeamId) -> StoreResult<Vec<WebhookRecord>>;
    /// A team's webhook; a deleted one only with `deleted_too`.
    async fn webhook(&self, team_id: TeamId, id: &str, deleted_too: bool) -> StoreResult<Option<WebhookRecord>>;
    /// Changes a team's webhook; `None` if it has no such (live) webhook.
    async fn update_webhook(
        &self,
        team_id: TeamId,
        id: &str,
        change: &WebhookChange,
        at: Timestamp,
    ) -> StoreResult<Option<WebhookRecord>>;
    /// Deletes a team's webhook: no event fans out to it any more; its
    /// attempts stay listed. `false` if it had no such (live) webhook.
    async fn delete_webhook(&self, team_id: TeamId, id: &str, at: Timestamp) -> StoreResult<bool>;
    /// Makes `secret` the webhook's signing secret; the old one keeps
    /// signing until `old_valid_until`.
    async fn rotate_webhook_secret(
        &self,
        team_id: TeamId,
        id: &str,
        secret: &str,
        old_valid_until: Timestamp,
        at: Timestamp,
    ) -> StoreResult<Option<WebhookRecord>>;
    /// Records `event` for one webhook of its team only, whatever it is
    /// subscribed to (a test event). `false` if there is no such webhook.
    async fn record_test_event(
        &self,
        webhook_id: &str,
        event: &anchorage_core::webhook::WebhookEvent,
    ) -> StoreResult<bool>;
    /// A page of a webhook's delivery attempts, newest first, and how many
    /// match in all.
    async fn list_delivery_attempts(&self, filter: &DeliveryFilter) -> StoreResult<(Vec<DeliveryAttempt>, i64)>;
    /// Claims up to `limit` attempts due at `now` for `node` (they become
    /// `in_flight`), oldest first.
    async fn claim_due_attempts(
        &self,
        node: anchorage_core::NodeId,
        now: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<DueAttempt>>;
    /// Records how a claimed attempt ended; schedules the next one when the
    /// outcome asks for it.
    async fn finish_attempt(
        &self,
        attempt_id: &anchorage_core::AttemptId,
        outcome: &AttemptOutcome,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// When the next `pending` attempt is due, if there is one.
    async fn next_attempt_due(&self) -> StoreResult<Option<Timestamp>>;
    /// Puts attempts left `in_flight` back to `pending` (same delivery id):
    /// those `node` claimed (it restarted), and those of nodes whose lease
    /// ran out before `now`; how many.
    async fn release_in_flight_attempts(&self, node: anchorage_core::NodeId, now: Timestamp) -> StoreResult<u64>;
    /// Forgets finished attempts, and events without attempts, older than `before`.
    async fn prune_deliveries(&self, before: Timestamp) -> StoreResult<u64>;
}

/// The nodes sharing the database: registry, leases, recovery of a lost node's work, and the signals between them.
#[async_trait]
pub trait NodeStore: Send + Sync + 'static {
    /// After `node` stopped uncleanly (it restarts, or another node saw
    /// its lease run out): every live session it ran becomes `failed` with
    /// `reason`, every `processing` request it was launching goes back to
    /// `pending`, and the pending requests it had claimed are anybody's
    /// again. Other nodes' sessions and requests are untouched.
    async fn recover_node(
        &self,
        node: anchorage_core::NodeId,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<RecoveryReport>;
    /// Registers a node (or the same node again after a restart) with a
    /// lease until `record.lease_until`.
    async fn register_node(&self, record: &NodeRecord) -> StoreResult<()>;
    /// Renews a node's lease; `false` if the node is not registered.
    async fn renew_node(&self, id: anchorage_core::NodeId, lease_until: Timestamp) -> StoreResult<bool>;
    /// The node that runs (or ran) a session, whatever its team; `None`
    /// for no such session or one from before nodes were recorded.
    async fn session_node(&self, session_id: SessionId) -> StoreResult<Option<anchorage_core::NodeId>>;
    /// Every registered node, live or dead, by when it started.
    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>>;
    /// Removes a node that stops cleanly.
    async fn leave(&self, id: anchorage_core::NodeId) -> StoreResult<()>;
    /// Tells every node listening on this database (see [`NodeStore::listen`])
    /// `topic`, so that it looks now instead of at its next poll (PostgreSQL
    /// `NOTIFY`). Best effort: a listener that is reconnecting misses it,
    /// so what it wakes must also be polled for. Where one node is all
    /// there is (SQLite), there is nobody to tell.
    async fn notify(&self, topic: &str) -> StoreResult<()> {
        let _ = topic;
        Ok(())
    }
    /// The topics nodes notify (this one's included), as they arrive, on a
    /// connection of its own that reconnects by itself; `None` where the
    /// database has no such channel (SQLite).
    async fn listen(&self) -> StoreResult<Option<tokio::sync::mpsc::Receiver<String>>> {
        Ok(None)
    }
}

/// Code tasks, their versions, and runs of user code (executions).
#[async_trait]
pub trait CodeStore: Send + Sync + 'static {
    /// Records a new task, with its first draft when it came with code;
    /// `AlreadyExists` if its team has a live task of that name.
    async fn create_task(&self, task: &TaskRecord, draft: Option<&TaskVersionRecord>) -> StoreResult<()>;
    /// A page of a team's live tasks, oldest first, and how many there are.
    async fn list_tasks(&self, team_id: TeamId, offset: i64, limit: i64) -> StoreResult<(Vec<TaskRecord>, i64)>;
    /// A team's live task.
    async fn task(&self, team_id: TeamId, task_id: anchorage_core::TaskId) -> StoreResult<Option<TaskRecord>>;
    /// A team's live task by name.
    async fn task_named(&self, team_id: TeamId, name: &str) -> StoreResult<Option<TaskRecord>>;
    /// Saves a task's name and description; `AlreadyExists` if the new
    /// name is another live task's.
    async fn update_task(&self, task: &TaskRecord) -> StoreResult<()>;
    /// Marks a live task and its versions deleted; false if there was none.
    async fn delete_task(&self, team_id: TeamId, task_id: anchorage_core::TaskId, at: Timestamp) -> StoreResult<bool>;
    /// A task's live versions: the draft first, then by number.
    async fn task_versions(&self, task_id: anchorage_core::TaskId) -> StoreResult<Vec<TaskVersionRecord>>;
    /// Saves a version under its name (`draft` or a number), replacing
    /// (and restoring, if deleted) one of that name; returns it as stored.
    async fn save_task_version(&self, version: &TaskVersionRecord) -> StoreResult<TaskVersionRecord>;
    /// Saves a version under the next number of its task (one past every
    /// number it ever had); returns it as stored.
    async fn deploy_task_version(&self, version: &TaskVersionRecord) -> StoreResult<TaskVersionRecord>;
    /// Marks a live version deleted; false if there was none.
    async fn delete_task_version(
        &self,
        task_id: anchorage_core::TaskId,
        version: &str,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// Records a new execution.
    async fn insert_execution(&self, execution: &ExecutionRecord) -> StoreResult<()>;
    /// Saves an execution's state, output, error, session and time.
    async fn update_execution(&self, execution: &ExecutionRecord) -> StoreResult<()>;
    /// A team's execution.
    async fn execution(
        &self,
        team_id: TeamId,
        execution_id: anchorage_core::ExecutionId,
    ) -> StoreResult<Option<ExecutionRecord>>;
    /// An execution whoever its team, for the credential of a run.
    async fn execution_by_id(&self, execution_id: anchorage_core::ExecutionId) -> StoreResult<Option<ExecutionRecord>>;
    /// A page of a task's executions, newest first, and how many match.
    async fn list_executions(&self, filter: &ExecutionFilter) -> StoreResult<(Vec<ExecutionRecord>, i64)>;
    /// Ends as `cancelled` every unfinished execution of `node` (its runs
    /// died with it); returns how many.
    async fn cancel_executions_of(&self, node: anchorage_core::NodeId, at: Timestamp, reason: &str)
        -> StoreResult<u64>;
}

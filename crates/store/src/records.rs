//! Plain rows as the store hands them out.

use anchorage_core::{
    ApiKeyId, BatchCounts, BatchId, BatchStatus, RequestId, RequestStatus, SessionId, SessionOptions, SessionStatus,
    TeamId, Timestamp,
};
use serde_json::Value;

/// A team.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamRecord {
    /// Its id.
    pub id: TeamId,
    /// Unique name.
    pub name: String,
    /// When it was made.
    pub created_at: Timestamp,
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    /// Its id.
    pub id: ApiKeyId,
    /// The team it acts for.
    pub team_id: TeamId,
    /// That team's name.
    pub team_name: String,
    /// A display name.
    pub name: String,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// Who a valid key speaks for.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticatedKey {
    /// The key's id.
    pub key_id: ApiKeyId,
    /// Its display name.
    pub key_name: String,
    /// The team it acts for.
    pub team_id: TeamId,
}

/// One request to start a session.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// Its id (`request_id` on the wire).
    pub id: RequestId,
    /// The team that asked.
    pub team_id: TeamId,
    /// The key that asked.
    pub api_key_id: Option<ApiKeyId>,
    /// That key's name at the time.
    pub api_key_name: String,
    /// The batch it belongs to, if any.
    pub batch_id: Option<BatchId>,
    /// Its place in the batch (0 for single starts).
    pub item_index: i64,
    /// Where it is.
    pub status: RequestStatus,
    /// The session made for it, once one is.
    pub session_id: Option<SessionId>,
    /// The start body, as given (recorded; shown back as `configuration`).
    pub configuration: Value,
    /// The same, validated: what the fleet acts on. Made once, at the edge
    /// for a new request and by the store's row decoding for a stored one;
    /// nothing downstream reads `configuration` again.
    pub options: SessionOptions,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// How many times it was retried.
    pub retry_count: i64,
    /// Free-form metadata.
    pub metadata: Option<Value>,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When its launch began.
    pub started_at: Option<Timestamp>,
    /// When it reached a final state.
    pub completed_at: Option<Timestamp>,
}

impl RequestRecord {
    /// A new `pending` request of `team_id` (a single start, until `batch_id`
    /// and `item_index` are set), asked by `key` (its id and name).
    pub fn pending(
        team_id: TeamId,
        key: Option<(ApiKeyId, String)>,
        configuration: Value,
        options: SessionOptions,
        created_at: Timestamp,
    ) -> Self {
        let (api_key_id, api_key_name) = key.map_or((None, String::new()), |(id, name)| (Some(id), name));
        Self {
            id: RequestId::new_random(),
            team_id,
            api_key_id,
            api_key_name,
            batch_id: None,
            item_index: 0,
            status: RequestStatus::Pending,
            session_id: None,
            configuration,
            options,
            error: None,
            retry_count: 0,
            metadata: None,
            created_at,
            started_at: None,
            completed_at: None,
        }
    }
}

/// One session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Its id.
    pub id: SessionId,
    /// The team that owns it.
    pub team_id: TeamId,
    /// The key that started it.
    pub api_key_id: Option<ApiKeyId>,
    /// That key's name at the time.
    pub api_key_name: String,
    /// The request it came from.
    pub request_id: Option<RequestId>,
    /// The batch it came from.
    pub batch_id: Option<BatchId>,
    /// Where it is.
    pub status: SessionStatus,
    /// The start body, as given.
    pub configuration: Value,
    /// Its tags.
    pub tags: Vec<String>,
    /// Whether headless was asked for.
    pub headless: bool,
    /// Whether recording was asked for.
    pub recording: bool,
    /// Whether a proxy was asked for.
    pub proxy: bool,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its browser became connectable.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// The node its browser runs (or ran) on.
    pub node_id: Option<anchorage_core::NodeId>,
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Whose.
    pub team_id: Option<TeamId>,
    /// Only this status.
    pub status: Option<SessionStatus>,
    /// Only live ones (`starting` or `running`).
    pub live_only: bool,
    /// Must carry every one of these tags.
    pub tags: Vec<String>,
    /// Only of this batch.
    pub batch_id: Option<BatchId>,
    /// Created at or after.
    pub created_from: Option<Timestamp>,
    /// Created at or before.
    pub created_to: Option<Timestamp>,
}

/// Sort keys for session lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionSort {
    /// By creation time.
    #[default]
    CreatedAt,
    /// By id.
    SessionId,
    /// By status name.
    Status,
}

/// A page of a session list.
#[derive(Debug, Clone)]
pub struct SessionPage {
    /// Sort key.
    pub sort: SessionSort,
    /// Newest (largest) first.
    pub descending: bool,
    /// 1-based page number.
    pub page: i64,
    /// Rows per page; `None` for all.
    pub limit: Option<i64>,
}

/// What a restart recovery changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryReport {
    /// Sessions that were live and are now `failed`.
    pub sessions_failed: u64,
    /// Requests that were mid-launch and are `pending` again.
    pub requests_requeued: u64,
}

/// A new batch, as inserted.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    /// Its id.
    pub id: BatchId,
    /// The team that asked.
    pub team_id: TeamId,
    /// The key that asked.
    pub api_key_id: Option<ApiKeyId>,
    /// How many sessions were asked for.
    pub total_requests: i64,
    /// The start body shared by every item.
    pub configuration: Value,
    /// Free-form metadata.
    pub metadata: Option<Value>,
    /// When it was accepted.
    pub created_at: Timestamp,
}

/// A batch as read back, with its items counted.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSummary {
    /// Its id.
    pub id: BatchId,
    /// The team that owns it.
    pub team_id: TeamId,
    /// How many sessions were asked for.
    pub total_requests: i64,
    /// The start body shared by every item.
    pub configuration: Value,
    /// Free-form metadata.
    pub metadata: Option<Value>,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<Timestamp>,
    /// Its items, counted by state.
    pub counts: BatchCounts,
    /// The latest time an item reached a final state.
    pub last_completed_at: Option<Timestamp>,
    /// One of the failed items' errors.
    pub first_error: Option<String>,
}

impl BatchSummary {
    /// The batch's status, derived from its items.
    pub fn status(&self) -> BatchStatus {
        self.counts.status(self.cancelled_at.is_some())
    }

    /// When the batch reached its final state, if it is in one.
    pub fn actual_completion_time(&self) -> Option<Timestamp> {
        match self.status() {
            BatchStatus::Cancelled => self.cancelled_at,
            status if status.is_final() => self.last_completed_at.or(Some(self.created_at)),
            _ => None,
        }
    }
}

/// One item of a batch with the state of its session.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// The item.
    pub request: RequestRecord,
    /// Its session's status, if it has one.
    pub session_status: Option<SessionStatus>,
}

/// Which batches to list.
#[derive(Debug, Clone)]
pub struct BatchFilter {
    /// Whose.
    pub team_id: TeamId,
    /// Only this status.
    pub status: Option<BatchStatus>,
    /// Created at or after.
    pub created_after: Option<Timestamp>,
    /// Created at or before.
    pub created_before: Option<Timestamp>,
    /// 1-based page.
    pub page: i64,
    /// Rows per page.
    pub limit: i64,
}

/// What a cancel or delete found.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchChange {
    /// No such batch for this team.
    NotFound,
    /// The batch is in a state that does not allow it.
    Conflict(BatchStatus),
    /// Done; these sessions were running and must now be ended.
    Done(Vec<SessionId>),
}

/// What a retry did.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryOutcome {
    /// No such batch for this team.
    NotFound,
    /// The batch is cancelled.
    Conflict(BatchStatus),
    /// `retried` items are `pending` again (possibly none); `pending` is
    /// every pending item of the batch now, for the queue.
    Retried {
        /// How many items this retry re-queued.
        retried: u64,
        /// Every pending item of the batch.
        pending: Vec<RequestRecord>,
    },
}

/// What became of a failed launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchFailure {
    /// The item had attempts left: it is `pending` again.
    Requeued,
    /// The item is `failed`.
    Failed,
}

/// A team's saved browser profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRecord {
    /// Its id (names its folder in the data dir).
    pub id: anchorage_core::ProfileId,
    /// Its team.
    pub team_id: TeamId,
    /// Its name, unique within the team.
    pub name: String,
    /// What the user said it is.
    pub description: Option<String>,
    /// `session` when made from a running session.
    pub source: Option<String>,
    /// The session it was made from, if any.
    pub session_id: Option<SessionId>,
    /// Where it is.
    pub status: anchorage_core::ProfileStatus,
    /// The saved copy in use; `None` until one is saved.
    pub version: Option<String>,
    /// Bytes of the saved copy.
    pub size_bytes: i64,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A browser extension a team uploaded.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtensionRecord {
    /// Its id (names its folder in the data dir).
    pub id: anchorage_core::ExtensionId,
    /// Its team.
    pub team_id: TeamId,
    /// The name the user gave it.
    pub name: String,
    /// Its `manifest.json`.
    pub manifest: Value,
    /// Bytes unpacked.
    pub size_bytes: i64,
    /// When it was uploaded.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A CA certificate a team uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Its id.
    pub id: anchorage_core::CertificateId,
    /// Its team.
    pub team_id: TeamId,
    /// Its name, unique within the team (what a session names).
    pub name: String,
    /// What the user said it is.
    pub description: Option<String>,
    /// The certificate, PEM.
    pub pem: String,
    /// When it was uploaded.
    pub created_at: Timestamp,
}

/// A team's webhook: where its events go, and the secrets that sign them.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    /// `wh_…`.
    pub id: String,
    /// Its team.
    pub team_id: TeamId,
    /// Where deliveries are posted.
    pub url: String,
    /// What the user said it is.
    pub description: Option<String>,
    /// The event types it gets, in the order given.
    pub events: Vec<String>,
    /// Whether new events fan out to it.
    pub enabled: bool,
    /// The signing secret.
    pub secret: String,
    /// The secret before the last rotation and until when it still signs.
    pub previous_secret: Option<(String, Timestamp)>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for WebhookRecord {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets never reach a log.
        formatter
            .debug_struct("WebhookRecord")
            .field("id", &self.id)
            .field("team_id", &self.team_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A partial update of a webhook: each `Some` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookChange {
    /// A new URL.
    pub url: Option<String>,
    /// A new description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// New event types.
    pub events: Option<Vec<String>>,
    /// On or off.
    pub enabled: Option<bool>,
}

/// One attempt at delivering an event to a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// This attempt's row.
    pub id: anchorage_core::AttemptId,
    /// The delivery it belongs to (`Anchor-Delivery-Id`), the same for
    /// every attempt.
    pub delivery_id: anchorage_core::DeliveryId,
    /// The event (`evt_…`).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// Where it is.
    pub status: anchorage_core::DeliveryStatus,
    /// 1 for the first attempt.
    pub attempt: i64,
    /// The receiver's HTTP status, once it answered.
    pub response_status: Option<i64>,
    /// Why it did not succeed.
    pub error_message: Option<String>,
    /// When it is (or was) due.
    pub scheduled_at: Timestamp,
    /// When it ended.
    pub completed_at: Option<Timestamp>,
}

/// Which attempts of a webhook to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// The webhook's team.
    pub team_id: TeamId,
    /// The webhook (deleted ones too).
    pub webhook_id: String,
    /// Only this status.
    pub status: Option<String>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Scheduled at or after.
    pub since: Option<Timestamp>,
    /// Scheduled at or before.
    pub until: Option<Timestamp>,
    /// Page size.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
}

/// An attempt claimed for sending, with what it takes to send it.
#[derive(Clone, PartialEq, Eq)]
pub struct DueAttempt {
    /// The attempt, now `in_flight`.
    pub attempt: DeliveryAttempt,
    /// The webhook.
    pub webhook_id: String,
    /// Where to post.
    pub url: String,
    /// The signing secrets valid now: the current one first.
    pub secrets: Vec<String>,
    /// The event's body, byte for byte.
    pub body: String,
}

impl std::fmt::Debug for DueAttempt {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DueAttempt")
            .field("attempt", &self.attempt)
            .field("webhook_id", &self.webhook_id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Succeeded {
        /// Its status.
        response_status: i64,
    },
    /// It did not; `retry_at` says when the next attempt is due, `None`
    /// ends the delivery (`failed` for a refusal, `dead` when the attempts
    /// ran out).
    NotDelivered {
        /// The receiver's status, if it answered.
        response_status: Option<i64>,
        /// What went wrong.
        error: String,
        /// When to try again.
        retry_at: Option<Timestamp>,
        /// Whether the receiver refused it for good (a 4xx), rather than
        /// the attempts running out.
        refused: bool,
    },
}

/// A video recording of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRecord {
    /// Its id.
    pub id: anchorage_core::RecordingId,
    /// The session recorded.
    pub session_id: SessionId,
    /// Its team.
    pub team_id: TeamId,
    /// Where it is.
    pub status: anchorage_core::RecordingStatus,
    /// The file's size once finished.
    pub size_bytes: i64,
    /// The video's length once finished.
    pub duration_ms: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// When it started.
    pub created_at: Timestamp,
    /// When it was finished.
    pub ended_at: Option<Timestamp>,
}

/// A server process sharing the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its stable id.
    pub id: anchorage_core::NodeId,
    /// Where other nodes reach it (`ANCHORAGE_NODE_URL`).
    pub url: String,
    /// Its `ANCHORAGE_MAX_SESSIONS`.
    pub max_sessions: i64,
    /// When it last started.
    pub started_at: Timestamp,
    /// Until when its lease holds; after that it is dead.
    pub lease_until: Timestamp,
    /// Its sessions starting or running now (read from the sessions; not
    /// written by a registration).
    pub live_sessions: i64,
}

/// A code task: the user's TypeScript under a name, kept in versions
/// ([`TaskVersionRecord`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// Its id.
    pub id: anchorage_core::TaskId,
    /// Its team.
    pub team_id: TeamId,
    /// Its name, unique among its team's tasks that are not deleted.
    pub name: String,
    /// What the user said it does.
    pub description: Option<String>,
    /// Deleted (kept, as upstream keeps them, but no longer served).
    pub deleted: bool,
    /// When it was made.
    pub created_at: Timestamp,
    /// When its name or description last changed.
    pub updated_at: Timestamp,
}

/// One version of a task: its draft, or a published number.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskVersionRecord {
    /// Its id.
    pub id: anchorage_core::TaskVersionId,
    /// Its task.
    pub task_id: anchorage_core::TaskId,
    /// `draft`, or a number (`1`, `2`, …).
    pub version: String,
    /// The code, base64 as the API carries it.
    pub code: String,
    /// Its language (`typescript`).
    pub language: String,
    /// What the user said of this version.
    pub description: Option<String>,
    /// The session configuration its runs start with.
    pub browser_configuration: Option<serde_json::Value>,
    /// Deleted (kept, not served).
    pub deleted: bool,
    /// When it was first saved.
    pub created_at: Timestamp,
    /// When it was last saved.
    pub updated_at: Timestamp,
}

/// One run of user code: a task's run, or an `execute_code` snippet (no
/// task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRecord {
    /// Its id (`executionResultId` on the wire).
    pub id: anchorage_core::ExecutionId,
    /// Its team.
    pub team_id: TeamId,
    /// Its task, when it is a task's run.
    pub task_id: Option<anchorage_core::TaskId>,
    /// The version it ran.
    pub task_version_id: Option<anchorage_core::TaskVersionId>,
    /// That version's name (`draft`, a number), or `snippet` for `execute_code`.
    pub version: String,
    /// Where it is.
    pub status: anchorage_core::ExecutionStatus,
    /// The JSON of what the code returned.
    pub output: Option<String>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// The session it ran beside.
    pub session_id: Option<SessionId>,
    /// The node that runs it.
    pub node_id: Option<anchorage_core::NodeId>,
    /// When it was accepted.
    pub started_at: Timestamp,
    /// How long its code ran, milliseconds, once finished.
    pub execution_time_ms: Option<i64>,
}

/// Which executions of a task to list, and which page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionFilter {
    /// The team asking.
    pub team_id: TeamId,
    /// The task.
    pub task_id: anchorage_core::TaskId,
    /// Only those in this state.
    pub status: Option<anchorage_core::ExecutionStatus>,
    /// Only those of this version (`draft`, a number).
    pub version: Option<String>,
    /// Rows to skip.
    pub offset: i64,
    /// Rows to give.
    pub limit: i64,
}

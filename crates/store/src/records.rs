//! Plain rows as the store hands them out.

use anchorage_core::{
    ApiKeyId, RequestId, RequestStatus, SessionId, SessionStatus, TeamId, Timestamp,
};
use serde_json::Value;
use uuid::Uuid;

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
    pub batch_id: Option<Uuid>,
    /// Its place in the batch (0 for single starts).
    pub item_index: i64,
    /// Where it is.
    pub status: RequestStatus,
    /// The session made for it, once one is.
    pub session_id: Option<SessionId>,
    /// The start body, as given.
    pub configuration: Value,
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
    pub batch_id: Option<Uuid>,
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
    pub batch_id: Option<Uuid>,
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

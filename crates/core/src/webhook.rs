//! Webhook events: the catalog of event types upstream defines, which of
//! them anchorage sends, and the event a delivery carries (its id, type,
//! one-line summary and data), built from what ended.
//!
//! An event's body is fixed when the event is recorded: every attempt of
//! every delivery sends the same bytes, so a receiver that saw an attempt
//! can recognise a retry of it by its `id` (and its `Anchor-Delivery-Id`).

use serde_json::{json, Value};
use uuid::Uuid;

use crate::{BatchCounts, BatchId, BatchStatus, SessionId, SessionStatus, TeamId, Timestamp};

/// Every event type of upstream's catalog, in its order.
pub const EVENT_TYPES: &[&str] = &[
    "task.completed",
    "task.failed",
    "task.cancelled",
    "task.healed",
    "session.completed",
    "session.failed",
    "session.recording.ready",
    "batch.completed",
    "batch.failed",
    "intervention.requested",
    "intervention.resolved",
    "identity.authenticated",
    "identity.authentication_failed",
];

/// The event types anchorage sends. The others belong to hosted-only
/// features (AI self-healing, interventions, identities) and are refused.
/// The `task.*` events are sent for runs of code tasks.
pub const SENT_EVENT_TYPES: &[&str] = &[
    "task.completed",
    "task.failed",
    "task.cancelled",
    "session.completed",
    "session.failed",
    "session.recording.ready",
    "batch.completed",
    "batch.failed",
];

/// Why an event type given by a client cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventTypeError {
    /// Not in the catalog at all.
    #[error("{0:?} is not a webhook event type; the types are {types}", types = SENT_EVENT_TYPES.join(", "))]
    Unknown(String),
    /// Upstream's, for a feature anchorage does not have.
    #[error(
        "{0:?} is an event of a hosted-only AnchorBrowser feature (AI self-healing, interventions, identities) that anchorage does not have; the types it sends are {types}",
        types = SENT_EVENT_TYPES.join(", ")
    )]
    HostedOnly(String),
}

/// The catalog's spelling of an event type anchorage sends.
pub fn check_event_type(name: &str) -> Result<&'static str, EventTypeError> {
    if let Some(sent) = SENT_EVENT_TYPES.iter().find(|sent| **sent == name) {
        return Ok(sent);
    }
    if EVENT_TYPES.contains(&name) {
        Err(EventTypeError::HostedOnly(name.to_owned()))
    } else {
        Err(EventTypeError::Unknown(name.to_owned()))
    }
}

/// One event for a team's webhooks, with its fixed body.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// `evt_…`: the envelope's `id`, the same for every webhook and attempt.
    pub id: String,
    /// Its type, from [`SENT_EVENT_TYPES`].
    pub event_type: &'static str,
    /// Its team (the envelope's `project_id`).
    pub team_id: TeamId,
    /// When it happened.
    pub created: Timestamp,
    /// A one-line summary for people (and Slack).
    pub text: String,
    /// What happened, for programs.
    pub data: Value,
}

/// A fresh event id: `evt_` and 24 random hex digits.
pub fn new_event_id() -> String {
    let random = Uuid::new_v4().simple().to_string();
    format!("evt_{}", &random[..24])
}

/// What a session that ended was, for its event.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedSession {
    /// The session.
    pub id: SessionId,
    /// Its team.
    pub team_id: TeamId,
    /// Its batch, if it is an item of one.
    pub batch_id: Option<BatchId>,
    /// `completed` or `failed`.
    pub status: SessionStatus,
    /// Why it ended.
    pub reason: Option<String>,
    /// When it was asked for.
    pub created_at: Timestamp,
    /// When its browser came up, if it did.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Timestamp,
    /// Its tags.
    pub tags: Vec<String>,
}

/// A code task's run that finished, as its event tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedTaskRun {
    /// The task.
    pub task_id: crate::TaskId,
    /// The run (`executionResultId`).
    pub execution_id: crate::ExecutionId,
    /// Its team.
    pub team_id: TeamId,
    /// The version it ran.
    pub version: String,
    /// How it ended.
    pub status: crate::ExecutionStatus,
    /// The session it ran beside.
    pub session_id: Option<SessionId>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long its code ran.
    pub execution_time_ms: Option<i64>,
    /// When it was accepted.
    pub started_at: Timestamp,
    /// When it ended.
    pub ended_at: Timestamp,
}

impl WebhookEvent {
    /// `session.completed` or `session.failed` for a session that ended;
    /// `None` for a session that has not.
    pub fn session_ended(session: &EndedSession) -> Option<Self> {
        let event_type = match session.status {
            SessionStatus::Completed => "session.completed",
            SessionStatus::Failed => "session.failed",
            SessionStatus::Starting | SessionStatus::Running => return None,
        };
        let ran_for = session
            .started_at
            .map(|started| (session.ended_at.as_millis() - started.as_millis()).max(0) as f64 / 1000.0);
        let text = match (session.status, ran_for) {
            (SessionStatus::Completed, Some(seconds)) => {
                format!("Session `{}` completed after {seconds:.1}s", session.id)
            }
            (SessionStatus::Completed, None) => format!("Session `{}` ended before its browser came up", session.id),
            _ => format!(
                "Session `{}` failed: {}",
                session.id,
                one_line(session.reason.as_deref().unwrap_or("no reason recorded"))
            ),
        };
        Some(Self {
            id: new_event_id(),
            event_type,
            team_id: session.team_id,
            created: session.ended_at,
            text,
            data: json!({
                "session_id": session.id.to_string(),
                "batch_id": session.batch_id.map(|id| id.to_string()),
                "status": session.status.as_str(),
                "reason": session.reason,
                "tags": session.tags,
                "created_at": session.created_at.to_string(),
                "started_at": session.started_at.map(|at| at.to_string()),
                "ended_at": session.ended_at.to_string(),
                "duration_seconds": ran_for,
            }),
        })
    }

    /// `batch.completed` or `batch.failed` for a batch whose items are all
    /// final; `None` for a batch in any other state (a cancelled batch has
    /// no event in the catalog).
    pub fn batch_ended(
        batch_id: BatchId,
        team_id: TeamId,
        counts: &BatchCounts,
        first_error: Option<&str>,
        at: Timestamp,
    ) -> Option<Self> {
        let status = counts.status(false);
        let event_type = match status {
            BatchStatus::Completed => "batch.completed",
            BatchStatus::Failed => "batch.failed",
            BatchStatus::Pending | BatchStatus::Processing | BatchStatus::Cancelled => return None,
        };
        let total = counts.total();
        let text = if status == BatchStatus::Completed {
            format!(
                "Batch `{batch_id}` completed: {} of {total} sessions started, {} failed",
                counts.completed, counts.failed
            )
        } else {
            format!(
                "Batch `{batch_id}` failed: none of its {total} sessions started ({})",
                one_line(first_error.unwrap_or("no error recorded"))
            )
        };
        Some(Self {
            id: new_event_id(),
            event_type,
            team_id,
            created: at,
            text,
            data: json!({
                "batch_id": batch_id.to_string(),
                "status": status.as_str(),
                "total_requests": total,
                "completed_requests": counts.completed,
                "failed_requests": counts.failed,
                "cancelled_requests": counts.cancelled,
                "error": first_error,
                "completed_at": at.to_string(),
            }),
        })
    }

    /// The event of a code task's run that finished: `task.completed` when
    /// its code returned, `task.failed` when it failed or ran out of time,
    /// `task.cancelled` when its session ended first; none while it runs.
    pub fn task_run_ended(run: &EndedTaskRun) -> Option<Self> {
        let event_type = match run.status {
            crate::ExecutionStatus::Success => "task.completed",
            crate::ExecutionStatus::Failure | crate::ExecutionStatus::Timeout => "task.failed",
            crate::ExecutionStatus::Cancelled => "task.cancelled",
            crate::ExecutionStatus::Queued | crate::ExecutionStatus::Running => return None,
        };
        let seconds = run.execution_time_ms.unwrap_or_default().max(0) as f64 / 1000.0;
        let text = match run.status {
            crate::ExecutionStatus::Success => {
                format!(
                    "Run `{}` of task `{}` completed in {seconds:.1}s",
                    run.execution_id, run.task_id
                )
            }
            _ => format!(
                "Run `{}` of task `{}` ended {}: {}",
                run.execution_id,
                run.task_id,
                run.status.as_str(),
                one_line(run.error.as_deref().unwrap_or("no error recorded"))
            ),
        };
        Some(Self {
            id: new_event_id(),
            event_type,
            team_id: run.team_id,
            created: run.ended_at,
            text,
            data: json!({
                "task_id": run.task_id.to_string(),
                "execution_id": run.execution_id.to_string(),
                "version": run.version,
                "status": run.status.as_str(),
                "session_id": run.session_id.map(|id| id.to_string()),
                "error": run.error,
                "execution_time_ms": run.execution_time_ms,
                "started_at": run.started_at.to_string(),
                "ended_at": run.ended_at.to_string(),
            }),
        })
    }

    /// `session.recording.ready`: a session's recording is finished and can
    /// be fetched.
    pub fn recording_ready(
        session_id: SessionId,
        team_id: TeamId,
        recording_id: &str,
        duration_ms: i64,
        size_bytes: i64,
        at: Timestamp,
    ) -> Self {
        let seconds = duration_ms.max(0) as f64 / 1000.0;
        Self {
            id: new_event_id(),
            event_type: "session.recording.ready",
            team_id,
            created: at,
            text: format!("Recording of session `{session_id}` is ready ({seconds:.1}s)"),
            data: json!({
                "session_id": session_id.to_string(),
                "recording_id": recording_id,
                "duration_seconds": seconds,
                "size_bytes": size_bytes,
                "fetch_path": format!("/v1/sessions/{session_id}/recordings/primary/fetch"),
            }),
        }
    }

    /// A synthetic event of `event_type` sent by the "send test event" call:
    /// marked `test` in its data and its text.
    pub fn test(event_type: &'static str, team_id: TeamId, at: Timestamp) -> Self {
        Self {
            id: new_event_id(),
            event_type,
            team_id,
            created: at,
            text: format!("Test event `{event_type}` from anchorage"),
            data: json!({"test": true, "event_type": event_type}),
        }
    }

    /// The JSON envelope every delivery of this event sends, byte for byte.
    pub fn body(&self) -> String {
        json!({
            "id": self.id,
            "type": self.event_type,
            "created": self.created.to_string(),
            "project_id": self.team_id.to_string(),
            "text": self.text,
            "data": self.data,
        })
        .to_string()
    }
}

/// `text` on one line, at most 200 characters.
fn one_line(text: &str) -> String {
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if line.chars().count() > 200 {
        format!("{}…", line.chars().take(199).collect::<String>())
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_sent_refused_as_hosted_only_or_unknown() {
        assert_eq!(check_event_type("batch.completed"), Ok("batch.completed"));
        assert_eq!(check_event_type("task.failed"), Ok("task.failed"));
        assert!(matches!(
            check_event_type("task.healed"),
            Err(EventTypeError::HostedOnly(_))
        ));
        assert!(matches!(
            check_event_type("session.ended"),
            Err(EventTypeError::Unknown(_))
        ));
        for sent in SENT_EVENT_TYPES {
            assert!(EVENT_TYPES.contains(sent), "{sent} is in the catalog");
        }
        let message = check_event_type("identity.authenticated")
            .expect_err("hosted-only")
            .to_string();
        assert!(message.contains("hosted-only"), "{message}");
    }

    #[test]
    fn a_session_event_carries_its_ids_and_duration() {
        let session = EndedSession {
            id: SessionId::new_random(),
            team_id: TeamId::new_random(),
            batch_id: None,
            status: SessionStatus::Completed,
            reason: Some("ended by the client".to_owned()),
            created_at: Timestamp::from_millis(1_000),
            started_at: Some(Timestamp::from_millis(2_000)),
            ended_at: Timestamp::from_millis(6_500),
            tags: vec!["nightly".to_owned()],
        };
        let event = WebhookEvent::session_ended(&session).expect("an ended session has an event");
        assert_eq!(event.event_type, "session.completed");
        assert!(event.id.starts_with("evt_") && event.id.len() == 28, "{}", event.id);
        let body: Value = serde_json::from_str(&event.body()).expect("JSON");
        assert_eq!(body["data"]["duration_seconds"], json!(4.5));
        assert_eq!(body["data"]["session_id"], json!(session.id.to_string()));
        assert_eq!(body["project_id"], json!(session.team_id.to_string()));
        assert_eq!(body["type"], json!("session.completed"));
        assert!(body["text"].as_str().is_some_and(|text| text.contains("4.5s")));
        let running = EndedSession {
            status: SessionStatus::Running,
            ..session
        };
        assert!(WebhookEvent::session_ended(&running).is_none());
    }

    #[test]
    fn a_batch_event_only_for_a_batch_whose_items_are_all_final() {
        let (batch, team) = (BatchId::new_random(), TeamId::new_random());
        let at = Timestamp::from_millis(10);
        let done = BatchCounts {
            completed: 3,
            failed: 1,
            attempted: 4,
            ..BatchCounts::default()
        };
        let event = WebhookEvent::batch_ended(batch, team, &done, None, at).expect("final");
        assert_eq!(event.event_type, "batch.completed");
        assert_eq!(event.data["total_requests"], json!(4));
        let none_came_up = BatchCounts {
            failed: 2,
            attempted: 2,
            ..BatchCounts::default()
        };
        let event = WebhookEvent::batch_ended(batch, team, &none_came_up, Some("no\nbrowser"), at).expect("final");
        assert_eq!(event.event_type, "batch.failed");
        assert!(!event.text.contains('\n'));
        let running = BatchCounts {
            processing: 1,
            completed: 1,
            attempted: 2,
            ..BatchCounts::default()
        };
        assert!(WebhookEvent::batch_ended(batch, team, &running, None, at).is_none());
    }
}

//! Helpers for the unit tests of this crate's modules.

use anchorage_core::{NodeId, SessionId, SessionOptions, SessionStatus, TeamId, Timestamp};
use anchorage_store::{RequestRecord, SessionRecord, Store};

/// Stores a session of `team` whose browser `node` is launching (a live
/// session, as far as the store knows) and returns it.
pub async fn live_session(store: &dyn Store, team: TeamId, node: NodeId) -> SessionRecord {
    let now = Timestamp::now();
    let request = RequestRecord::pending(team, None, serde_json::json!({}), SessionOptions::default(), now);
    store.insert_request(&request, None).await.expect("request");
    let session = SessionRecord {
        id: SessionId::new_random(),
        team_id: team,
        api_key_id: None,
        api_key_name: "test".into(),
        request_id: Some(request.id),
        batch_id: None,
        status: SessionStatus::Starting,
        configuration: serde_json::json!({}),
        tags: Vec::new(),
        headless: true,
        recording: false,
        proxy: false,
        created_at: now,
        started_at: None,
        ended_at: None,
        end_reason: None,
        node_id: Some(node),
    };
    assert!(store.begin_launch(request.id, &session).await.expect("launch"));
    session
}

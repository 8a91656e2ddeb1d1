//! Helpers for the unit tests of this crate's modules.

use anchorage_core::{NodeId, SessionId, SessionOptions, SessionStatus, TeamId, Timestamp};
use anchorage_store::{RequestRecord, SessionRecord, Store};

/// Stores a session of `team` whose browser `node` is launching (a live
/// session, as far as the store knows) and returns it.
pub async fn live_session(store: &dyn Store, team: TeamId, node: NodeId) -> SessionRecord {
    let now = Timestamp::now();
    let request = RequestRecord::pending(team, None, serde_json::json!({}), SessionOptions::default(), now);
    store.insert_request(&request, None, None).await.expect("request");
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

/// Makes `path` look last changed an hour ago (for the start-up sweeps,
/// which leave recent folders alone).
pub fn age(path: &std::path::Path) {
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(path)
        .and_then(|opened| opened.set_modified(hour_ago))
        .expect("aged");
}

/// A store in a file of its own temp dir, which must outlive it. Unlike
/// `sqlite::memory:`, whose database lives and dies with its one
/// connection, it survives the pool closing a connection, as the pool does
/// when a task is dropped in the middle of a query (at shutdown, say).
pub async fn file_store() -> (tempfile::TempDir, anchorage_store::SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = anchorage_store::SqliteStore::open(&url).await.expect("store");
    (dir, store)
}

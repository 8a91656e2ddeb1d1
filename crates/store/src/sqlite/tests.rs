//! Contract tests of the store, run against SQLite on a temp file.

use anchorage_core::{RequestId, RequestStatus, SessionId, SessionStatus, TeamId, Timestamp};
use serde_json::json;

use super::SqliteStore;
use crate::records::{RequestRecord, SessionFilter, SessionPage, SessionRecord, SessionSort};
use crate::{Store, StoreError};

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = SqliteStore::open(&url).await.expect("open");
    (dir, store)
}

fn request(team_id: TeamId) -> RequestRecord {
    RequestRecord {
        id: RequestId::new_random(),
        team_id,
        api_key_id: None,
        api_key_name: "test".into(),
        batch_id: None,
        item_index: 0,
        status: RequestStatus::Pending,
        session_id: None,
        configuration: json!({}),
        error: None,
        retry_count: 0,
        metadata: None,
        created_at: Timestamp::now(),
        started_at: None,
        completed_at: None,
    }
}

fn session(team_id: TeamId, request_id: RequestId, tags: &[&str]) -> SessionRecord {
    SessionRecord {
        id: SessionId::new_random(),
        team_id,
        api_key_id: None,
        api_key_name: "test".into(),
        request_id: Some(request_id),
        batch_id: None,
        status: SessionStatus::Starting,
        configuration: json!({"session": {"tags": tags}}),
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        headless: true,
        recording: false,
        proxy: false,
        created_at: Timestamp::now(),
        started_at: None,
        ended_at: None,
        end_reason: None,
    }
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_migrate_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = SqliteStore::open(&url).await.expect("open");
    store.create_team("alpha").await.expect("team");
    drop(store);
    let store = SqliteStore::open(&url).await.expect("reopen");
    assert_eq!(store.team_count().await.expect("count"), 1);
}

#[tokio::test]
async fn teams_and_keys() {
    let (_dir, store) = open().await;
    let team = store.create_team("alpha").await.expect("team");
    assert!(matches!(
        store.create_team("alpha").await,
        Err(StoreError::AlreadyExists(_))
    ));
    let key = store
        .create_api_key(team.id, "ci", "hash-1", "ak_12345")
        .await
        .expect("key");
    assert_eq!(key.team_name, "alpha");
    let found = store
        .authenticate("hash-1")
        .await
        .expect("auth")
        .expect("found");
    assert_eq!(found.team_id, team.id);
    assert!(store.authenticate("hash-2").await.expect("auth").is_none());
    assert_eq!(store.revoke_api_key("ak_12345").await.expect("revoke"), 1);
    assert!(store.authenticate("hash-1").await.expect("auth").is_none());
    assert_eq!(store.revoke_api_key("ak_12345").await.expect("revoke"), 0);
    assert_eq!(
        store
            .setting_or_insert("secret", "a")
            .await
            .expect("setting"),
        "a"
    );
    assert_eq!(
        store
            .setting_or_insert("secret", "b")
            .await
            .expect("setting"),
        "a"
    );
}

#[tokio::test]
async fn launch_lifecycle_and_races() {
    let (_dir, store) = open().await;
    let team = store.create_team("alpha").await.expect("team");
    let pending = request(team.id);
    store.insert_request(&pending).await.expect("insert");
    assert_eq!(store.pending_requests().await.expect("pending").len(), 1);

    let first = session(team.id, pending.id, &["a", "b"]);
    assert!(store.begin_launch(pending.id, &first).await.expect("begin"));
    // The same request cannot be launched twice.
    let second = session(team.id, pending.id, &[]);
    assert!(!store
        .begin_launch(pending.id, &second)
        .await
        .expect("begin again"));
    assert!(store
        .session(team.id, second.id)
        .await
        .expect("get")
        .is_none());

    assert!(store
        .finish_launch(pending.id, first.id, Timestamp::now())
        .await
        .expect("finish"));
    let running = store
        .session(team.id, first.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(running.status, SessionStatus::Running);
    assert_eq!(running.tags, vec!["a", "b"]);
    let done = store
        .request(team.id, pending.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(done.status, RequestStatus::Completed);
    assert_eq!(done.session_id, Some(first.id));

    assert!(store
        .end_session(
            first.id,
            SessionStatus::Completed,
            "ended by client",
            Timestamp::now()
        )
        .await
        .expect("end"));
    assert!(!store
        .end_session(first.id, SessionStatus::Failed, "late", Timestamp::now())
        .await
        .expect("end again"));
    let ended = store
        .session(team.id, first.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(ended.status, SessionStatus::Completed);
    assert_eq!(ended.end_reason.as_deref(), Some("ended by client"));

    // Another team sees nothing.
    let other = store.create_team("beta").await.expect("team");
    assert!(store
        .session(other.id, first.id)
        .await
        .expect("get")
        .is_none());
    assert!(store
        .request(other.id, pending.id)
        .await
        .expect("get")
        .is_none());
}

#[tokio::test]
async fn an_end_during_launch_wins_over_the_launch() {
    let (_dir, store) = open().await;
    let team = store.create_team("alpha").await.expect("team");
    let pending = request(team.id);
    store.insert_request(&pending).await.expect("insert");
    let starting = session(team.id, pending.id, &[]);
    assert!(store
        .begin_launch(pending.id, &starting)
        .await
        .expect("begin"));
    assert!(store
        .end_session(
            starting.id,
            SessionStatus::Completed,
            "ended",
            Timestamp::now()
        )
        .await
        .expect("end"));
    assert!(!store
        .finish_launch(pending.id, starting.id, Timestamp::now())
        .await
        .expect("finish"));
    let request = store
        .request(team.id, pending.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(request.status, RequestStatus::Cancelled);
}

#[tokio::test]
async fn lists_filter_and_page() {
    let (_dir, store) = open().await;
    let team = store.create_team("alpha").await.expect("team");
    for index in 0..5 {
        let pending = request(team.id);
        store.insert_request(&pending).await.expect("insert");
        let tags: &[&str] = if index % 2 == 0 {
            &["even", "all"]
        } else {
            &["all"]
        };
        let new = session(team.id, pending.id, tags);
        assert!(store.begin_launch(pending.id, &new).await.expect("begin"));
    }
    let page = SessionPage {
        sort: SessionSort::CreatedAt,
        descending: true,
        page: 1,
        limit: Some(2),
    };
    let filter = SessionFilter {
        team_id: Some(team.id),
        ..SessionFilter::default()
    };
    let (rows, total) = store.list_sessions(&filter, &page).await.expect("list");
    assert_eq!((rows.len(), total), (2, 5));
    let last = SessionPage {
        page: 3,
        ..page.clone()
    };
    assert_eq!(
        store
            .list_sessions(&filter, &last)
            .await
            .expect("list")
            .0
            .len(),
        1
    );

    let tagged = SessionFilter {
        tags: vec!["even".into(), "all".into()],
        ..filter.clone()
    };
    assert_eq!(
        store.list_sessions(&tagged, &page).await.expect("list").1,
        3
    );
    let live = SessionFilter {
        live_only: true,
        ..filter.clone()
    };
    assert_eq!(store.list_sessions(&live, &page).await.expect("list").1, 5);

    let report = store
        .recover_after_restart("restarted", Timestamp::now())
        .await
        .expect("recover");
    assert_eq!(report.sessions_failed, 5);
    assert_eq!(store.list_sessions(&live, &page).await.expect("list").1, 0);
    let failed = SessionFilter {
        status: Some(SessionStatus::Failed),
        ..filter
    };
    assert_eq!(
        store.list_sessions(&failed, &page).await.expect("list").1,
        5
    );
}

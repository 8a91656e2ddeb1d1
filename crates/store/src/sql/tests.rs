//! Contract tests of the store, compiled once per backend (SQLite, then
//! PostgreSQL): every case runs against both. The tests speak to the store
//! through `&dyn Store`, as the server does; the backend's module gives
//! each test a database of its own (`test_database`).

use anchorage_core::{RequestId, RequestStatus, SessionId, SessionStatus, TeamId, Timestamp};
use serde_json::json;

use super::SqlStore;
use crate::records::{RequestRecord, SessionFilter, SessionPage, SessionRecord, SessionSort};
use crate::{QueueStore, Store, StoreError, TeamStore};

/// The node the tests claim work as.
const NODE: anchorage_core::NodeId = anchorage_core::NodeId::from_u128(0x0a0b);

/// A fresh store of the backend under test, as the trait object; `None`
/// where the backend has no database to test against (see
/// `test_database`), and the test then passes without running.
async fn open() -> Option<(super::TestDatabase, Box<dyn Store>)> {
    let (database, url) = super::test_database().await?;
    let store = SqlStore::open(&url).await.expect("open");
    Some((database, Box::new(store)))
}

fn request(team_id: TeamId) -> RequestRecord {
    RequestRecord::pending(
        team_id,
        None,
        json!({}),
        anchorage_core::SessionOptions::default(),
        Timestamp::now(),
    )
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
        node_id: Some(NODE),
    }
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_migrate_twice() {
    let Some((_database, url)) = super::test_database().await else {
        return;
    };
    let store = SqlStore::open(&url).await.expect("open");
    store.create_team("alpha").await.expect("team");
    drop(store);
    let store = SqlStore::open(&url).await.expect("reopen");
    assert_eq!(store.team_count().await.expect("count"), 1);
}

/// A request written before the typed `options` column existed has its
/// options derived from its body when read.
#[tokio::test]
async fn rows_without_typed_options_read_them_from_their_body() {
    let Some((_database, url)) = super::test_database().await else {
        return;
    };
    let store = SqlStore::open(&url).await.expect("open");
    let team = store.create_team("alpha").await.expect("team");
    let body = json!({"browser": {"viewport": {"width": 800, "height": 600}}});
    let options = anchorage_core::SessionOptions::from_configuration(&body).expect("valid");
    let pending = RequestRecord::pending(team.id, None, body, options.clone(), Timestamp::now());
    store.insert_request(&pending, None, None).await.expect("insert");
    sqlx::query("UPDATE start_requests SET options = NULL")
        .execute(&store.pool)
        .await
        .expect("forget the typed options");
    let read = store.request(team.id, pending.id).await.expect("get").expect("found");
    assert_eq!(read.options, options);
}

#[tokio::test]
async fn a_request_keeps_its_typed_options() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let team = store.create_team("alpha").await.expect("team");
    let body = json!({"session": {"initial_url": "https://example.test/", "tags": ["a"],
                      "timeout": {"idle_timeout": -1}}, "browser": {"viewport": {"width": 800, "height": 600}}});
    let options = anchorage_core::SessionOptions::from_configuration(&body).expect("valid");
    let pending = RequestRecord::pending(team.id, None, body.clone(), options.clone(), Timestamp::now());
    store.insert_request(&pending, None, None).await.expect("insert");
    let read = store.request(team.id, pending.id).await.expect("get").expect("found");
    assert_eq!((read.options, read.configuration), (options.clone(), body));
    // As a node's claim reads it, too.
    let claimed = store
        .claim_requests(NODE, 10, None, Timestamp::now())
        .await
        .expect("claim");
    assert_eq!(claimed.first().map(|request| &request.options), Some(&options));
}

#[tokio::test]
async fn profiles_are_per_team_and_a_save_switches_versions() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let alpha = store.create_team("alpha").await.expect("team");
    let beta = store.create_team("beta").await.expect("team");
    let now = Timestamp::now();
    let profile = crate::ProfileRecord {
        id: anchorage_core::ProfileId::new_random(),
        team_id: alpha.id,
        name: "shop login".to_owned(),
        description: Some("logged in".to_owned()),
        source: None,
        session_id: None,
        status: anchorage_core::ProfileStatus::Ready,
        version: None,
        size_bytes: 0,
        created_at: now,
        updated_at: now,
    };
    store.create_profile(&profile).await.expect("created");
    assert!(matches!(
        store.create_profile(&profile).await,
        Err(StoreError::AlreadyExists(_))
    ));
    // The same name in another team is another profile.
    let theirs = crate::ProfileRecord {
        id: anchorage_core::ProfileId::new_random(),
        team_id: beta.id,
        ..profile.clone()
    };
    store.create_profile(&theirs).await.expect("other team");
    assert_eq!(
        store.list_profiles(alpha.id).await.expect("list"),
        vec![profile.clone()]
    );
    assert_eq!(store.all_profiles().await.expect("all").len(), 2);
    assert!(store.profile(beta.id, "nope").await.expect("read").is_none());

    // A save hands back the version it replaces; a failed one keeps it.
    let first = store
        .profile_saved(profile.id, Some(("v1", 10)), anchorage_core::ProfileStatus::Ready, now)
        .await
        .expect("saved");
    assert_eq!(first, Some(None));
    let second = store
        .profile_saved(profile.id, Some(("v2", 20)), anchorage_core::ProfileStatus::Ready, now)
        .await
        .expect("saved");
    assert_eq!(second, Some(Some("v1".to_owned())));
    store
        .profile_saved(profile.id, None, anchorage_core::ProfileStatus::Failed, now)
        .await
        .expect("failed");
    let read = store
        .profile(alpha.id, "shop login")
        .await
        .expect("read")
        .expect("there");
    assert_eq!(
        (read.version.as_deref(), read.size_bytes, read.status.as_str()),
        (Some("v2"), 20, "failed")
    );

    let deleted = store.delete_profile(alpha.id, "shop login").await.expect("deleted");
    assert_eq!(deleted.map(|gone| gone.id), Some(profile.id));
    assert!(store
        .delete_profile(alpha.id, "shop login")
        .await
        .expect("again")
        .is_none());
    assert_eq!(
        store
            .profile_saved(profile.id, Some(("v3", 1)), anchorage_core::ProfileStatus::Ready, now)
            .await
            .expect("gone"),
        None
    );
    assert!(store.profile(beta.id, "shop login").await.expect("read").is_some());
}

#[tokio::test]
async fn extensions_are_per_team() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let alpha = store.create_team("alpha").await.expect("team");
    let beta = store.create_team("beta").await.expect("team");
    let now = Timestamp::now();
    let extension = crate::ExtensionRecord {
        id: anchorage_core::ExtensionId::new_random(),
        team_id: alpha.id,
        name: "marker".to_owned(),
        manifest: json!({"manifest_version": 3, "name": "m", "version": "1"}),
        size_bytes: 120,
        created_at: now,
        updated_at: now,
    };
    store.create_extension(&extension).await.expect("created");
    assert_eq!(
        store.extension(alpha.id, extension.id).await.expect("read"),
        Some(extension.clone())
    );
    assert_eq!(store.extension(beta.id, extension.id).await.expect("read"), None);
    assert_eq!(store.list_extensions(Some(alpha.id)).await.expect("list").len(), 1);
    assert!(store.list_extensions(Some(beta.id)).await.expect("list").is_empty());
    assert_eq!(store.list_extensions(None).await.expect("all").len(), 1);
    assert!(store
        .delete_extension(beta.id, extension.id)
        .await
        .expect("theirs")
        .is_none());
    assert_eq!(
        store
            .delete_extension(alpha.id, extension.id)
            .await
            .expect("ours")
            .map(|gone| gone.id),
        Some(extension.id)
    );
    assert!(store.list_extensions(None).await.expect("all").is_empty());
}

#[tokio::test]
async fn certificates_are_per_team_and_unique_by_name() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let alpha = store.create_team("alpha").await.expect("team");
    let beta = store.create_team("beta").await.expect("team");
    let certificate = crate::CertificateRecord {
        id: anchorage_core::CertificateId::new_random(),
        team_id: alpha.id,
        name: "corp-ca".to_owned(),
        description: None,
        pem: "-----BEGIN CERTIFICATE-----".to_owned(),
        created_at: Timestamp::now(),
    };
    store.create_certificate(&certificate).await.expect("created");
    assert!(matches!(
        store.create_certificate(&certificate).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        store.list_certificates(Some(alpha.id)).await.expect("list"),
        vec![certificate.clone()]
    );
    assert!(store.list_certificates(Some(beta.id)).await.expect("list").is_empty());
    assert!(store
        .delete_certificate(beta.id, "corp-ca")
        .await
        .expect("theirs")
        .is_none());
    assert!(store
        .delete_certificate(alpha.id, "corp-ca")
        .await
        .expect("ours")
        .is_some());
    assert!(store.list_certificates(None).await.expect("all").is_empty());
}

#[tokio::test]
async fn teams_and_keys() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
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
    let found = store.authenticate("hash-1").await.expect("auth").expect("found");
    assert_eq!(found.team_id, team.id);
    assert!(store.authenticate("hash-2").await.expect("auth").is_none());
    assert_eq!(store.revoke_api_key("ak_12345").await.expect("revoke"), 1);
    assert!(store.authenticate("hash-1").await.expect("auth").is_none());
    assert_eq!(store.revoke_api_key("ak_12345").await.expect("revoke"), 0);
    assert_eq!(store.setting_or_insert("secret", "a").await.expect("setting"), "a");
    assert_eq!(store.setting_or_insert("secret", "b").await.expect("setting"), "a");
}

#[tokio::test]
async fn launch_lifecycle_and_races() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let team = store.create_team("alpha").await.expect("team");
    let pending = request(team.id);
    store.insert_request(&pending, None, None).await.expect("insert");
    assert_eq!(store.queued_requests().await.expect("queued"), 1);

    let first = session(team.id, pending.id, &["a", "b"]);
    assert!(store.begin_launch(pending.id, &first).await.expect("begin"));
    // The same request cannot be launched twice.
    let second = session(team.id, pending.id, &[]);
    assert!(!store.begin_launch(pending.id, &second).await.expect("begin again"));
    assert!(store.session(team.id, second.id).await.expect("get").is_none());

    assert!(store
        .finish_launch(pending.id, first.id, Timestamp::now())
        .await
        .expect("finish"));
    let running = store.session(team.id, first.id).await.expect("get").expect("found");
    assert_eq!(running.status, SessionStatus::Running);
    assert_eq!(running.tags, vec!["a", "b"]);
    let done = store.request(team.id, pending.id).await.expect("get").expect("found");
    assert_eq!(done.status, RequestStatus::Completed);
    assert_eq!(done.session_id, Some(first.id));

    assert!(store
        .end_session(first.id, SessionStatus::Completed, "ended by client", Timestamp::now())
        .await
        .expect("end"));
    assert!(!store
        .end_session(first.id, SessionStatus::Failed, "late", Timestamp::now())
        .await
        .expect("end again"));
    let ended = store.session(team.id, first.id).await.expect("get").expect("found");
    assert_eq!(ended.status, SessionStatus::Completed);
    assert_eq!(ended.end_reason.as_deref(), Some("ended by client"));

    // Another team sees nothing.
    let other = store.create_team("beta").await.expect("team");
    assert!(store.session(other.id, first.id).await.expect("get").is_none());
    assert!(store.request(other.id, pending.id).await.expect("get").is_none());
}

#[tokio::test]
async fn tags_are_replaced_in_order_for_the_teams_session_only() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let team = store.create_team("alpha").await.expect("team");
    let other = store.create_team("beta").await.expect("team");
    let pending = request(team.id);
    store.insert_request(&pending, None, None).await.expect("insert");
    let new = session(team.id, pending.id, &["a", "b"]);
    assert!(store.begin_launch(pending.id, &new).await.expect("begin"));
    let replaced = ["z".to_owned(), "a".to_owned()];
    assert!(store.set_tags(team.id, new.id, &replaced).await.expect("set"));
    let read = store.session(team.id, new.id).await.expect("get").expect("found");
    assert_eq!(read.tags, ["z", "a"]);
    // The listing's filter sees the change.
    let filter = |tags: &[&str]| SessionFilter {
        team_id: Some(team.id),
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        ..SessionFilter::default()
    };
    let page = SessionPage {
        sort: SessionSort::CreatedAt,
        descending: true,
        page: 1,
        limit: Some(10),
    };
    assert_eq!(store.list_sessions(&filter(&["z"]), &page).await.expect("list").1, 1);
    assert_eq!(store.list_sessions(&filter(&["b"]), &page).await.expect("list").1, 0);
    // Another team's call changes nothing; an ended session keeps taking tags.
    assert!(!store.set_tags(other.id, new.id, &[]).await.expect("set"));
    assert_eq!(
        store.session(team.id, new.id).await.expect("get").expect("found").tags,
        ["z", "a"]
    );
    store
        .end_session(new.id, SessionStatus::Completed, "done", Timestamp::now())
        .await
        .expect("end");
    assert!(store.set_tags(team.id, new.id, &[]).await.expect("set"));
    assert!(store
        .session(team.id, new.id)
        .await
        .expect("get")
        .expect("found")
        .tags
        .is_empty());
}

#[tokio::test]
async fn an_end_during_launch_wins_over_the_launch() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let team = store.create_team("alpha").await.expect("team");
    let pending = request(team.id);
    store.insert_request(&pending, None, None).await.expect("insert");
    let starting = session(team.id, pending.id, &[]);
    assert!(store.begin_launch(pending.id, &starting).await.expect("begin"));
    assert!(store
        .end_session(starting.id, SessionStatus::Completed, "ended", Timestamp::now())
        .await
        .expect("end"));
    assert!(!store
        .finish_launch(pending.id, starting.id, Timestamp::now())
        .await
        .expect("finish"));
    let request = store.request(team.id, pending.id).await.expect("get").expect("found");
    assert_eq!(request.status, RequestStatus::Cancelled);
}

#[tokio::test]
async fn lists_filter_and_page() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let team = store.create_team("alpha").await.expect("team");
    for index in 0..5 {
        let pending = request(team.id);
        store.insert_request(&pending, None, None).await.expect("insert");
        let tags: &[&str] = if index % 2 == 0 { &["even", "all"] } else { &["all"] };
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
    assert_eq!(store.list_sessions(&filter, &last).await.expect("list").0.len(), 1);

    let tagged = SessionFilter {
        tags: vec!["even".into(), "all".into()],
        ..filter.clone()
    };
    assert_eq!(store.list_sessions(&tagged, &page).await.expect("list").1, 3);
    let live = SessionFilter {
        live_only: true,
        ..filter.clone()
    };
    assert_eq!(store.list_sessions(&live, &page).await.expect("list").1, 5);

    let report = store
        .recover_node(NODE, "restarted", Timestamp::now())
        .await
        .expect("recover");
    assert_eq!(report.sessions_failed, 5);
    assert_eq!(store.list_sessions(&live, &page).await.expect("list").1, 0);
    let failed = SessionFilter {
        status: Some(SessionStatus::Failed),
        ..filter
    };
    assert_eq!(store.list_sessions(&failed, &page).await.expect("list").1, 5);
}

mod batches {
    use anchorage_core::{BatchId, BatchStatus, RequestStatus, SessionStatus, TeamId, Timestamp};
    use serde_json::json;

    use super::{open, request, session};
    use crate::records::{BatchChange, BatchFilter, BatchRecord, LaunchFailure, RetryOutcome};
    use crate::Store;

    pub(super) async fn new_batch(
        store: &dyn Store,
        team_id: TeamId,
        count: usize,
    ) -> (BatchId, Vec<crate::RequestRecord>) {
        let batch = BatchRecord {
            id: BatchId::new_random(),
            team_id,
            api_key_id: None,
            total_requests: count as i64,
            configuration: json!({}),
            metadata: Some(json!({"purpose": "test"})),
            created_at: Timestamp::now(),
        };
        let items: Vec<_> = (0..count)
            .map(|index| crate::RequestRecord {
                batch_id: Some(batch.id),
                item_index: index as i64,
                ..request(team_id)
            })
            .collect();
        store.insert_batch(&batch, &items).await.expect("insert batch");
        (batch.id, items)
    }

    async fn status(store: &dyn Store, team_id: TeamId, batch_id: BatchId) -> BatchStatus {
        store
            .batch(team_id, batch_id)
            .await
            .expect("get")
            .expect("found")
            .status()
    }

    /// Launches an item; `up` decides whether its browser comes up.
    pub(super) async fn launch(store: &dyn Store, item: &crate::RequestRecord, up: bool) -> anchorage_core::SessionId {
        let mut new = session(item.team_id, item.id, &[]);
        new.batch_id = item.batch_id;
        assert!(store.begin_launch(item.id, &new).await.expect("begin"));
        if up {
            assert!(store
                .finish_launch(item.id, new.id, Timestamp::now())
                .await
                .expect("finish"));
        } else {
            store
                .fail_launch(item.id, new.id, "chromium exited", Timestamp::now())
                .await
                .expect("fail");
        }
        new.id
    }

    #[tokio::test]
    async fn status_and_counts_follow_the_items_and_the_sql_filter_agrees() {
        let Some((_dir, store)) = open().await else { return };
        let store: &dyn Store = store.as_ref();
        let team = store.create_team("alpha").await.expect("team").id;
        let (pending, _) = new_batch(store, team, 3).await;
        let (processing, items) = new_batch(store, team, 3).await;
        launch(store, &items[0], true).await;
        let (completed, items) = new_batch(store, team, 2).await;
        launch(store, &items[0], true).await;
        launch(store, &items[1], false).await;
        let (failed, items) = new_batch(store, team, 1).await;
        launch(store, &items[0], false).await;
        let (cancelled, _) = new_batch(store, team, 2).await;
        assert!(matches!(
            store
                .cancel_batch(team, cancelled, Timestamp::now())
                .await
                .expect("cancel"),
            BatchChange::Done(_)
        ));

        let expected = [
            (pending, BatchStatus::Pending),
            (processing, BatchStatus::Processing),
            (completed, BatchStatus::Completed),
            (failed, BatchStatus::Failed),
            (cancelled, BatchStatus::Cancelled),
        ];
        for (batch_id, wanted) in expected {
            let summary = store.batch(team, batch_id).await.expect("get").expect("found");
            assert_eq!(summary.status(), wanted);
            assert_eq!(summary.counts.total(), summary.total_requests);
            assert_eq!(summary.actual_completion_time().is_some(), wanted.is_final());
            let filter = BatchFilter {
                team_id: team,
                status: Some(wanted),
                created_after: None,
                created_before: None,
                page: 1,
                limit: 100,
            };
            let (rows, total) = store.list_batches(&filter).await.expect("list");
            assert_eq!(total, 1, "{wanted}");
            assert_eq!(rows[0].id, batch_id, "{wanted}");
        }
        let summary = store.batch(team, completed).await.expect("get").expect("found");
        assert_eq!(summary.first_error.as_deref(), Some("chromium exited"));
        let all = BatchFilter {
            team_id: team,
            status: None,
            created_after: None,
            created_before: None,
            page: 1,
            limit: 2,
        };
        let (rows, total) = store.list_batches(&all).await.expect("list");
        assert_eq!((rows.len(), total), (2, 5));
        assert!(rows[0].created_at >= rows[1].created_at, "newest first");
        let other = store.create_team("beta").await.expect("team").id;
        assert!(store.batch(other, pending).await.expect("get").is_none());
    }

    #[tokio::test]
    async fn of_two_racing_cancels_exactly_one_wins() {
        let Some((_dir, store)) = open().await else { return };
        let store: &dyn Store = store.as_ref();
        let team = store.create_team("alpha").await.expect("team").id;
        for _ in 0..10 {
            let (batch_id, items) = new_batch(store, team, 4).await;
            let running = launch(store, &items[0], true).await;
            let (first, second) = tokio::join!(
                store.cancel_batch(team, batch_id, Timestamp::now()),
                store.cancel_batch(team, batch_id, Timestamp::now())
            );
            let outcomes = [first.expect("first"), second.expect("second")];
            let wins: Vec<_> = outcomes
                .iter()
                .filter(|outcome| matches!(outcome, BatchChange::Done(_)))
                .collect();
            assert_eq!(wins.len(), 1, "{outcomes:?}");
            assert_eq!(wins[0], &BatchChange::Done(vec![running]));
            assert!(outcomes.contains(&BatchChange::Conflict(BatchStatus::Cancelled)));
            let summary = store.batch(team, batch_id).await.expect("get").expect("found");
            assert_eq!((summary.counts.completed, summary.counts.cancelled), (1, 3));
            // Nothing of it can start any more.
            let late = session(team, items[1].id, &[]);
            assert!(!store.begin_launch(items[1].id, &late).await.expect("begin"));
        }
    }

    #[tokio::test]
    async fn cancel_ends_launching_sessions_and_refuses_final_batches() {
        let Some((_dir, store)) = open().await else { return };
        let store: &dyn Store = store.as_ref();
        let team = store.create_team("alpha").await.expect("team").id;
        let (batch_id, items) = new_batch(store, team, 2).await;
        let mut starting = session(team, items[0].id, &[]);
        starting.batch_id = Some(batch_id);
        assert!(store.begin_launch(items[0].id, &starting).await.expect("begin"));
        assert_eq!(
            store
                .cancel_batch(team, batch_id, Timestamp::now())
                .await
                .expect("cancel"),
            BatchChange::Done(vec![])
        );
        // The browser that comes up after the cancel must not be recorded as running.
        assert!(!store
            .finish_launch(items[0].id, starting.id, Timestamp::now())
            .await
            .expect("finish"));
        let ended = store.session(team, starting.id).await.expect("get").expect("found");
        assert_eq!(ended.status, SessionStatus::Completed);

        let (done, items) = new_batch(store, team, 1).await;
        launch(store, &items[0], true).await;
        assert_eq!(
            store.cancel_batch(team, done, Timestamp::now()).await.expect("cancel"),
            BatchChange::Conflict(BatchStatus::Completed)
        );
        assert_eq!(
            store
                .cancel_batch(team, BatchId::new_random(), Timestamp::now())
                .await
                .expect("cancel"),
            BatchChange::NotFound
        );
        let other = store.create_team("beta").await.expect("team").id;
        assert_eq!(
            store.cancel_batch(other, done, Timestamp::now()).await.expect("cancel"),
            BatchChange::NotFound
        );
    }

    #[tokio::test]
    async fn delete_removes_the_batch_and_hands_back_running_sessions() {
        let Some((_dir, store)) = open().await else { return };
        let store: &dyn Store = store.as_ref();
        let team = store.create_team("alpha").await.expect("team").id;
        let (batch_id, items) = new_batch(store, team, 3).await;
        let running = launch(store, &items[0], true).await;
        let other = store.create_team("beta").await.expect("team").id;
        assert_eq!(
            store
                .delete_batch(other, batch_id, Timestamp::now())
                .await
                .expect("delete"),
            BatchChange::NotFound
        );
        assert_eq!(
            store
                .delete_batch(team, batch_id, Timestamp::now())
                .await
                .expect("delete"),
            BatchChange::Done(vec![running])
        );
        assert!(store.batch(team, batch_id).await.expect("get").is_none());
        assert!(store.batch_items(batch_id).await.expect("items").is_empty());
        let late = session(team, items[1].id, &[]);
        assert!(!store.begin_launch(items[1].id, &late).await.expect("begin"));
    }

    #[tokio::test]
    async fn retry_requeues_failed_items_with_a_budget() {
        let Some((_dir, store)) = open().await else { return };
        let store: &dyn Store = store.as_ref();
        let team = store.create_team("alpha").await.expect("team").id;
        let (batch_id, items) = new_batch(store, team, 3).await;
        launch(store, &items[0], true).await;
        launch(store, &items[1], false).await;
        launch(store, &items[2], false).await;
        assert_eq!(status(store, team, batch_id).await, BatchStatus::Completed);

        let RetryOutcome::Retried {
            retried: 2,
            pending: requeued,
        } = store.retry_batch(team, batch_id, true, 2).await.expect("retry")
        else {
            panic!("retry refused");
        };
        assert_eq!(
            requeued.iter().map(|item| item.item_index).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(requeued
            .iter()
            .all(|item| item.retry_count == 1 && item.status == RequestStatus::Pending));
        assert_eq!(status(store, team, batch_id).await, BatchStatus::Processing);

        // Item 1 fails again but has one more attempt; item 2 comes up.
        let mut retry_session = session(team, items[1].id, &[]);
        retry_session.batch_id = Some(batch_id);
        assert!(store.begin_launch(items[1].id, &retry_session).await.expect("begin"));
        assert_eq!(
            store
                .fail_launch(items[1].id, retry_session.id, "again", Timestamp::now())
                .await
                .expect("fail"),
            LaunchFailure::Requeued
        );
        launch(store, &items[2], true).await;
        launch(store, &items[1], true).await;
        let items_now = store.batch_items(batch_id).await.expect("items");
        assert!(items_now
            .iter()
            .all(|item| item.request.status == RequestStatus::Completed));
        assert_eq!(items_now[1].request.retry_count, 2);
        assert_eq!(status(store, team, batch_id).await, BatchStatus::Completed);

        // Nothing failed: nothing to retry. A cancelled batch: refused.
        assert_eq!(
            store.retry_batch(team, batch_id, true, 1).await.expect("retry"),
            RetryOutcome::Retried {
                retried: 0,
                pending: vec![]
            }
        );
        let (cancelled, _) = new_batch(store, team, 1).await;
        store
            .cancel_batch(team, cancelled, Timestamp::now())
            .await
            .expect("cancel");
        assert_eq!(
            store.retry_batch(team, cancelled, true, 1).await.expect("retry"),
            RetryOutcome::Conflict(BatchStatus::Cancelled)
        );
    }
}

mod webhooks {
    use anchorage_core::webhook::WebhookEvent;
    use anchorage_core::{SessionStatus, TeamId, Timestamp};

    use super::batches::{launch, new_batch};
    use super::{open, NODE};
    use crate::records::{AttemptOutcome, DeliveryFilter, WebhookChange, WebhookRecord};
    use crate::Store;

    pub(super) fn webhook(team_id: TeamId, events: &[&str]) -> WebhookRecord {
        let now = Timestamp::now();
        WebhookRecord {
            id: format!("wh_{}", uuid::Uuid::new_v4().simple()),
            team_id,
            url: "http://127.0.0.1:9/hook".to_owned(),
            description: None,
            events: events.iter().map(|event| event.to_string()).collect(),
            enabled: true,
            secret: "first secret".to_owned(),
            previous_secret: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn attempts_of(team_id: TeamId, webhook_id: &str) -> DeliveryFilter {
        DeliveryFilter {
            team_id,
            webhook_id: webhook_id.to_owned(),
            status: None,
            event_type: None,
            since: None,
            until: None,
            limit: 100,
            offset: 0,
        }
    }

    #[tokio::test]
    async fn webhooks_are_per_team_limited_and_soft_deleted() {
        let Some((_dir, store)) = open().await else { return };
        let store: &dyn Store = store.as_ref();
        let alpha = store.create_team("alpha").await.expect("team").id;
        let beta = store.create_team("beta").await.expect("team").id;
        let first = webhook(alpha, &["batch.completed", "session.failed"]);
        assert!(store.create_webhook(&first, 2).await.expect("create"));
        assert!(store
            .create_webhook(&webhook(alpha, &["batch.failed"]), 2)
            .await
            .expect("create"));
        assert!(!store
            .create_webhook(&webhook(alpha, &["batch.failed"]), 2)
            .await
            .expect("over the limit"));
        assert!(store
            .create_webhook(&webhook(beta, &["batch.failed"]), 2)
            .await
            .expect("other team"));
        let read = store
            .webhook(alpha, &first.id, false)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(read, first, "subscriptions keep their order");
        assert!(store.webhook(beta, &first.id, true).await.expect("get").is_none());

        let change = WebhookChange {
            events: Some(vec!["session.completed".to_owned()]),
            enabled: Some(false),
            description: Some(Some("nightly".to_owned())),
            url: None,
        };
        let changed = store
            .update_webhook(alpha, &first.id, &change, Timestamp::now())
            .await
            .expect("update")
            .expect("found");
        assert_eq!(changed.events, vec!["session.completed".to_owned()]);
        assert!(!changed.enabled);
        assert_eq!(changed.description.as_deref(), Some("nightly"));
        assert!(store
            .update_webhook(beta, &first.id, &change, Timestamp::now())
            .await
            .expect("update")
            .is_none());

        let until = Timestamp::from_millis(Timestamp::now().as_millis() + 1000);
        let rotated = store
            .rotate_webhook_secret(alpha, &first.id, "second secret", until, Timestamp::now())
            .await
            .expect("rotate")
            .expect("found");
        assert_eq!(rotated.secret, "second secret");
        assert_eq!(rotated.previous_secret, Some(("first secret".to_owned(), until)));

        assert!(!store
            .delete_webhook(beta, &first.id, Timestamp::now())
            .await
            .expect("theirs"));
        assert!(store
            .delete_webhook(alpha, &first.id, Timestamp::now())
            .await
            .expect("ours"));
        assert!(store.webhook(alpha, &first.id, false).await.expect("get").is_none());
        assert!(store.webhook(alpha, &first.id, true).await.expect("get").is_some());
        assert_eq!(store.list_webhooks(alpha).await.expect("list").len(), 1);
        // A deleted webhook leaves room for another.
        assert!(store
            .create_webhook(&webhook(alpha, &["batch.failed"]), 2)
            .await
            .expect("create"));
    }

    #[tokio::test]
    async fn ends_record_their_events_in_the_same_write_and_attempts_retry_under_one_delivery_id() {
        let Some((_dir, store)) = open().await else { return };
        let store: &dyn Store = store.as_ref();
        let team = store.create_team("alpha").await.expect("team").id;
        // No webhook: nothing is recorded for a batch that ends.
        let (_, items) = new_batch(store, team, 1).await;
        launch(store, &items[0], true).await;
        assert!(store.next_attempt_due().await.expect("due").is_none());

        let hook = webhook(team, &["session.completed", "batch.completed"]);
        let deaf = webhook(team, &["session.failed"]);
        assert!(store.create_webhook(&hook, 5).await.expect("create"));
        assert!(store.create_webhook(&deaf, 5).await.expect("create"));
        let (batch_id, items) = new_batch(store, team, 2).await;
        let first = launch(store, &items[0], true).await;
        assert!(
            store.next_attempt_due().await.expect("due").is_none(),
            "half a batch has no event"
        );
        launch(store, &items[1], true).await;
        assert!(store
            .end_session(first, SessionStatus::Completed, "ended by the client", Timestamp::now())
            .await
            .expect("end"));
        // Ending it again records nothing more.
        assert!(!store
            .end_session(first, SessionStatus::Completed, "again", Timestamp::now())
            .await
            .expect("end"));

        let due = store
            .claim_due_attempts(NODE, Timestamp::now(), 10)
            .await
            .expect("claim");
        let mut types: Vec<_> = due.iter().map(|due| due.attempt.event_type.as_str()).collect();
        types.sort();
        assert_eq!(types, ["batch.completed", "session.completed"]);
        assert!(due
            .iter()
            .all(|due| due.webhook_id == hook.id && due.secrets == ["first secret"]));
        let batch_event = due
            .iter()
            .find(|due| due.attempt.event_type == "batch.completed")
            .expect("batch");
        let body: serde_json::Value = serde_json::from_str(&batch_event.body).expect("JSON");
        assert_eq!(body["data"]["batch_id"], serde_json::json!(batch_id.to_string()));
        assert_eq!(body["data"]["completed_requests"], serde_json::json!(2));
        assert!(
            store
                .claim_due_attempts(NODE, Timestamp::now(), 10)
                .await
                .expect("claim")
                .is_empty(),
            "claimed once"
        );

        // A failed attempt schedules the next one of the same delivery.
        let retry_at = Timestamp::from_millis(Timestamp::now().as_millis() + 60_000);
        let outcome = AttemptOutcome::NotDelivered {
            response_status: Some(503),
            error: "the receiver answered 503".to_owned(),
            retry_at: Some(retry_at),
            refused: false,
        };
        store
            .finish_attempt(&batch_event.attempt.id, &outcome, Timestamp::now())
            .await
            .expect("finish");
        assert_eq!(store.next_attempt_due().await.expect("due"), Some(retry_at));
        let later = store.claim_due_attempts(NODE, retry_at, 10).await.expect("claim");
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].attempt.delivery_id, batch_event.attempt.delivery_id);
        assert_eq!(later[0].attempt.attempt, 2);
        // A stopped server's claims go back to pending, same delivery.
        assert_eq!(
            store
                .release_in_flight_attempts(NODE, Timestamp::now())
                .await
                .expect("release"),
            2
        );
        let again = store.claim_due_attempts(NODE, retry_at, 10).await.expect("claim");
        assert_eq!(again.len(), 2);
        for due in &again {
            let outcome = AttemptOutcome::Succeeded { response_status: 200 };
            store
                .finish_attempt(&due.attempt.id, &outcome, Timestamp::now())
                .await
                .expect("finish");
        }
        let (attempts, total) = store
            .list_delivery_attempts(&attempts_of(team, &hook.id))
            .await
            .expect("list");
        assert_eq!(total, 3);
        let statuses: Vec<_> = attempts
            .iter()
            .map(|attempt| (attempt.attempt, attempt.status.as_str()))
            .collect();
        assert!(
            statuses.contains(&(2, "succeeded")) && statuses.contains(&(1, "failed")),
            "{statuses:?}"
        );
        let failed_only = DeliveryFilter {
            status: Some("failed".to_owned()),
            ..attempts_of(team, &hook.id)
        };
        let (failed, _) = store.list_delivery_attempts(&failed_only).await.expect("list");
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].response_status, Some(503));
        let other_team = store.create_team("beta").await.expect("team").id;
        assert_eq!(
            store
                .list_delivery_attempts(&attempts_of(other_team, &hook.id))
                .await
                .expect("list")
                .1,
            0
        );
        assert_eq!(
            store
                .list_delivery_attempts(&attempts_of(team, &deaf.id))
                .await
                .expect("list")
                .1,
            0
        );
    }

    /// A change that checks before it writes, racing other writers, waits
    /// for its turn: none is refused as "locked" (SQLite's deferred
    /// transactions failed at once when another wrote between the check
    /// and the write; seen once in the compatibility suite).
    #[tokio::test]
    async fn changes_that_check_before_they_write_wait_for_each_other() {
        let Some((_dir, store)) = open().await else { return };
        let store: std::sync::Arc<dyn Store> = store.into();
        let team = store.create_team("alpha").await.expect("team").id;
        let hook = webhook(team, &["session.failed"]);
        assert!(store.create_webhook(&hook, 5).await.expect("create"));
        let racers = (0..4).map(|_| {
            let (store, id) = (std::sync::Arc::clone(&store), hook.id.clone());
            tokio::spawn(async move {
                for _ in 0..25 {
                    let event = WebhookEvent::test("batch.failed", team, Timestamp::now());
                    store
                        .record_test_event(&id, &event)
                        .await
                        .expect("a racing change was refused");
                }
            })
        });
        for racer in racers.collect::<Vec<_>>() {
            racer.await.expect("racer");
        }
    }

    #[tokio::test]
    async fn a_test_event_goes_to_its_webhook_only_and_a_restart_fails_sessions_with_events() {
        let Some((_dir, store)) = open().await else { return };
        let store: &dyn Store = store.as_ref();
        let team = store.create_team("alpha").await.expect("team").id;
        let hook = webhook(team, &["session.failed"]);
        let other = webhook(team, &["session.failed"]);
        assert!(store.create_webhook(&hook, 5).await.expect("create"));
        assert!(store.create_webhook(&other, 5).await.expect("create"));
        let event = WebhookEvent::test("batch.failed", team, Timestamp::now());
        assert!(store.record_test_event(&hook.id, &event).await.expect("test"));
        assert!(!store.record_test_event("wh_missing", &event).await.expect("test"));
        let due = store
            .claim_due_attempts(NODE, Timestamp::now(), 10)
            .await
            .expect("claim");
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].webhook_id.as_str(), due[0].attempt.event_id.as_str()),
            (hook.id.as_str(), event.id.as_str())
        );

        let pending = super::request(team);
        store.insert_request(&pending, None, None).await.expect("insert");
        let running = super::session(team, pending.id, &["tagged"]);
        assert!(store.begin_launch(pending.id, &running).await.expect("begin"));
        store
            .recover_node(NODE, "the server restarted", Timestamp::now())
            .await
            .expect("recover");
        let due = store
            .claim_due_attempts(NODE, Timestamp::now(), 10)
            .await
            .expect("claim");
        assert_eq!(due.len(), 2, "one session.failed for each subscribed webhook");
        let body: serde_json::Value = serde_json::from_str(&due[0].body).expect("JSON");
        assert_eq!(body["type"], serde_json::json!("session.failed"));
        assert_eq!(body["data"]["tags"], serde_json::json!(["tagged"]));
        assert_eq!(
            due[0].attempt.event_id, due[1].attempt.event_id,
            "one event, two deliveries"
        );
        assert_ne!(due[0].attempt.delivery_id, due[1].attempt.delivery_id);
    }
}

#[tokio::test]
async fn recordings_finish_once_tell_webhooks_and_are_per_team() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let team = store.create_team("alpha").await.expect("team").id;
    let other = store.create_team("beta").await.expect("team").id;
    let now = Timestamp::now();
    let hook = webhooks::webhook(team, &["session.recording.ready"]);
    assert!(store.create_webhook(&hook, 5).await.expect("webhook"));
    // A session this node (NODE) runs.
    let pending = request(team);
    store.insert_request(&pending, None, None).await.expect("insert");
    let running = session(team, pending.id, &[]);
    assert!(store.begin_launch(pending.id, &running).await.expect("begin"));
    let session_id = running.id;
    let recording_id = anchorage_core::RecordingId::new_random();
    let recording = crate::RecordingRecord {
        id: recording_id,
        session_id,
        team_id: team,
        status: anchorage_core::RecordingStatus::Recording,
        size_bytes: 0,
        duration_ms: 0,
        error: None,
        created_at: now,
        ended_at: None,
    };
    store.create_recording(&recording).await.expect("create");
    assert_eq!(
        store
            .recordings_in(anchorage_core::RecordingStatus::Recording, None, None)
            .await
            .expect("list")
            .len(),
        1
    );
    assert_eq!(
        store
            .recordings_in(anchorage_core::RecordingStatus::Recording, None, Some(NODE))
            .await
            .expect("mine")
            .len(),
        1
    );
    let elsewhere = anchorage_core::NodeId::from_u128(0x0c0d);
    assert!(store
        .recordings_in(anchorage_core::RecordingStatus::Recording, None, Some(elsewhere))
        .await
        .expect("another node's")
        .is_empty());
    assert!(store
        .finish_recording(
            recording_id,
            anchorage_core::RecordingStatus::Ready,
            1234,
            5000,
            None,
            Timestamp::now()
        )
        .await
        .expect("finish"));
    assert!(!store
        .finish_recording(
            recording_id,
            anchorage_core::RecordingStatus::Failed,
            0,
            0,
            Some("late"),
            Timestamp::now()
        )
        .await
        .expect("once"));
    let listed = store.session_recordings(team, session_id).await.expect("list");
    assert_eq!(
        (listed[0].status.as_str(), listed[0].size_bytes, listed[0].duration_ms),
        ("ready", 1234, 5000)
    );
    assert!(store
        .session_recordings(other, session_id)
        .await
        .expect("list")
        .is_empty());
    let due = store
        .claim_due_attempts(NODE, Timestamp::now(), 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&due[0].body).expect("JSON");
    assert_eq!(body["type"], json!("session.recording.ready"));
    assert_eq!(body["data"]["recording_id"], json!(recording_id.to_string()));
    let later = Timestamp::from_millis(Timestamp::now().as_millis() + 1000);
    assert_eq!(
        store
            .recordings_in(anchorage_core::RecordingStatus::Ready, Some(later), Some(NODE))
            .await
            .expect("old")
            .len(),
        1
    );
    assert!(store
        .delete_recording(other, session_id, recording_id)
        .await
        .expect("theirs")
        .is_none());
    assert!(store
        .delete_recording(team, session_id, recording_id)
        .await
        .expect("ours")
        .is_some());
    assert!(store
        .session_recordings(team, session_id)
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn nodes_hold_leases_and_release_only_their_own_or_dead_nodes_claims() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let at = |millis: i64| Timestamp::from_millis(1_000_000 + millis);
    let other = anchorage_core::NodeId::from_u128(0x0c0d);
    for (id, url) in [(NODE, "http://10.0.0.1:8080/"), (other, "http://10.0.0.2:8080/")] {
        let node = crate::NodeRecord {
            id,
            url: url.to_owned(),
            max_sessions: 4,
            started_at: at(0),
            lease_until: at(10_000),
            live_sessions: 0,
        };
        store.register_node(&node).await.expect("register");
        // Registering again (a restart) is the same node.
        store.register_node(&node).await.expect("register again");
    }
    assert_eq!(store.nodes().await.expect("nodes").len(), 2);
    assert!(store.renew_node(NODE, at(20_000)).await.expect("renew"));
    // A session launching on a node counts as one of its live sessions.
    let owner = store.create_team("owner").await.expect("team").id;
    let pending = request(owner);
    store.insert_request(&pending, None, None).await.expect("insert");
    assert!(store
        .begin_launch(pending.id, &session(owner, pending.id, &[]))
        .await
        .expect("begin"));
    let live: Vec<(anchorage_core::NodeId, i64)> = store
        .nodes()
        .await
        .expect("nodes")
        .iter()
        .map(|node| (node.id, node.live_sessions))
        .collect();
    assert!(live.contains(&(NODE, 1)) && live.contains(&(other, 0)), "{live:?}");
    assert!(!store
        .renew_node(anchorage_core::NodeId::new_random(), at(20_000))
        .await
        .expect("unknown"));

    // A webhook attempt claimed by the other node.
    let team = store.create_team("alpha").await.expect("team").id;
    let hook = webhooks::webhook(team, &["batch.failed"]);
    assert!(store.create_webhook(&hook, 5).await.expect("webhook"));
    let event = anchorage_core::webhook::WebhookEvent::test("batch.failed", team, at(0));
    assert!(store.record_test_event(&hook.id, &event).await.expect("event"));
    assert_eq!(
        store.claim_due_attempts(other, at(1), 10).await.expect("claim").len(),
        1
    );
    // While the other node's lease holds, its claim is its own.
    assert_eq!(
        store
            .release_in_flight_attempts(NODE, at(5_000))
            .await
            .expect("release"),
        0
    );
    // Once it has run out, the claim is released.
    assert_eq!(
        store
            .release_in_flight_attempts(NODE, at(15_000))
            .await
            .expect("release"),
        1
    );
    assert_eq!(
        store
            .claim_due_attempts(NODE, at(15_000), 10)
            .await
            .expect("claim")
            .len(),
        1
    );
    // A node that left cleanly is gone from the list.
    store.leave(other).await.expect("leave");
    assert_eq!(store.nodes().await.expect("nodes").len(), 1);
}

/// Recovering one node (it restarted, or its lease ran out) ends its live
/// sessions and requeues what it was launching; another node's stay as
/// they are.
#[tokio::test]
async fn recovering_a_node_touches_its_own_sessions_only() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let team = store.create_team("alpha").await.expect("team").id;
    let other = anchorage_core::NodeId::from_u128(0x0c0d);
    let mut launching = Vec::new();
    for node in [NODE, other] {
        let pending = request(team);
        store.insert_request(&pending, None, None).await.expect("insert");
        let starting = SessionRecord {
            node_id: Some(node),
            ..session(team, pending.id, &[])
        };
        assert!(store.begin_launch(pending.id, &starting).await.expect("begin"));
        let ran = request(team);
        store.insert_request(&ran, None, None).await.expect("insert");
        let running = SessionRecord {
            node_id: Some(node),
            ..session(team, ran.id, &[])
        };
        assert!(store.begin_launch(ran.id, &running).await.expect("begin"));
        assert!(store
            .finish_launch(ran.id, running.id, Timestamp::now())
            .await
            .expect("finish"));
        launching.push((pending.id, starting.id, running.id));
    }

    assert_eq!(store.session_node(launching[1].2).await.expect("owner"), Some(other));
    assert_eq!(store.session_node(SessionId::new_random()).await.expect("owner"), None);
    let report = store
        .recover_node(NODE, "its node was lost", Timestamp::now())
        .await
        .expect("recover");
    assert_eq!((report.sessions_failed, report.requests_requeued), (2, 1));
    let status = |id| async move {
        let found = store.session(team, id).await.expect("get").expect("found");
        (found.status, found.end_reason)
    };
    let (mine, theirs) = (launching[0], launching[1]);
    for id in [mine.1, mine.2] {
        assert_eq!(
            status(id).await,
            (SessionStatus::Failed, Some("its node was lost".to_owned()))
        );
    }
    assert_eq!(status(theirs.1).await.0, SessionStatus::Starting);
    assert_eq!(status(theirs.2).await.0, SessionStatus::Running);
    let request_status = |id| async move { store.request(team, id).await.expect("get").expect("found").status };
    assert_eq!(request_status(mine.0).await, RequestStatus::Pending);
    assert_eq!(request_status(theirs.0).await, RequestStatus::Processing);
}

/// Registers `id` as a node whose lease runs until `lease_until`.
async fn register(store: &dyn Store, id: anchorage_core::NodeId, lease_until: Timestamp) {
    store
        .register_node(&crate::records::NodeRecord {
            id,
            url: format!("http://{id}.test"),
            max_sessions: 4,
            started_at: Timestamp::now(),
            lease_until,
            live_sessions: 0,
        })
        .await
        .expect("register");
}

/// Nodes claim queued requests into their own queues: fair across teams,
/// in queue order within one, never one claimed twice, a lost node's
/// claims free again, and a team quota counts every node's load, also for
/// a start a node writes claimed by itself.
#[tokio::test]
async fn nodes_claim_queued_work_fairly_once_and_within_team_quotas() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let now = Timestamp::now();
    let later = Timestamp::from_millis(now.as_millis() + 60_000);
    let (other, lost) = (
        anchorage_core::NodeId::from_u128(0x0c0d),
        anchorage_core::NodeId::from_u128(0x0e0f),
    );
    register(store, NODE, later).await;
    register(store, other, later).await;
    register(store, lost, Timestamp::from_millis(now.as_millis() - 1)).await;
    let alpha = store.create_team("alpha").await.expect("team").id;
    let beta = store.create_team("beta").await.expect("team").id;
    let mut queued = std::collections::HashMap::new();
    for (name, team) in [("a0", alpha), ("a1", alpha), ("b0", beta), ("a2", alpha), ("b1", beta)] {
        let pending = request(team);
        store.insert_request(&pending, None, None).await.expect("insert");
        queued.insert(pending.id, name);
    }
    let names = |claimed: Vec<RequestRecord>| claimed.iter().map(|request| queued[&request.id]).collect::<Vec<_>>();

    // Teams take turns, each in its own order.
    let first = store.claim_requests(NODE, 3, None, now).await.expect("claim");
    assert_eq!(names(first), ["a0", "b0", "a1"]);
    // The rest go to the next node; nothing is claimed twice.
    let second = store.claim_requests(other, 10, None, now).await.expect("claim");
    assert_eq!(names(second), ["a2", "b1"]);
    assert!(store
        .claim_requests(NODE, 10, None, now)
        .await
        .expect("claim")
        .is_empty());
    assert_eq!(store.queued_requests().await.expect("count"), 5);
    assert_eq!(store.team_load(alpha, now).await.expect("load"), 3);

    // What a lost node claimed is anybody's; what it ran counts against its team.
    let orphan = request(beta);
    store.insert_request(&orphan, Some(lost), None).await.expect("insert");
    // ...but never its own: the lost node itself (its lease lapsed while the
    // database was locked) still holds the request in its queue, and taking
    // it again would launch it twice.
    assert!(store
        .claim_requests(lost, 10, None, now)
        .await
        .expect("claim")
        .is_empty());
    let taken = store.claim_requests(other, 10, None, now).await.expect("claim");
    assert_eq!(taken.iter().map(|request| request.id).collect::<Vec<_>>(), [orphan.id]);

    // With a quota of 2, alpha (3 claimed) gets nothing more; gamma gets 2.
    let gamma = store.create_team("gamma").await.expect("team").id;
    for team in [alpha, gamma, gamma, gamma] {
        store.insert_request(&request(team), None, None).await.expect("insert");
    }
    let limited = store.claim_requests(NODE, 10, Some(2), now).await.expect("claim");
    assert_eq!(
        limited.iter().map(|request| request.team_id).collect::<Vec<_>>(),
        [gamma, gamma]
    );

    // A restart gives back what the node had claimed but not begun.
    store.recover_node(other, "restarted", now).await.expect("recover");
    let freed = store.claim_requests(NODE, 10, None, now).await.expect("claim");
    assert_eq!(freed.len(), 5, "a2, b1, the orphan, and what the quota held back");

    // A start its node writes claimed (a synchronous one arriving there):
    // within a quota of 2 the node keeps two, the third goes to the shared
    // queue; without a quota the node keeps it.
    let delta = store.create_team("delta").await.expect("team").id;
    let starts: Vec<RequestRecord> = (0..3).map(|_| request(delta)).collect();
    let mut kept = Vec::new();
    for start in &starts {
        kept.push(store.insert_request(start, Some(NODE), Some(2)).await.expect("insert"));
    }
    assert_eq!(kept, [true, true, false]);
    let shared = store.claim_requests(other, 10, None, now).await.expect("claim");
    assert_eq!(
        shared.iter().map(|request| request.id).collect::<Vec<_>>(),
        [starts[2].id]
    );
    assert!(store
        .insert_request(&request(delta), Some(NODE), None)
        .await
        .expect("insert"));
}

/// Where the database has a channel between nodes (PostgreSQL), every
/// listener gets every topic notified, in order; on SQLite a notify goes
/// nowhere and there is nothing to listen to.
#[tokio::test]
async fn notified_topics_reach_every_listener_where_there_is_a_channel() {
    let Some((_dir, store)) = open().await else { return };
    let Some(mut first) = store.listen().await.expect("listen") else {
        store.notify("queued").await.expect("notify");
        return;
    };
    let mut second = store.listen().await.expect("listen").expect("a channel");
    store.notify("queued").await.expect("notify");
    store.notify("batch 7").await.expect("notify");
    for listener in [&mut first, &mut second] {
        for wanted in ["queued", "batch 7"] {
            let got = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
                .await
                .expect("notified in time")
                .expect("still listening");
            assert_eq!(got, wanted);
        }
    }
}

fn task_version(task_id: anchorage_core::TaskId, version: &str, code: &str) -> crate::TaskVersionRecord {
    crate::TaskVersionRecord {
        id: anchorage_core::TaskVersionId::new_random(),
        task_id,
        version: version.to_owned(),
        code: code.to_owned(),
        language: "typescript".to_owned(),
        description: None,
        browser_configuration: Some(json!({"tags": ["t"]})),
        deleted: false,
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
    }
}

#[tokio::test]
async fn tasks_keep_their_names_per_team_and_number_their_versions_once() {
    let Some((_dir, store)) = open().await else { return };
    let store: &dyn Store = store.as_ref();
    let alpha = store.create_team("alpha").await.expect("team");
    let beta = store.create_team("beta").await.expect("team");
    let now = Timestamp::now();
    let task = crate::TaskRecord {
        id: anchorage_core::TaskId::new_random(),
        team_id: alpha.id,
        name: "scrape".to_owned(),
        description: Some("d".to_owned()),
        deleted: false,
        created_at: now,
        updated_at: now,
    };
    store
        .create_task(&task, Some(&task_version(task.id, "draft", "YQ==")))
        .await
        .expect("created");
    let again = crate::TaskRecord {
        id: anchorage_core::TaskId::new_random(),
        ..task.clone()
    };
    assert!(matches!(
        store.create_task(&again, None).await,
        Err(StoreError::AlreadyExists(_))
    ));
    // Another team may use the name.
    let theirs = crate::TaskRecord {
        id: anchorage_core::TaskId::new_random(),
        team_id: beta.id,
        ..task.clone()
    };
    store.create_task(&theirs, None).await.expect("other team");
    assert_eq!(store.task(alpha.id, task.id).await.expect("get"), Some(task.clone()));
    assert_eq!(store.task(beta.id, task.id).await.expect("not theirs"), None);
    assert_eq!(
        store
            .task_named(alpha.id, "scrape")
            .await
            .expect("named")
            .map(|found| found.id),
        Some(task.id)
    );
    let (page, total) = store.list_tasks(alpha.id, 0, 10).await.expect("list");
    assert_eq!((page.len(), total), (1, 1));

    // Versions: deploys count up, a published number is saved as given, a
    // deleted number is not given again.
    let first = store
        .deploy_task_version(&task_version(task.id, "", "Yg=="))
        .await
        .expect("deploy");
    assert_eq!(first.version, "1");
    assert_eq!(first.browser_configuration, Some(json!({"tags": ["t"]})));
    let fifth = store
        .save_task_version(&task_version(task.id, "5", "Yw=="))
        .await
        .expect("publish");
    assert_eq!(fifth.version, "5");
    assert!(store
        .delete_task_version(task.id, "5", Timestamp::now())
        .await
        .expect("delete"));
    assert!(!store
        .delete_task_version(task.id, "5", Timestamp::now())
        .await
        .expect("gone"));
    let sixth = store
        .deploy_task_version(&task_version(task.id, "", "ZA=="))
        .await
        .expect("deploy");
    assert_eq!(sixth.version, "6");
    let names: Vec<String> = store
        .task_versions(task.id)
        .await
        .expect("versions")
        .into_iter()
        .map(|version| version.version)
        .collect();
    assert_eq!(names, ["draft", "1", "6"]);
    // The draft is saved over.
    let draft = store
        .save_task_version(&task_version(task.id, "draft", "ZQ=="))
        .await
        .expect("draft");
    assert_eq!(draft.code, "ZQ==");
    assert_eq!(store.task_versions(task.id).await.expect("versions").len(), 3);

    // Renaming onto another live task's name is refused.
    let other = crate::TaskRecord {
        id: anchorage_core::TaskId::new_random(),
        name: "other".to_owned(),
        ..task.clone()
    };
    store.create_task(&other, None).await.expect("other");
    let clash = crate::TaskRecord {
        name: "scrape".to_owned(),
        ..other.clone()
    };
    assert!(matches!(
        store.update_task(&clash).await,
        Err(StoreError::AlreadyExists(_))
    ));

    // Executions.
    let run = crate::ExecutionRecord {
        id: anchorage_core::ExecutionId::new_random(),
        team_id: alpha.id,
        task_id: Some(task.id),
        task_version_id: Some(first.id),
        version: "1".to_owned(),
        status: anchorage_core::ExecutionStatus::Running,
        output: None,
        error_message: None,
        session_id: None,
        node_id: Some(NODE),
        started_at: Timestamp::now(),
        execution_time_ms: None,
    };
    store.insert_execution(&run).await.expect("insert");
    let done = crate::ExecutionRecord {
        id: anchorage_core::ExecutionId::new_random(),
        status: anchorage_core::ExecutionStatus::Success,
        output: Some("{\"a\":1}".to_owned()),
        execution_time_ms: Some(12),
        ..run.clone()
    };
    store.insert_execution(&done).await.expect("insert");
    assert_eq!(
        store.execution(alpha.id, done.id).await.expect("get"),
        Some(done.clone())
    );
    assert_eq!(store.execution(beta.id, done.id).await.expect("not theirs"), None);
    let filter = crate::ExecutionFilter {
        team_id: alpha.id,
        task_id: task.id,
        status: Some(anchorage_core::ExecutionStatus::Success),
        version: Some("1".to_owned()),
        offset: 0,
        limit: 10,
    };
    let (found, total) = store.list_executions(&filter).await.expect("list");
    assert_eq!((found, total), (vec![done.clone()], 1));
    assert_eq!(
        store
            .cancel_executions_of(NODE, Timestamp::now(), "the node restarted")
            .await
            .expect("cancel"),
        1
    );
    let cancelled = store.execution_by_id(run.id).await.expect("get").expect("there");
    assert_eq!(cancelled.status, anchorage_core::ExecutionStatus::Cancelled);
    assert_eq!(cancelled.error_message.as_deref(), Some("the node restarted"));

    // A deleted task is gone with its versions, and frees its name.
    assert!(store
        .delete_task(alpha.id, task.id, Timestamp::now())
        .await
        .expect("delete"));
    assert!(!store
        .delete_task(alpha.id, task.id, Timestamp::now())
        .await
        .expect("gone"));
    assert_eq!(store.task(alpha.id, task.id).await.expect("get"), None);
    assert!(store.task_versions(task.id).await.expect("versions").is_empty());
    let reborn = crate::TaskRecord {
        id: anchorage_core::TaskId::new_random(),
        ..task.clone()
    };
    store.create_task(&reborn, None).await.expect("the name is free again");
}

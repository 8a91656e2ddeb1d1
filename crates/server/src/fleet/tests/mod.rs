//! Unit tests of the scheduling rules, against a fake launcher (browsers with
//! no process, `anchorage_browser::testing`) and an in-memory store that can
//! be told to fail or to hold a call. No Chromium; each runs in milliseconds
//! (the store-retry test waits its one-second delay).

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorage_browser::testing::{simulated_browser, BrowserHandle};
use anchorage_browser::{Browser, BrowserExit, LaunchError, LaunchRequest, Launcher};
use anchorage_core::{BatchId, RequestId, RequestStatus, SessionId, SessionStatus, TeamId, Timestamp};
use anchorage_store::{
    BatchRecord, BatchStore, LaunchFailure, NodeStore, QueueStore, RequestRecord, SessionRecord, SessionStore,
    SqliteStore, Store, StoreError, StoreResult, TeamStore,
};
use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::{BatchEnd, EndWait, Fleet, FleetParts, FleetSettings, StartOutcome};
use crate::metrics::Metrics;

mod cluster;

/// What the fake does with one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Comes up.
    Up,
    /// Fails at once.
    Fail,
}

/// A launcher whose browsers have no process. Launches can be held at a
/// gate (to keep them in flight) and told to fail.
#[derive(Default)]
struct FakeLauncher {
    script: Mutex<VecDeque<Behaviour>>,
    requests: Mutex<Vec<LaunchRequest>>,
    handles: Mutex<Vec<(String, BrowserHandle)>>,
    handed_out: Mutex<Vec<Option<Url>>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// While set, launches wait until a permit is added.
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    stopped: AtomicUsize,
    /// What its memory readings say, in bytes (`None`: it cannot tell).
    memory: Mutex<Option<u64>>,
}

impl FakeLauncher {
    fn then(&self, behaviours: &[Behaviour]) {
        self.script.lock().unwrap().extend(behaviours.iter().copied());
    }

    fn hold(&self) -> Arc<tokio::sync::Semaphore> {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        *self.gate.lock().unwrap() = Some(Arc::clone(&gate));
        gate
    }

    fn requests(&self) -> Vec<LaunchRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// First pages of the launches for sessions (not the pool), in launch order.
    fn session_urls(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|request| !request.ahead)
            .map(|request| {
                let host = request.initial_url.as_ref().and_then(Url::host_str).unwrap_or("-");
                host.trim_end_matches(".test").to_owned()
            })
            .collect()
    }

    /// How many of the browsers launched so far are still alive.
    fn alive(&self) -> usize {
        self.handles
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, handle)| !handle.is_gone())
            .count()
    }

    fn crash(&self, index: usize) {
        let mut handles = self.handles.lock().unwrap();
        handles[index].1.exit_by_itself(BrowserExit::Exited {
            status: "signal 11".to_owned(),
            clean: false,
        });
    }
}

#[async_trait]
impl Launcher for FakeLauncher {
    async fn launch(&self, request: &LaunchRequest, stop: CancellationToken) -> Result<Browser, LaunchError> {
        self.requests.lock().unwrap().push(request.clone());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let gate = self.gate.lock().unwrap().clone();
        let passed = match gate {
            Some(gate) => tokio::select! {
                permit = gate.acquire() => { permit.map(|permit| permit.forget()).is_ok() }
                () = stop.cancelled() => false,
            },
            None => !stop.is_cancelled(),
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !passed {
            self.stopped.fetch_add(1, Ordering::SeqCst);
            return Err(LaunchError::Stopped);
        }
        let behaviour = self.script.lock().unwrap().pop_front().unwrap_or(Behaviour::Up);
        match behaviour {
            Behaviour::Up => {
                let (browser, handle) = simulated_browser().map_err(LaunchError::Pipe)?;
                self.handles.lock().unwrap().push((request.name.clone(), handle));
                Ok(browser)
            }
            Behaviour::Fail => Err(LaunchError::Exited {
                status: "exit status 1".to_owned(),
                stderr_tail: "the fake was told to fail".to_owned(),
            }),
        }
    }

    async fn hand_out(&self, _browser: &Browser, initial_url: Option<&Url>) -> Result<(), anchorage_browser::CdpError> {
        self.handed_out.lock().unwrap().push(initial_url.cloned());
        Ok(())
    }

    fn ready(&self) -> bool {
        true
    }

    fn memory_in_use(&self) -> Option<anchorage_browser::MemoryUse> {
        let total_bytes = (*self.memory.lock().unwrap())?;
        Some(anchorage_browser::MemoryUse {
            total_bytes,
            ..Default::default()
        })
    }
}

/// The store's queue role over the in-memory store, with faults to order:
/// the one role whose faults these tests need (every other role is the
/// plain store's).
struct FaultyQueue {
    inner: Arc<SqliteStore>,
    /// `begin_launch` fails this many more times.
    begin_launch_failures: AtomicUsize,
    /// While set, `insert_request` tells `entered` and waits for `release`.
    insert_hold: Mutex<Option<(Arc<Notify>, Arc<Notify>)>>,
    /// While set, `finish_launch` (the row turning `running`) tells
    /// `entered` and waits for `release`.
    finish_hold: Mutex<Option<(Arc<Notify>, Arc<Notify>)>>,
}

#[async_trait]
impl QueueStore for FaultyQueue {
    async fn insert_request(
        &self,
        request: &RequestRecord,
        claimed_by: Option<anchorage_core::NodeId>,
        team_quota: Option<i64>,
    ) -> StoreResult<bool> {
        let hold = self.insert_hold.lock().unwrap().clone();
        if let Some((entered, release)) = hold {
            entered.notify_one();
            release.notified().await;
        }
        self.inner.insert_request(request, claimed_by, team_quota).await
    }
    async fn begin_launch(&self, request_id: RequestId, session: &SessionRecord) -> StoreResult<bool> {
        let fail = self
            .begin_launch_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
            .is_ok();
        if fail {
            return Err(StoreError::Unavailable("the database is locked by another process"));
        }
        self.inner.begin_launch(request_id, session).await
    }
    async fn claim_requests(
        &self,
        node: anchorage_core::NodeId,
        limit: i64,
        team_quota: Option<i64>,
        now: Timestamp,
    ) -> StoreResult<Vec<RequestRecord>> {
        self.inner.claim_requests(node, limit, team_quota, now).await
    }
    async fn team_load(&self, team_id: TeamId, now: Timestamp) -> StoreResult<i64> {
        self.inner.team_load(team_id, now).await
    }
    async fn queued_requests(&self) -> StoreResult<i64> {
        self.inner.queued_requests().await
    }
    async fn request(&self, team_id: TeamId, request_id: RequestId) -> StoreResult<Option<RequestRecord>> {
        self.inner.request(team_id, request_id).await
    }
    async fn cancel_pending_request(&self, request_id: RequestId, at: Timestamp) -> StoreResult<bool> {
        self.inner.cancel_pending_request(request_id, at).await
    }
    async fn finish_launch(&self, request_id: RequestId, session_id: SessionId, at: Timestamp) -> StoreResult<bool> {
        let hold = self.finish_hold.lock().unwrap().clone();
        if let Some((entered, release)) = hold {
            entered.notify_one();
            release.notified().await;
        }
        self.inner.finish_launch(request_id, session_id, at).await
    }
    async fn fail_launch(
        &self,
        request_id: RequestId,
        session_id: SessionId,
        error: &str,
        at: Timestamp,
    ) -> StoreResult<LaunchFailure> {
        self.inner.fail_launch(request_id, session_id, error, at).await
    }
}

/// A fleet over the fake launcher and the faulty store, with two teams.
struct Harness {
    /// Where the store's file is.
    _dir: tempfile::TempDir,
    fleet: Arc<Fleet>,
    store: Arc<SqliteStore>,
    queue: Arc<FaultyQueue>,
    launcher: Arc<FakeLauncher>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    team_a: TeamId,
    team_b: TeamId,
}

fn settings() -> FleetSettings {
    FleetSettings {
        max_sessions: 4,
        launch_concurrency: 4,
        team_max_sessions: None,
        pool_size: 0,
        pool_refill_delay: Duration::ZERO,
        // Timeouts never fire during a test.
        timeout_minute: Duration::from_secs(3600),
        default_recording: false,
        default_headless: true,
        session_isolation: anchorage_core::Isolation::Browser,
        contexts_per_host: 20,
        hosts_shared_by_teams: false,
        max_memory: None,
        host_max_memory: None,
    }
}

/// The node the fleet under test runs as.
const NODE: anchorage_core::NodeId = anchorage_core::NodeId::from_u128(0x0a0b);

async fn harness(settings: FleetSettings) -> Harness {
    let (dir, store) = crate::test_support::file_store().await;
    let store = Arc::new(store);
    let queue = Arc::new(FaultyQueue {
        inner: Arc::clone(&store),
        begin_launch_failures: AtomicUsize::new(0),
        insert_hold: Mutex::new(None),
        finish_hold: Mutex::new(None),
    });
    let team_a = store.create_team("a").await.unwrap().id;
    let team_b = store.create_team("b").await.unwrap().id;
    // Registered for longer than a test runs, so its claims hold.
    store
        .register_node(&anchorage_store::NodeRecord {
            id: NODE,
            url: "http://127.0.0.1:1".into(),
            max_sessions: settings.max_sessions as i64,
            started_at: Timestamp::now(),
            lease_until: Timestamp::from_millis(Timestamp::now().as_millis() + 3_600_000),
            live_sessions: 0,
        })
        .await
        .unwrap();
    let launcher = Arc::new(FakeLauncher::default());
    if settings.max_memory.is_some() {
        // Readable from the first reading on.
        *launcher.memory.lock().unwrap() = Some(0);
    }
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let metrics = Arc::new(Metrics::default());
    let fleet = Fleet::new(
        FleetParts {
            store: Arc::clone(&store) as Arc<dyn Store>,
            queue: Arc::clone(&queue) as Arc<dyn QueueStore>,
            launcher: Arc::clone(&launcher) as Arc<dyn Launcher>,
            cluster: Arc::new(crate::cluster::SingleNode::new(NODE)),
            metrics: Arc::clone(&metrics),
            files: Default::default(),
            adblock: None,
        },
        settings,
        shutdown.clone(),
        tasks.clone(),
    );
    fleet.start().await.unwrap();
    Harness {
        _dir: dir,
        fleet,
        store,
        queue,
        launcher,
        metrics,
        shutdown,
        tasks,
        team_a,
        team_b,
    }
}

/// A start body whose `initial_url` host names it, so that launch order can
/// be read off the launcher.
fn body(name: &str) -> Value {
    json!({"session": {"initial_url": format!("http://{name}.test/")}})
}

fn request(team_id: TeamId, configuration: Value) -> RequestRecord {
    let options = anchorage_core::SessionOptions::from_configuration(&configuration).unwrap();
    RequestRecord::pending(team_id, None, configuration, options, Timestamp::now())
}

/// Shuts the fleet's tasks down and checks that every one of them ends.
async fn shut_down(shutdown: &CancellationToken, tasks: &TaskTracker) {
    shutdown.cancel();
    tasks.close();
    tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .expect("every task ends at shutdown");
}

/// Waits (polling, with a deadline) until `condition` holds.
async fn eventually(what: &str, condition: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(5), condition).await;
}

async fn eventually_within(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

impl Harness {
    async fn submit(&self, team_id: TeamId, configuration: Value) -> RequestId {
        let request = request(team_id, configuration);
        let id = request.id;
        self.fleet.submit(request).await.unwrap();
        id
    }

    async fn submit_batch(&self, team_id: TeamId, names: &[&str]) -> BatchId {
        let batch = BatchRecord {
            id: BatchId::new_random(),
            team_id,
            api_key_id: None,
            total_requests: names.len() as i64,
            configuration: json!({}),
            metadata: None,
            created_at: Timestamp::now(),
        };
        let items = names
            .iter()
            .enumerate()
            .map(|(index, name)| RequestRecord {
                batch_id: Some(batch.id),
                item_index: index as i64,
                ..request(team_id, body(name))
            })
            .collect();
        self.fleet.submit_batch(&batch, items).await.unwrap();
        batch.id
    }

    async fn request_status(&self, team_id: TeamId, request_id: RequestId) -> RequestRecord {
        self.store.request(team_id, request_id).await.unwrap().unwrap()
    }

    /// Live sessions: connectable, a moment before their rows say `running`
    /// (see [`Harness::wait_completed`]).
    fn running(&self) -> usize {
        self.fleet.gauges().running_sessions
    }

    /// Waits until the request is recorded `completed` (its session's row
    /// `running`), which follows the session being live.
    async fn wait_completed(&self, team_id: TeamId, request_id: RequestId) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.request_status(team_id, request_id).await.status != RequestStatus::Completed {
            assert!(tokio::time::Instant::now() < deadline, "the request never completed");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Ends the session launched for `name` and waits until it is gone.
    async fn end_named(&self, name: &str) {
        let session_id = self.session_for(name);
        self.fleet
            .end_session(session_id, SessionStatus::Completed, "test")
            .await
            .unwrap();
    }

    fn session_for(&self, name: &str) -> SessionId {
        let url = format!("http://{name}.test/");
        let request = self
            .launcher
            .requests()
            .into_iter()
            .rev()
            .find(|request| request.initial_url.as_ref().map(Url::as_str) == Some(url.as_str()))
            .unwrap();
        SessionId::from(uuid::Uuid::parse_str(&request.name).unwrap())
    }

    async fn stop(self) {
        shut_down(&self.shutdown, &self.tasks).await;
    }
}

#[tokio::test]
async fn teams_take_turns_and_each_team_keeps_its_order() {
    let harness = harness(FleetSettings {
        max_sessions: 1,
        launch_concurrency: 1,
        ..settings()
    })
    .await;
    harness.submit_batch(harness.team_a, &["a0", "a1", "a2"]).await;
    eventually("a0 runs", || harness.running() == 1).await;
    // A single start of another team, late, is next: not behind the batch.
    harness.submit(harness.team_b, body("b0")).await;
    for name in ["a0", "b0", "a1", "a2"] {
        eventually("one session runs", || harness.running() == 1).await;
        assert_eq!(harness.launcher.session_urls().last().map(String::as_str), Some(name));
        harness.end_named(name).await;
    }
    assert_eq!(harness.launcher.session_urls(), ["a0", "b0", "a1", "a2"]);
    harness.stop().await;
}

#[tokio::test]
async fn starts_wait_while_the_browsers_use_the_memory_limit_and_go_when_it_frees() {
    const MIB: u64 = 1024 * 1024;
    let harness = harness(FleetSettings {
        max_memory: Some(500 * MIB),
        ..settings()
    })
    .await;
    *harness.launcher.memory.lock().unwrap() = Some(600 * MIB);
    eventually("a reading saw 600 MiB", || {
        harness.fleet.gauges().memory_in_use == 600 * MIB
    })
    .await;
    let waiting = harness.submit(harness.team_a, body("a0")).await;
    // Two more readings: still over the limit, nothing launched.
    let reading = harness.fleet.memory.readings_begun();
    eventually_within("two more readings", Duration::from_secs(10), || {
        harness.fleet.memory.readings_begun() >= reading + 2
    })
    .await;
    assert!(
        harness.launcher.requests().is_empty(),
        "a start launched over the memory limit"
    );
    assert_eq!(harness.store.queued_requests().await.unwrap(), 1);
    assert_eq!(
        harness.fleet.room(),
        0,
        "a node over its memory limit claims no shared work"
    );
    // Memory frees (a session elsewhere ended): the start goes.
    *harness.launcher.memory.lock().unwrap() = Some(100 * MIB);
    eventually_within("a0 runs", Duration::from_secs(10), || harness.running() == 1).await;
    harness.wait_completed(harness.team_a, waiting).await;
    // What it was expected to take is given back once a reading has seen it.
    eventually_within("nothing reserved", Duration::from_secs(10), || {
        harness.fleet.gauges().memory_reserved == 0
    })
    .await;
    harness.stop().await;
}

#[tokio::test]
async fn a_team_at_its_quota_waits_while_other_teams_go_on() {
    let harness = harness(FleetSettings {
        team_max_sessions: Some(1),
        ..settings()
    })
    .await;
    harness.submit_batch(harness.team_a, &["a0", "a1"]).await;
    eventually("a0 runs", || harness.running() == 1).await;
    harness.submit(harness.team_b, body("b0")).await;
    eventually("a0 and b0 run", || harness.running() == 2).await;
    assert!(harness.fleet.team_over_quota(harness.team_a).await.unwrap());
    assert_eq!(harness.store.queued_requests().await.unwrap(), 1);
    harness.end_named("a0").await;
    eventually("a1 runs", || harness.launcher.session_urls().len() == 3).await;
    assert_eq!(harness.launcher.session_urls(), ["a0", "b0", "a1"]);
    harness.stop().await;
}

#[tokio::test]
async fn no_more_launches_at_once_than_the_launch_concurrency_and_no_more_places_than_max_sessions() {
    let harness = harness(FleetSettings {
        max_sessions: 3,
        launch_concurrency: 2,
        ..settings()
    })
    .await;
    let gate = harness.launcher.hold();
    harness
        .submit_batch(harness.team_a, &["a0", "a1", "a2", "a3", "a4"])
        .await;
    eventually("two launches are in flight", || {
        harness.launcher.in_flight.load(Ordering::SeqCst) == 2
    })
    .await;
    gate.add_permits(10);
    eventually("three run", || harness.running() == 3).await;
    assert_eq!(harness.launcher.most_in_flight.load(Ordering::SeqCst), 2);
    assert_eq!(harness.store.queued_requests().await.unwrap(), 2);
    harness.end_named("a0").await;
    eventually("a3 runs in a0's place", || {
        harness.running() == 3 && harness.launcher.session_urls().len() == 4
    })
    .await;
    assert_eq!(harness.store.queued_requests().await.unwrap(), 1);
    harness.stop().await;
}

#[tokio::test]
async fn a_pooled_browser_is_handed_to_a_default_start_and_the_pool_refills() {
    let harness = harness(FleetSettings {
        pool_size: 1,
        ..settings()
    })
    .await;
    eventually("the pool is full", || harness.fleet.gauges().pooled_browsers == 1).await;
    assert!(harness.launcher.requests()[0].ahead);
    let request_id = harness.submit(harness.team_a, body("a0")).await;
    eventually("the session runs", || harness.running() == 1).await;
    // The pooled browser was handed out (no launch for the session), with
    // its initial_url opened at handout.
    assert!(harness.launcher.session_urls().is_empty());
    assert_eq!(
        harness.launcher.handed_out.lock().unwrap().clone(),
        vec![Some(Url::parse("http://a0.test/").unwrap())]
    );
    harness.wait_completed(harness.team_a, request_id).await;
    eventually("the pool refilled", || harness.fleet.gauges().pooled_browsers == 1).await;
    assert_eq!(
        harness
            .launcher
            .requests()
            .iter()
            .filter(|request| request.ahead)
            .count(),
        2
    );
    // A start with another window cannot use it and launches cold.
    harness
        .submit(
            harness.team_a,
            json!({"browser": {"viewport": {"width": 800, "height": 600}}}),
        )
        .await;
    eventually("it runs", || harness.running() == 2).await;
    assert_eq!(
        harness.launcher.requests().last().map(|request| request.window),
        Some((800, 600))
    );
    harness.stop().await;
}

#[tokio::test]
async fn the_pool_gives_its_place_up_when_the_server_is_full() {
    let harness = harness(FleetSettings {
        max_sessions: 1,
        pool_size: 1,
        ..settings()
    })
    .await;
    eventually("the pool is full", || harness.fleet.gauges().pooled_browsers == 1).await;
    harness
        .submit(
            harness.team_a,
            json!({"browser": {"viewport": {"width": 800, "height": 600}}}),
        )
        .await;
    eventually("the cold start runs", || harness.running() == 1).await;
    // The pooled browser was ended to make room; only the session's lives.
    assert_eq!(harness.fleet.gauges().pooled_browsers, 0);
    assert_eq!(harness.launcher.alive(), 1);
    harness.stop().await;
}

#[tokio::test]
async fn a_cancel_during_launch_stops_the_launches_and_nothing_of_the_batch_starts_later() {
    let harness = harness(FleetSettings {
        launch_concurrency: 2,
        ..settings()
    })
    .await;
    let gate = harness.launcher.hold();
    let batch_id = harness.submit_batch(harness.team_a, &["a0", "a1", "a2"]).await;
    eventually("two launches are in flight", || {
        harness.launcher.in_flight.load(Ordering::SeqCst) == 2
    })
    .await;
    let ended = harness.fleet.cancel_batch(harness.team_a, batch_id).await.unwrap();
    assert!(matches!(ended, BatchEnd::Done(_)), "{ended:?}");
    // Both launches were stopped before the cancel answered.
    assert_eq!(harness.launcher.stopped.load(Ordering::SeqCst), 2);
    gate.add_permits(10);
    let items = harness.store.batch_items(batch_id).await.unwrap();
    assert!(items.iter().all(|item| item.request.status == RequestStatus::Cancelled));
    assert_eq!(harness.store.queued_requests().await.unwrap(), 0);
    assert_eq!(harness.launcher.requests().len(), 2);
    assert_eq!(harness.running(), 0);
    harness.stop().await;
}

#[tokio::test]
async fn a_failed_launch_is_tried_once_more_and_every_try_is_counted() {
    let harness = harness(settings()).await;
    harness.launcher.then(&[Behaviour::Fail, Behaviour::Up]);
    let ticket = harness
        .fleet
        .submit_waiting(request(harness.team_a, body("a0")))
        .await
        .unwrap();
    assert!(matches!(ticket.outcome().await, Some(StartOutcome::Started(_))));
    assert_eq!(harness.launcher.session_urls(), ["a0", "a0"]);
    assert_eq!(harness.metrics.launch_counts(), (2, 1));

    harness.launcher.then(&[Behaviour::Fail, Behaviour::Fail]);
    let ticket = harness
        .fleet
        .submit_waiting(request(harness.team_a, body("a1")))
        .await
        .unwrap();
    let request_id = ticket.request_id();
    assert!(matches!(ticket.outcome().await, Some(StartOutcome::Failed(_))));
    assert_eq!(
        harness.request_status(harness.team_a, request_id).await.status,
        RequestStatus::Failed
    );
    assert_eq!(harness.metrics.launch_counts(), (4, 3));
    harness.stop().await;
}

#[tokio::test]
async fn a_browser_that_dies_ends_its_session_and_frees_its_place() {
    let harness = harness(FleetSettings {
        max_sessions: 1,
        ..settings()
    })
    .await;
    harness.submit(harness.team_a, body("a0")).await;
    harness.submit(harness.team_a, body("a1")).await;
    eventually("a0 runs", || harness.running() == 1).await;
    let a0 = harness.session_for("a0");
    harness.launcher.crash(0);
    eventually("a1 runs in its place", || harness.launcher.session_urls().len() == 2).await;
    let session = harness.store.session(harness.team_a, a0).await.unwrap().unwrap();
    assert_eq!(session.status, SessionStatus::Failed);
    harness.stop().await;
}

#[tokio::test]
async fn shutdown_ends_every_browser_and_tells_waiting_callers() {
    let harness = harness(FleetSettings {
        max_sessions: 1,
        pool_size: 0,
        ..settings()
    })
    .await;
    harness.submit(harness.team_a, body("a0")).await;
    eventually("a0 runs", || harness.running() == 1).await;
    let waiting = harness
        .fleet
        .submit_waiting(request(harness.team_a, body("a1")))
        .await
        .unwrap();
    let waiting_id = waiting.request_id();
    let outcome = tokio::spawn(waiting.outcome());
    harness.shutdown.cancel();
    assert_eq!(outcome.await.unwrap(), None);
    let launcher = Arc::clone(&harness.launcher);
    let (store, team_a) = (Arc::clone(&harness.store), harness.team_a);
    harness.stop().await;
    assert_eq!(launcher.alive(), 0);
    // The waiting start stays pending for the next run.
    let request = store.request(team_a, waiting_id).await.unwrap().unwrap();
    assert_eq!(request.status, RequestStatus::Pending);
}

/// Defect: a store error at `begin_launch` stranded the start (never
/// re-queued, its waiter never told), so a synchronous start hung.
#[tokio::test]
async fn a_store_error_when_a_launch_begins_answers_the_caller_and_the_request_is_tried_again() {
    let harness = harness(settings()).await;
    harness.queue.begin_launch_failures.store(1, Ordering::SeqCst);
    let ticket = harness
        .fleet
        .submit_waiting(request(harness.team_a, body("a0")))
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), ticket.outcome())
        .await
        .expect("the caller is answered");
    assert!(matches!(outcome, Some(StartOutcome::Unavailable(_))), "{outcome:?}");
    // An asynchronous start, with nobody to tell, is tried again and runs.
    harness.queue.begin_launch_failures.store(1, Ordering::SeqCst);
    let request_id = harness.submit(harness.team_b, body("b0")).await;
    eventually("b0 runs", || harness.running() == 1).await;
    harness.wait_completed(harness.team_b, request_id).await;
    // The synchronous one was withdrawn when its caller got the error.
    assert_eq!(harness.launcher.session_urls(), ["b0"]);
    harness.stop().await;
}

/// Defect: the abandon guard of a synchronous start was armed only after the
/// insert, so a caller that left during it left a request nobody waited for.
#[tokio::test]
async fn a_caller_that_leaves_while_its_start_is_being_stored_leaves_nothing_behind() {
    let harness = harness(settings()).await;
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    *harness.queue.insert_hold.lock().unwrap() = Some((Arc::clone(&entered), Arc::clone(&release)));
    let start = request(harness.team_a, body("a0"));
    let request_id = start.id;
    let fleet = Arc::clone(&harness.fleet);
    let caller = tokio::spawn(async move { fleet.submit_waiting(start).await.map(|_| ()) });
    entered.notified().await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    *harness.queue.insert_hold.lock().unwrap() = None;
    release.notify_one();
    let (store, team_a) = (Arc::clone(&harness.store), harness.team_a);
    let mut status = RequestStatus::Pending;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !status.is_final() {
        assert!(tokio::time::Instant::now() < deadline, "the request is withdrawn");
        tokio::time::sleep(Duration::from_millis(2)).await;
        if let Some(request) = store.request(team_a, request_id).await.unwrap() {
            status = request.status;
        }
    }
    // Withdrawn before or after it launched: either way nothing runs.
    eventually("nothing runs", || {
        harness.running() == 0 && harness.launcher.alive() == 0
    })
    .await;
    assert!(matches!(status, RequestStatus::Cancelled | RequestStatus::Completed));
    harness.stop().await;
}

#[tokio::test]
async fn a_session_is_connectable_before_its_row_says_it_runs() {
    let harness = harness(settings()).await;
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    *harness.queue.finish_hold.lock().unwrap() = Some((Arc::clone(&entered), Arc::clone(&release)));
    let start = request(harness.team_a, body("a0"));
    let (request_id, team_a) = (start.id, harness.team_a);
    let fleet = Arc::clone(&harness.fleet);
    // The caller keeps its ticket: a dropped one withdraws the start.
    let caller = tokio::spawn(async move { fleet.submit_waiting(start).await.unwrap().outcome().await });
    // Held at the moment the row would turn `running`: whatever reads the
    // row next hands out the cdp_url, so the session must be live already.
    entered.notified().await;
    let session_id = harness
        .store
        .request(team_a, request_id)
        .await
        .unwrap()
        .and_then(|request| request.session_id)
        .expect("the launch has its session");
    assert!(
        harness.fleet.live_session(team_a, session_id).is_some(),
        "the row is about to say running, and the session is not connectable"
    );
    *harness.queue.finish_hold.lock().unwrap() = None;
    release.notify_one();
    assert!(
        matches!(caller.await.unwrap(), Some(StartOutcome::Started(id)) if id == session_id),
        "the caller is told it runs"
    );
    assert_eq!(harness.running(), 1);
    harness.stop().await;
}

#[tokio::test]
async fn a_session_ended_in_the_moment_before_its_row_runs_is_withdrawn_and_leaves_nothing() {
    let harness = harness(settings()).await;
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    *harness.queue.finish_hold.lock().unwrap() = Some((Arc::clone(&entered), Arc::clone(&release)));
    let start = request(harness.team_a, body("a0"));
    let (request_id, team_a) = (start.id, harness.team_a);
    let fleet = Arc::clone(&harness.fleet);
    // The caller keeps its ticket: a dropped one withdraws the start.
    let caller = tokio::spawn(async move { fleet.submit_waiting(start).await.unwrap().outcome().await });
    entered.notified().await;
    let session_id = harness
        .store
        .request(team_a, request_id)
        .await
        .unwrap()
        .and_then(|request| request.session_id)
        .expect("the launch has its session");
    // Ended by a client while the row still says `starting`.
    assert!(harness
        .fleet
        .end_session(session_id, SessionStatus::Completed, "a client")
        .await
        .unwrap());
    *harness.queue.finish_hold.lock().unwrap() = None;
    release.notify_one();
    let _ = caller.await.unwrap();
    eventually("nothing runs", || {
        harness.running() == 0 && harness.launcher.alive() == 0
    })
    .await;
    let row = harness.store.session(team_a, session_id).await.unwrap().expect("row");
    assert_eq!(row.status, SessionStatus::Completed);
    harness.stop().await;
}

#[tokio::test]
async fn an_end_answers_once_recorded_and_frees_the_place_when_the_browser_is_gone() {
    let harness = harness(FleetSettings {
        max_sessions: 1,
        ..settings()
    })
    .await;
    harness.submit(harness.team_a, body("a0")).await;
    eventually("a0 runs", || harness.running() == 1).await;
    let session_id = harness.session_for("a0");
    let first = harness
        .fleet
        .end_session_waiting(session_id, SessionStatus::Completed, "test", EndWait::Recorded)
        .await
        .unwrap();
    assert!(first);
    let session = harness
        .store
        .session(harness.team_a, session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.status, SessionStatus::Completed);
    // A second end finds it ended.
    let again = harness
        .fleet
        .end_session(session_id, SessionStatus::Completed, "test")
        .await
        .unwrap();
    assert!(!again);
    harness.submit(harness.team_a, body("a1")).await;
    eventually("a1 gets the freed place", || harness.launcher.session_urls().len() == 2).await;
    harness.stop().await;
}

//! The rules between nodes, over an in-process cluster (`cluster::fake`):
//! several fleets, each with its own fake launcher, on one in-memory store,
//! calling each other directly. No PostgreSQL, HTTP or Chromium.

use anchorage_core::NodeId;
use anchorage_store::NodeRecord;

use super::*;
use crate::cluster::fake::{Call, FakeNet};

/// One node of a test cluster.
struct Node {
    id: NodeId,
    fleet: Arc<Fleet>,
    launcher: Arc<FakeLauncher>,
}

/// Fleets on one store, wired by one [`FakeNet`].
struct Nodes {
    store: Arc<dyn Store>,
    net: Arc<FakeNet>,
    nodes: Vec<Node>,
    team: TeamId,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// A lease that outlasts any test.
fn lease_for_an_hour() -> Timestamp {
    Timestamp::from_millis(Timestamp::now().as_millis() + 3_600_000)
}

/// `count` nodes of `max_sessions` places each.
async fn nodes(count: u128, max_sessions: usize) -> Nodes {
    // In memory: several fleets write at once, which a file's locks would
    // slow to a second; nothing here reads the store after the shutdown.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
    let team = store.create_team("a").await.unwrap().id;
    let net = Arc::new(FakeNet::default());
    let (shutdown, tasks) = (CancellationToken::new(), TaskTracker::new());
    let mut nodes = Vec::new();
    for index in 0..count {
        let id = NodeId::from_u128(0x100 + index);
        store
            .register_node(&NodeRecord {
                id,
                url: format!("http://node{index}.test"),
                max_sessions: max_sessions as i64,
                started_at: Timestamp::now(),
                lease_until: lease_for_an_hour(),
                live_sessions: 0,
            })
            .await
            .unwrap();
        let launcher = Arc::new(FakeLauncher::default());
        let fleet = Fleet::new(
            FleetParts {
                store: Arc::clone(&store),
                queue: Arc::clone(&store) as Arc<dyn anchorage_store::QueueStore>,
                launcher: Arc::clone(&launcher) as Arc<dyn Launcher>,
                cluster: net.node(id, Arc::clone(&store)),
                metrics: Arc::default(),
                files: Default::default(),
                adblock: None,
            },
            FleetSettings {
                max_sessions,
                launch_concurrency: max_sessions,
                ..settings()
            },
            shutdown.clone(),
            tasks.clone(),
        );
        net.join(id, &fleet);
        fleet.start().await.unwrap();
        nodes.push(Node { id, fleet, launcher });
    }
    Nodes {
        store,
        net,
        nodes,
        team,
        shutdown,
        tasks,
    }
}

impl Nodes {
    /// A batch of `size` default starts, submitted at node `at`.
    async fn batch(&self, at: usize, size: usize) -> BatchId {
        let batch = BatchRecord {
            id: BatchId::new_random(),
            team_id: self.team,
            api_key_id: None,
            total_requests: size as i64,
            configuration: json!({}),
            metadata: None,
            created_at: Timestamp::now(),
        };
        let items = (0..size)
            .map(|index| RequestRecord {
                batch_id: Some(batch.id),
                item_index: index as i64,
                ..request(self.team, json!({}))
            })
            .collect();
        self.nodes[at].fleet.submit_batch(&batch, items).await.unwrap();
        batch.id
    }

    /// A session started by node `at` itself; its id.
    async fn session_on(&self, at: usize) -> SessionId {
        let ticket = self.nodes[at]
            .fleet
            .submit_waiting_here(request(self.team, json!({})))
            .await
            .unwrap();
        match ticket.outcome().await {
            Some(StartOutcome::Started(session_id)) => session_id,
            other => panic!("the start did not start: {other:?}"),
        }
    }

    /// Ends `session_id` through node `at`; whether that ended it.
    async fn end_from(&self, at: usize, session_id: SessionId) -> bool {
        self.nodes[at]
            .fleet
            .end_session(session_id, SessionStatus::Completed, "test")
            .await
            .unwrap()
    }

    fn running(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|node| node.fleet.gauges().running_sessions)
            .collect()
    }

    fn alive(&self) -> usize {
        self.nodes.iter().map(|node| node.launcher.alive()).sum()
    }

    /// Waits until no node has anything queued or a change its scheduler
    /// has not looked at, so that what would start has started.
    async fn settled(&self) {
        eventually("every scheduler settled", || {
            self.nodes.iter().all(|node| {
                let gauges = node.fleet.gauges();
                gauges.queued_requests == 0 && gauges.unseen_admission_changes == 0
            })
        })
        .await;
    }

    async fn stop(self) {
        shut_down(&self.shutdown, &self.tasks).await;
    }
}

/// Three nodes of two places, a batch of eight: six run, two on each node,
/// and two wait in the shared queue.
async fn six_running_across_three() -> (Nodes, BatchId) {
    let nodes = nodes(3, 2).await;
    let batch_id = nodes.batch(0, 8).await;
    eventually("six run, two on each node", || nodes.running() == [2, 2, 2]).await;
    (nodes, batch_id)
}

#[tokio::test]
async fn a_batch_cancel_counts_every_nodes_ended_sessions_and_calls_each_other_node_once() {
    let (nodes, batch_id) = six_running_across_three().await;
    let answer = nodes.nodes[0].fleet.cancel_batch(nodes.team, batch_id).await.unwrap();
    assert_eq!(
        answer,
        BatchEnd::Done(crate::fleet::batches::Ended {
            ended: 6,
            errors: Vec::new()
        })
    );
    // Every browser was gone when it answered.
    assert_eq!(nodes.alive(), 0);
    assert_eq!(nodes.running(), [0, 0, 0]);
    // One stop per other node, and no end of a single session besides.
    let calls = nodes.net.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for node in &nodes.nodes[1..] {
        assert!(calls.contains(&Call::StopBatch { to: node.id, batch_id }), "{calls:?}");
    }
    // The batch's event streams on the other nodes are told.
    assert!(nodes
        .net
        .published()
        .contains(&(nodes.nodes[0].id, crate::cluster::Signal::Batch(batch_id))));
    // Nothing of it starts later, on any node.
    nodes.settled().await;
    assert_eq!(nodes.running(), [0, 0, 0]);
    assert_eq!(nodes.store.queued_requests().await.unwrap(), 0);
    let summary = nodes.store.batch(nodes.team, batch_id).await.unwrap().unwrap();
    assert_eq!(summary.counts.cancelled, 2, "{summary:?}");
    nodes.stop().await;
}

#[tokio::test]
async fn of_racing_cancels_on_three_nodes_one_wins_and_counts_all_six() {
    let (nodes, batch_id) = six_running_across_three().await;
    let (first, second, third) = tokio::join!(
        nodes.nodes[0].fleet.cancel_batch(nodes.team, batch_id),
        nodes.nodes[1].fleet.cancel_batch(nodes.team, batch_id),
        nodes.nodes[2].fleet.cancel_batch(nodes.team, batch_id),
    );
    let answers = [first.unwrap(), second.unwrap(), third.unwrap()];
    let winners: Vec<&BatchEnd> = answers
        .iter()
        .filter(|answer| matches!(answer, BatchEnd::Done(_)))
        .collect();
    assert_eq!(
        winners,
        [&BatchEnd::Done(crate::fleet::batches::Ended {
            ended: 6,
            errors: Vec::new()
        })],
        "{answers:?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|answer| matches!(answer, BatchEnd::Conflict(_)))
            .count(),
        2,
        "{answers:?}"
    );
    assert_eq!(nodes.alive(), 0);
    // The winner alone called the others, once each.
    let stops = nodes
        .net
        .calls()
        .into_iter()
        .filter(|call| matches!(call, Call::StopBatch { .. }))
        .count();
    assert_eq!(stops, 2);
    nodes.stop().await;
}

#[tokio::test]
async fn a_node_that_cannot_be_reached_is_called_once_and_its_sessions_are_reported() {
    let (nodes, batch_id) = six_running_across_three().await;
    nodes.net.cut_off(nodes.nodes[2].id);
    let BatchEnd::Done(ended) = nodes.nodes[0].fleet.cancel_batch(nodes.team, batch_id).await.unwrap() else {
        panic!("the cancel did not go through");
    };
    assert_eq!(ended.ended, 4, "{ended:?}");
    assert_eq!(ended.errors.len(), 2, "{ended:?}");
    // Its browsers still run (it was never reached), and it was not called twice.
    assert_eq!(nodes.nodes[2].launcher.alive(), 2);
    assert_eq!(nodes.net.calls().len(), 2, "{:?}", nodes.net.calls());
    nodes.stop().await;
}

#[tokio::test]
async fn an_end_of_a_session_another_node_runs_is_passed_there_once() {
    let nodes = nodes(2, 2).await;
    let session_id = nodes.session_on(1).await;
    assert_eq!(nodes.nodes[1].launcher.alive(), 1);
    let ended = nodes.end_from(0, session_id).await;
    assert!(ended);
    assert_eq!(
        nodes.net.calls(),
        [Call::EndSession {
            to: nodes.nodes[1].id,
            session_id
        }]
    );
    // Gone when the end answered.
    assert_eq!(nodes.nodes[1].launcher.alive(), 0);
    assert_eq!(nodes.running(), [0, 0]);
    // A second end finds it ended, at its node.
    let again = nodes.end_from(0, session_id).await;
    assert!(!again);
    nodes.stop().await;
}

#[tokio::test]
async fn an_end_of_a_session_of_a_lost_node_is_recorded_here_without_a_call() {
    let nodes = nodes(2, 2).await;
    let session_id = nodes.session_on(1).await;
    // Node 1's lease ran out: it is lost, as far as the others can tell.
    assert!(nodes
        .store
        .renew_node(
            nodes.nodes[1].id,
            Timestamp::from_millis(Timestamp::now().as_millis() - 1)
        )
        .await
        .unwrap());
    let ended = nodes.end_from(0, session_id).await;
    assert!(ended);
    assert!(nodes.net.calls().is_empty(), "{:?}", nodes.net.calls());
    let record = nodes.store.session(nodes.team, session_id).await.unwrap().unwrap();
    assert_eq!(record.status, SessionStatus::Completed);
    nodes.stop().await;
}

#[tokio::test]
async fn a_start_no_node_has_room_for_waits_and_is_served_when_a_place_frees() {
    let nodes = nodes(2, 1).await;
    let first = nodes.session_on(0).await;
    let second = nodes.session_on(1).await;
    let third = request(nodes.team, json!({}));
    let third_id = third.id;
    nodes.nodes[0].fleet.submit(third).await.unwrap();
    nodes.settled().await;
    assert_eq!(nodes.running(), [1, 1]);
    let waiting = nodes.store.request(nodes.team, third_id).await.unwrap().unwrap();
    assert_eq!(waiting.status, RequestStatus::Pending);
    // A place frees on node 1 (ended from node 0): the start is served there.
    assert!(nodes.end_from(0, second).await);
    let mut served = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while served.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the waiting start was never served"
        );
        let request = nodes.store.request(nodes.team, third_id).await.unwrap().unwrap();
        served = request
            .session_id
            .filter(|_| request.status == RequestStatus::Completed);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(nodes.running(), [1, 1]);
    assert_eq!(nodes.nodes[1].launcher.alive(), 1);
    assert!(nodes.nodes[0].fleet.live_session_any_team(first).is_some());
    nodes.stop().await;
}

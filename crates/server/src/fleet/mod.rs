//! The fleet: every live session of this server, and the one provisioning
//! pipeline that starts them, for single starts and batches alike.
//!
//! Start requests are persisted rows (see `anchorage_core::request`) before
//! anything launches. The fleet is made of parts with one job each:
//!
//! - [`admission`]: the queue and the limits a start must pass (a place, its
//!   team's quota, a launch permit), in fair order across teams;
//! - [`pool`]: browsers launched ahead, and when a refill may start;
//! - [`memory`]: the memory the browsers may use, read from time to time,
//!   and what admitted starts reserve until a reading sees them;
//! - `provision.rs`: the provisioning of one admitted start, from the
//!   store's `begin_launch` to a running session, with one exit that does the
//!   bookkeeping (tell the waiter, re-queue, publish the batch change);
//! - `session.rs`: the supervisor that owns a running browser until it ends;
//! - `batches.rs`: cancel, delete and retry of a batch.
//!
//! Browsers come from a [`Launcher`]: Chromium in the server, a fake in the
//! unit tests of these rules (`tests.rs`). The store is updated with
//! conditional writes, so a cancel or end racing a launch has one winner,
//! and the loser's browser is killed at once.

mod admission;
mod batches;
mod hosts;
mod memory;
mod plan;
mod pool;
mod provision;
mod session;
#[cfg(test)]
mod tests;

use crate::cluster::{Cluster, Signal};
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorage_browser::{Browser, LaunchError, LaunchRequest, Launcher};
use anchorage_core::{BatchId, RequestId, RequestStatus, SessionId, SessionStatus, TeamId, Timestamp};
use anchorage_store::{QueueStore, RequestRecord, Store, StoreError};
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use batches::BatchEnd;
pub use session::{EndWait, LiveSession};

use admission::Admission;
use pool::{Pool, Pooled, Refill};

/// How a start request ended, for the caller waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The session is up.
    Started(SessionId),
    /// The browser could not be started.
    Failed(String),
    /// The request was withdrawn (cancel, end, shutdown) before it was up.
    Cancelled,
    /// The database could not record the launch; the request is still
    /// pending and is tried again shortly.
    Unavailable(String),
}

/// Settings of the scheduling (launch settings belong to the [`Launcher`]).
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// Running browsers at most (pooled ones included).
    pub max_sessions: usize,
    /// Launches at once at most.
    pub launch_concurrency: usize,
    /// Running (and launching) browsers of one team at most.
    pub team_max_sessions: Option<usize>,
    /// Browsers kept launched ahead for default starts.
    pub pool_size: usize,
    /// How long refills wait after a handout.
    pub pool_refill_delay: Duration,
    /// The length of a timeout minute (see `Config::timeout_minute`).
    pub timeout_minute: Duration,
    /// Whether a start that does not say is recorded.
    pub default_recording: bool,
    /// Whether a start that does not say runs headless.
    pub default_headless: bool,
    /// How a start that does not say is isolated.
    pub session_isolation: anchorage_core::Isolation,
    /// Context sessions one host browser serves at most.
    pub contexts_per_host: usize,
    /// Whether a host browser may serve several teams.
    pub hosts_shared_by_teams: bool,
    /// Bytes this node's browsers may use together (`None`: no limit).
    pub max_memory: Option<u64>,
    /// Bytes past which a host browser takes no more sessions and is
    /// retired when its last one ends (`None`: no limit).
    pub host_max_memory: Option<u64>,
}

/// How long a start whose launch the store could not record waits before
/// it is tried again.
const STORE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// How often a synchronous start looks at its request's row, for an
/// outcome another node reached.
const OTHER_NODE_OUTCOME_LOOK: Duration = Duration::from_millis(250);

/// How often a node with room looks for queued work even when nothing here
/// changed (work queued by another node, or left by a node that was lost).
const CLAIM_INTERVAL: Duration = Duration::from_millis(500);

/// A launch under way, so that a cancel can stop it and wait for it.
struct Launching {
    batch_id: Option<BatchId>,
    session_id: SessionId,
    abort: CancellationToken,
    done: CancellationToken,
}

/// Every live session, and the pipeline that starts them.
pub struct Fleet {
    store: Arc<dyn Store>,
    /// The store's queue role, which every start request goes through (the
    /// same object as `store` in the server; a fake of this role alone in
    /// the unit tests).
    queue: Arc<dyn QueueStore>,
    launcher: Arc<dyn Launcher>,
    /// The other nodes (and this node's id: it claims queued work as its
    /// own and is recorded on the sessions it runs; it must be registered,
    /// with a live lease, for its claims to hold).
    cluster: Arc<dyn Cluster>,
    settings: FleetSettings,
    admission: Arc<Admission>,
    pool: Pool,
    /// Host browsers of context sessions.
    hosts: Arc<hosts::Hosts>,
    /// The memory starts may use, and what the browsers use.
    memory: Arc<memory::MemoryBudget>,
    live: Mutex<HashMap<SessionId, Arc<LiveSession>>>,
    /// The caller of a synchronous start, per request.
    waiters: Mutex<HashMap<RequestId, oneshot::Sender<StartOutcome>>>,
    launching: Mutex<HashMap<RequestId, Launching>>,
    batch_changes: broadcast::Sender<BatchId>,
    /// Start requests another node brought to their outcome (see
    /// [`Signal::Request`]), for the callers waiting here.
    request_changes: broadcast::Sender<RequestId>,
    /// Counters for `/metrics`.
    metrics: Arc<Metrics>,
    /// The data dir's profiles, recordings and extensions.
    files: crate::files::SessionFiles,
    /// Ad blocking, when the node has filter lists.
    adblock: Option<Arc<anchorage_browser::adblock::Adblock>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Fleet")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// How long a launch that blocks ads waits for the node's first indexed
/// ruleset (an index launch takes a few seconds) before it goes without
/// (its browser then hides elements and blocks no request).
const INDEX_WAIT: Duration = Duration::from_secs(60);
/// How long an index launch may take to index the ruleset.
const INDEX_TIMEOUT: Duration = Duration::from_secs(60);

/// An index launch (ARCHITECTURE.md, "Ad blocking: where the engine runs"):
/// a browser given the unindexed ruleset, with component updates on, which
/// Chromium indexes as it starts; once the indexed file is there, the
/// browser is closed gracefully (so that its `Local State` names the
/// ruleset) and both are kept for every later browser.
async fn index_filter(
    launcher: &dyn Launcher,
    job: &anchorage_browser::adblock::IndexJob,
    stop: CancellationToken,
) -> Result<anchorage_browser::adblock::filter::IndexedFilter, String> {
    use anchorage_browser::adblock::filter;
    let mut request = plan::default_launch_request("index", false, true);
    request.setup.index_filter = Some((job.unindexed.clone(), job.version.clone()));
    let browser = launcher
        .launch(&request, stop.clone())
        .await
        .map_err(|error| error.to_string())?;
    let indexed = async {
        let profile = browser.profile_dir().ok_or("the browser has no profile")?.to_owned();
        let deadline = tokio::time::Instant::now() + INDEX_TIMEOUT;
        while !filter::is_indexed(&profile, &job.version) {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the browser did not index the ruleset within {} s",
                    INDEX_TIMEOUT.as_secs()
                ));
            }
            if browser.has_exited() || stop.is_cancelled() {
                return Err("the browser ended before it indexed the ruleset".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Chromium writes the file, then records it: a moment for the record.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !browser.close_gracefully(Duration::from_secs(10)).await {
            return Err("the browser did not close".to_owned());
        }
        let (job, profile) = (job.clone(), profile.clone());
        tokio::task::spawn_blocking(move || filter::read_indexed(&profile, &job.version, &job.keep_in))
            .await
            .map_err(|error| error.to_string())?
    }
    .await;
    browser.shut_down().await;
    indexed
}

/// Which queue a synchronous start goes into.
#[derive(Debug, Clone, Copy)]
enum Placement {
    /// This node's when it has room, else the shared one.
    HereIfRoom,
    /// This node's, whatever its room.
    Here,
}

/// A synchronous start, accepted. Dropping it before the outcome (the
/// client hung up) withdraws the request: a pending one is cancelled, a
/// launching or running one has its session ended.
pub struct StartTicket {
    fleet: Arc<Fleet>,
    team_id: TeamId,
    request_id: RequestId,
    receiver: Option<oneshot::Receiver<StartOutcome>>,
    /// Whether it went into the shared queue, where another node may serve it.
    shared: bool,
}

impl StartTicket {
    /// The request's id.
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }

    /// Waits for the outcome; `None` when the server shut down first (the
    /// request then stays pending for the next start).
    pub async fn outcome(mut self) -> Option<StartOutcome> {
        let receiver = self.receiver.as_mut()?;
        // In the shared queue another node may serve it: its outcome is then
        // read from the request's row. In this node's own queue, this node
        // alone tells it.
        let outcome = if self.shared {
            tokio::select! {
                outcome = receiver => outcome.ok(),
                outcome = self.fleet.outcome_in_store(self.team_id, self.request_id) => outcome,
            }
        } else {
            receiver.await.ok()
        };
        // Answered: nothing to withdraw, unless the store could not take
        // the launch, in which case the caller is told to go and the
        // request must not start behind its back.
        if !matches!(outcome, Some(StartOutcome::Unavailable(_))) {
            self.receiver = None;
        }
        outcome
    }
}

impl Drop for StartTicket {
    fn drop(&mut self) {
        if self.receiver.is_some() {
            let fleet = Arc::clone(&self.fleet);
            let (team_id, request_id) = (self.team_id, self.request_id);
            self.fleet
                .tasks
                .spawn(async move { fleet.abandon(team_id, request_id).await });
        }
    }
}

/// What the fleet works with: the outside worlds it reaches, each behind
/// its seam.
pub struct FleetParts {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The database's queue role: start requests, claims and a launch's
    /// steps (the same object as `store` but in tests that fake it).
    pub queue: Arc<dyn QueueStore>,
    /// Where browsers come from.
    pub launcher: Arc<dyn Launcher>,
    /// The other nodes.
    pub cluster: Arc<dyn Cluster>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The data dir's profiles, recordings and extensions, for the
    /// sessions it starts.
    pub files: crate::files::SessionFiles,
    /// Ad blocking, when the node has filter lists.
    pub adblock: Option<Arc<anchorage_browser::adblock::Adblock>>,
}

impl Fleet {
    /// A fleet with nothing running. Call [`Fleet::start`] to begin work.
    pub fn new(
        parts: FleetParts,
        settings: FleetSettings,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Self> {
        let FleetParts {
            store,
            queue,
            launcher,
            cluster,
            metrics,
            files,
            adblock,
        } = parts;
        Arc::new(Self {
            store,
            queue,
            launcher,
            cluster,
            admission: Admission::new(
                settings.max_sessions,
                settings.launch_concurrency,
                settings.team_max_sessions,
            ),
            pool: Pool::new(settings.pool_size, settings.pool_refill_delay),
            hosts: Arc::default(),
            memory: memory::MemoryBudget::new(settings.max_memory),
            settings,
            live: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            launching: Mutex::new(HashMap::new()),
            batch_changes: broadcast::channel(1024).0,
            request_changes: broadcast::channel(1024).0,
            metrics,
            files,
            adblock,
            shutdown,
            tasks,
        })
    }

    /// Begins the index launch the node's current compile of the lists
    /// needs, if it needs one (once per compile; a restart finds what an
    /// earlier run kept). The browser is counted in memory, not in places:
    /// a start that waits for it holds a place, and the index is made once
    /// per compile, for a few seconds.
    pub(crate) fn begin_index(&self) {
        let Some(adblock) = &self.adblock else {
            return;
        };
        let Some(job) = adblock.index_job() else {
            return;
        };
        let (launcher, adblock, stop, memory) = (
            Arc::clone(&self.launcher),
            Arc::clone(adblock),
            self.shutdown.child_token(),
            Arc::clone(&self.memory),
        );
        self.tasks.spawn(async move {
            let claim = memory.reserve(memory::BROWSER_GUESS);
            let started = Instant::now();
            let outcome = index_filter(launcher.as_ref(), &job, stop).await;
            drop(claim);
            match &outcome {
                Ok(_) => tracing::info!(
                    version = %job.version,
                    ms = started.elapsed().as_millis() as u64,
                    "the ad blocking ruleset is indexed: browsers block requests with it"
                ),
                Err(message) => tracing::warn!(
                    %message,
                    "the ad blocking ruleset could not be indexed; browsers hide elements but block no request until the lists change"
                ),
            }
            adblock.finish_index(&job.version, outcome);
        });
    }

    /// How a launch blocks ads with `adblock`: the extension, and the
    /// filter's indexed ruleset; a launch that comes before the node's first
    /// one is indexed waits for it (at most [`INDEX_WAIT`], or until
    /// `abort`).
    pub(crate) async fn adblock_setup(
        &self,
        adblock: Option<&Arc<anchorage_browser::adblock::Adblock>>,
        abort: &CancellationToken,
    ) -> Option<anchorage_browser::AdblockSetup> {
        let adblock = adblock?;
        self.begin_index();
        let mut changes = adblock.index_changes();
        let deadline = tokio::time::Instant::now() + INDEX_WAIT;
        while adblock.indexed().is_none() && adblock.is_indexing() {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                () = tokio::time::sleep_until(deadline) => break,
                () = abort.cancelled() => break,
                () = self.shutdown.cancelled() => break,
            }
        }
        Some(anchorage_browser::AdblockSetup {
            extension: adblock.extension(),
            filter: adblock.indexed(),
        })
    }

    /// The node's ad blocking, if a session with `options` gets it (it did
    /// not turn it off and the node has filter lists).
    pub(crate) fn adblock_for(
        &self,
        options: &anchorage_core::SessionOptions,
    ) -> Option<&Arc<anchorage_browser::adblock::Adblock>> {
        self.adblock.as_ref().filter(|_| !options.no_adblock)
    }

    /// The node's ad blocking, if it has filter lists.
    pub fn adblock(&self) -> Option<&Arc<anchorage_browser::adblock::Adblock>> {
        self.adblock.as_ref()
    }

    /// Running browsers at most on this node.
    pub fn max_sessions(&self) -> usize {
        self.settings.max_sessions
    }

    /// Starts the admission loop, which claims queued work (pending
    /// requests from before a restart included) as places free up.
    pub async fn start(self: &Arc<Self>) -> Result<(), StoreError> {
        let pending = self.queue.queued_requests().await?;
        if pending > 0 {
            tracing::info!(count = pending, "start requests are queued");
        }
        // Listening before the first claim, so that no signal is missed.
        if let Some(mut signals) = self.cluster.listen().await {
            let fleet = Arc::clone(self);
            self.tasks.spawn(async move {
                loop {
                    let signal = tokio::select! {
                        signal = signals.recv() => signal,
                        () = fleet.shutdown.cancelled() => return,
                    };
                    let Some(signal) = signal else { return };
                    fleet.signalled(signal);
                }
            });
            // What this node had claimed before it stopped is queued again.
            self.cluster.publish(Signal::Queued);
        }
        let fleet = Arc::clone(self);
        self.tasks.spawn(async move { fleet.run().await });
        let fleet = Arc::clone(self);
        self.tasks.spawn(async move { fleet.read_memory().await });
        Ok(())
    }

    /// Reads the browsers' memory from time to time, for admission, for
    /// retiring hosts that grew too large, and for `/metrics`.
    async fn read_memory(self: Arc<Self>) {
        loop {
            let index = self.memory.reading_begins();
            let began = Instant::now();
            let launcher = Arc::clone(&self.launcher);
            let reading = tokio::task::spawn_blocking(move || launcher.memory_in_use()).await;
            let Ok(Some(reading)) = reading else {
                tracing::warn!("the browsers' memory cannot be read here: starts do not wait for memory (ANCHORAGE_MAX_MEMORY_MIB)");
                self.memory.unreadable();
                return;
            };
            let was_allowed = self.memory.allows();
            self.memory.read(index, reading.total_bytes, reading.machine);
            if let Some(host_limit) = self.settings.host_max_memory {
                for (host, bytes) in self.hosts.close_oversized(&reading.by_group, host_limit) {
                    tracing::info!(
                        host,
                        mib = bytes / (1024 * 1024),
                        limit_mib = host_limit / (1024 * 1024),
                        "a host browser grew past ANCHORAGE_HOST_MAX_MEMORY_MIB: it takes no more sessions and ends with its last"
                    );
                }
            }
            if self.memory.allows() && (!was_allowed || self.admission.queued() > 0) {
                self.admission.wake();
            }
            let pause = (began.elapsed() * memory::READING_SPACING).max(memory::READING_INTERVAL);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// The live session with this id, if it belongs to `team_id`.
    pub fn live_session(&self, team_id: TeamId, session_id: SessionId) -> Option<Arc<LiveSession>> {
        self.live_session_any_team(session_id)
            .filter(|session| session.team_id == team_id)
    }

    /// The live session with this id, whoever owns it.
    pub fn live_session_any_team(&self, session_id: SessionId) -> Option<Arc<LiveSession>> {
        self.live.lock().ok()?.get(&session_id).cloned()
    }

    /// What the fleet holds now, for `/metrics`.
    pub fn gauges(&self) -> crate::metrics::Gauges {
        let (running_sessions, cdp_connections, context_sessions) = self
            .live
            .lock()
            .map(|live| {
                (
                    live.len(),
                    live.values().map(|session| session.client_count()).sum(),
                    live.values()
                        .filter(|session| session.devtools.scope().is_some())
                        .count(),
                )
            })
            .unwrap_or_default();
        crate::metrics::Gauges {
            running_sessions,
            cdp_connections,
            pooled_browsers: self.pool.len(),
            host_browsers: self.hosts.count(),
            context_sessions,
            queued_requests: self.admission.queued(),
            unseen_admission_changes: self.admission.unseen_changes(),
            memory_in_use: self.memory.measured(),
            memory_reserved: self.memory.reserved(),
            memory_limit: self.memory.limit(),
            memory_readings: self.memory.readings_begun(),
            // The events are not the fleet's: the metrics route adds them.
            event_waiters: 0,
            batch_items: Vec::new(),
            stored: Vec::new(),
            adblock_blocked: self.adblock.as_ref().map_or(0, |adblock| adblock.blocked()),
            adblock_rules: self.adblock.as_ref().map_or(0, |adblock| {
                adblock.engine().lists().iter().map(|list| list.rules as u64).sum()
            }),
            adblock_lists: self
                .adblock
                .as_ref()
                .map(|adblock| {
                    adblock
                        .engine()
                        .lists()
                        .iter()
                        .map(|list| {
                            let modified = list
                                .modified
                                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                                .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX));
                            (list.path.display().to_string(), modified)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether browsers can be launched at all (the executable is in place).
    pub fn launcher_ready(&self) -> bool {
        self.launcher.ready()
    }

    /// Whether a team has as many browsers running, launching and queued as
    /// its quota allows, on every node together, so that a single start must
    /// be refused (`429`).
    pub async fn team_over_quota(&self, team_id: TeamId) -> Result<bool, StoreError> {
        let Some(quota) = self.settings.team_max_sessions else {
            return Ok(false);
        };
        let load = self.queue.team_load(team_id, Timestamp::now()).await?;
        Ok(load >= quota as i64)
    }

    /// How many starts this node could admit now beyond those in its queue:
    /// free places, and places pooled browsers hold (a start takes one, or
    /// ends it to use its place).
    fn room(&self) -> usize {
        // With the memory limit reached, only pooled browsers can be handed out.
        let places = if self.memory.allows() {
            self.admission.free_places()
        } else {
            0
        };
        (places + self.pool.len()).saturating_sub(self.admission.queued())
    }

    /// Claims as much queued work as this node has room for, into its queue.
    async fn claim(&self) {
        let wanted = self.room();
        if wanted == 0 || self.shutdown.is_cancelled() {
            return;
        }
        let quota = self.settings.team_max_sessions.map(|quota| quota as i64);
        match self
            .queue
            .claim_requests(self.cluster.me(), wanted as i64, quota, Timestamp::now())
            .await
        {
            Ok(claimed) => {
                for request in claimed {
                    self.admission.push(request);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot claim queued start requests; trying again shortly"),
        }
    }

    /// Resolves when the server begins to shut down.
    pub async fn shutting_down(&self) {
        self.shutdown.cancelled().await;
    }

    /// Subscribes to "this batch changed" notices.
    pub fn batch_changes(&self) -> broadcast::Receiver<BatchId> {
        self.batch_changes.subscribe()
    }

    fn batch_changed(&self, batch_id: BatchId) {
        // Nobody listening is fine.
        let _ = self.batch_changes.send(batch_id);
        self.cluster.publish(Signal::Batch(batch_id));
    }

    /// What another node told: wakes what it concerns here.
    fn signalled(&self, signal: Signal) {
        match signal {
            Signal::Queued => self.admission.wake(),
            Signal::Request(request_id) => {
                let _ = self.request_changes.send(request_id);
            }
            Signal::Batch(batch_id) => {
                let _ = self.batch_changes.send(batch_id);
            }
        }
    }

    /// Work went back into the shared queue (a lost node's): this node and
    /// every other look for it now.
    pub fn requeued(&self) {
        self.admission.wake();
        self.cluster.publish(Signal::Queued);
    }

    /// Persists a request nobody waits on (an asynchronous start) in the
    /// shared queue, for whichever node has room.
    pub async fn submit(&self, request: RequestRecord) -> Result<(), StoreError> {
        self.queue.insert_request(&request, None, None).await?;
        self.admission.wake();
        self.cluster.publish(Signal::Queued);
        Ok(())
    }

    /// Persists a synchronous start: in this node's own queue when it has
    /// room (its caller is here) and its team is under its quota on every
    /// node together, else in the shared one; whether shared.
    async fn submit_here_if_room(&self, request: RequestRecord) -> Result<bool, StoreError> {
        if self.room() == 0 {
            return self.submit(request).await.map(|()| true);
        }
        let quota = self.settings.team_max_sessions.map(|quota| quota as i64);
        let claimed = self
            .queue
            .insert_request(&request, Some(self.cluster.me()), quota)
            .await?;
        if claimed {
            self.admission.push(request);
        } else {
            self.admission.wake();
            self.cluster.publish(Signal::Queued);
        }
        Ok(!claimed)
    }

    /// Persists a start in this node's own queue.
    async fn submit_here(&self, request: RequestRecord) -> Result<(), StoreError> {
        self.queue
            .insert_request(&request, Some(self.cluster.me()), None)
            .await?;
        self.admission.push(request);
        Ok(())
    }

    /// Persists a synchronous start and queues it; the ticket waits for its
    /// outcome. The insert runs in a task of its own and the ticket is
    /// made only once the row exists, so a caller that leaves at any point
    /// either left no row, or drops a ticket that withdraws it.
    pub async fn submit_waiting(self: &Arc<Self>, request: RequestRecord) -> Result<StartTicket, StoreError> {
        self.submit_waiting_on(request, Placement::HereIfRoom).await
    }

    /// As [`Fleet::submit_waiting`], for a start this node must serve itself
    /// (a one-shot tool's own session, which it then drives): it waits in
    /// this node's queue even when the node is full.
    pub async fn submit_waiting_here(self: &Arc<Self>, request: RequestRecord) -> Result<StartTicket, StoreError> {
        self.submit_waiting_on(request, Placement::Here).await
    }

    async fn submit_waiting_on(
        self: &Arc<Self>,
        request: RequestRecord,
        placement: Placement,
    ) -> Result<StartTicket, StoreError> {
        let (answer, answered) = oneshot::channel();
        let fleet = Arc::clone(self);
        self.tasks.spawn(async move {
            let (team_id, request_id) = (request.team_id, request.id);
            let (sender, receiver) = oneshot::channel();
            if let Ok(mut waiters) = fleet.waiters.lock() {
                waiters.insert(request_id, sender);
            }
            let submitted = match placement {
                Placement::HereIfRoom => fleet.submit_here_if_room(request).await,
                Placement::Here => fleet.submit_here(request).await.map(|()| false),
            };
            let ticket = match submitted {
                Ok(shared) => Ok(StartTicket {
                    fleet: Arc::clone(&fleet),
                    team_id,
                    request_id,
                    receiver: Some(receiver),
                    shared,
                }),
                Err(error) => {
                    if let Ok(mut waiters) = fleet.waiters.lock() {
                        waiters.remove(&request_id);
                    }
                    Err(error)
                }
            };
            // A caller that left drops the ticket here, which withdraws it.
            let _ = answer.send(ticket);
        });
        match answered.await {
            Ok(ticket) => ticket,
            // The task cannot end without answering but by the runtime
            // stopping, and then nobody reads this.
            Err(_) => Err(StoreError::Unavailable("the server is shutting down")),
        }
    }

    /// Returns once another node says `request_id` reached its outcome (or
    /// the signals lagged, when it may have).
    async fn told_of(changes: &mut broadcast::Receiver<RequestId>, request_id: RequestId) {
        loop {
            match changes.recv().await {
                Ok(changed) if changed == request_id => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }

    /// How a start request ended, as its row says once it is final; `None`
    /// if the server shuts down first.
    async fn outcome_in_store(&self, team_id: TeamId, request_id: RequestId) -> Option<StartOutcome> {
        // Listening first, then reading: an outcome reached before the
        // subscription is in the row, one reached after it is told.
        let mut changes = self.request_changes.subscribe();
        loop {
            match self.queue.request(team_id, request_id).await {
                Ok(Some(request)) => match request.status {
                    RequestStatus::Completed => {
                        if let Some(session_id) = request.session_id {
                            return Some(StartOutcome::Started(session_id));
                        }
                    }
                    RequestStatus::Failed => {
                        return Some(StartOutcome::Failed(request.error.unwrap_or_default()));
                    }
                    RequestStatus::Cancelled => return Some(StartOutcome::Cancelled),
                    RequestStatus::Pending | RequestStatus::Processing => {}
                },
                Ok(None) => return Some(StartOutcome::Cancelled),
                Err(error) => {
                    tracing::debug!(%request_id, %error, "cannot read a start request's state; looking again");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(OTHER_NODE_OUTCOME_LOOK) => {}
                () = Self::told_of(&mut changes, request_id) => {}
                () = self.shutdown.cancelled() => return None,
            }
        }
    }

    /// Withdraws a request whose caller went away: a pending one is
    /// cancelled, a launching or running one has its session ended.
    pub async fn abandon(&self, team_id: TeamId, request_id: RequestId) {
        let reason = "the client that asked for this session disconnected before it was ready";
        match self.queue.cancel_pending_request(request_id, Timestamp::now()).await {
            Ok(true) => {
                self.admission.remove(|request| request.id == request_id);
                self.notify(request_id, StartOutcome::Cancelled);
            }
            Ok(false) => match self.queue.request(team_id, request_id).await {
                Ok(Some(request)) => {
                    if let Some(session_id) = request.session_id {
                        if let Err(error) = self.end_session(session_id, SessionStatus::Completed, reason).await {
                            tracing::warn!(%session_id, %error, "could not end an abandoned session");
                        }
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%request_id, %error, "could not look up an abandoned request"),
            },
            Err(error) => tracing::warn!(%request_id, %error, "could not cancel an abandoned request"),
        }
    }

    /// Ends a session and waits until nothing of it is left: a running one
    /// has its browser killed and dirs removed; a launching one has its launch
    /// stopped. `false` if it had already ended.
    pub async fn end_session(
        &self,
        session_id: SessionId,
        status: SessionStatus,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.end_session_waiting(session_id, status, reason, EndWait::Gone)
            .await
    }

    /// Ends a session, waiting as `until` says (see [`EndWait`]). A session
    /// another node runs is ended by that node (which waits until its
    /// browser is gone).
    pub async fn end_session_waiting(
        &self,
        session_id: SessionId,
        status: SessionStatus,
        reason: &str,
        until: EndWait,
    ) -> Result<bool, StoreError> {
        if self.live_session_any_team(session_id).is_none() {
            if let Some(owner) = self.cluster.owner_elsewhere(session_id).await? {
                return self
                    .cluster
                    .end_session_at(&owner, session_id, status, reason)
                    .await
                    .map_err(|error| {
                        tracing::warn!(%session_id, %error, "the node that runs a session could not end it");
                        StoreError::Unavailable("the node that runs this session cannot be reached")
                    });
            }
        }
        self.end_local_session(session_id, status, reason, until).await
    }

    /// Ends a session this node runs or launches (or only records the end
    /// of one no node holds), waiting as `until` says.
    pub async fn end_local_session(
        &self,
        session_id: SessionId,
        status: SessionStatus,
        reason: &str,
        until: EndWait,
    ) -> Result<bool, StoreError> {
        match self.live_session_any_team(session_id) {
            Some(session) => Ok(session.end(status, reason, until).await),
            None => {
                let ended = self
                    .store
                    .end_session(session_id, status, reason, Timestamp::now())
                    .await?;
                // A session still launching: its browser must not outlive this call.
                self.abort_launches(|launch| launch.session_id == session_id).await;
                Ok(ended)
            }
        }
    }

    /// This node was taken for lost by the others (its lease ran out while
    /// it could not reach the database), who recorded its sessions as ended
    /// and gave its queue away: it ends every browser it still has, stops
    /// its launches and empties its queue, so that nothing runs that the
    /// database says is over.
    pub async fn give_up_everything(&self, reason: &str) {
        self.admission.remove(|_| true);
        self.abort_launches(|_| true).await;
        let sessions: Vec<Arc<LiveSession>> = self
            .live
            .lock()
            .map(|live| live.values().cloned().collect())
            .unwrap_or_default();
        let ends = sessions
            .iter()
            .map(|session| session.end(SessionStatus::Failed, reason, EndWait::Gone));
        futures_util::future::join_all(ends).await;
    }

    /// Stops every launch under way that `matches` and waits until each has
    /// let go of its browser.
    async fn abort_launches(&self, matches: impl Fn(&Launching) -> bool) {
        let done: Vec<CancellationToken> = match self.launching.lock() {
            Ok(launching) => launching
                .values()
                .filter(|launch| matches(launch))
                .map(|launch| {
                    launch.abort.cancel();
                    launch.done.clone()
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        for token in done {
            token.cancelled().await;
        }
    }

    /// Tells the caller of a synchronous start how it ended; one waiting at
    /// another node (or none) learns it from the request's row, which the
    /// other nodes are told to look at.
    fn notify(&self, request_id: RequestId, outcome: StartOutcome) {
        let sender = self
            .waiters
            .lock()
            .ok()
            .and_then(|mut waiters| waiters.remove(&request_id));
        match sender {
            Some(sender) => {
                let _ = sender.send(outcome);
            }
            None => self.cluster.publish(Signal::Request(request_id)),
        }
    }

    /// Admits starts whenever something changes, until shutdown; then tells
    /// whoever still waits (their requests stay pending for the next start)
    /// and ends the pooled browsers.
    async fn run(self: Arc<Self>) {
        loop {
            let wakes = self.admission.round_begins();
            self.claim().await;
            self.admit_ready();
            self.admission.round_done(wakes);
            tokio::select! {
                () = self.admission.changed() => {}
                () = tokio::time::sleep(CLAIM_INTERVAL) => {}
                () = self.shutdown.cancelled() => break,
            }
        }
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.clear();
        }
        for Pooled { browser, place, .. } in self.pool.drain() {
            browser.shut_down().await;
            drop(place);
        }
    }

    /// Starts every request that can start now: each needs a place, which is
    /// a free one or a pooled browser (taken, or ended to free its place).
    /// Then tops up the pool if nothing waits.
    fn admit_ready(self: &Arc<Self>) {
        while self.admission.place_free() || self.pool.len() > 0 {
            let Some((request, team_slot)) = self.admission.pop() else {
                break;
            };
            // A context session never takes a pooled browser (it may end one
            // to free a place).
            let isolation = plan::isolation(
                &request.options,
                self.settings.session_isolation,
                self.settings.default_headless,
            );
            let wants_pool = pool::poolable(&request.options, self.settings.default_headless)
                && isolation == anchorage_core::Isolation::Browser;
            let mut memory_claim = None;
            let blocks = self.adblock_for(&request.options).is_some();
            if wants_pool {
                self.pool.note_start(blocks);
            }
            let start = match wants_pool.then(|| self.pool.take_serving(blocks)).flatten() {
                Some(pooled) => provision::Start::Pooled(pooled),
                None => {
                    // A start the pool's mix did not serve: a pooled browser
                    // of the other kind makes room for a refill of its kind.
                    if let Some(excess) = (wants_pool && !blocks).then(|| self.pool.take_for_the_mix()).flatten() {
                        self.tasks.spawn(async move {
                            let Pooled { browser, place, .. } = excess;
                            browser.shut_down().await;
                            drop(place);
                        });
                    }
                    // A pooled browser is in the last reading already; a
                    // launch or a new context is not.
                    if !self.memory.allows() {
                        self.admission.push_back_unstarted(request, team_slot);
                        break;
                    }
                    // Launch permits are taken here, in admission order, so
                    // that starts launch in the order they were admitted.
                    let Some(launch_permit) = self.admission.try_launch() else {
                        self.admission.push_back_unstarted(request, team_slot);
                        break;
                    };
                    let place = match self.admission.try_place() {
                        Some(place) => Some((place, None)),
                        None => self.pool.take().map(|pooled| (pooled.place, Some(pooled.browser))),
                    };
                    let Some((place, evicted)) = place else {
                        // The pooled browsers counted above had died; wait for a place.
                        self.admission.push_back_unstarted(request, team_slot);
                        break;
                    };
                    // A context on a host that runs, or on a pooled browser
                    // (counted already), is a context's worth; else a
                    // browser is launched for it.
                    let context_only = isolation == anchorage_core::Isolation::Context
                        && (self.pool.len() > 0
                            || self.hosts.has_room(
                                request.team_id,
                                self.adblock_for(&request.options).is_some(),
                                self.settings.contexts_per_host,
                            ));
                    memory_claim = Some(self.memory.reserve(if context_only {
                        memory::CONTEXT_GUESS
                    } else {
                        memory::BROWSER_GUESS
                    }));
                    provision::Start::Cold {
                        place: place.in_use(),
                        evicted,
                        launch_permit: launch_permit.in_use(),
                    }
                }
            };
            let fleet = Arc::clone(self);
            self.tasks.spawn(async move {
                fleet.provision(request, start, team_slot).await;
                drop(memory_claim);
            });
        }
        if self.admission.queued() == 0 {
            self.refill_pool();
        }
    }

    /// Starts one pool refill if the pool is short, the moment is right,
    /// and a place and a launch permit are free.
    fn refill_pool(self: &Arc<Self>) {
        if self.shutdown.is_cancelled() {
            return;
        }
        match self.pool.plan_refill(Instant::now()) {
            Refill::No | Refill::After { first: false, .. } => {}
            Refill::After { at, first: true } => {
                let fleet = Arc::clone(self);
                self.tasks.spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = fleet.shutdown.cancelled() => {}
                    }
                    fleet.pool.timer_fired();
                    fleet.admission.wake();
                });
            }
            Refill::Start => {
                if !self.memory.allows() {
                    self.pool.refill_skipped();
                    return;
                }
                let (Some(place), Some(launch_permit)) = (self.admission.try_place(), self.admission.try_launch())
                else {
                    self.pool.refill_skipped();
                    return;
                };
                let memory_claim = self.memory.reserve(memory::BROWSER_GUESS);
                let (place, launch_permit) = (place.in_use(), launch_permit.in_use());
                let fleet = Arc::clone(self);
                self.tasks.spawn(async move {
                    let mut request = plan::default_launch_request("pool", !fleet.settings.default_headless, true);
                    // Of the kind the pool's mix wants (see `pool`).
                    let adblock = fleet.adblock.as_ref().filter(|_| fleet.pool.refill_filters());
                    request.setup.adblock = fleet.adblock_setup(adblock, &fleet.shutdown).await;
                    let launched = fleet.launch_counted(&request, fleet.shutdown.child_token()).await;
                    drop(launch_permit);
                    let refilled = match launched {
                        Ok(browser) if fleet.shutdown.is_cancelled() => {
                            browser.shut_down().await;
                            None
                        }
                        Ok(browser) => {
                            tracing::debug!(pid = browser.pid(), "pool refilled");
                            match fleet.adblock.as_ref().filter(|_| request.setup.adblock.is_some()) {
                                Some(adblock) => match fleet.block_ads(adblock, &browser).await {
                                    Ok(blocking) => Some(Pooled {
                                        browser,
                                        place,
                                        blocking: Some(blocking),
                                    }),
                                    Err(message) => {
                                        // Its filter and stylesheet are on
                                        // for its life, with nothing hiding
                                        // the rest: it serves no session.
                                        tracing::warn!(%message, "a pooled browser could not start blocking ads; it is closed");
                                        browser.shut_down().await;
                                        None
                                    }
                                },
                                None => Some(Pooled {
                                    browser,
                                    place,
                                    blocking: None,
                                }),
                            }
                        }
                        Err(LaunchError::Stopped) => None,
                        Err(error) => {
                            tracing::warn!(%error, "a pool refill failed; refills pause for a while");
                            None
                        }
                    };
                    fleet.pool.refilled(refilled);
                    drop(memory_claim);
                    fleet.admission.wake();
                });
            }
        }
    }

    /// One launch, counted in the metrics whatever its outcome (a stop is
    /// not a launch that failed).
    async fn launch_counted(&self, request: &LaunchRequest, stop: CancellationToken) -> Result<Browser, LaunchError> {
        let outcome = self.launcher.launch(request, stop).await;
        match &outcome {
            Ok(browser) => self.metrics.launched(browser.timings().devtools_ready),
            Err(LaunchError::Stopped) => {}
            Err(_) => self.metrics.launch_failed(),
        }
        outcome
    }

    /// Launches a browser, trying a second time at once if the first try
    /// fails; stops (with the browser gone) when `abort` fires.
    async fn launch_with_retry(
        &self,
        request: &LaunchRequest,
        abort: &CancellationToken,
    ) -> Result<Browser, LaunchError> {
        match self.launch_counted(request, abort.clone()).await {
            Err(LaunchError::Stopped) => Err(LaunchError::Stopped),
            Err(error) => {
                tracing::warn!(name = %request.name, %error, "launch failed; trying once more");
                self.launch_counted(request, abort.clone()).await
            }
            started => started,
        }
    }
}

//! The fleet: every live session of this server, and the one provisioning
//! pipeline that starts them, for single starts and batches alike.
//!
//! Start requests are persisted rows (see `anchorage_core::request`) before
//! anything launches. One worker takes pending requests fairly across teams
//! (`anchorage_core::FairQueue`), in creation order within a team; it holds a
//! capacity permit (`max_sessions`) and a team slot (for the per-team quota)
//! for as long as the browser lives, and a launch permit
//! (`launch_concurrency`) while it launches. A failed launch is tried once
//! more at once; after that the item is `failed`, or `pending` again if a
//! retry gave it attempts. Each running session has one supervisor task
//! (`session.rs`) that owns its browser. The store is updated with
//! conditional writes, so a cancel or end racing a launch has one winner, and
//! the loser's browser is killed at once.

mod batches;
mod pool;
mod session;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorage_browser::{launch_until, Browser, BrowserDirs, LaunchError, LaunchSpec};
use anchorage_core::{
    BatchId, FairQueue, RequestId, SessionId, SessionOptions, SessionStatus, TeamId, Timestamp, Viewport,
};
use anchorage_store::{LaunchFailure, RequestRecord, SessionRecord, Store, StoreError};
use tokio::sync::{broadcast, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use batches::{BatchEnd, Ended};
pub use session::{ClientGuard, EndWait, LiveSession};

/// How a start request ended, for the caller waiting on it.
#[derive(Debug, Clone)]
pub enum StartOutcome {
    /// The session is up.
    Started(SessionId),
    /// The browser could not be started.
    Failed(String),
    /// The request was withdrawn (cancel, end, shutdown) before it was up.
    Cancelled,
}

/// Settings the fleet runs with.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// The Chromium executable.
    pub chromium: PathBuf,
    /// Where per-session directories go.
    pub browser_dirs: BrowserDirs,
    /// Running browsers at most.
    pub max_sessions: usize,
    /// Launches at once at most.
    pub launch_concurrency: usize,
    /// Running (and launching) browsers of one team at most.
    pub team_max_sessions: Option<usize>,
    /// Browsers kept launched ahead for default starts.
    pub pool_size: usize,
    /// How long a launch may take.
    pub launch_timeout: Duration,
    /// The length of a timeout minute (see `Config::timeout_minute`).
    pub timeout_minute: Duration,
    /// Chromium host-resolver rules every browser gets (private networks).
    pub host_resolver_rules: Option<String>,
    /// The user browsers run as, when not the server's.
    pub run_as: Option<anchorage_browser::RunAs>,
    /// Whether Chromium's sandbox is on.
    pub sandbox: bool,
}

/// Where a starting session's browser comes from.
enum Start {
    /// A pooled browser, with its place.
    Pooled(pool::Pooled),
    /// A fresh launch into this place; `evicted` is a pooled browser that
    /// gave its place up and must be ended first.
    Cold {
        capacity: OwnedSemaphorePermit,
        evicted: Option<Browser>,
        launch_permit: OwnedSemaphorePermit,
    },
}

/// Requests waiting for a browser; each request at most once.
#[derive(Default)]
struct Waiting {
    queue: FairQueue<TeamId, RequestRecord>,
    queued: HashSet<RequestId>,
}

/// A launch under way, so that a cancel can stop it and wait for it.
struct Launching {
    batch_id: Option<BatchId>,
    session_id: SessionId,
    abort: CancellationToken,
    done: CancellationToken,
}

/// Every live session, and the queue of requests waiting for a browser.
pub struct Fleet {
    store: Arc<dyn Store>,
    settings: FleetSettings,
    live: Mutex<HashMap<SessionId, Arc<LiveSession>>>,
    waiting: Mutex<Waiting>,
    queue_changed: Notify,
    waiters: Mutex<HashMap<RequestId, Vec<oneshot::Sender<StartOutcome>>>>,
    launching: Mutex<HashMap<RequestId, Launching>>,
    /// Browsers of each team, launching or running.
    team_load: Mutex<HashMap<TeamId, usize>>,
    capacity: Arc<Semaphore>,
    launches: Arc<Semaphore>,
    /// Window size minus viewport, measured on the first launch.
    window_frame: Mutex<Option<(u32, u32)>>,
    /// Browsers launched ahead (see `pool.rs`).
    pool: Mutex<Vec<pool::Pooled>>,
    /// Pool refills under way.
    refills: std::sync::atomic::AtomicUsize,
    /// No refill before this moment (after a handout or a failed refill).
    refill_paused_until: Mutex<Option<Instant>>,
    /// Whether a wake-up for the end of that pause is set.
    refill_timer: std::sync::atomic::AtomicBool,
    batch_changes: broadcast::Sender<BatchId>,
    /// Counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
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

/// A team's place in its quota, held from admission until the browser is
/// gone; dropping it frees the place and wakes the queue.
pub(crate) struct TeamSlot {
    fleet: Arc<Fleet>,
    team_id: TeamId,
    /// Whether dropping it wakes the queue (not when it was never used).
    wake_queue: bool,
}

impl TeamSlot {
    /// Gives the place back without waking the queue: the request goes back
    /// to wait, and waking the queue for it would only spin.
    fn unused(mut self) {
        self.wake_queue = false;
    }
}

impl Drop for TeamSlot {
    fn drop(&mut self) {
        if let Ok(mut load) = self.fleet.team_load.lock() {
            if let Some(count) = load.get_mut(&self.team_id) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    load.remove(&self.team_id);
                }
            }
        }
        if self.wake_queue {
            self.fleet.queue_changed.notify_one();
        }
    }
}

/// Removes a finished launch from the registry and tells whoever waits.
struct LaunchingEntry<'a> {
    fleet: &'a Fleet,
    request_id: RequestId,
    done: CancellationToken,
}

impl Drop for LaunchingEntry<'_> {
    fn drop(&mut self) {
        if let Ok(mut launching) = self.fleet.launching.lock() {
            launching.remove(&self.request_id);
        }
        self.done.cancel();
    }
}

impl Fleet {
    /// A fleet with nothing running. Call [`Fleet::start`] to begin work.
    pub fn new(
        store: Arc<dyn Store>,
        settings: FleetSettings,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            capacity: Arc::new(Semaphore::new(settings.max_sessions)),
            launches: Arc::new(Semaphore::new(settings.launch_concurrency)),
            settings,
            live: Mutex::new(HashMap::new()),
            waiting: Mutex::new(Waiting::default()),
            queue_changed: Notify::new(),
            waiters: Mutex::new(HashMap::new()),
            launching: Mutex::new(HashMap::new()),
            team_load: Mutex::new(HashMap::new()),
            window_frame: Mutex::new(None),
            pool: Mutex::new(Vec::new()),
            refills: std::sync::atomic::AtomicUsize::new(0),
            refill_paused_until: Mutex::new(None),
            refill_timer: std::sync::atomic::AtomicBool::new(false),
            batch_changes: broadcast::channel(1024).0,
            metrics: crate::metrics::Metrics::default(),
            shutdown,
            tasks,
        })
    }

    /// Loads pending requests from the store and starts the worker.
    pub async fn start(self: &Arc<Self>) -> Result<(), StoreError> {
        let pending = self.store.pending_requests().await?;
        if !pending.is_empty() {
            tracing::info!(count = pending.len(), "resuming pending start requests");
        }
        for request in pending {
            self.enqueue(request);
        }
        let fleet = Arc::clone(self);
        self.tasks.spawn(async move { fleet.provision_loop().await });
        Ok(())
    }

    /// The live session with this id, if it belongs to `team_id`.
    pub fn live_session(&self, team_id: TeamId, session_id: SessionId) -> Option<Arc<LiveSession>> {
        let live = self.live.lock().ok()?;
        live.get(&session_id)
            .filter(|session| session.team_id == team_id)
            .cloned()
    }

    /// The live session with this id, whoever owns it.
    pub fn live_session_any_team(&self, session_id: SessionId) -> Option<Arc<LiveSession>> {
        self.live.lock().ok()?.get(&session_id).cloned()
    }

    /// What the fleet holds now, for `/metrics`.
    pub fn gauges(&self) -> crate::metrics::Gauges {
        let (running_sessions, cdp_connections) = self
            .live
            .lock()
            .map(|live| (live.len(), live.values().map(|session| session.client_count()).sum()))
            .unwrap_or_default();
        crate::metrics::Gauges {
            running_sessions,
            cdp_connections,
            pooled_browsers: self.pool.lock().map(|pool| pool.len()).unwrap_or(0),
            queued_requests: self.waiting.lock().map(|waiting| waiting.queue.len()).unwrap_or(0),
            batch_items: Vec::new(),
        }
    }

    /// Whether the configured Chromium is there and executable.
    pub fn chromium_ready(&self) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&self.settings.chromium)
            .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }

    /// Whether a team has as many browsers running, launching and queued as
    /// its quota allows, so that a single start must be refused (`429`).
    pub fn team_over_quota(&self, team_id: TeamId) -> bool {
        let Some(quota) = self.settings.team_max_sessions else {
            return false;
        };
        let load = self
            .team_load
            .lock()
            .map(|load| load.get(&team_id).copied().unwrap_or(0))
            .unwrap_or(0);
        let queued = self
            .waiting
            .lock()
            .map(|waiting| waiting.queue.team_len(&team_id))
            .unwrap_or(0);
        load + queued >= quota
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
    }

    /// Queues a pending request unless it is queued already.
    fn enqueue(&self, request: RequestRecord) {
        if let Ok(mut waiting) = self.waiting.lock() {
            if waiting.queued.insert(request.id) {
                waiting.queue.push(request.team_id, request);
            }
        }
        self.queue_changed.notify_one();
    }

    /// Puts a request back at the head of its team's queue.
    fn enqueue_front(&self, request: RequestRecord) {
        if let Ok(mut waiting) = self.waiting.lock() {
            if waiting.queued.insert(request.id) {
                waiting.queue.push_front(request.team_id, request);
            }
        }
    }

    /// Drops queued requests that no longer need a browser.
    fn unqueue(&self, mut gone: impl FnMut(&RequestRecord) -> bool) {
        if let Ok(mut waiting) = self.waiting.lock() {
            let Waiting { queue, queued } = &mut *waiting;
            queue.retain(|request| {
                let keep = !gone(request);
                if !keep {
                    queued.remove(&request.id);
                }
                keep
            });
        }
    }

    /// Persists a single request and queues it. The receiver resolves when
    /// the request reaches a final state.
    pub async fn submit(&self, request: RequestRecord) -> Result<oneshot::Receiver<StartOutcome>, StoreError> {
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.entry(request.id).or_default().push(sender);
        }
        if let Err(error) = self.store.insert_request(&request).await {
            if let Ok(mut waiters) = self.waiters.lock() {
                waiters.remove(&request.id);
            }
            return Err(error);
        }
        self.enqueue(request);
        Ok(receiver)
    }

    /// Withdraws a request whose caller went away: a pending one is
    /// cancelled, a launching or running one has its session ended.
    pub async fn abandon(&self, team_id: TeamId, request_id: RequestId) {
        let reason = "the client that asked for this session disconnected before it was ready";
        match self.store.cancel_pending_request(request_id, Timestamp::now()).await {
            Ok(true) => {
                self.unqueue(|request| request.id == request_id);
                self.notify(request_id, StartOutcome::Cancelled);
            }
            Ok(false) => match self.store.request(team_id, request_id).await {
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

    /// Ends a session, waiting as `until` says (see [`EndWait`]).
    pub async fn end_session_waiting(
        &self,
        session_id: SessionId,
        status: SessionStatus,
        reason: &str,
        until: EndWait,
    ) -> Result<bool, StoreError> {
        let live = self.live.lock().ok().and_then(|live| live.get(&session_id).cloned());
        match live {
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

    /// Stops every launch under way that `matches` and waits until each has
    /// let go of its browser.
    async fn abort_launches(&self, matches: impl Fn(&Launching) -> bool) {
        let done: Vec<CancellationToken> = match self.launching.lock() {
            Ok(launching) => launching
                .iter()
                .filter(|(_, launch)| matches(launch))
                .map(|(_, launch)| {
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

    fn notify(&self, request_id: RequestId, outcome: StartOutcome) {
        let senders = self
            .waiters
            .lock()
            .ok()
            .and_then(|mut waiters| waiters.remove(&request_id));
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(outcome.clone());
        }
    }

    /// The next request whose team is under its quota, with its team slot.
    fn pop_admissible(self: &Arc<Self>) -> Option<(RequestRecord, TeamSlot)> {
        let mut waiting = self.waiting.lock().ok()?;
        let mut load = self.team_load.lock().ok()?;
        let quota = self.settings.team_max_sessions;
        let (team_id, request) = waiting
            .queue
            .pop(|team| quota.is_none_or(|quota| load.get(team).copied().unwrap_or(0) < quota))?;
        waiting.queued.remove(&request.id);
        *load.entry(team_id).or_insert(0) += 1;
        Some((
            request,
            TeamSlot {
                fleet: Arc::clone(self),
                team_id,
                wake_queue: true,
            },
        ))
    }

    /// Runs admission until shutdown; then whoever still waits for a queued
    /// start is told at once (it stays pending for the next start).
    async fn provision_loop(self: Arc<Self>) {
        self.admit().await;
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.clear();
        }
        self.drain_pool().await;
    }

    /// What is left to tidy once every task has finished (at shutdown).
    pub fn tidy_after_shutdown(&self) {
        self.settings.browser_dirs.remove_empty_roots();
    }

    /// Admits requests whenever something changes (a request arrives, a
    /// browser ends, a launch or refill finishes), and keeps the pool full.
    async fn admit(self: &Arc<Self>) {
        loop {
            let changed = self.queue_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            self.admit_ready();
            tokio::select! {
                () = changed => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Starts every request that can start now: each needs a place, which is
    /// a free capacity permit or a pooled browser (taken, or ended to free
    /// its permit). Then tops up the pool if nothing waits.
    fn admit_ready(self: &Arc<Self>) {
        loop {
            let pooled_count = self.pool.lock().map(|pool| pool.len()).unwrap_or(0);
            if self.capacity.available_permits() == 0 && pooled_count == 0 {
                break;
            }
            let Some((request, team_slot)) = self.pop_admissible() else {
                break;
            };
            let wants_pool = SessionOptions::from_configuration(&request.configuration)
                .is_ok_and(|options| pool::poolable(&options));
            let start = match wants_pool.then(|| self.take_pooled()).flatten() {
                Some(pooled) => Start::Pooled(pooled),
                None => {
                    // Launches are taken here, in admission order, so that
                    // items start in the order they were admitted.
                    let Ok(launch_permit) = Arc::clone(&self.launches).try_acquire_owned() else {
                        self.enqueue_front(request);
                        team_slot.unused();
                        break;
                    };
                    let place = match Arc::clone(&self.capacity).try_acquire_owned() {
                        Ok(capacity) => Some((capacity, None)),
                        Err(_) => self.take_pooled().map(|pooled| (pooled.capacity, Some(pooled.browser))),
                    };
                    let Some((capacity, evicted)) = place else {
                        // The pooled browsers counted above had died; wait for a place.
                        self.enqueue_front(request);
                        team_slot.unused();
                        break;
                    };
                    Start::Cold {
                        capacity,
                        evicted,
                        launch_permit,
                    }
                }
            };
            let fleet = Arc::clone(self);
            self.tasks
                .spawn(async move { fleet.provision(request, start, team_slot).await });
        }
        let queue_empty = self
            .waiting
            .lock()
            .map(|waiting| waiting.queue.is_empty())
            .unwrap_or(false);
        self.maybe_refill(queue_empty);
    }

    /// The window frame measured on the first launch, if any yet.
    fn window_frame(&self) -> Option<(u32, u32)> {
        self.window_frame.lock().ok().and_then(|frame| *frame)
    }

    /// Launches Chromium for `spec`, trying a second time if the first fails;
    /// stops (with the browser gone) when `abort` fires or the server stops.
    async fn launch_with_retry(
        &self,
        spec: &LaunchSpec,
        session_id: SessionId,
        abort: &CancellationToken,
    ) -> Result<Browser, LaunchError> {
        let stop = || async {
            tokio::select! {
                () = abort.cancelled() => {}
                () = self.shutdown.cancelled() => {}
            }
        };
        match launch_until(spec, stop()).await {
            Err(LaunchError::Stopped) => Err(LaunchError::Stopped),
            Err(error) => {
                tracing::warn!(%session_id, %error, "launch failed; trying once more");
                launch_until(spec, stop()).await
            }
            started => started,
        }
    }

    async fn provision(self: Arc<Self>, request: RequestRecord, start: Start, team_slot: TeamSlot) {
        let options = match SessionOptions::from_configuration(&request.configuration) {
            Ok(options) => options,
            Err(error) => {
                // Bodies are validated when accepted; this is a row an older
                // version accepted.
                tracing::error!(request_id = %request.id, %error, "a stored request has an invalid configuration");
                self.notify(
                    request.id,
                    StartOutcome::Failed(format!("stored configuration is not valid: {error}")),
                );
                return;
            }
        };
        let session = SessionRecord {
            id: SessionId::new_random(),
            team_id: request.team_id,
            api_key_id: request.api_key_id,
            api_key_name: request.api_key_name.clone(),
            request_id: Some(request.id),
            batch_id: request.batch_id,
            status: SessionStatus::Starting,
            configuration: request.configuration.clone(),
            tags: options.tags.clone(),
            headless: options.headless_requested,
            recording: options.recording_requested,
            proxy: options.proxy_requested,
            created_at: Timestamp::now(),
            started_at: None,
            ended_at: None,
            end_reason: None,
        };
        // Registered before the store hears of the launch, so that a cancel
        // that commits after `begin_launch` always finds it.
        let abort = CancellationToken::new();
        let done = CancellationToken::new();
        if let Ok(mut launching) = self.launching.lock() {
            launching.insert(
                request.id,
                Launching {
                    batch_id: request.batch_id,
                    session_id: session.id,
                    abort: abort.clone(),
                    done: done.clone(),
                },
            );
        }
        let _entry = LaunchingEntry {
            fleet: &self,
            request_id: request.id,
            done,
        };

        match self.store.begin_launch(request.id, &session).await {
            Ok(true) => {}
            Ok(false) => {
                // Withdrawn while queued; an unused pooled browser goes back.
                if let Start::Pooled(pooled) = start {
                    if let Ok(mut pool) = self.pool.lock() {
                        pool.push(pooled);
                    }
                }
                self.notify(request.id, StartOutcome::Cancelled);
                return;
            }
            Err(error) => {
                tracing::error!(request_id = %request.id, %error, "cannot record a launch; the request stays pending");
                return;
            }
        }
        if let Some(batch_id) = request.batch_id {
            self.batch_changed(batch_id);
        }

        let started = Instant::now();
        let from_pool = matches!(start, Start::Pooled(_));
        let (outcome, capacity) = match start {
            Start::Pooled(pool::Pooled { browser, capacity }) => {
                if let Some(url) = &options.initial_url {
                    if let Err(error) = anchorage_browser::open_in_first_page(browser.devtools(), url).await {
                        tracing::warn!(session_id = %session.id, %error, "could not open initial_url in a pooled browser");
                    }
                }
                (Some(Ok(browser)), capacity)
            }
            Start::Cold {
                capacity,
                evicted,
                launch_permit,
            } => {
                if let Some(evicted) = evicted {
                    // Its place is this start's: it must be gone first.
                    evicted.shut_down().await;
                }
                (
                    self.launch_cold(&session, &options, &abort, launch_permit).await,
                    capacity,
                )
            }
        };
        let browser = match outcome {
            None => {
                // Whoever aborted has recorded why (a cancel, a delete); on
                // shutdown the rows are left for the next start's recovery.
                self.notify(request.id, StartOutcome::Cancelled);
                return;
            }
            Some(Ok(browser)) => browser,
            Some(Err(error)) => {
                self.launch_failed(request, session.id, &error.to_string()).await;
                return;
            }
        };
        if self.shutdown.is_cancelled() {
            browser.shut_down().await;
            self.notify(request.id, StartOutcome::Cancelled);
            return;
        }
        match self.store.finish_launch(request.id, session.id, Timestamp::now()).await {
            Ok(true) => {
                let timings = browser.timings();
                tracing::info!(
                    session_id = %session.id,
                    pid = browser.pid(),
                    from_pool,
                    start_ms = started.elapsed().as_secs_f64() * 1000.0,
                    launch_prepared_ms = timings.prepared.as_secs_f64() * 1000.0,
                    launch_spawned_ms = timings.spawned.as_secs_f64() * 1000.0,
                    launch_devtools_ms = timings.devtools_ready.as_secs_f64() * 1000.0,
                    "session running"
                );
                let live = Arc::new(LiveSession::new(
                    session.id,
                    session.team_id,
                    session.batch_id,
                    browser.devtools().clone(),
                    options.live_view_read_only,
                ));
                if let Ok(mut sessions) = self.live.lock() {
                    sessions.insert(session.id, Arc::clone(&live));
                }
                let fleet = Arc::clone(&self);
                let holdings = session::Holdings {
                    browser,
                    capacity,
                    team_slot,
                };
                self.tasks
                    .spawn(async move { fleet.supervise(live, options, holdings).await });
                self.notify(request.id, StartOutcome::Started(session.id));
            }
            Ok(false) => {
                // Cancelled or ended while launching: never leave it running.
                browser.shut_down().await;
                self.notify(request.id, StartOutcome::Cancelled);
            }
            Err(error) => {
                tracing::error!(session_id = %session.id, %error, "cannot record a started session; ending it");
                browser.shut_down().await;
                self.launch_failed(request, session.id, "the server could not record the session")
                    .await;
            }
        }
        if let Some(batch_id) = session.batch_id {
            self.batch_changed(batch_id);
        }
    }

    /// Launches a fresh browser for a session, holding a launch permit.
    /// `None` when the launch was stopped (an abort or shutdown).
    async fn launch_cold(
        &self,
        session: &SessionRecord,
        options: &SessionOptions,
        abort: &CancellationToken,
        launch_permit: OwnedSemaphorePermit,
    ) -> Option<Result<Browser, LaunchError>> {
        let window_frame = self.window_frame();
        let spec = LaunchSpec {
            ready_timeout: self.settings.launch_timeout,
            window_frame,
            host_resolver_rules: self.settings.host_resolver_rules.clone(),
            run_as: self.settings.run_as.clone(),
            sandbox: self.settings.sandbox,
            ..LaunchSpec::new(
                self.settings.chromium.clone(),
                self.settings
                    .browser_dirs
                    .for_session(&session.id.as_uuid().simple().to_string()),
                (options.viewport.width, options.viewport.height),
                options.initial_url.clone(),
            )
        };
        let outcome = match self.launch_with_retry(&spec, session.id, abort).await {
            Err(LaunchError::Stopped) => None,
            outcome => Some(outcome),
        };
        match &outcome {
            Some(Ok(browser)) => self.metrics.launched(browser.timings().devtools_ready),
            Some(Err(_)) => self.metrics.launch_failed(),
            None => {}
        }
        if let (Some(Ok(browser)), None) = (&outcome, window_frame) {
            self.fit_first_viewport(browser, options.viewport).await;
        }
        drop(launch_permit);
        // A launch permit is free again: a pool refill may use it.
        self.queue_changed.notify_one();
        outcome
    }

    /// Headless windows have an invisible frame; sizes the first window so
    /// its viewport is what was asked, and remembers the frame for the rest.
    async fn fit_first_viewport(&self, browser: &Browser, viewport: Viewport) {
        match anchorage_browser::fit_viewport(browser.devtools(), viewport.width, viewport.height).await {
            Ok(frame) => {
                if let Ok(mut slot) = self.window_frame.lock() {
                    *slot = Some(frame);
                }
            }
            Err(error) => tracing::warn!(%error, "could not fit the viewport"),
        }
    }

    async fn launch_failed(&self, request: RequestRecord, session_id: SessionId, message: &str) {
        tracing::warn!(request_id = %request.id, %session_id, error = %message, "launch failed");
        let request_id = request.id;
        let batch_id = request.batch_id;
        match self
            .store
            .fail_launch(request_id, session_id, message, Timestamp::now())
            .await
        {
            Ok(LaunchFailure::Requeued) => self.enqueue(request),
            Ok(LaunchFailure::Failed) => self.notify(request_id, StartOutcome::Failed(message.to_owned())),
            Err(error) => {
                tracing::error!(%request_id, %error, "cannot record a failed launch");
                self.notify(request_id, StartOutcome::Failed(message.to_owned()));
            }
        }
        if let Some(batch_id) = batch_id {
            self.batch_changed(batch_id);
        }
    }
}

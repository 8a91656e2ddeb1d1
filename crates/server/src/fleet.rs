//! The fleet: every live session of this server, and the provisioning queue
//! that starts them.
//!
//! Start requests are persisted rows (see `anchorage_core::request`) before
//! anything launches. One worker takes pending requests in creation order,
//! holds a capacity permit (`max_sessions`) for as long as the browser lives
//! and a launch permit (`launch_concurrency`) while it launches. Each running
//! session has one supervisor task that owns its browser and ends it on a
//! request, a timeout, its own death, or shutdown; the store is updated with
//! conditional writes, so a cancel or end racing a launch has one winner and
//! the loser's browser is killed at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorage_browser::{launch, Browser, BrowserExit, LaunchSpec};
use anchorage_core::{RequestId, SessionId, SessionOptions, SessionStatus, TeamId, Timestamp};
use anchorage_store::{RequestRecord, SessionRecord, Store};
use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

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

/// A session whose browser is running.
#[derive(Debug)]
pub struct LiveSession {
    /// Its id.
    pub id: SessionId,
    /// Its team.
    pub team_id: TeamId,
    /// The browser's own DevTools endpoint (loopback only).
    pub browser_websocket: Url,
    /// The browser's process group.
    pub pid: u32,
    clients: watch::Sender<usize>,
    stop: CancellationToken,
    stop_reason: Mutex<Option<(SessionStatus, String)>>,
    /// Fires when the browser is gone and the session is recorded as ended.
    finished: CancellationToken,
}

impl LiveSession {
    /// Counts one more CDP client until the guard is dropped.
    pub fn connect_client(self: &Arc<Self>) -> ClientGuard {
        self.clients.send_modify(|count| *count += 1);
        ClientGuard {
            session: Arc::clone(self),
        }
    }

    /// Resolves when the session starts ending (clients must go).
    pub async fn ending(&self) {
        self.stop.cancelled().await;
    }

    /// How many CDP clients are connected now.
    pub fn client_count(&self) -> usize {
        *self.clients.borrow()
    }

    fn request_stop(&self, status: SessionStatus, reason: &str) {
        if let Ok(mut slot) = self.stop_reason.lock() {
            slot.get_or_insert_with(|| (status, reason.to_owned()));
        }
        self.stop.cancel();
    }
}

/// One connected CDP client; dropping it lets the idle clock start again.
#[derive(Debug)]
pub struct ClientGuard {
    session: Arc<LiveSession>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.session
            .clients
            .send_modify(|count| *count = count.saturating_sub(1));
    }
}

/// Settings the fleet runs with.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// The Chromium executable.
    pub chromium: std::path::PathBuf,
    /// Where per-session directories go.
    pub browser_dirs: anchorage_browser::BrowserDirs,
    /// Running browsers at most.
    pub max_sessions: usize,
    /// Launches at once at most.
    pub launch_concurrency: usize,
    /// How long a launch may take.
    pub launch_timeout: Duration,
    /// The length of a timeout minute (see `Config::timeout_minute`).
    pub timeout_minute: Duration,
}

/// Every live session, and the queue of requests waiting for a browser.
pub struct Fleet {
    store: Arc<dyn Store>,
    settings: FleetSettings,
    live: Mutex<HashMap<SessionId, Arc<LiveSession>>>,
    queue: Mutex<VecDeque<RequestRecord>>,
    queue_changed: Notify,
    waiters: Mutex<HashMap<RequestId, Vec<oneshot::Sender<StartOutcome>>>>,
    capacity: Arc<Semaphore>,
    launches: Arc<Semaphore>,
    /// Window size minus viewport, measured on the first launch.
    window_frame: Mutex<Option<(u32, u32)>>,
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
            queue: Mutex::new(VecDeque::new()),
            queue_changed: Notify::new(),
            waiters: Mutex::new(HashMap::new()),
            window_frame: Mutex::new(None),
            shutdown,
            tasks,
        })
    }

    /// Loads pending requests from the store and starts the worker.
    pub async fn start(self: &Arc<Self>) -> Result<(), anchorage_store::StoreError> {
        let pending = self.store.pending_requests().await?;
        if !pending.is_empty() {
            tracing::info!(count = pending.len(), "resuming pending start requests");
        }
        if let Ok(mut queue) = self.queue.lock() {
            queue.extend(pending);
        }
        let fleet = Arc::clone(self);
        self.tasks
            .spawn(async move { fleet.provision_loop().await });
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

    /// How many browsers run now.
    pub fn running_count(&self) -> usize {
        self.live.lock().map(|live| live.len()).unwrap_or(0)
    }

    /// Persists a request and queues it. The returned receiver resolves when
    /// the request reaches a final state.
    pub async fn submit(
        &self,
        request: RequestRecord,
    ) -> Result<oneshot::Receiver<StartOutcome>, anchorage_store::StoreError> {
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
        if let Ok(mut queue) = self.queue.lock() {
            queue.push_back(request);
        }
        self.queue_changed.notify_one();
        Ok(receiver)
    }

    /// Withdraws a request whose caller went away: a pending one is
    /// cancelled, a launching or running one has its session ended.
    pub async fn abandon(&self, team_id: TeamId, request_id: RequestId) {
        let reason = "the client that asked for this session disconnected before it was ready";
        match self
            .store
            .cancel_pending_request(request_id, Timestamp::now())
            .await
        {
            Ok(true) => self.notify(request_id, StartOutcome::Cancelled),
            Ok(false) => match self.store.request(team_id, request_id).await {
                Ok(Some(request)) => {
                    if let Some(session_id) = request.session_id {
                        if let Err(error) = self
                            .end_session(session_id, SessionStatus::Completed, reason)
                            .await
                        {
                            tracing::warn!(%session_id, %error, "could not end an abandoned session");
                        }
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%request_id, %error, "could not look up an abandoned request")
                }
            },
            Err(error) => {
                tracing::warn!(%request_id, %error, "could not cancel an abandoned request")
            }
        }
    }

    /// Ends a session: a running one has its browser killed and dirs removed
    /// before this returns; a launching one is marked ended, and its browser
    /// is killed as soon as it comes up. `false` if it had already ended.
    pub async fn end_session(
        &self,
        session_id: SessionId,
        status: SessionStatus,
        reason: &str,
    ) -> Result<bool, anchorage_store::StoreError> {
        let live = self
            .live
            .lock()
            .ok()
            .and_then(|live| live.get(&session_id).cloned());
        match live {
            Some(session) => {
                let first = !session.stop.is_cancelled();
                session.request_stop(status, reason);
                session.finished.cancelled().await;
                Ok(first)
            }
            None => {
                self.store
                    .end_session(session_id, status, reason, Timestamp::now())
                    .await
            }
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

    /// Takes requests in order as capacity frees up, and launches each in its
    /// own task.
    async fn provision_loop(self: Arc<Self>) {
        loop {
            let capacity = tokio::select! {
                permit = Arc::clone(&self.capacity).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = self.shutdown.cancelled() => return,
            };
            let request = loop {
                let next = self
                    .queue
                    .lock()
                    .ok()
                    .and_then(|mut queue| queue.pop_front());
                if let Some(request) = next {
                    break request;
                }
                tokio::select! {
                    () = self.queue_changed.notified() => {}
                    () = self.shutdown.cancelled() => return,
                }
            };
            let launch_permit = tokio::select! {
                permit = Arc::clone(&self.launches).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = self.shutdown.cancelled() => return,
            };
            let fleet = Arc::clone(&self);
            self.tasks
                .spawn(async move { fleet.provision(request, capacity, launch_permit).await });
        }
    }

    async fn provision(
        self: Arc<Self>,
        request: RequestRecord,
        capacity: OwnedSemaphorePermit,
        launch_permit: OwnedSemaphorePermit,
    ) {
        let options = match SessionOptions::from_configuration(&request.configuration) {
            Ok(options) => options,
            Err(error) => {
                // Bodies are validated when accepted; this is a stored row an
                // older version accepted.
                let message = format!("stored configuration is not valid: {error}");
                self.fail_unstarted(&request, &message).await;
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
        match self.store.begin_launch(request.id, &session).await {
            Ok(true) => {}
            Ok(false) => {
                self.notify(request.id, StartOutcome::Cancelled);
                return;
            }
            Err(error) => {
                tracing::error!(request_id = %request.id, %error, "cannot record a launch; the request stays pending");
                return;
            }
        }

        let window_frame = self.window_frame.lock().ok().and_then(|frame| *frame);
        let spec = LaunchSpec {
            ready_timeout: self.settings.launch_timeout,
            window_frame,
            ..LaunchSpec::new(
                self.settings.chromium.clone(),
                self.settings
                    .browser_dirs
                    .for_session(&session.id.as_uuid().simple().to_string()),
                (options.viewport.width, options.viewport.height),
                options.initial_url.clone(),
            )
        };
        let started = Instant::now();
        let mut outcome = launch(&spec).await;
        if let Err(error) = &outcome {
            tracing::warn!(session_id = %session.id, %error, "launch failed; trying once more");
            if !self.shutdown.is_cancelled() {
                outcome = launch(&spec).await;
            }
        }
        if let (Ok(browser), None) = (&outcome, window_frame) {
            // Headless windows have an invisible frame; size the first window
            // so its viewport is what was asked, and remember the frame.
            match anchorage_browser::fit_viewport(
                browser.websocket_url(),
                options.viewport.width,
                options.viewport.height,
            )
            .await
            {
                Ok(frame) => {
                    if let Ok(mut slot) = self.window_frame.lock() {
                        *slot = Some(frame);
                    }
                }
                Err(error) => {
                    tracing::warn!(session_id = %session.id, %error, "could not fit the viewport")
                }
            }
        }
        drop(launch_permit);
        let browser = match outcome {
            Ok(browser) => browser,
            Err(error) => {
                let message = error.to_string();
                tracing::warn!(session_id = %session.id, error = %message, "launch failed twice");
                if let Err(error) = self
                    .store
                    .fail_launch(request.id, session.id, &message, Timestamp::now())
                    .await
                {
                    tracing::error!(session_id = %session.id, %error, "cannot record a failed launch");
                }
                self.notify(request.id, StartOutcome::Failed(message));
                return;
            }
        };
        if self.shutdown.is_cancelled() {
            // Leave the rows for the next start's recovery; kill the browser now.
            browser.shut_down().await;
            self.notify(request.id, StartOutcome::Cancelled);
            return;
        }
        match self
            .store
            .finish_launch(request.id, session.id, Timestamp::now())
            .await
        {
            Ok(true) => {
                tracing::info!(session_id = %session.id, pid = browser.pid(), launch_ms = started.elapsed().as_millis() as u64, "session running");
                let session_id = session.id;
                self.run_session(session, options, browser, capacity);
                self.notify(request.id, StartOutcome::Started(session_id));
            }
            Ok(false) => {
                // Cancelled or ended while launching: never leave it running.
                browser.shut_down().await;
                self.notify(request.id, StartOutcome::Cancelled);
            }
            Err(error) => {
                tracing::error!(session_id = %session.id, %error, "cannot record a started session; ending it");
                browser.shut_down().await;
                let _ = self
                    .store
                    .fail_launch(
                        request.id,
                        session.id,
                        "the server could not record the session",
                        Timestamp::now(),
                    )
                    .await;
                self.notify(
                    request.id,
                    StartOutcome::Failed("the server could not record the session".to_owned()),
                );
            }
        }
    }

    async fn fail_unstarted(&self, request: &RequestRecord, message: &str) {
        let session = SessionId::new_random();
        let _ = self
            .store
            .fail_launch(request.id, session, message, Timestamp::now())
            .await;
        self.notify(request.id, StartOutcome::Failed(message.to_owned()));
    }

    fn run_session(
        self: &Arc<Self>,
        record: SessionRecord,
        options: SessionOptions,
        browser: Browser,
        capacity: OwnedSemaphorePermit,
    ) {
        let (clients, _) = watch::channel(0_usize);
        let session = Arc::new(LiveSession {
            id: record.id,
            team_id: record.team_id,
            browser_websocket: browser.websocket_url().clone(),
            pid: browser.pid(),
            clients,
            stop: CancellationToken::new(),
            stop_reason: Mutex::new(None),
            finished: CancellationToken::new(),
        });
        if let Ok(mut live) = self.live.lock() {
            live.insert(record.id, Arc::clone(&session));
        }
        let fleet = Arc::clone(self);
        self.tasks
            .spawn(async move { fleet.supervise(session, options, browser, capacity).await });
    }

    /// Owns one running browser until the session ends, then records why,
    /// kills the browser, removes its dirs and frees its capacity.
    async fn supervise(
        self: Arc<Self>,
        session: Arc<LiveSession>,
        options: SessionOptions,
        browser: Browser,
        capacity: OwnedSemaphorePermit,
    ) {
        let minute = self.settings.timeout_minute;
        let minutes = |value: i64| minute * u32::try_from(value.max(0)).unwrap_or(u32::MAX);
        let max_deadline = options
            .max_duration_minutes
            .map(|value| Instant::now() + minutes(value));
        let idle_limit = options.idle_timeout_minutes.map(minutes);
        let mut clients = session.clients.subscribe();
        let mut idle_since = Some(Instant::now());

        let (status, reason) = loop {
            let idle_deadline = idle_since
                .zip(idle_limit)
                .map(|(since, limit)| since + limit);
            tokio::select! {
                exit = browser.exited() => {
                    break match exit {
                        BrowserExit::Exited { clean: true, .. } => (SessionStatus::Completed, "the browser was closed by a client".to_owned()),
                        BrowserExit::Exited { status, .. } => (SessionStatus::Failed, format!("the browser died on its own ({status})")),
                        BrowserExit::Killed => (SessionStatus::Failed, "the browser was killed".to_owned()),
                    };
                }
                () = session.stop.cancelled() => {
                    let requested = session.stop_reason.lock().ok().and_then(|slot| slot.clone());
                    break requested.unwrap_or((SessionStatus::Completed, "ended".to_owned()));
                }
                () = self.shutdown.cancelled() => break (SessionStatus::Completed, "the server shut down".to_owned()),
                () = sleep_until(max_deadline) => break (SessionStatus::Completed, "max_duration reached".to_owned()),
                () = sleep_until(idle_deadline) => break (SessionStatus::Completed, "idle_timeout reached: no client was connected".to_owned()),
                changed = clients.changed() => {
                    if changed.is_err() { continue; }
                    let count = *clients.borrow_and_update();
                    idle_since = if count == 0 { idle_since.or(Some(Instant::now())) } else { None };
                }
            }
        };

        // Clients go first, so that none of them sees a half-dead browser;
        // the browser is gone before the end is recorded, so that whoever
        // reads "ended" can rely on no process or directory being left.
        session.stop.cancel();
        browser.shut_down().await;
        if let Err(error) = self
            .store
            .end_session(session.id, status, &reason, Timestamp::now())
            .await
        {
            tracing::error!(session_id = %session.id, %error, "cannot record the end of a session");
        }
        if let Ok(mut live) = self.live.lock() {
            live.remove(&session.id);
        }
        drop(capacity);
        tracing::info!(session_id = %session.id, %status, %reason, "session ended");
        session.finished.cancel();
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

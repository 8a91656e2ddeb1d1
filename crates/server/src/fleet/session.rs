//! One running session: its shared handle ([`LiveSession`]), the CDP client
//! count that drives the idle clock, and the supervisor that owns its
//! browser until it ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorage_browser::{Browser, BrowserExit};
use anchorage_browser::{Devtools, PageControl};
use anchorage_core::{BatchId, SessionId, SessionOptions, SessionStatus, TeamId, Timestamp};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::admission::{Held, TeamSlot};
use super::Fleet;

/// A session whose browser is running.
#[derive(Debug)]
pub struct LiveSession {
    /// Its id.
    pub id: SessionId,
    /// Its team.
    pub team_id: TeamId,
    /// The batch it belongs to.
    pub batch_id: Option<BatchId>,
    /// The browser's DevTools pipe (connections to it are made here only).
    pub devtools: Devtools,
    /// Whether live-view viewers may only watch (`session.live_view.read_only`).
    pub live_view_read_only: bool,
    /// The browser's own directory (removed with it): uploads go in its
    /// `uploads` folder, downloads in `downloads`.
    pub files_dir: Option<std::path::PathBuf>,
    /// What the browser downloaded (followed from the session's start).
    pub downloads: anchorage_browser::Downloads,
    /// The server's own connection to the active page, kept between REST
    /// actions (taken out while one runs; a concurrent action opens another).
    pub kept_page: tokio::sync::Mutex<Option<PageControl>>,
    /// Profiles the browser's state is saved into when the session ends.
    save_into: Mutex<Vec<anchorage_core::ProfileId>>,
    /// Its recording under way (id and controls), if it is recorded.
    recording: std::sync::OnceLock<(anchorage_core::RecordingId, anchorage_browser::RecordingControl)>,
    clients: watch::Sender<usize>,
    /// The session's clipboard: headless browsers have no system clipboard,
    /// so what `copy` and `clipboard` set is kept here, for this session only.
    clipboard: Mutex<String>,
    stop: CancellationToken,
    stop_reason: Mutex<Option<(SessionStatus, String)>>,
    /// Fires when the browser has been killed and the end recorded.
    recorded: CancellationToken,
    /// Fires when, after that, every process and directory of it is gone.
    finished: CancellationToken,
}

/// How long an end waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndWait {
    /// Until the end is recorded and the browser's kill is under way (its
    /// clients were cut off before); its processes and directories
    /// disappear moments later (its place is freed only then).
    Recorded,
    /// Until no process or directory of the session is left.
    Gone,
}

impl LiveSession {
    pub(super) fn new(
        id: SessionId,
        team_id: TeamId,
        batch_id: Option<BatchId>,
        devtools: Devtools,
        live_view_read_only: bool,
        files_dir: Option<std::path::PathBuf>,
    ) -> Self {
        let (clients, _) = watch::channel(0_usize);
        Self {
            id,
            team_id,
            batch_id,
            devtools,
            live_view_read_only,
            files_dir,
            downloads: anchorage_browser::Downloads::default(),
            kept_page: tokio::sync::Mutex::new(None),
            save_into: Mutex::new(Vec::new()),
            recording: std::sync::OnceLock::new(),
            clients,
            clipboard: Mutex::new(String::new()),
            stop: CancellationToken::new(),
            stop_reason: Mutex::new(None),
            recorded: CancellationToken::new(),
            finished: CancellationToken::new(),
        }
    }

    /// Counts one more client (CDP or live view) until the guard is dropped.
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

    /// A token that fires when the session starts ending.
    pub(super) fn ending_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Notes the session's recording under way.
    pub(super) fn set_recording(&self, recording: (anchorage_core::RecordingId, anchorage_browser::RecordingControl)) {
        let _ = self.recording.set(recording);
    }

    /// The session's recording under way (id and controls), if any.
    pub fn recording(&self) -> Option<&(anchorage_core::RecordingId, anchorage_browser::RecordingControl)> {
        self.recording.get()
    }

    /// What was last set or copied in this session.
    pub fn clipboard(&self) -> String {
        self.clipboard.lock().map(|text| text.clone()).unwrap_or_default()
    }

    /// Sets the session's clipboard.
    pub fn set_clipboard(&self, text: String) {
        if let Ok(mut clipboard) = self.clipboard.lock() {
            *clipboard = text;
        }
    }

    /// Saves the browser's state into `profile` when the session ends.
    pub fn save_into_on_end(&self, profile: anchorage_core::ProfileId) {
        if let Ok(mut profiles) = self.save_into.lock() {
            if !profiles.contains(&profile) {
                profiles.push(profile);
            }
        }
    }

    fn profiles_to_save(&self) -> Vec<anchorage_core::ProfileId> {
        self.save_into
            .lock()
            .map(|profiles| profiles.clone())
            .unwrap_or_default()
    }

    /// How many CDP clients are connected now.
    pub fn client_count(&self) -> usize {
        *self.clients.borrow()
    }

    /// Asks the supervisor to end the session (the first reason given wins)
    /// and waits as `until` says. `true` if this call was the first to ask.
    pub(super) async fn end(&self, status: SessionStatus, reason: &str, until: EndWait) -> bool {
        let first = !self.stop.is_cancelled();
        if let Ok(mut slot) = self.stop_reason.lock() {
            slot.get_or_insert_with(|| (status, reason.to_owned()));
        }
        self.stop.cancel();
        match until {
            EndWait::Recorded => self.recorded.cancelled().await,
            EndWait::Gone => self.finished.cancelled().await,
        }
        first
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

/// What a supervisor holds for as long as its browser lives.
pub(super) struct Holdings {
    pub engine: Engine,
    pub place: Held,
    pub team_slot: TeamSlot,
}

/// What runs a session: a browser of its own, or a context in a host.
pub(super) enum Engine {
    Browser(Box<Browser>),
    Context {
        context: anchorage_browser::HostedContext,
        host: Arc<super::hosts::Host>,
        hosts: Arc<super::hosts::Hosts>,
    },
}

impl Engine {
    /// The pipe the session's connections are made on (scoped for a context).
    pub(super) fn devtools(&self) -> &Devtools {
        match self {
            Self::Browser(browser) => browser.devtools(),
            Self::Context { context, .. } => context.devtools(),
        }
    }

    /// The session's folder for uploads and downloads.
    pub(super) fn files_dir(&self) -> Option<std::path::PathBuf> {
        match self {
            Self::Browser(browser) => browser.session_dir().map(std::path::Path::to_path_buf),
            Self::Context { context, .. } => Some(context.files_dir().to_path_buf()),
        }
    }

    /// The main process of the browser it runs in.
    pub(super) fn pid(&self) -> u32 {
        match self {
            Self::Browser(browser) => browser.pid(),
            Self::Context { host, .. } => host.pid(),
        }
    }

    /// Resolves when the session ends by itself, with its status and why.
    async fn ended_by_itself(&self) -> (SessionStatus, String) {
        match self {
            Self::Browser(browser) => match browser.exited().await {
                BrowserExit::Exited { clean: true, .. } => (
                    SessionStatus::Completed,
                    "the browser was closed by a client".to_owned(),
                ),
                BrowserExit::Exited { status, .. } => {
                    (SessionStatus::Failed, format!("the browser died on its own ({status})"))
                }
                BrowserExit::Killed => (SessionStatus::Failed, "the browser was killed".to_owned()),
            },
            Self::Context { context, host, .. } => {
                let closed = context.close_requested();
                tokio::select! {
                    why = host.gone() => (SessionStatus::Failed, why),
                    why = context.crashed() => (SessionStatus::Failed, why),
                    () = closed.cancelled() => {
                        (SessionStatus::Completed, "the browser was closed by a client".to_owned())
                    }
                }
            }
        }
    }

    /// Stops it at once, without waiting (a context is disposed by
    /// [`Engine::shut_down`], moments later).
    fn kill_now(&self) {
        if let Self::Browser(browser) = self {
            browser.kill_now();
        }
    }

    /// Ends it and waits until nothing of it is left: a browser's processes
    /// and dirs; a context's pages and folder (and its host, when it was
    /// the host's last session).
    pub(super) async fn shut_down(self) {
        match self {
            Self::Browser(browser) => (*browser).shut_down().await,
            Self::Context { context, host, hosts } => {
                context.dispose().await;
                hosts.release(&host).await;
            }
        }
    }
}

impl Fleet {
    /// Owns one running browser until the session ends, then kills the
    /// browser, removes its dirs, records why, and frees its places.
    pub(super) async fn supervise(
        self: Arc<Self>,
        session: Arc<LiveSession>,
        options: SessionOptions,
        holdings: Holdings,
    ) {
        let Holdings {
            engine,
            place,
            team_slot,
        } = holdings;
        let minute = self.settings.timeout_minute;
        let minutes = |value: i64| minute * u32::try_from(value.max(0)).unwrap_or(u32::MAX);
        let max_deadline = options
            .max_duration_minutes
            .map(|value| Instant::now() + minutes(value));
        let idle_limit: Option<Duration> = options.idle_timeout_minutes.map(minutes);
        let mut clients = session.clients.subscribe();
        let mut idle_since = Some(Instant::now());

        let (status, reason) = loop {
            let idle_deadline = idle_since.zip(idle_limit).map(|(since, limit)| since + limit);
            tokio::select! {
                ended = engine.ended_by_itself() => break ended,
                () = session.stop.cancelled() => {
                    let requested = session.stop_reason.lock().ok().and_then(|slot| slot.clone());
                    break requested.unwrap_or((SessionStatus::Completed, "ended".to_owned()));
                }
                () = self.shutdown.cancelled() => break (SessionStatus::Completed, "the server shut down".to_owned()),
                () = sleep_until(max_deadline) => break (SessionStatus::Completed, "max_duration reached".to_owned()),
                () = sleep_until(idle_deadline) => {
                    break (SessionStatus::Completed, "idle_timeout reached: no client was connected".to_owned());
                }
                changed = clients.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let count = *clients.borrow_and_update();
                    idle_since = if count == 0 { idle_since.or(Some(Instant::now())) } else { None };
                }
            }
        };

        // Clients go first, so that none of them sees a half-dead browser,
        // and from then on no new one gets through (the proxy and the live
        // view close on `stop`). Then the end is recorded while the machine
        // is quiet, and the browser process is killed (one signal: cheap) before
        // the end call answers. The rest of its group is killed and waited
        // for after the answer; its place is freed only once every process
        // and directory of it is gone.
        session.stop.cancel();
        if let Err(error) = self
            .store
            .end_session(session.id, status, &reason, Timestamp::now())
            .await
        {
            tracing::error!(session_id = %session.id, %error, "cannot record the end of a session");
        }
        // A session whose state is saved into a profile is asked to close
        // (so that it writes out what it keeps in memory) after the end call
        // has its answer; the save runs before its place is freed.
        let saves = session.profiles_to_save();
        // Only a browser of its own has a profile directory to save (a
        // context session is refused as a profile's source).
        let profiles = self
            .files
            .profiles
            .clone()
            .filter(|_| !saves.is_empty() && matches!(engine, Engine::Browser(_)));
        if profiles.is_none() {
            engine.kill_now();
        }
        if let Some(profiles) = &profiles {
            profiles.announce_saves(&saves);
        }
        if let Ok(mut live) = self.live.lock() {
            live.remove(&session.id);
        }
        self.metrics.session_ended();
        session.recorded.cancel();
        if let (Some(profiles), Engine::Browser(browser)) = (profiles, &engine) {
            let folder = browser.profile_dir().unwrap_or_default();
            if !browser.close_gracefully(PROFILE_CLOSE_WAIT).await {
                tracing::warn!(session_id = %session.id, "the browser did not close in time; its profile is saved as it is");
                browser.kill_now();
                let _ = browser.exited().await;
            }
            for profile in saves {
                profiles.save_announced(self.store.as_ref(), profile, &folder).await;
            }
        }
        engine.shut_down().await;
        drop(place);
        drop(team_slot);
        if let Some(batch_id) = session.batch_id {
            self.batch_changed(batch_id);
        }
        tracing::info!(session_id = %session.id, %status, %reason, "session ended");
        session.finished.cancel();
    }
}

/// How long a browser whose profile is saved may take to close on its own.
const PROFILE_CLOSE_WAIT: Duration = Duration::from_secs(10);

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

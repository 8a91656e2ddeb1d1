//! Provisioning one admitted start: record the launch, get a browser (from
//! the pool, or launched with one retry), record it running, and hand it to
//! its supervisor.
//!
//! [`Fleet::provision`] has one exit, [`Fleet::finish_provision`], which
//! does what must happen whatever the outcome: tell the waiting caller,
//! re-queue a request that gets another try, and publish the batch change.
//! The steps in between only say how it ended ([`Provisioned`]).

use std::sync::Arc;

use anchorage_browser::{Browser, LaunchError};
use anchorage_core::{
    Isolation, ProfileId, ProfileStatus, RequestId, SessionId, SessionOptions, SessionStatus, TeamId, Timestamp,
};
use anchorage_store::{LaunchFailure, RequestRecord, SessionRecord};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::admission::{Held, TeamSlot};
use super::plan;
use super::pool::{Blocking, Pooled};
use super::session::{EndWait, Engine, Holdings, LiveSession};
use super::{Fleet, Launching, StartOutcome, STORE_RETRY_DELAY};
use crate::profiles::ProfileSeed;

/// Whether a start can begin from a profile now (see [`Fleet::profile_readiness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProfileReadiness {
    /// Its saved copy is the latest.
    Ready,
    /// A save is under way; the state it shows.
    Wait(&'static str),
}

/// How long a start waits for the profile it names to be saved.
pub(super) const PROFILE_SAVE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where a starting session's browser comes from.
pub(super) enum Start {
    /// A pooled browser, with its place.
    Pooled(Pooled),
    /// A fresh launch into this place; `evicted` is a pooled browser that
    /// gave its place up and must be ended first.
    Cold {
        place: Held,
        evicted: Option<Browser>,
        launch_permit: Held,
    },
}

/// How a provisioning ended.
enum Provisioned {
    /// The session runs, under its supervisor.
    Running(SessionId),
    /// Withdrawn (a cancel, an end, an abandoned start, shutdown) before it
    /// was up; whoever withdrew it recorded why.
    Withdrawn,
    /// The request was already being provisioned here (taken twice): the
    /// other provisioning answers for it, this one did nothing.
    Duplicate,
    /// The store could not record the start of the launch: nothing changed
    /// and the request is still pending.
    NotRecorded(String),
    /// The browser did not come up, even on the second try.
    LaunchFailed { session_id: SessionId, message: String },
}

/// Takes a finished launch out of the registry (and tells a cancel waiting
/// for it) however the provisioning ends.
struct Registration<'a> {
    fleet: &'a Fleet,
    request_id: RequestId,
    done: CancellationToken,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Ok(mut launching) = self.fleet.launching.lock() {
            launching.remove(&self.request_id);
        }
        self.done.cancel();
    }
}

impl Fleet {
    /// Provisions one admitted start; see the module doc.
    pub(super) async fn provision(self: Arc<Self>, request: RequestRecord, start: Start, team_slot: TeamSlot) {
        let provisioned = self.provision_steps(&request, start, team_slot).await;
        self.finish_provision(request, provisioned).await;
    }

    /// The one exit of a provisioning.
    async fn finish_provision(&self, request: RequestRecord, provisioned: Provisioned) {
        let (request_id, batch_id) = (request.id, request.batch_id);
        match provisioned {
            Provisioned::Running(session_id) => self.notify(request_id, StartOutcome::Started(session_id)),
            Provisioned::Withdrawn => self.notify(request_id, StartOutcome::Cancelled),
            Provisioned::Duplicate => {
                tracing::warn!(%request_id, "a start request was taken twice; the second is dropped");
            }
            Provisioned::NotRecorded(why) => {
                tracing::error!(%request_id, error = %why, "cannot record a launch; the request is tried again shortly");
                self.notify(request_id, StartOutcome::Unavailable(why));
                let fleet_admission = Arc::clone(&self.admission);
                let shutdown = self.shutdown.clone();
                self.tasks.spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(STORE_RETRY_DELAY) => fleet_admission.push(request),
                        // Still pending in the store: the next start loads it.
                        () = shutdown.cancelled() => {}
                    }
                });
            }
            Provisioned::LaunchFailed { session_id, message } => {
                tracing::warn!(%request_id, %session_id, error = %message, "launch failed");
                match self
                    .queue
                    .fail_launch(request_id, session_id, &message, Timestamp::now())
                    .await
                {
                    Ok(LaunchFailure::Requeued) => self.admission.push(request),
                    Ok(LaunchFailure::Failed) => self.notify(request_id, StartOutcome::Failed(message)),
                    Err(error) => {
                        tracing::error!(%request_id, %error, "cannot record a failed launch");
                        self.notify(request_id, StartOutcome::Failed(message));
                    }
                }
            }
        }
        if let Some(batch_id) = batch_id {
            self.batch_changed(batch_id);
        }
    }

    async fn provision_steps(
        self: &Arc<Self>,
        request: &RequestRecord,
        start: Start,
        team_slot: TeamSlot,
    ) -> Provisioned {
        let options = request.options.clone();
        let session = plan::session_record(
            request,
            SessionId::new_random(),
            self.defaults(),
            self.cluster.me(),
            Timestamp::now(),
        );
        // Registered before the store hears of the launch, so that a cancel
        // that commits after `begin_launch` always finds it. Shutdown stops
        // it too (a child token).
        let abort = self.shutdown.child_token();
        let done = CancellationToken::new();
        let duplicate = match self.launching.lock() {
            Ok(launching) if launching.contains_key(&request.id) => true,
            Ok(mut launching) => {
                launching.insert(
                    request.id,
                    Launching {
                        batch_id: request.batch_id,
                        session_id: session.id,
                        abort: abort.clone(),
                        done: done.clone(),
                    },
                );
                false
            }
            Err(_) => false,
        };
        if duplicate {
            // Its registration belongs to the other provisioning; what this
            // one was given goes back.
            match start {
                Start::Pooled(pooled) => self.pool.put_back(pooled),
                Start::Cold { evicted, .. } => {
                    if let Some(evicted) = evicted {
                        evicted.shut_down().await;
                    }
                }
            }
            return Provisioned::Duplicate;
        }
        let _registration = Registration {
            fleet: self,
            request_id: request.id,
            done,
        };

        let recorded = self.queue.begin_launch(request.id, &session).await;
        if !matches!(recorded, Ok(true)) {
            // An unused pooled browser goes back.
            if let Start::Pooled(pooled) = start {
                self.pool.put_back(pooled);
            }
            return match recorded {
                Err(error) => {
                    Provisioned::NotRecorded(error.unavailable().map_or_else(|| error.to_string(), str::to_owned))
                }
                // Withdrawn while queued.
                _ => Provisioned::Withdrawn,
            };
        }
        if let Some(batch_id) = request.batch_id {
            self.batch_changed(batch_id);
        }

        let started = Instant::now();
        let from_pool = matches!(start, Start::Pooled(_));
        let mut profile_id = None;
        let in_context = matches!(start, Start::Cold { .. })
            && plan::isolation(
                &options,
                self.settings.session_isolation,
                self.settings.default_headless,
            ) == Isolation::Context;
        let (engine, place, authenticating, blocking) = if in_context {
            match self.host_context(&session, &options, start, &abort).await {
                // A host's ad blocking is the host's, ended with it.
                Ok((engine, place, authenticating)) => (engine, place, authenticating, None),
                Err(provisioned) => return provisioned,
            }
        } else {
            let adblock = self.adblock_for(&options).cloned();
            let mut blocking = None;
            let (launched, place) = match start {
                Start::Pooled(Pooled {
                    browser,
                    place,
                    blocking: pooled_blocking,
                    ..
                }) => {
                    // Ads are blocked (or not) before the first page opens.
                    match self.match_blocking(adblock.as_ref(), pooled_blocking, &browser).await {
                        Ok(matched) => blocking = matched.map(|blocking| blocking.stop),
                        Err(message) => {
                            browser.shut_down().await;
                            return Provisioned::LaunchFailed {
                                session_id: session.id,
                                message,
                            };
                        }
                    }
                    if let Err(error) = self.launcher.hand_out(&browser, options.initial_url.as_ref()).await {
                        tracing::warn!(session_id = %session.id, %error, "could not ready a pooled browser fully");
                    }
                    (Ok(browser), place)
                }
                Start::Cold {
                    place,
                    evicted,
                    launch_permit,
                } => {
                    if let Some(evicted) = evicted {
                        // Its place is this start's: it must be gone first.
                        evicted.shut_down().await;
                    }
                    // A saved profile is read (held against removal) until the
                    // launch has copied it. A start that cannot launch gives its
                    // place and launch permit back as they drop.
                    let (found_profile, seed, found) = match self.find_launch_parts(&session, &options).await {
                        Ok(parts) => parts,
                        Err(message) => {
                            return Provisioned::LaunchFailed {
                                session_id: session.id,
                                message,
                            }
                        }
                    };
                    profile_id = found_profile;
                    let blocking_setup = self.adblock_setup(adblock.as_ref(), &abort).await;
                    let launch = plan::launch_request(&session, &options, found, blocking_setup);
                    let launched = self.launch_with_retry(&launch, &abort).await;
                    drop(seed);
                    // Free again for a waiting start or a refill.
                    drop(launch_permit);
                    (launched, place)
                }
            };
            let browser = match launched {
                Ok(browser) => browser,
                Err(LaunchError::Stopped) => return Provisioned::Withdrawn,
                Err(error) => {
                    return Provisioned::LaunchFailed {
                        session_id: session.id,
                        message: error.to_string(),
                    }
                }
            };
            if abort.is_cancelled() {
                browser.shut_down().await;
                return Provisioned::Withdrawn;
            }
            if let (Some(adblock), None) = (&adblock, &blocking) {
                // A browser launched for the session: its first page was
                // held back until ads are blocked.
                let blocked = match self.block_ads(adblock, &browser).await {
                    Ok(started) => {
                        blocking = Some(started.stop);
                        match options
                            .initial_url
                            .as_ref()
                            .filter(|_| !plan::proxy_needs_credentials(&options))
                        {
                            Some(url) => anchorage_browser::open_in_first_page(browser.devtools(), url)
                                .await
                                .map_err(|error| format!("cannot open session.initial_url: {error}")),
                            None => Ok(()),
                        }
                    }
                    Err(message) => Err(message),
                };
                if let Err(message) = blocked {
                    if let Some(stop) = blocking.take() {
                        stop.cancel();
                    }
                    browser.shut_down().await;
                    return Provisioned::LaunchFailed {
                        session_id: session.id,
                        message,
                    };
                }
            }
            let authenticating = match self.answer_proxy_credentials(&options, browser.devtools(), false).await {
                Ok(authenticating) => authenticating,
                Err(message) => {
                    browser.shut_down().await;
                    return Provisioned::LaunchFailed {
                        session_id: session.id,
                        message,
                    };
                }
            };
            (Engine::Browser(Box::new(browser)), place, authenticating, blocking)
        };
        let dismissing = match self.apply_page_rules(&options, engine.devtools()).await {
            Ok(dismissing) => dismissing,
            Err(message) => {
                engine.shut_down().await;
                return Provisioned::LaunchFailed {
                    session_id: session.id,
                    message,
                };
            }
        };
        // The session is connectable (CDP, live view, REST actions, its
        // downloads followed, its end supervised) before anything can say
        // it runs: the row turns `running` only after this, and whoever
        // reads the row (a waiting start, a batch item, another node) hands
        // out a `cdp_url` that answers at once.
        let live = Arc::new(LiveSession::new(
            session.id,
            session.team_id,
            session.batch_id,
            engine.devtools().clone(),
            options.live_view_read_only,
            engine.files_dir(),
        ));
        // The helpers answer for as long as the session lives.
        for helper in [authenticating, dismissing, blocking].into_iter().flatten() {
            let ending = live.ending_token();
            self.tasks.spawn(async move {
                ending.cancelled().await;
                helper.cancel();
            });
        }
        if let Some(folder) = live.files_dir.as_ref().map(|dir| dir.join("downloads")) {
            // Downloads go to the session's folder for as long as it lives.
            let (devtools, downloads, stop) = (live.devtools.clone(), live.downloads.clone(), live.ending_token());
            let session_id = session.id;
            self.tasks.spawn(async move {
                // Whatever it is doing (connecting, too), it lets go of the
                // browser as soon as the session ends.
                let followed = tokio::select! {
                    followed = anchorage_browser::follow_downloads(&devtools, &folder, downloads, stop.clone()) => followed,
                    () = stop.cancelled() => Ok(()),
                };
                if let Err(error) = followed {
                    tracing::debug!(%session_id, %error, "downloads are not followed for this session");
                }
            });
        }
        let timings = match &engine {
            Engine::Browser(browser) => Some(browser.timings()),
            Engine::Context { .. } => None,
        };
        let pid = engine.pid();
        let profile_persists = options.profile.as_ref().map(|profile| profile.persist);
        let recording_size = (options.viewport.width, options.viewport.height);
        if let Ok(mut sessions) = self.live.lock() {
            sessions.insert(session.id, Arc::clone(&live));
        }
        let fleet = Arc::clone(self);
        let holdings = Holdings {
            engine,
            place,
            team_slot,
        };
        let supervised = Arc::clone(&live);
        self.tasks
            .spawn(async move { fleet.supervise(supervised, options, holdings).await });

        let withdrawn = match self.queue.finish_launch(request.id, session.id, Timestamp::now()).await {
            Ok(true) => None,
            // Cancelled or ended while launching: never left running.
            Ok(false) => Some((
                SessionStatus::Completed,
                "ended while its browser was launching".to_owned(),
                None,
            )),
            Err(error) => {
                tracing::error!(session_id = %session.id, %error, "cannot record a started session; ending it");
                let message = "the server could not record the session".to_owned();
                Some((SessionStatus::Failed, message.clone(), Some(message)))
            }
        };
        if let Some((status, reason, failure)) = withdrawn {
            live.end(status, &reason, EndWait::Gone).await;
            return match failure {
                Some(message) => Provisioned::LaunchFailed {
                    session_id: session.id,
                    message,
                },
                None => Provisioned::Withdrawn,
            };
        }
        tracing::info!(
            session_id = %session.id,
            pid,
            from_pool,
            in_context,
            start_ms = started.elapsed().as_secs_f64() * 1000.0,
            launch_prepared_ms = timings.map(|timings| timings.prepared.as_secs_f64() * 1000.0),
            launch_spawned_ms = timings.map(|timings| timings.spawned.as_secs_f64() * 1000.0),
            launch_devtools_ms = timings.map(|timings| timings.devtools_ready.as_secs_f64() * 1000.0),
            "session running"
        );
        // Only a session that really ran saves its state into its profile.
        if let (Some(id), Some(true)) = (profile_id, profile_persists) {
            live.save_into_on_end(id);
        }
        if let (true, Some(recordings)) = (session.recording, &self.files.recordings) {
            match recordings
                .start(
                    Arc::clone(&self.store),
                    crate::recordings::Subject {
                        session_id: session.id,
                        team_id: session.team_id,
                        devtools: live.devtools.clone(),
                        size: recording_size,
                        stop: live.ending_token(),
                    },
                    &self.tasks,
                )
                .await
            {
                Ok(recording) => live.set_recording(recording),
                Err(error) => tracing::error!(session_id = %session.id, %error, "the session cannot be recorded"),
            }
        }
        Provisioned::Running(session.id)
    }

    /// What a start gets where it does not say.
    fn defaults(&self) -> plan::Defaults {
        plan::Defaults {
            headless: self.settings.default_headless,
            recording: self.settings.default_recording,
            can_record: self.files.recordings.is_some(),
        }
    }

    /// What a cold launch needs from outside its options: the saved
    /// profile it begins from (its id, and its copy, held against removal
    /// until the launch has copied it), the team's certificates and the
    /// extensions' folders; or why the start cannot launch.
    async fn find_launch_parts(
        &self,
        session: &SessionRecord,
        options: &SessionOptions,
    ) -> Result<(Option<ProfileId>, Option<ProfileSeed>, plan::Found), String> {
        let (mut profile_id, mut seed) = (None, None);
        if let Some(profile) = &options.profile {
            self.wait_until_saved(session.team_id, &profile.name).await?;
            let found = match &self.files.profiles {
                Some(files) => files.seed(self.store.as_ref(), session.team_id, &profile.name).await,
                None => None,
            };
            let Some((id, copy)) = found else {
                return Err(format!(
                    "browser.profile.name: the profile {:?} does not exist (any more)",
                    profile.name
                ));
            };
            profile_id = Some(id);
            seed = copy;
        }
        let trusted_cas = self.trusted_cas(session.team_id, &options.certificates).await?;
        let found = plan::Found {
            profile_seed: seed.as_ref().map(|seed| (seed.folder.clone(), seed.max_bytes)),
            trusted_cas,
            extension_dirs: options
                .extensions
                .iter()
                .filter_map(|id| self.files.extension_dir(*id))
                .collect(),
        };
        Ok((profile_id, seed, found))
    }

    /// Whether a start can begin from the profile `name` now, must wait for
    /// a save under way (`Wait`, with the state to name), or cannot (why:
    /// missing, failed, or waiting for a session that still runs).
    pub(crate) async fn profile_readiness(&self, team_id: TeamId, name: &str) -> Result<ProfileReadiness, String> {
        let record = self
            .store
            .profile(team_id, name)
            .await
            .map_err(|error| format!("browser.profile.name: the profile {name:?} cannot be read now: {error}"))?
            .ok_or_else(|| format!("browser.profile.name: the profile {name:?} does not exist (any more)"))?;
        let saving_here = self
            .files
            .profiles
            .as_ref()
            .is_some_and(|files| files.is_saving(record.id));
        match record.status {
            _ if saving_here => Ok(ProfileReadiness::Wait("saving")),
            ProfileStatus::Ready => Ok(ProfileReadiness::Ready),
            ProfileStatus::Failed => Err(format!(
                "browser.profile.name: the profile {name:?} is failed: its last save did not complete"
            )),
            ProfileStatus::Pending => {
                // Made from a session: saved once that session ends.
                let source = match record.session_id {
                    Some(source) => self.store.session(team_id, source).await.ok().flatten(),
                    None => None,
                };
                match source.filter(|source| !source.status.is_final()) {
                    Some(source) => Err(format!(
                        "browser.profile.name: the profile {name:?} is pending: it is saved when session {} ends",
                        source.id
                    )),
                    None => Ok(ProfileReadiness::Wait("pending")),
                }
            }
        }
    }

    /// Waits while the profile a start names is being saved (made from a
    /// session that has ended, or a persisting session's state being
    /// written), up to [`PROFILE_SAVE_WAIT`]: a start never begins from a
    /// silently older or empty copy.
    async fn wait_until_saved(&self, team_id: TeamId, name: &str) -> Result<(), String> {
        let deadline = Instant::now() + PROFILE_SAVE_WAIT;
        loop {
            let ProfileReadiness::Wait(state) = self.profile_readiness(team_id, name).await? else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "browser.profile.name: the profile {name:?} is still {state} after {} s; start again once it is ready",
                    PROFILE_SAVE_WAIT.as_secs()
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// For a session behind a proxy that wants credentials: starts
    /// answering them over DevTools (until the returned token fires, or the
    /// browser goes), then opens the first page (held back at launch).
    async fn answer_proxy_credentials(
        &self,
        options: &SessionOptions,
        devtools: &anchorage_browser::Devtools,
        in_a_shared_browser: bool,
    ) -> Result<Option<CancellationToken>, String> {
        let Some(proxy) = options
            .proxy
            .as_ref()
            .filter(|_| plan::proxy_needs_credentials(options))
        else {
            return Ok(None);
        };
        let (username, password) = (
            proxy.username.as_deref().unwrap_or_default(),
            proxy.password.as_deref().unwrap_or_default(),
        );
        let enabled = if in_a_shared_browser {
            anchorage_browser::ProxyAuthenticator::enable_in_targets(devtools, username, password).await
        } else {
            anchorage_browser::ProxyAuthenticator::enable(devtools, username, password).await
        };
        let authenticator = enabled.map_err(|error| format!("cannot answer the proxy's credentials: {error}"))?;
        let stop = CancellationToken::new();
        self.tasks.spawn(authenticator.run(stop.clone()));
        if let Some(url) = &options.initial_url {
            if let Err(error) = anchorage_browser::open_in_first_page(devtools, url).await {
                stop.cancel();
                return Err(format!("cannot open session.initial_url: {error}"));
            }
        }
        Ok(Some(stop))
    }
}

impl Fleet {
    /// A context session's context: on a host of its team with room, or on
    /// a host launched for it (with the start's launch permit), sized and
    /// showing its first page. A start that cannot get one gives its place
    /// back (and its host, if it launched it).
    async fn host_context(
        &self,
        session: &SessionRecord,
        options: &SessionOptions,
        start: Start,
        abort: &CancellationToken,
    ) -> Result<(Engine, Held, Option<CancellationToken>), Provisioned> {
        let failed = |message: String| Provisioned::LaunchFailed {
            session_id: session.id,
            message,
        };
        let Start::Cold {
            place,
            evicted,
            launch_permit,
        } = start
        else {
            return Err(failed("a context session was given a pooled browser".to_owned()));
        };
        if let Some(evicted) = evicted {
            // Its place is this start's: it must be gone first.
            evicted.shut_down().await;
        }
        let team = (!self.settings.hosts_shared_by_teams).then_some(session.team_id);
        let adblock = self.adblock_for(options).cloned();
        let host = match self
            .hosts
            .lease(session.team_id, adblock.is_some(), self.settings.contexts_per_host)
        {
            Some(host) => host,
            // A pooled browser (headless, of the default kind) becomes the
            // host at once: its place goes back (this start holds its own),
            // and the pool refills.
            None => {
                let (browser, pooled_blocking) = match self
                    .settings
                    .default_headless
                    .then(|| self.pool.take_serving(adblock.is_some()))
                    .flatten()
                {
                    Some(Pooled {
                        browser,
                        place: pooled,
                        blocking,
                        ..
                    }) => {
                        drop(pooled);
                        if let Err(error) = self.launcher.hand_out(&browser, None).await {
                            tracing::warn!(session_id = %session.id, %error, "could not ready a pooled browser fully");
                        }
                        (browser, blocking)
                    }
                    None => {
                        let launch = plan::host_launch_request(self.adblock_setup(adblock.as_ref(), abort).await);
                        match self.launch_with_retry(&launch, abort).await {
                            Ok(browser) => (browser, None),
                            Err(LaunchError::Stopped) => return Err(Provisioned::Withdrawn),
                            Err(error) => return Err(failed(error.to_string())),
                        }
                    }
                };
                // Ads are blocked in the whole host (or not) before any
                // session of it can start; it ends with the browser.
                if let Err(message) = self.match_blocking(adblock.as_ref(), pooled_blocking, &browser).await {
                    browser.shut_down().await;
                    return Err(failed(message));
                }
                self.hosts.adopt(browser, team, adblock.is_some())
            }
        };
        // Free again for a waiting start or a refill.
        drop(launch_permit);
        let setup = anchorage_browser::ContextSetup {
            // Behind a proxy that wants credentials, the first page opens
            // once they can be answered (below).
            initial_url: options
                .initial_url
                .clone()
                .filter(|_| !plan::proxy_needs_credentials(options)),
            viewport: (options.viewport.width, options.viewport.height),
            proxy_server: options.proxy.as_ref().map(|proxy| proxy.server.clone()),
            files_dir: host.session_folder(&session.id.as_uuid().simple().to_string()),
        };
        // The host's spare context if it has one (a handout), else a new
        // one (always for a start with a proxy: it is set as the context
        // is made).
        let spare = setup.proxy_server.is_none().then(|| host.take_spare()).flatten();
        let from_spare = spare.is_some();
        let making = async {
            match spare {
                Some(spare) => anchorage_browser::HostedContext::adopt(host.devtools(), spare, &setup).await,
                None => anchorage_browser::HostedContext::open(host.devtools(), &setup).await,
            }
        };
        let opened = tokio::select! {
            opened = making => Some(opened),
            () = abort.cancelled() => None,
        };
        tracing::debug!(session_id = %session.id, host = host.id, from_spare, "context made");
        let default_viewport = anchorage_core::Viewport::default();
        self.hosts.prepare_spare(
            &host,
            self.settings.contexts_per_host,
            (default_viewport.width, default_viewport.height),
        );
        let context = match opened {
            Some(Ok(context)) => context,
            Some(Err(message)) => {
                self.hosts.release(&host).await;
                return Err(failed(format!("cannot make the session's browser context: {message}")));
            }
            None => {
                self.hosts.release(&host).await;
                return Err(Provisioned::Withdrawn);
            }
        };
        let authenticating = match self.answer_proxy_credentials(options, context.devtools(), true).await {
            Ok(authenticating) => authenticating,
            Err(message) => {
                context.dispose().await;
                self.hosts.release(&host).await;
                return Err(failed(message));
            }
        };
        let engine = Engine::Context {
            context,
            host,
            hosts: Arc::clone(&self.hosts),
        };
        if abort.is_cancelled() {
            if let Some(authenticating) = authenticating {
                authenticating.cancel();
            }
            engine.shut_down().await;
            return Err(Provisioned::Withdrawn);
        }
        Ok((engine, place, authenticating))
    }

    /// Starts blocking ads in a browser (until the returned token fires, or
    /// the browser goes).
    pub(super) async fn block_ads(
        &self,
        adblock: &Arc<anchorage_browser::adblock::Adblock>,
        browser: &anchorage_browser::Browser,
    ) -> Result<Blocking, String> {
        let connection = anchorage_browser::adblock::AdblockConnection::enable(browser, Arc::clone(adblock))
            .await
            .map_err(|error| format!("cannot start blocking ads: {error}"))?;
        let (stop, finished) = (CancellationToken::new(), CancellationToken::new());
        let (stopping, finishing) = (stop.clone(), finished.clone());
        self.tasks.spawn(async move {
            connection.run(stopping).await;
            finishing.cancel();
        });
        Ok(Blocking { stop, finished })
    }

    /// A pooled browser's ad blocking made to match a start: kept (or
    /// started, if the pool could not) when `wanted`, else ended.
    async fn match_blocking(
        &self,
        wanted: Option<&Arc<anchorage_browser::adblock::Adblock>>,
        pooled: Option<Blocking>,
        browser: &anchorage_browser::Browser,
    ) -> Result<Option<Blocking>, String> {
        match (wanted, pooled) {
            (Some(_), Some(blocking)) => Ok(Some(blocking)),
            (Some(adblock), None) => self.block_ads(adblock, browser).await.map(Some),
            (None, Some(blocking)) => {
                blocking.end().await;
                Ok(None)
            }
            (None, None) => Ok(None),
        }
    }

    /// For a session with `browser.disable_dialogs` or
    /// `force_popups_as_tabs`: starts applying them to its pages (until the
    /// returned token fires, or the browser goes).
    async fn apply_page_rules(
        &self,
        options: &SessionOptions,
        devtools: &anchorage_browser::Devtools,
    ) -> Result<Option<CancellationToken>, String> {
        let rules = anchorage_browser::PageRules {
            dismiss_dialogs: options.dismiss_dialogs,
            popups_as_tabs: options.popups_as_tabs,
        };
        if rules == anchorage_browser::PageRules::default() {
            return Ok(None);
        }
        let dismisser = anchorage_browser::PageRulesConnection::enable(devtools, rules)
            .await
            .map_err(|error| format!("cannot set the pages up: {error}"))?;
        let stop = CancellationToken::new();
        self.tasks.spawn(dismisser.run(stop.clone()));
        Ok(Some(stop))
    }

    /// The team's CA certificates a start names (name, PEM), or why not.
    async fn trusted_cas(&self, team_id: TeamId, names: &[String]) -> Result<Vec<(String, String)>, String> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let known = self
            .store
            .list_certificates(Some(team_id))
            .await
            .map_err(|error| format!("cannot read the team's certificates: {error}"))?;
        names
            .iter()
            .map(|name| {
                known
                    .iter()
                    .find(|certificate| &certificate.name == name)
                    .map(|certificate| (certificate.name.clone(), certificate.pem.clone()))
                    .ok_or_else(|| format!("browser.certificates: the certificate {name:?} does not exist (any more)"))
            })
            .collect()
    }
}

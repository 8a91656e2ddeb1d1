//! The warm pool: browsers launched ahead with the default configuration,
//! each with a fresh profile, handed out whole to a start that matches.
//!
//! A pooled browser holds a capacity permit like any other, so the pool never
//! takes the server past `max_sessions`; when a start needs a place and only
//! pooled browsers hold them, one is ended to make room. Refills run only
//! when no start is waiting and a launch permit is free, so they yield to
//! user launches. A pooled browser leaves the pool exactly once: taken under
//! the pool's lock, then owned by one session.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anchorage_browser::{launch_until, Browser, LaunchSpec};
use anchorage_core::{SessionOptions, Viewport};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::Fleet;

/// How long refills pause after a failed one.
const REFILL_BACKOFF: Duration = Duration::from_secs(5);
/// How long after a handout refills wait: a launch keeps both cores of a
/// small machine busy for about a second, and the session just handed out
/// is being driven right now. Under a burst, refills wait until it is over.
const REFILL_DELAY: Duration = Duration::from_secs(1);

/// A browser waiting in the pool, with its place.
pub(super) struct Pooled {
    pub browser: Browser,
    pub capacity: OwnedSemaphorePermit,
}

/// Whether a start can take a pooled browser: the launch-time options (the
/// window) are the defaults. An `initial_url` is opened after the handout.
pub(super) fn poolable(options: &SessionOptions) -> bool {
    options.viewport == Viewport::default()
}

impl Fleet {
    /// Takes a live browser from the pool, if there is one.
    pub(super) fn take_pooled(&self) -> Option<Pooled> {
        let mut pool = self.pool.lock().ok()?;
        while let Some(pooled) = pool.pop() {
            if !pooled.browser.has_exited() {
                self.pause_refills(REFILL_DELAY);
                return Some(pooled);
            }
            // Died while waiting: its permit goes back as it drops.
            tracing::warn!(pid = pooled.browser.pid(), "a pooled browser had died; discarding it");
        }
        None
    }

    /// Holds refills back for at least `pause` from now.
    fn pause_refills(&self, pause: Duration) {
        if let Ok(mut paused) = self.refill_paused_until.lock() {
            let until = Instant::now() + pause;
            *paused = Some(paused.map_or(until, |current| current.max(until)));
        }
    }

    /// How many browsers are pooled or being launched for the pool.
    fn pool_level(&self) -> usize {
        self.pool.lock().map(|pool| pool.len()).unwrap_or(0) + self.refills.load(Ordering::SeqCst)
    }

    /// Starts one refill if the pool is short, nothing waits, and a place and
    /// a launch permit are free. Called by the admission loop only.
    pub(super) fn maybe_refill(self: &Arc<Self>, queue_empty: bool) {
        if !queue_empty || self.pool_level() >= self.settings.pool_size || self.shutdown.is_cancelled() {
            return;
        }
        if let Some(until) = self.refill_paused_until.lock().ok().and_then(|until| *until) {
            if Instant::now() < until {
                // Come back when the pause is over (one timer at a time).
                if !self.refill_timer.swap(true, Ordering::SeqCst) {
                    let fleet = Arc::clone(self);
                    self.tasks.spawn(async move {
                        tokio::select! {
                            () = tokio::time::sleep_until(until) => {}
                            () = fleet.shutdown.cancelled() => {}
                        }
                        fleet.refill_timer.store(false, Ordering::SeqCst);
                        fleet.queue_changed.notify_one();
                    });
                }
                return;
            }
        }
        let Ok(capacity) = Arc::clone(&self.capacity).try_acquire_owned() else {
            return;
        };
        let Ok(launch_permit) = Arc::clone(&self.launches).try_acquire_owned() else {
            return;
        };
        self.refills.fetch_add(1, Ordering::SeqCst);
        let fleet = Arc::clone(self);
        self.tasks.spawn(async move {
            let name = format!("pool{}", uuid::Uuid::new_v4().simple());
            let spec = LaunchSpec {
                ready_timeout: fleet.settings.launch_timeout,
                window_frame: fleet.window_frame(),
                host_resolver_rules: fleet.settings.host_resolver_rules.clone(),
                run_as: fleet.settings.run_as.clone(),
                sandbox: fleet.settings.sandbox,
                ..LaunchSpec::new(
                    fleet.settings.chromium.clone(),
                    fleet.settings.browser_dirs.for_session(&name),
                    (Viewport::default().width, Viewport::default().height),
                    None,
                )
            };
            let launched = launch_until(&spec, fleet.shutdown.cancelled()).await;
            drop(launch_permit);
            match &launched {
                Ok(browser) => fleet.metrics.launched(browser.timings().devtools_ready),
                Err(anchorage_browser::LaunchError::Stopped) => {}
                Err(_) => fleet.metrics.launch_failed(),
            }
            match launched {
                Ok(browser) => {
                    if spec.window_frame.is_none() {
                        fleet.fit_first_viewport(&browser, Viewport::default()).await;
                    }
                    if fleet.shutdown.is_cancelled() {
                        browser.shut_down().await;
                    } else if let Ok(mut pool) = fleet.pool.lock() {
                        tracing::debug!(pid = browser.pid(), "pool refilled");
                        pool.push(Pooled { browser, capacity });
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "a pool refill failed; refills pause for a while");
                    fleet.pause_refills(REFILL_BACKOFF);
                }
            }
            fleet.refills.fetch_sub(1, Ordering::SeqCst);
            fleet.queue_changed.notify_one();
        });
    }

    /// Ends every pooled browser (on shutdown).
    pub(super) async fn drain_pool(&self) {
        let pooled: Vec<Pooled> = self
            .pool
            .lock()
            .map(|mut pool| pool.drain(..).collect())
            .unwrap_or_default();
        for Pooled { browser, capacity } in pooled {
            browser.shut_down().await;
            drop(capacity);
        }
    }
}

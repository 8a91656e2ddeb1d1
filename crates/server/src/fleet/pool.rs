//! The warm pool: browsers launched ahead with the default window, each with
//! a fresh profile, handed out whole to a start that matches.
//!
//! A pooled browser holds a place like any other, so the pool never takes
//! the server past `max_sessions`; when a start needs a place and only
//! pooled browsers hold them, admission takes one and ends it to make room.
//! A pooled browser leaves the pool exactly once: taken under the pool's
//! lock, then owned by one session. Refills are launched at the lowest CPU
//! priority (raised at handout, see `Launcher::hand_out`), only when no
//! start waits and a launch permit is free, and not in the moment after a
//! handout, while its session is being driven.
//!
//! A pooled browser blocks ads from the time it is pooled (the default of a
//! start), so that a start with ad blocking pays nothing for it at the
//! handout. It cannot stop (its filter, see
//! `anchorage_browser::adblock::filter`, and its extension's stylesheet,
//! `anchorage_browser::adblock::sheet`, are there for its life), so it
//! serves only starts that block; the pool's mix follows its recent starts: when some of them turn
//! blocking off, that share of the pool is launched without it (a start the
//! mix did not serve ends one pooled browser of the other kind, and the
//! refill brings one of its own).
//!
//! This part keeps the browsers and decides when a refill may start; the
//! fleet launches them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use anchorage_browser::Browser;
use anchorage_core::{SessionOptions, Viewport};
use tokio::time::Instant;

use super::admission::Held;

/// How many recent starts the pool's mix follows.
const DEMAND_WINDOW: usize = 20;

/// How long refills pause after a failed one.
pub(super) const REFILL_BACKOFF: Duration = Duration::from_secs(5);

/// A browser waiting in the pool, with its place.
pub(super) struct Pooled {
    pub browser: Browser,
    pub place: Held,
    /// Its ad blocking, on from the start (most starts want it); `Some`
    /// exactly when it was launched to block (its filter and its
    /// extension's stylesheet stay for its life), so it serves only starts
    /// that block ads.
    pub blocking: Option<Blocking>,
}

impl Pooled {
    /// Whether it blocks ads (for its life).
    fn blocks(&self) -> bool {
        self.blocking.is_some()
    }
}

/// A browser's ad blocking, running (`Fleet::block_ads`).
#[derive(Debug)]
pub(crate) struct Blocking {
    /// Ends it.
    pub stop: tokio_util::sync::CancellationToken,
    /// Fires once its connection to the browser is closed (nothing is
    /// blocked after).
    pub finished: tokio_util::sync::CancellationToken,
}

impl Blocking {
    /// Ends it, and waits until nothing is blocked any more.
    pub(crate) async fn end(self) {
        self.stop.cancel();
        self.finished.cancelled().await;
    }
}

/// Whether a start can take a pooled browser: its launch-time options (the
/// window, a profile, a proxy, extensions, CA certificates, Chromium switches) are the defaults. An `initial_url` is opened after the handout.
pub(super) fn poolable(options: &SessionOptions, default_headless: bool) -> bool {
    options.headless_requested.unwrap_or(default_headless) == default_headless
        && options.viewport == Viewport::default()
        && !super::plan::sets_the_process(options)
}

/// Whether a refill may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refill {
    /// Yes: one is counted as under way; report it with `refilled`.
    Start,
    /// Not before this moment; `first` is true for the first caller told
    /// so, who sets the one timer that comes back then.
    After { at: Instant, first: bool },
    /// Not needed.
    No,
}

#[derive(Default)]
struct State {
    browsers: Vec<Pooled>,
    refilling: usize,
    paused_until: Option<Instant>,
    timer_set: bool,
    /// Whether each recent start the pool could serve blocked ads (newest
    /// last, at most [`DEMAND_WINDOW`]).
    recent: VecDeque<bool>,
}

/// The browsers launched ahead.
pub(super) struct Pool {
    size: usize,
    /// How long refills wait after a handout.
    refill_delay: Duration,
    state: Mutex<State>,
}

impl Pool {
    /// An empty pool that keeps `size` browsers.
    pub(super) fn new(size: usize, refill_delay: Duration) -> Self {
        Self {
            size,
            refill_delay,
            state: Mutex::new(State::default()),
        }
    }

    /// Takes a live browser, if there is one; refills pause for a moment.
    pub(super) fn take(&self) -> Option<Pooled> {
        let mut state = self.state.lock().ok()?;
        while let Some(pooled) = state.browsers.pop() {
            if !pooled.browser.has_exited() {
                let until = Instant::now() + self.refill_delay;
                state.paused_until = Some(state.paused_until.map_or(until, |current| current.max(until)));
                return Some(pooled);
            }
            // Died while waiting: its place goes back as it drops.
            tracing::warn!(pid = pooled.browser.pid(), "a pooled browser had died; discarding it");
        }
        None
    }

    /// A pooled browser for a start that blocks ads (`blocks`: one launched
    /// to block) or not (one launched without it).
    pub(super) fn take_serving(&self, blocks: bool) -> Option<Pooled> {
        let mut state = self.state.lock().ok()?;
        state.browsers.retain(|pooled| {
            let alive = !pooled.browser.has_exited();
            if !alive {
                tracing::warn!(pid = pooled.browser.pid(), "a pooled browser had died; discarding it");
            }
            alive
        });
        let at = state.browsers.iter().rposition(|pooled| pooled.blocks() == blocks)?;
        let pooled = state.browsers.remove(at);
        let until = Instant::now() + self.refill_delay;
        state.paused_until = Some(state.paused_until.map_or(until, |current| current.max(until)));
        Some(pooled)
    }

    /// Notes a start the pool could have served, and whether it blocks ads.
    pub(super) fn note_start(&self, blocks: bool) {
        if let Ok(mut state) = self.state.lock() {
            if state.recent.len() == DEMAND_WINDOW {
                state.recent.pop_front();
            }
            state.recent.push_back(blocks);
        }
    }

    /// How many of the pool's browsers the recent starts want launched
    /// without a filter (their share of the pool, rounded).
    fn unfiltered_wanted(&self, state: &State) -> usize {
        let off = state.recent.iter().filter(|blocks| !**blocks).count();
        if off == 0 {
            return 0;
        }
        (self.size * off * 2 + state.recent.len()) / (state.recent.len() * 2)
    }

    /// Whether the next refill launches a browser whose filter blocks
    /// requests (on a node that has one): unless the pool holds fewer
    /// browsers without than the recent starts want.
    pub(super) fn refill_filters(&self) -> bool {
        let Ok(state) = self.state.lock() else {
            return true;
        };
        let unfiltered = state.browsers.iter().filter(|pooled| !pooled.blocks()).count();
        unfiltered >= self.unfiltered_wanted(&state)
    }

    /// A pooled browser whose filter blocks requests, taken out to make
    /// room for one without, when the pool holds fewer of those than the
    /// recent starts want; `None` otherwise.
    pub(super) fn take_for_the_mix(&self) -> Option<Pooled> {
        let mut state = self.state.lock().ok()?;
        let unfiltered = state.browsers.iter().filter(|pooled| !pooled.blocks()).count();
        if unfiltered >= self.unfiltered_wanted(&state) {
            return None;
        }
        let at = state.browsers.iter().position(|pooled| pooled.blocks())?;
        Some(state.browsers.remove(at))
    }

    /// Puts back a browser that was taken but not used.
    pub(super) fn put_back(&self, pooled: Pooled) {
        if let Ok(mut state) = self.state.lock() {
            state.browsers.push(pooled);
        }
    }

    /// How many browsers wait in the pool.
    pub(super) fn len(&self) -> usize {
        self.state.lock().map(|state| state.browsers.len()).unwrap_or(0)
    }

    /// Whether a refill may start now, counting it as under way if so.
    pub(super) fn plan_refill(&self, now: Instant) -> Refill {
        let Ok(mut state) = self.state.lock() else {
            return Refill::No;
        };
        if state.browsers.len() + state.refilling >= self.size {
            return Refill::No;
        }
        if let Some(at) = state.paused_until.filter(|at| now < *at) {
            let first = !state.timer_set;
            state.timer_set = true;
            return Refill::After { at, first };
        }
        state.refilling += 1;
        Refill::Start
    }

    /// The timer set after `Refill::After { first: true }` went off.
    pub(super) fn timer_fired(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.timer_set = false;
        }
    }

    /// A refill planned with `Refill::Start` did not start after all.
    pub(super) fn refill_skipped(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.refilling = state.refilling.saturating_sub(1);
        }
    }

    /// A refill ended: with its browser, or failed (refills then pause).
    pub(super) fn refilled(&self, outcome: Option<Pooled>) {
        if let Ok(mut state) = self.state.lock() {
            state.refilling = state.refilling.saturating_sub(1);
            match outcome {
                Some(pooled) => state.browsers.push(pooled),
                None => {
                    let until = Instant::now() + REFILL_BACKOFF;
                    state.paused_until = Some(state.paused_until.map_or(until, |current| current.max(until)));
                }
            }
        }
    }

    /// Every pooled browser, taken out (at shutdown).
    pub(super) fn drain(&self) -> Vec<Pooled> {
        self.state
            .lock()
            .map(|mut state| state.browsers.drain(..).collect())
            .unwrap_or_default()
    }
}

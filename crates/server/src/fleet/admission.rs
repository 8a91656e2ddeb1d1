//! Admission: the queue of start requests waiting for a browser, and the
//! three limits a start must pass to leave it: a place (`max_sessions`), its
//! team's quota (`team_max_sessions`) and a launch permit
//! (`launch_concurrency`).
//!
//! Order: fair across teams (the eligible team served least recently goes
//! next, [`FairQueue`]), creation order within a team; a team at its quota
//! is passed over. A team's place in its quota is a [`TeamSlot`], held from
//! admission until its browser is gone. Every change that could let a
//! waiting start through (a request queued, a slot or permit freed) wakes
//! the admission loop through [`Admission::wake`].
//!
//! This part decides who may go; it does not launch, touch the store, or
//! know about the pool.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anchorage_core::{FairQueue, RequestId, TeamId};
use anchorage_store::RequestRecord;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The queue and the team loads, under one lock.
#[derive(Default)]
struct Queue {
    waiting: FairQueue<TeamId, RequestRecord>,
    /// Ids in `waiting`, so that a request is queued at most once.
    queued: HashSet<RequestId>,
    /// Browsers of each team, launching or running.
    team_load: HashMap<TeamId, usize>,
}

/// Who may start next.
pub(super) struct Admission {
    queue: Mutex<Queue>,
    team_quota: Option<usize>,
    capacity: Arc<Semaphore>,
    launches: Arc<Semaphore>,
    changed: Notify,
    /// Wake-ups so far, and how many of them a finished round had seen when
    /// it began: equal when the loop has looked at every change.
    wakes: AtomicU64,
    seen: AtomicU64,
}

/// A team's place in its quota, held from admission until the browser is
/// gone; dropping it frees the place and wakes the admission loop.
pub(crate) struct TeamSlot {
    admission: Arc<Admission>,
    team_id: TeamId,
    /// Whether dropping it wakes the loop (not for a slot never used).
    wake: bool,
}

impl Drop for TeamSlot {
    fn drop(&mut self) {
        if let Ok(mut queue) = self.admission.queue.lock() {
            if let Some(count) = queue.team_load.get_mut(&self.team_id) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    queue.team_load.remove(&self.team_id);
                }
            }
        }
        if self.wake {
            self.admission.wake();
        }
    }
}

/// A place (`max_sessions`) or a launch permit (`launch_concurrency`),
/// held by a start or a refill. Dropping it is the one way to give it
/// back: the permit returns, and once it was put to use (see
/// [`Held::in_use`]) the admission loop wakes, so that a start waiting for
/// it is looked at, whatever path the holder left by. One taken and given
/// back within an admission round does not wake it (that round sees it).
pub(crate) struct Held {
    permit: Option<OwnedSemaphorePermit>,
    admission: Arc<Admission>,
    wake: bool,
}

impl Held {
    /// Put to use: giving it back from now on wakes the admission loop.
    pub(super) fn in_use(mut self) -> Self {
        self.wake = true;
        self
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.permit.take());
        if self.wake {
            self.admission.wake();
        }
    }
}

impl Admission {
    /// An empty queue with these limits.
    pub(super) fn new(max_sessions: usize, launch_concurrency: usize, team_quota: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(Queue::default()),
            team_quota,
            capacity: Arc::new(Semaphore::new(max_sessions)),
            launches: Arc::new(Semaphore::new(launch_concurrency)),
            changed: Notify::new(),
            wakes: AtomicU64::new(0),
            seen: AtomicU64::new(0),
        })
    }

    /// Wakes the admission loop: something changed that may let a start through.
    pub(super) fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// Wake-ups so far; a round reads it when it begins and reports it with
    /// [`Admission::round_done`].
    pub(super) fn round_begins(&self) -> u64 {
        self.wakes.load(Ordering::SeqCst)
    }

    /// A round that began at `wakes` is done.
    pub(super) fn round_done(&self, wakes: u64) {
        self.seen.fetch_max(wakes, Ordering::SeqCst);
    }

    /// Changes no finished round has looked at yet (0: the loop is idle and
    /// up to date).
    pub(super) fn unseen_changes(&self) -> u64 {
        self.wakes
            .load(Ordering::SeqCst)
            .saturating_sub(self.seen.load(Ordering::SeqCst))
    }

    /// Resolves at the next [`Admission::wake`] (or at once if one came
    /// since the last wait).
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Queues a request at the end of its team's line, unless it is queued.
    pub(super) fn push(&self, request: RequestRecord) {
        if let Ok(mut queue) = self.queue.lock() {
            if queue.queued.insert(request.id) {
                queue.waiting.push(request.team_id, request);
            }
        }
        self.wake();
    }

    /// Puts a request that was taken but could not start back at the head
    /// of its team's line, giving back its slot without waking the loop
    /// (which would only take it again).
    pub(super) fn push_back_unstarted(&self, request: RequestRecord, mut slot: TeamSlot) {
        if let Ok(mut queue) = self.queue.lock() {
            if queue.queued.insert(request.id) {
                queue.waiting.push_front(request.team_id, request);
            }
        }
        slot.wake = false;
        drop(slot);
    }

    /// Drops queued requests for which `gone` holds.
    pub(super) fn remove(&self, mut gone: impl FnMut(&RequestRecord) -> bool) {
        if let Ok(mut queue) = self.queue.lock() {
            let Queue { waiting, queued, .. } = &mut *queue;
            waiting.retain(|request| {
                let keep = !gone(request);
                if !keep {
                    queued.remove(&request.id);
                }
                keep
            });
        }
    }

    /// The next request whose team is under its quota, with its team slot.
    pub(super) fn pop(self: &Arc<Self>) -> Option<(RequestRecord, TeamSlot)> {
        let mut queue = self.queue.lock().ok()?;
        let Queue {
            waiting,
            queued,
            team_load,
        } = &mut *queue;
        let quota = self.team_quota;
        let (team_id, request) =
            waiting.pop(|team| quota.is_none_or(|quota| team_load.get(team).copied().unwrap_or(0) < quota))?;
        queued.remove(&request.id);
        *team_load.entry(team_id).or_insert(0) += 1;
        Some((
            request,
            TeamSlot {
                admission: Arc::clone(self),
                team_id,
                wake: true,
            },
        ))
    }

    /// How many requests wait.
    pub(super) fn queued(&self) -> usize {
        self.queue.lock().map(|queue| queue.waiting.len()).unwrap_or(0)
    }

    /// How many places are free.
    pub(super) fn free_places(&self) -> usize {
        self.capacity.available_permits()
    }

    /// A place for one more browser, if one is free.
    pub(super) fn try_place(self: &Arc<Self>) -> Option<Held> {
        let permit = Arc::clone(&self.capacity).try_acquire_owned().ok()?;
        Some(Held {
            permit: Some(permit),
            admission: Arc::clone(self),
            wake: false,
        })
    }

    /// Whether a place is free now.
    pub(super) fn place_free(&self) -> bool {
        self.capacity.available_permits() > 0
    }

    /// A launch permit, if one is free.
    pub(super) fn try_launch(self: &Arc<Self>) -> Option<Held> {
        let permit = Arc::clone(&self.launches).try_acquire_owned().ok()?;
        Some(Held {
            permit: Some(permit),
            admission: Arc::clone(self),
            wake: false,
        })
    }
}

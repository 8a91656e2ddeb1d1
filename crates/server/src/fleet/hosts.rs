//! Host browsers: Chromiums that serve several context sessions, each a
//! browser context of its own.
//!
//! A host serves one team (unless `ANCHORAGE_HOSTS_SHARED_BY_TEAMS`) and at
//! most `ANCHORAGE_CONTEXTS_PER_HOST` sessions, all with ad blocking on or
//! all with it off (it is applied to the whole browser, see
//! `anchorage_browser::adblock`). A context start leases a
//! place on a host with room, or launches a new host (with the launch
//! permit its admission gave it). A host is retired, its browser shut down
//! and its dirs removed, when its last session leaves; a host whose browser
//! dies fails exactly its own sessions (their supervisors see
//! [`Host::gone`]).
//!
//! A host whose browser grew past `ANCHORAGE_HOST_MAX_MEMORY_MIB` (by the
//! fleet's memory readings) is closed the same way: it takes no more
//! sessions, and is retired when its last one ends.
//!
//! Each host keeps one spare context made ahead (blank, at the default
//! viewport), so that a start on a host that runs is a handout: the start
//! takes it, and another is made behind it while the host has room.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anchorage_browser::{Browser, BrowserExit, Devtools, SpareContext};
use anchorage_core::TeamId;
use tokio_util::sync::CancellationToken;

/// One host browser.
#[derive(Debug)]
pub(crate) struct Host {
    /// Its number on this node (for logs).
    pub id: u64,
    /// The team it serves (`None`: any).
    team: Option<TeamId>,
    /// Whether its sessions have ads blocked.
    adblock: bool,
    devtools: Devtools,
    pid: u32,
    /// The browser's own directory (context sessions' folders go in it).
    dir: Option<std::path::PathBuf>,
    /// Sessions on it, and whether it takes no more.
    load: Mutex<Load>,
    /// Fired to shut the browser down (the last session left).
    retire: CancellationToken,
    /// Fires when its browser died on its own, with why.
    died: CancellationToken,
    death: Mutex<Option<String>>,
    /// Fires when its browser, processes and dirs are gone.
    finished: CancellationToken,
    /// A context made ahead for the next start.
    spare: Mutex<Option<SpareContext>>,
    /// Whether a spare is being made.
    preparing: AtomicBool,
}

#[derive(Debug, Default)]
struct Load {
    sessions: usize,
    closed: bool,
}

impl Host {
    /// Its DevTools pipe (unscoped: the server's own).
    pub(crate) fn devtools(&self) -> &Devtools {
        &self.devtools
    }

    /// Its browser's main process.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The folder for one session's files.
    pub(crate) fn session_folder(&self, name: &str) -> std::path::PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join("contexts")
            .join(name)
    }

    /// The spare context, if one is ready.
    pub(crate) fn take_spare(&self) -> Option<SpareContext> {
        self.spare.lock().ok()?.take()
    }

    /// Resolves when its browser died on its own, with why.
    pub(crate) async fn gone(&self) -> String {
        self.died.cancelled().await;
        self.death
            .lock()
            .ok()
            .and_then(|death| death.clone())
            .unwrap_or_else(|| "its host browser died".to_owned())
    }
}

/// This node's host browsers.
#[derive(Debug, Default)]
pub(crate) struct Hosts {
    hosts: Mutex<Vec<Arc<Host>>>,
    next_id: AtomicU64,
}

impl Hosts {
    /// A place on a host that serves `team` (with ad blocking as
    /// `adblock` says) and has room, if there is one.
    pub(crate) fn lease(&self, team: TeamId, adblock: bool, per_host: usize) -> Option<Arc<Host>> {
        // Chosen and counted under the lock, so that two starts never take
        // a host's last place both.
        let hosts = self.hosts.lock().ok()?;
        let host = with_room(&hosts, team, adblock, per_host)?;
        if let Ok(mut load) = host.load.lock() {
            load.sessions += 1;
        }
        Some(Arc::clone(host))
    }

    /// Whether a host serves `team` and has room (a start of the team would
    /// launch none).
    pub(crate) fn has_room(&self, team: TeamId, adblock: bool, per_host: usize) -> bool {
        self.hosts
            .lock()
            .is_ok_and(|hosts| with_room(&hosts, team, adblock, per_host).is_some())
    }

    /// Takes a freshly launched browser as a host for `team` (any team when
    /// `None`) with one session leased on it, and starts the task that owns
    /// it until it is retired or dies. `adblock` says whether ads are blocked
    /// in it already.
    pub(crate) fn adopt(self: &Arc<Self>, browser: Browser, team: Option<TeamId>, adblock: bool) -> Arc<Host> {
        let host = Arc::new(Host {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            team,
            adblock,
            devtools: browser.devtools().clone(),
            pid: browser.pid(),
            dir: browser.session_dir().map(std::path::Path::to_path_buf),
            load: Mutex::new(Load {
                sessions: 1,
                closed: false,
            }),
            retire: CancellationToken::new(),
            died: CancellationToken::new(),
            death: Mutex::new(None),
            finished: CancellationToken::new(),
            spare: Mutex::new(None),
            preparing: AtomicBool::new(false),
        });
        if let Ok(mut hosts) = self.hosts.lock() {
            hosts.push(Arc::clone(&host));
        }
        let (hosts, owned) = (Arc::clone(self), Arc::clone(&host));
        tokio::spawn(async move {
            tokio::select! {
                exit = browser.exited() => {
                    let why = match exit {
                        BrowserExit::Exited { status, .. } => format!("its host browser exited ({status})"),
                        BrowserExit::Killed => "its host browser was killed".to_owned(),
                    };
                    tracing::warn!(host = owned.id, pid = owned.pid, %why, "a host browser died; its sessions fail");
                    if let Ok(mut death) = owned.death.lock() {
                        *death = Some(why);
                    }
                    owned.died.cancel();
                    hosts.forget(&owned);
                }
                () = owned.retire.cancelled() => {}
            }
            browser.shut_down().await;
            owned.finished.cancel();
        });
        host
    }

    /// Makes a spare context on `host` in the background, unless it has one
    /// (or one is being made), or is full, retiring or dead. A spare dies
    /// with its host.
    pub(crate) fn prepare_spare(&self, host: &Arc<Host>, per_host: usize, viewport: (u32, u32)) {
        let has_room = host
            .load
            .lock()
            .is_ok_and(|load| !load.closed && load.sessions < per_host);
        let has_spare = host.spare.lock().is_ok_and(|spare| spare.is_some());
        if !has_room || has_spare || host.died.is_cancelled() || host.preparing.swap(true, Ordering::AcqRel) {
            return;
        }
        let host = Arc::clone(host);
        tokio::spawn(async move {
            let made = tokio::select! {
                made = SpareContext::make(&host.devtools, viewport) => Some(made),
                () = host.retire.cancelled() => None,
                () = host.died.cancelled() => None,
            };
            match made {
                Some(Ok(spare)) => {
                    if let Ok(mut slot) = host.spare.lock() {
                        *slot = Some(spare);
                    }
                }
                Some(Err(error)) => tracing::debug!(host = host.id, %error, "no spare context made"),
                None => {}
            }
            host.preparing.store(false, Ordering::Release);
        });
    }

    /// Gives a session's place back; the last one out retires the host and
    /// waits until its browser is gone.
    pub(crate) async fn release(&self, host: &Arc<Host>) {
        let last = match host.load.lock() {
            Ok(mut load) => {
                load.sessions = load.sessions.saturating_sub(1);
                if load.sessions == 0 {
                    load.closed = true;
                }
                load.closed && load.sessions == 0
            }
            Err(_) => false,
        };
        if last {
            self.forget(host);
            host.retire.cancel();
            host.finished.cancelled().await;
        }
    }

    /// Closes every host whose browser uses more than `limit` bytes by
    /// this reading (bytes per browser pid): it takes no more sessions, and
    /// is retired when its last one ends (at once if it has none). Which
    /// hosts were closed now, with their size.
    pub(crate) fn close_oversized(
        &self,
        by_browser: &std::collections::HashMap<u32, u64>,
        limit: u64,
    ) -> Vec<(u64, u64)> {
        let hosts = self.hosts.lock().map(|hosts| hosts.clone()).unwrap_or_default();
        let mut closed = Vec::new();
        for host in hosts {
            let Some(&bytes) = by_browser.get(&host.pid) else {
                continue;
            };
            if bytes <= limit {
                continue;
            }
            let empty = match host.load.lock() {
                Ok(mut load) if !load.closed => {
                    load.closed = true;
                    load.sessions == 0
                }
                _ => continue,
            };
            closed.push((host.id, bytes));
            if empty {
                self.forget(&host);
                host.retire.cancel();
            }
        }
        closed
    }

    fn forget(&self, host: &Arc<Host>) {
        if let Ok(mut hosts) = self.hosts.lock() {
            hosts.retain(|kept| !Arc::ptr_eq(kept, host));
        }
    }

    /// How many hosts run.
    pub(crate) fn count(&self) -> usize {
        self.hosts.lock().map(|hosts| hosts.len()).unwrap_or(0)
    }
}

/// The fullest of `hosts` that serves `team` and has room: fewer hosts stay up.
fn with_room(hosts: &[Arc<Host>], team: TeamId, adblock: bool, per_host: usize) -> Option<&Arc<Host>> {
    let mut best: Option<(&Arc<Host>, usize)> = None;
    for host in hosts
        .iter()
        .filter(|host| host.team.is_none_or(|served| served == team) && host.adblock == adblock)
    {
        let Ok(load) = host.load.lock() else { continue };
        if load.closed || load.sessions >= per_host || host.died.is_cancelled() {
            continue;
        }
        if best.is_none_or(|(_, sessions)| load.sessions > sessions) {
            best = Some((host, load.sessions));
        }
    }
    best.map(|(host, _)| host)
}

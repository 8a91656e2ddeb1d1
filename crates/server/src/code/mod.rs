//! Users' code beside their sessions: `execute_code` snippets and code
//! tasks' runs.
//!
//! A run is one sandboxed Node process (`anchorage_browser::CodeProcess`)
//! that connects to its session over CDP and to this server's API with a
//! credential of its own (`auth::TokenSigner::run_key`), valid for the
//! run's team while its execution is unfinished. The runner reaches the
//! server through a Unix socket in the data dir ([`SOCKET_NAME`]), the only
//! way out of its network namespace.
//!
//! This module owns the node's run slots (at most `max_runs` at once, and
//! `team_max_runs` of one team; a few more may wait, the rest are `429`),
//! the warm runners, and an execution's life: stored as `running`, run,
//! stored as finished. It does not parse requests (the routes do) and
//! starts no session (a task's run asks the fleet, through the routes).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anchorage_browser::{CodeProcess, RunFailure, RunLimits, SandboxSettings, Zygote};
use anchorage_core::{ExecutionStatus, TeamId, Timestamp};
use anchorage_store::ExecutionRecord;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::config::CodeConfig;
use crate::error::ApiError;

/// The socket runners reach the server through, in [`socket_dir`].
pub const SOCKET_NAME: &str = "server.sock";

/// The dir of the runners' socket under a data dir.
pub fn socket_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("code")
}

/// How many runs may wait for a slot, per slot: beyond that a run is `429`.
const WAITING_PER_SLOT: usize = 4;

/// What a run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// An `execute_code` snippet: an async function body.
    Snippet,
    /// A task's code: a module with a default export.
    Task,
}

/// What the runner is given.
#[derive(Debug, Clone)]
pub struct Job {
    /// Snippet or task.
    pub kind: RunKind,
    /// The code (TypeScript or JavaScript), decoded.
    pub code: String,
    /// The session it runs beside, and the CDP URL that reaches it.
    pub session: Option<(anchorage_core::SessionId, String)>,
    /// The run's credential.
    pub api_key: String,
    /// `ANCHOR_*` inputs, given to the code as environment variables.
    pub inputs: Vec<(String, String)>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// It returned: the JSON of its value (none for `undefined`).
    Returned(Option<String>),
    /// It failed: its error, or why it could not run.
    Failed(String),
    /// It ran past its time.
    TimedOut(Duration),
    /// Its session ended first, or the server is stopping.
    Cancelled(String),
}

impl RunEnd {
    /// The execution state it leaves.
    pub fn status(&self) -> ExecutionStatus {
        match self {
            Self::Returned(_) => ExecutionStatus::Success,
            Self::Failed(_) => ExecutionStatus::Failure,
            Self::TimedOut(_) => ExecutionStatus::Timeout,
            Self::Cancelled(_) => ExecutionStatus::Cancelled,
        }
    }

    /// The error it leaves, if any.
    pub fn error(&self) -> Option<String> {
        match self {
            Self::Returned(_) => None,
            Self::Failed(error) | Self::Cancelled(error) => Some(error.clone()),
            Self::TimedOut(limit) => Some(format!(
                "the code ran for longer than {} s and was stopped (ANCHORAGE_CODE_TIMEOUT_SECONDS)",
                limit.as_secs()
            )),
        }
    }

    /// The output it leaves, if any.
    pub fn output(&self) -> Option<String> {
        match self {
            Self::Returned(output) => output.clone(),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Slots {
    running: usize,
    waiting: usize,
    by_team: HashMap<TeamId, usize>,
}

/// Runs users' code on this node.
pub struct CodeRunner {
    /// How runners start, or why code cannot run on this node.
    sandbox: Result<SandboxSettings, String>,
    timeout: Duration,
    max_output_bytes: usize,
    max_runs: usize,
    team_max_runs: usize,
    slots: Mutex<Slots>,
    freed: Notify,
    warm_target: usize,
    /// Runners started ahead, the oldest (most likely warmed up) first.
    warm: Mutex<VecDeque<CodeProcess>>,
    /// Warm runners being started (not in `warm` yet), so that refills
    /// asked for at once start no more than the target.
    warm_starting: AtomicUsize,
    /// Whether runs are forked from a zygote (`ANCHORAGE_CODE_ZYGOTE`).
    use_zygote: bool,
    /// The zygote, once it is ready; runners are spawned while there is none.
    zygote: Mutex<Option<Arc<Zygote>>>,
    /// Whether a zygote is being started.
    zygote_starting: AtomicBool,
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for CodeRunner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CodeRunner")
            .field("sandbox", &self.sandbox)
            .field("max_runs", &self.max_runs)
            .finish_non_exhaustive()
    }
}

/// A run's place on this node; dropping it frees the place.
#[derive(Debug)]
pub struct RunSlot {
    runner: Arc<CodeRunner>,
    team_id: TeamId,
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        if let Ok(mut slots) = self.runner.slots.lock() {
            slots.running -= 1;
            if let Some(count) = slots.by_team.get_mut(&self.team_id) {
                *count -= 1;
                if *count == 0 {
                    slots.by_team.remove(&self.team_id);
                }
            }
        }
        self.runner.publish_counts();
        self.runner.freed.notify_waiters();
    }
}

/// The runtime dir when the setting does not name one: `runtime` in the
/// working dir, else the repository's (where `scripts/serve` installs it).
fn find_runtime(configured: Option<&Path>) -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match configured {
        Some(path) => vec![path.to_owned()],
        None => vec![
            PathBuf::from("runtime"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime"),
        ],
    };
    for candidate in &candidates {
        let ready = candidate.join("runner.cjs").is_file()
            && ["esbuild", "playwright-core", "anchorbrowser"]
                .iter()
                .all(|module| candidate.join("node_modules").join(module).is_dir());
        if ready {
            return std::fs::canonicalize(candidate).map_err(|error| format!("{}: {error}", candidate.display()));
        }
    }
    Err(format!(
        "the code runtime is not installed (looked for runner.cjs and its node_modules in {}): run scripts/serve, or `npm ci` in the repository's runtime dir and set ANCHORAGE_CODE_RUNTIME",
        candidates
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The Node executable: a path as given, or a name on `PATH`.
fn find_node(configured: &Path) -> Option<PathBuf> {
    if configured.components().count() > 1 {
        return anchorage_browser::host::is_executable(configured).then(|| configured.to_owned());
    }
    anchorage_browser::host::find_in_path(&configured.to_string_lossy())
}

impl CodeRunner {
    /// A runner for this node. Code cannot run (and every run answers why)
    /// when the runtime or Node is missing.
    pub fn new(
        config: &CodeConfig,
        data_dir: &Path,
        socket_problem: Option<String>,
        marker: String,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        let sandbox = match socket_problem {
            Some(problem) if config.sandbox => Err(problem),
            _ => find_runtime(config.runtime_dir.as_deref()),
        };
        let sandbox = sandbox.and_then(|runtime_dir| {
            let node = find_node(&config.node).ok_or_else(|| {
                format!(
                    "ANCHORAGE_NODE={}: no such executable; install Node (apt-get install nodejs) or point the setting at it",
                    config.node.display()
                )
            })?;
            Ok(SandboxSettings {
                node,
                runtime_dir,
                isolate: config.sandbox,
                socket_dir: socket_dir(data_dir),
                hidden: vec![data_dir.to_owned()],
                limits: RunLimits {
                    memory_bytes: config.memory_bytes,
                    processes: 256,
                    file_bytes: 64 * 1024 * 1024,
                    tmp_bytes: 64 * 1024 * 1024,
                    open_files: 1024,
                },
                code_cache: config.cache.then(|| data_dir.join("code-cache")),
                marker,
            })
        });
        if let Err(why) = &sandbox {
            tracing::warn!("code execution is off on this node: {why}");
        }
        Arc::new(Self {
            sandbox,
            timeout: config.timeout,
            max_output_bytes: config.max_output_bytes,
            max_runs: config.max_runs,
            team_max_runs: config.team_max_runs,
            slots: Mutex::new(Slots::default()),
            freed: Notify::new(),
            warm_target: config.warm,
            warm: Mutex::new(VecDeque::new()),
            warm_starting: AtomicUsize::new(0),
            use_zygote: config.zygote,
            zygote: Mutex::new(None),
            zygote_starting: AtomicBool::new(false),
            metrics,
        })
    }

    /// Kills what runs of a previous life of this node left (a crash).
    pub fn reap_leftovers(&self) -> usize {
        match &self.sandbox {
            Ok(settings) => anchorage_browser::reap_leftover_runs(&settings.marker),
            Err(_) => 0,
        }
    }

    /// Whether runs are isolated here, or why code cannot run.
    pub fn describe(&self) -> String {
        match &self.sandbox {
            Ok(settings) if settings.isolate => format!("sandboxed, at most {} at once", self.max_runs),
            Ok(_) => format!(
                "NOT sandboxed (the server is not root), at most {} at once",
                self.max_runs
            ),
            Err(_) => "off (no runtime)".to_owned(),
        }
    }

    /// Why code cannot run here, if it cannot.
    pub fn unavailable(&self) -> Option<&str> {
        self.sandbox.as_ref().err().map(String::as_str)
    }

    fn publish_counts(&self) {
        let (running, waiting) = self
            .slots
            .lock()
            .map(|slots| (slots.running, slots.waiting))
            .unwrap_or_default();
        self.metrics.set_code_runs(running, waiting);
    }

    /// Takes a place for a run of `team_id`: at once when there is room,
    /// after a wait when others run (the wait is part of the request), or
    /// `429` when too many wait already.
    pub async fn admit(self: &Arc<Self>, team_id: TeamId) -> Result<RunSlot, ApiError> {
        if let Some(why) = self.unavailable() {
            return Err(ApiError::Unavailable(format!("code cannot run on this server: {why}")));
        }
        let mut waiting = false;
        loop {
            let freed = self.freed.notified();
            {
                let mut slots = self
                    .slots
                    .lock()
                    .map_err(|_| ApiError::internal("the run slots' lock is poisoned"))?;
                let team_running = slots.by_team.get(&team_id).copied().unwrap_or_default();
                if slots.running < self.max_runs && team_running < self.team_max_runs {
                    slots.running += 1;
                    *slots.by_team.entry(team_id).or_default() += 1;
                    if waiting {
                        slots.waiting -= 1;
                    }
                    drop(slots);
                    self.publish_counts();
                    return Ok(RunSlot {
                        runner: Arc::clone(self),
                        team_id,
                    });
                }
                if !waiting {
                    if slots.waiting >= self.max_runs * WAITING_PER_SLOT {
                        return Err(ApiError::TooManyRequests {
                            message: format!(
                                "{} runs of code are under way on this node and {} more wait (ANCHORAGE_CODE_MAX_RUNS, ANCHORAGE_CODE_TEAM_MAX_RUNS); try again shortly",
                                slots.running, slots.waiting
                            ),
                            retry_after_seconds: 1,
                        });
                    }
                    slots.waiting += 1;
                    waiting = true;
                    drop(slots);
                    self.publish_counts();
                }
            }
            // A waiter that goes away (its caller hung up) gives its place in
            // the wait back.
            let guard = WaitGuard { runner: self };
            freed.await;
            std::mem::forget(guard);
        }
    }

    /// A started runner: a warm one when there is, else a new one. Warm
    /// ones are started again when the run ends, not while it runs (they
    /// would take CPU from it), unless the runs come faster than runners
    /// warm up: when the one taken has not said it is ready yet
    /// ([`CodeProcess::is_ready`]), or there was none, the next one is
    /// started now, so that it loads while this run runs (a caller in a
    /// loop finds it further along). With a zygote, a warm runner that is
    /// still warming up is left for the next run and this one gets a copy
    /// forked for it (faster than cutting that warm-up short). Starting
    /// walks `/proc` (for a free user id) and forks: a blocking thread does it.
    async fn take_process(self: &Arc<Self>, settings: &SandboxSettings) -> std::io::Result<CodeProcess> {
        // The oldest first: the longest started, so the likeliest to be
        // ready. One that died meanwhile is dropped for the next.
        while let Some(mut process) = self.warm.lock().ok().and_then(|mut warm| warm.pop_front()) {
            if process.is_alive() {
                if process.is_ready() {
                    return Ok(process);
                }
                // Still warming up: a copy of the zygote forked now starts
                // sooner than that one would (its warm-up cut short, a
                // refill beside it); it stays first in line for the next.
                if self.has_zygote() {
                    if let Ok(mut warm) = self.warm.lock() {
                        warm.push_front(process);
                    }
                    break;
                }
                self.refill_warm();
                return Ok(process);
            }
        }
        self.refill_warm();
        let settings = settings.clone();
        let runner = Arc::clone(self);
        tokio::task::spawn_blocking(move || runner.start_runner(&settings, false))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Whether runs are forked from a zygote now.
    fn has_zygote(&self) -> bool {
        self.zygote
            .lock()
            .is_ok_and(|zygote| zygote.as_ref().is_some_and(|zygote| zygote.is_alive()))
    }

    /// Starts a runner, isolated under a free user id when the sandbox is
    /// on: a copy of the zygote when it is ready, else a new process. A
    /// zygote that fails is dropped (and started again in the background).
    fn start_runner(self: &Arc<Self>, settings: &SandboxSettings, ahead: bool) -> std::io::Result<CodeProcess> {
        let uid = settings.isolate.then(anchorage_browser::free_run_uid);
        let zygote = self.zygote.lock().ok().and_then(|zygote| zygote.clone());
        if let Some(zygote) = zygote {
            match zygote.fork(settings, uid, ahead) {
                Ok(process) => return Ok(process),
                Err(error) => {
                    tracing::warn!(%error, "the code zygote failed; runs start their own process until it is back");
                    if let Ok(mut current) = self.zygote.lock() {
                        if current.as_ref().is_some_and(|current| Arc::ptr_eq(current, &zygote)) {
                            *current = None;
                            self.metrics.set_code_zygote(false);
                        }
                    }
                    let runner = Arc::clone(self);
                    tokio::runtime::Handle::try_current()
                        .map(|runtime| runtime.spawn(async move { runner.start_zygote().await }))
                        .ok();
                }
            }
        }
        CodeProcess::start(settings, uid, ahead)
    }

    /// Starts the zygote (when it is on and there is none) and waits until
    /// it is ready; runs spawn their own process meanwhile.
    async fn start_zygote(self: &Arc<Self>) {
        let Ok(settings) = &self.sandbox else { return };
        if !self.use_zygote || self.zygote.lock().map_or(true, |zygote| zygote.is_some()) {
            return;
        }
        // One start at a time (runs that find it failed each ask for one).
        if self.zygote_starting.swap(true, Ordering::SeqCst) {
            return;
        }
        let _started = ClearOnDrop(&self.zygote_starting);
        let settings = settings.clone();
        let started = Instant::now();
        match tokio::task::spawn_blocking(move || Zygote::start(&settings)).await {
            Ok(Ok(zygote)) => {
                tracing::info!(
                    ms = started.elapsed().as_millis(),
                    pid = zygote.pid(),
                    "the code zygote is ready: runs are forked from it"
                );
                if let Ok(mut current) = self.zygote.lock() {
                    *current = Some(Arc::new(zygote));
                    self.metrics.set_code_zygote(true);
                }
                // Warm runners spawned before it are kept; new ones are copies.
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not start the code zygote; each run starts its own process")
            }
            Err(error) => tracing::warn!(%error, "could not start the code zygote"),
        }
    }

    /// Starts warm runners up to the target, in the background.
    pub fn refill_warm(self: &Arc<Self>) {
        let Ok(settings) = &self.sandbox else { return };
        let Ok(warm) = self.warm.lock() else { return };
        // Counted under the pool's lock, so that two refills at once see
        // each other's starts.
        let missing = self
            .warm_target
            .saturating_sub(warm.len() + self.warm_starting.load(Ordering::SeqCst));
        self.warm_starting.fetch_add(missing, Ordering::SeqCst);
        drop(warm);
        for _ in 0..missing {
            let runner = Arc::clone(self);
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || {
                let started = runner.start_runner(&settings, true);
                let Ok(mut warm) = runner.warm.lock() else { return };
                runner.warm_starting.fetch_sub(1, Ordering::SeqCst);
                match started {
                    Ok(process) if warm.len() < runner.warm_target => warm.push_back(process),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "could not start a warm runner"),
                }
            });
        }
    }

    /// Builds the runtime's code cache (every run started after it loads
    /// its modules from it), then starts the warm runners. A build that
    /// fails leaves runs compiling their modules as before, with a warning.
    pub async fn prepare(self: &Arc<Self>) {
        if let Ok(settings) = &self.sandbox {
            let started = Instant::now();
            match anchorage_browser::build_code_cache(settings).await {
                Ok(said) => tracing::info!(
                    ms = started.elapsed().as_millis(),
                    "the code runtime's cache is built: {said}"
                ),
                Err(error) => {
                    tracing::warn!(%error, "could not build the code runtime's cache; runs compile their modules")
                }
            }
        }
        self.start_zygote().await;
        self.refill_warm();
    }

    /// Ends the warm runners and the zygote (at shutdown).
    pub fn stop(&self) {
        if let Ok(mut warm) = self.warm.lock() {
            warm.clear();
        }
        if let Ok(mut zygote) = self.zygote.lock() {
            zygote.take();
        }
    }

    /// Runs `job` in `slot`; `cancelled` resolving first (the session
    /// ended, the server stops) kills it.
    pub async fn run(
        self: &Arc<Self>,
        _slot: &RunSlot,
        job: &Job,
        origin: &url::Url,
        cancelled: impl std::future::Future<Output = String>,
    ) -> (RunEnd, Duration) {
        let started = Instant::now();
        let Ok(settings) = &self.sandbox else {
            return (
                RunEnd::Failed(self.unavailable().unwrap_or_default().to_owned()),
                started.elapsed(),
            );
        };
        let process = match self.take_process(settings).await {
            Ok(process) => process,
            Err(error) => {
                tracing::warn!(%error, "could not start a runner");
                return (
                    RunEnd::Failed(format!("the runner could not start: {error}")),
                    started.elapsed(),
                );
            }
        };
        let socket = settings
            .isolate
            .then(|| settings.socket_path_inside(SOCKET_NAME).display().to_string());
        let inputs: serde_json::Map<String, Value> = job
            .inputs
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect();
        let description = json!({
            "kind": match job.kind { RunKind::Snippet => "snippet", RunKind::Task => "task" },
            "code": job.code,
            "sessionId": job.session.as_ref().map(|(id, _)| id.to_string()),
            "cdpUrl": job.session.as_ref().map(|(_, url)| url.clone()),
            "apiKey": job.api_key,
            "origin": origin_of(origin),
            "socket": socket,
            "inputs": inputs,
        });
        let bytes = description.to_string().into_bytes();
        let run = process.run(&bytes, self.timeout, self.max_output_bytes);
        let end = tokio::select! {
            result = run => match result {
                Ok(line) => {
                    let (end, result) = read_result(&line);
                    self.count_runner(&result);
                    end
                }
                Err(RunFailure::TimedOut) => RunEnd::TimedOut(self.timeout),
                Err(RunFailure::ResultTooLarge(limit)) => RunEnd::Failed(format!(
                    "the code's result is larger than {limit} bytes (ANCHORAGE_CODE_MAX_OUTPUT_BYTES)"
                )),
                Err(RunFailure::Ended { status, stderr }) => RunEnd::Failed(ended_without_result(&status, &stderr)),
                Err(RunFailure::Io(error)) => RunEnd::Failed(format!("the runner failed: {error}")),
            },
            reason = cancelled => RunEnd::Cancelled(reason),
        };
        let elapsed = started.elapsed();
        self.metrics.count_code_run(end.status());
        self.refill_warm();
        (end, elapsed)
    }

    /// Counts, from a runner's result, which runner the run got and what
    /// it loaded from the code cache.
    fn count_runner(&self, result: &Value) {
        let runner = match result["warmUp"].as_str() {
            Some("done") => "warm",
            Some("forked") => "forked",
            Some("cut short") => "warming",
            Some("none") => "cold",
            _ => return,
        };
        // The line comes from the run's process, which the user's code
        // could write itself: at most a runtime's worth of modules counts.
        let modules = |outcome: &str| {
            result["codeCache"][outcome]
                .as_u64()
                .unwrap_or(0)
                .min(MAX_CACHED_MODULES)
        };
        self.metrics
            .count_code_runner(runner, modules("used"), modules("rejected"));
    }
}

/// More modules than the runtime has (it caches four): a result that
/// claims more was written by the code, not the runtime.
const MAX_CACHED_MODULES: u64 = 16;

/// Clears a flag when dropped.
struct ClearOnDrop<'flag>(&'flag AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Gives a waiter's place in the wait back if it goes away while waiting.
struct WaitGuard<'runner> {
    runner: &'runner CodeRunner,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut slots) = self.runner.slots.lock() {
            slots.waiting -= 1;
        }
        self.runner.publish_counts();
    }
}

/// `scheme://host:port` of the public URL (the runner's relay takes its port).
fn origin_of(url: &url::Url) -> String {
    let port = url.port_or_known_default().unwrap_or(80);
    match url.host_str() {
        Some(host) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("http://127.0.0.1:{port}"),
    }
}

/// How a run ended, from its runner's result line, and the line as JSON
/// (`Null` when it is not JSON).
fn read_result(line: &[u8]) -> (RunEnd, Value) {
    let Ok(result) = serde_json::from_slice::<Value>(line) else {
        return (
            RunEnd::Failed("the runner's result was not JSON".to_owned()),
            Value::Null,
        );
    };
    tracing::debug!(
        timings = %result["timings"],
        code_cache = %result["codeCache"],
        warm_up = %result["warmUp"],
        "a run's phases (ms after its job arrived)"
    );
    let end = if result["ok"] == true {
        RunEnd::Returned(result["output"].as_str().map(str::to_owned))
    } else {
        RunEnd::Failed(
            result["error"]
                .as_str()
                .unwrap_or("the code failed without saying why")
                .to_owned(),
        )
    };
    (end, result)
}

/// Why a runner that gave no result ended, in words.
fn ended_without_result(status: &str, stderr: &str) -> String {
    let last_words: String = stderr
        .lines()
        .rev()
        .filter(|line| !line.trim().is_empty())
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    let cause = if stderr.contains("heap out of memory") || stderr.contains("allocation failed") {
        " (it ran out of memory: ANCHORAGE_CODE_MEMORY_MIB)"
    } else {
        ""
    };
    if last_words.is_empty() {
        format!("the code's process ended without a result ({status}){cause}")
    } else {
        format!("the code's process ended without a result ({status}){cause}: {last_words}")
    }
}

/// A new execution record, `running` on this node.
pub fn new_execution(
    team_id: TeamId,
    node: anchorage_core::NodeId,
    session_id: Option<anchorage_core::SessionId>,
    task: Option<(anchorage_core::TaskId, anchorage_core::TaskVersionId, String)>,
) -> ExecutionRecord {
    let (task_id, task_version_id, version) = match task {
        Some((task_id, version_id, version)) => (Some(task_id), Some(version_id), version),
        None => (None, None, "snippet".to_owned()),
    };
    ExecutionRecord {
        id: anchorage_core::ExecutionId::new_random(),
        team_id,
        task_id,
        task_version_id,
        version,
        status: ExecutionStatus::Running,
        output: None,
        error_message: None,
        session_id,
        node_id: Some(node),
        started_at: Timestamp::now(),
        execution_time_ms: None,
    }
}

/// The record of a finished run.
pub fn finished(mut execution: ExecutionRecord, end: &RunEnd, elapsed: Duration) -> ExecutionRecord {
    execution.status = end.status();
    execution.output = end.output();
    execution.error_message = end.error();
    execution.execution_time_ms = Some(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX));
    execution
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_ends_read_as_executions() {
        assert_eq!(
            read_result(br#"{"ok":true,"output":"{\"a\":1}"}"#).0,
            RunEnd::Returned(Some("{\"a\":1}".to_owned()))
        );
        assert_eq!(read_result(br#"{"ok":true}"#).0, RunEnd::Returned(None));
        assert_eq!(
            read_result(br#"{"ok":false,"error":"boom"}"#).0,
            RunEnd::Failed("boom".to_owned())
        );
        assert!(matches!(read_result(b"nope").0, RunEnd::Failed(_)));
        let timed_out = RunEnd::TimedOut(Duration::from_secs(3));
        assert_eq!(timed_out.status(), ExecutionStatus::Timeout);
        assert!(timed_out.error().is_some_and(|error| error.contains("3 s")));
        let message = ended_without_result(
            "signal: 6",
            "<--- JS stacktrace --->\nFATAL ERROR: heap out of memory\n",
        );
        assert!(message.contains("ran out of memory"), "{message}");
        assert_eq!(
            origin_of(&url::Url::parse("http://127.0.0.1:8080/x/").expect("url")),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            origin_of(&url::Url::parse("https://browsers.example/").expect("url")),
            "https://browsers.example:443"
        );
    }
}

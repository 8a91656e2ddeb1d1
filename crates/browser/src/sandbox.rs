//! The process that runs a user's code beside a browser session
//! (`execute_code` and code tasks), and the sandbox it runs in.
//!
//! Each run is a Node process of its own (`runtime/runner.cjs`), started in
//! a session and process group of its own with resource limits (memory,
//! processes, file size, open files). When the server is root it is also
//! *isolated*:
//!
//! - it runs as a user id of its own, drawn at random for the run and used by
//!   no other process, so it can neither signal nor read (`/proc`, files,
//!   DevTools pipes) the server, the browsers (their user is another) or
//!   another run; and its processes can all be found and killed by that id,
//!   even those that left its process group;
//! - in a network namespace of its own: it reaches nothing (no database, no
//!   other service on the machine, no display) but the server, through a
//!   socket the server listens on, which the runner relays on loopback;
//! - in a mount namespace where the whole tree is read-only except a small
//!   `tmpfs` at each world-writable place (`/tmp`, `/var/tmp`, `/dev/shm`,
//!   `/run/lock`), which ends with the run, and where the server's data dir
//!   is covered by an empty one;
//! - with `no_new_privs`, so no setuid program gives it more.
//!
//! This module starts, feeds, reads and kills such processes. It knows
//! nothing of teams, sessions or the store: the server decides what a run
//! may reach and gives it a job.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};

mod zygote;
pub use zygote::{Zygote, ZYGOTE_ADDON};

/// Where, inside an isolated run's mount namespace, the runtime (the
/// runner and its `node_modules`) is found.
const RUNTIME_INSIDE: &str = "/tmp/.anchorage/runtime";
/// … and the dir that holds the server's socket.
const SOCKET_DIR_INSIDE: &str = "/tmp/.anchorage/server";
/// … and the runtime's code cache (read-only).
const CODE_CACHE_INSIDE: &str = "/tmp/.anchorage/cache";
/// The places any user may write to; an isolated run gets a small `tmpfs`
/// of its own at each that exists, and every other place is read-only.
const WRITABLE_PLACES: [&str; 4] = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"];
/// The range run user ids are drawn from: far above the ids of real users
/// and of user namespaces' usual maps (100000 and up, by 65536s).
pub const RUN_UIDS: std::ops::Range<u32> = 1_900_000_000..2_000_000_000;

/// Resource limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Its data segment and anonymous memory (`RLIMIT_DATA`), bytes; the
    /// JavaScript heap is capped below it.
    pub memory_bytes: u64,
    /// Processes and threads of the run's user (`RLIMIT_NPROC`; isolated
    /// runs only, since the id is the run's alone).
    pub processes: u64,
    /// Largest file it may write (`RLIMIT_FSIZE`), bytes.
    pub file_bytes: u64,
    /// Size of each of its private temp dirs (isolated runs), bytes.
    pub tmp_bytes: u64,
    /// Open files (`RLIMIT_NOFILE`).
    pub open_files: u64,
}

/// How runs are started on this node.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// The Node executable.
    pub node: PathBuf,
    /// The runtime dir: `runner.cjs` and its `node_modules`.
    pub runtime_dir: PathBuf,
    /// Whether runs are isolated (needs root; see the module's doc).
    pub isolate: bool,
    /// The dir holding the socket the server listens on for isolated runs.
    pub socket_dir: PathBuf,
    /// Dirs an isolated run must not see (covered by an empty `tmpfs`).
    pub hidden: Vec<PathBuf>,
    /// Its resource limits.
    pub limits: RunLimits,
    /// The V8 code cache of the runtime's modules, built by
    /// [`build_code_cache`] and read (never written) by every run.
    pub code_cache: Option<PathBuf>,
    /// The argument that marks this node's runners, so that the next start
    /// finds what a crash left behind.
    pub marker: String,
}

impl SandboxSettings {
    /// Node's heap cap for a run: the JavaScript heap stops well below the
    /// memory limit, so that running out of it is a clear error rather
    /// than a failed mmap. (V8 takes its flags into account when it checks
    /// a code cache, so the cache is built with the same.)
    fn heap_argument(&self) -> String {
        let heap_mib = (self.limits.memory_bytes / (1024 * 1024) / 2).max(32);
        format!("--max-old-space-size={heap_mib}")
    }

    /// Where the runner sees the server's socket.
    pub fn socket_path_inside(&self, socket_name: &str) -> PathBuf {
        if self.isolate {
            Path::new(SOCKET_DIR_INSIDE).join(socket_name)
        } else {
            self.socket_dir.join(socket_name)
        }
    }
}

/// Why a run gave no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFailure {
    /// It ran past its time and was killed.
    TimedOut,
    /// Its result was larger than allowed.
    ResultTooLarge(usize),
    /// It ended without a result (killed, out of memory, crashed), with the
    /// end of what it printed to stderr.
    Ended {
        /// How it ended (its exit status).
        status: String,
        /// The end of what it printed to stderr.
        stderr: String,
    },
    /// It could not be started or fed.
    Io(String),
}

/// A runner process, started and waiting for its job (a warm runtime is
/// one started ahead). Dropping it kills it and everything it started.
pub struct CodeProcess {
    origin: Origin,
    pid: u32,
    /// The run's user when isolated.
    uid: Option<u32>,
    stdin: Option<Box<dyn AsyncWrite + Unpin + Send>>,
    result: Option<tokio::net::unix::pipe::Receiver>,
    stdout: Option<Box<dyn AsyncRead + Unpin + Send>>,
    stderr: Option<Box<dyn AsyncRead + Unpin + Send>>,
    /// Whether it said it has warmed up ([`READY`] read), or came warm
    /// from the zygote.
    ready: bool,
}

/// Where a runner came from, which says how its end is learnt.
enum Origin {
    /// Started by the server: its child.
    Spawned(Child),
    /// Forked by the zygote, which tells how it ended.
    Forked {
        end: Option<tokio::sync::oneshot::Receiver<i32>>,
        ended: Option<i32>,
    },
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Spawned(_) => "spawned",
            Self::Forked { .. } => "forked",
        })
    }
}

impl std::fmt::Debug for CodeProcess {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CodeProcess")
            .field("origin", &self.origin)
            .field("pid", &self.pid)
            .field("uid", &self.uid)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

/// What a finished run printed, at most this much of each stream is kept.
const PRINTED_KEPT: usize = 16 * 1024;

/// The line a runner started ahead writes on its result pipe once it has
/// warmed up, before any job (`runtime/runner.cjs`). Shorter than a pipe's
/// atomic write, so it is read whole or not at all.
const READY: &[u8] = b"ready\n";

impl CodeProcess {
    /// Starts a runner; `uid` is the run's own user for an isolated run
    /// (see [`free_run_uid`]). A runner started `ahead` (a warm one) loads
    /// its modules at the lowest CPU priority, so that it never slows a
    /// run or a browser; [`CodeProcess::run`] raises it again.
    pub fn start(settings: &SandboxSettings, uid: Option<u32>, ahead: bool) -> std::io::Result<Self> {
        let isolated = settings.isolate && uid.is_some();
        let runtime = if isolated {
            PathBuf::from(RUNTIME_INSIDE)
        } else {
            settings.runtime_dir.clone()
        };
        // The JavaScript heap stops well below the memory limit, so that
        // running out of it is a clear error rather than a failed mmap.
        let mut command = Command::new(&settings.node);
        command
            .arg(settings.heap_argument())
            .arg(runtime.join("runner.cjs"))
            .arg(&settings.marker)
            .args(settings.code_cache.as_ref().map(|dir| {
                let dir = if isolated {
                    Path::new(CODE_CACHE_INSIDE)
                } else {
                    dir.as_path()
                };
                format!("--code-cache={}", dir.display())
            }))
            // Started ahead, it has the time to warm its CDP client up.
            .args(ahead.then_some("--warm-up"))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("NODE_ENV", "production")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if isolated {
            command.env("HOME", "/tmp").env("TMPDIR", "/tmp").current_dir("/");
        } else {
            command
                .env("HOME", std::env::temp_dir())
                .current_dir(std::env::temp_dir());
        }
        let (result_read, result_write) = std::io::pipe()?;
        let result_write: OwnedFd = result_write.into();
        let mut plan = ChildPlan::new(settings, uid.filter(|_| isolated), result_write.as_raw_fd())?;
        plan.nice = if ahead { crate::launch::BACKGROUND_NICE } else { 0 };
        // SAFETY: the closure runs in the child between fork and exec. It
        // calls only system calls (no allocation: every path and string it
        // needs was made before the fork, in `plan`), and returns the error
        // of the first that fails, which fails the spawn.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || plan.apply());
        }
        let mut child = command.spawn()?;
        drop(result_write);
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the runner ended at once"))?;
        let result = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(result_read))?;
        Ok(Self {
            stdin: child
                .stdin
                .take()
                .map(|stdin| Box::new(stdin) as Box<dyn AsyncWrite + Unpin + Send>),
            stdout: child.stdout.take().map(boxed),
            stderr: child.stderr.take().map(boxed),
            result: Some(result),
            origin: Origin::Spawned(child),
            pid,
            uid: uid.filter(|_| isolated),
            ready: false,
        })
    }

    /// Whether a runner started ahead has said that it is warmed up (its
    /// modules loaded, its CDP client driven, its garbage collected). Never
    /// waits: the line is read if it is in the pipe already.
    pub fn is_ready(&mut self) -> bool {
        if !self.ready {
            if let Some(result) = &self.result {
                let mut line = [0_u8; READY.len()];
                if let Ok(read) = result.try_read(&mut line) {
                    // Nothing else comes before the job: anything but the
                    // whole line is an end (0) or a runner gone wrong, and
                    // its run says so.
                    self.ready = line[..read] == *READY;
                }
            }
        }
        self.ready
    }

    /// Its process id (the leader of its process group).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether its process has not ended (a warm runner may have died).
    pub fn is_alive(&mut self) -> bool {
        match &mut self.origin {
            Origin::Spawned(child) => matches!(child.try_wait(), Ok(None)),
            Origin::Forked { end, ended } => {
                if ended.is_some() {
                    return false;
                }
                match end.as_mut().map(tokio::sync::oneshot::Receiver::try_recv) {
                    Some(Err(tokio::sync::oneshot::error::TryRecvError::Empty)) => true,
                    Some(Ok(status)) => {
                        *ended = Some(status);
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    /// How it ended, once it has (`exit status: 1`, `signal: 9 (SIGKILL)`).
    async fn end_status(&mut self) -> std::io::Result<String> {
        use std::os::unix::process::ExitStatusExt;
        match &mut self.origin {
            Origin::Spawned(child) => Ok(child.wait().await?.to_string()),
            Origin::Forked { end, ended } => {
                if ended.is_none() {
                    let status = match end.take() {
                        Some(end) => end.await.map_err(|_| std::io::Error::other("the zygote ended"))?,
                        None => return Err(std::io::Error::other("its end was read already")),
                    };
                    *ended = Some(status);
                }
                Ok(ended
                    .map(std::process::ExitStatus::from_raw)
                    .map(|status| status.to_string())
                    .unwrap_or_default())
            }
        }
    }

    /// Sends it SIGKILL (its group is killed beside this).
    fn start_kill(&mut self) {
        match &mut self.origin {
            Origin::Spawned(child) => {
                let _ = child.start_kill();
            }
            Origin::Forked { ended: None, .. } => kill_group(self.pid),
            Origin::Forked { .. } => {}
        }
    }

    /// The run's own user, when isolated.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// Gives the runner its job and waits, at most `timeout`, for its
    /// result (one JSON line, at most `max_result_bytes`). Whatever
    /// happens, every process of the run is gone when this returns.
    pub async fn run(mut self, job: &[u8], timeout: Duration, max_result_bytes: usize) -> Result<Vec<u8>, RunFailure> {
        // A warm runner waited at the lowest priority; its run is not
        // background work. (Raising it needs root; otherwise it stays.)
        let _ = crate::launch::set_group_priority(self.pid, 0);
        let printed = [self.stdout.take(), self.stderr.take()]
            .map(|stream| stream.map(|stream| tokio::spawn(keep_the_end(stream, PRINTED_KEPT))));
        let outcome = tokio::time::timeout(timeout, self.feed_and_read(job, max_result_bytes)).await;
        let outcome = match outcome {
            Err(_) => Err(RunFailure::TimedOut),
            Ok(Err(failure)) => Err(failure),
            Ok(Ok(Some(result))) => Ok(result),
            Ok(Ok(None)) => {
                // No result: it ended first. Its status and last words say why.
                let status = match tokio::time::timeout(Duration::from_secs(2), self.end_status()).await {
                    Ok(Ok(status)) => status,
                    _ => "still running after closing its result".to_owned(),
                };
                self.kill_all().await;
                let [_, stderr] = printed;
                let stderr = match stderr {
                    Some(task) => task.await.unwrap_or_default(),
                    None => String::new(),
                };
                return Err(RunFailure::Ended { status, stderr });
            }
        };
        // A run that answered is not kept waiting for the sweep; one that
        // failed (ran out of time, say) is answered when nothing is left.
        if outcome.is_ok() {
            self.end_in_background();
        } else {
            self.kill_all().await;
        }
        outcome
    }

    async fn feed_and_read(&mut self, job: &[u8], max_result_bytes: usize) -> Result<Option<Vec<u8>>, RunFailure> {
        if let Some(mut stdin) = self.stdin.take() {
            // A runner that died before reading its job is seen below.
            let _ = stdin.write_all(job).await;
            let _ = stdin.shutdown().await;
        }
        let Some(mut result) = self.result.take() else {
            return Err(RunFailure::Io("the result pipe was read already".to_owned()));
        };
        let mut bytes = Vec::new();
        let mut chunk = [0_u8; 8192];
        loop {
            let read = result
                .read(&mut chunk)
                .await
                .map_err(|error| RunFailure::Io(format!("reading the result: {error}")))?;
            if read == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..read]);
            // A runner that warmed up said so first, unless that was read.
            if !self.ready && bytes.starts_with(READY) {
                bytes.drain(..READY.len());
                self.ready = true;
            }
            if bytes.len() > max_result_bytes {
                return Err(RunFailure::ResultTooLarge(max_result_bytes));
            }
            if bytes.ends_with(b"\n") {
                break;
            }
        }
        Ok(if bytes.is_empty() { None } else { Some(bytes) })
    }

    /// Kills the runner's group at once, and leaves the sweep of the run's
    /// user's other processes (a walk of `/proc`, until none is left) to a
    /// blocking thread, so that a run's answer does not wait for it.
    fn end_in_background(&mut self) {
        kill_group(self.pid);
        self.start_kill();
        if let Some(uid) = self.uid.take() {
            tokio::task::spawn_blocking(move || kill_user_processes(uid));
        }
    }

    /// Kills the runner's group, and every process of the run's user
    /// wherever it went (a walk of `/proc`, off the async threads), and
    /// reaps the runner; done when nothing of the run is left.
    async fn kill_all(&mut self) {
        kill_group(self.pid);
        self.start_kill();
        if let Some(uid) = self.uid.take() {
            let _ = tokio::task::spawn_blocking(move || kill_user_processes(uid)).await;
        }
    }
}

impl Drop for CodeProcess {
    /// A runner dropped before its run ended (a warm one at shutdown, a run
    /// whose task went away): its group now, its user's other processes
    /// on a blocking thread.
    fn drop(&mut self) {
        kill_group(self.pid);
        self.start_kill();
        if let Some(uid) = self.uid.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn_blocking(move || kill_user_processes(uid));
                }
                Err(_) => kill_user_processes(uid),
            }
        }
    }
}

fn boxed(stream: impl AsyncRead + Unpin + Send + 'static) -> Box<dyn AsyncRead + Unpin + Send> {
    Box::new(stream)
}

/// Reads a stream to its end, keeping the last `keep` bytes.
async fn keep_the_end(mut stream: Box<dyn AsyncRead + Unpin + Send>, keep: usize) -> String {
    let mut kept = Vec::new();
    let mut chunk = [0_u8; 8192];
    while let Ok(read) = stream.read(&mut chunk).await {
        if read == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..read]);
        if kept.len() > keep * 2 {
            kept.drain(..kept.len() - keep);
        }
    }
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[allow(unsafe_code)]
fn kill_group(pgid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        if pgid > 1 {
            // SAFETY: kill takes no pointers; a group that is gone is ESRCH.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// The real user id of a process.
fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Pids of the processes that run as `uid` (by real or effective id).
pub fn processes_of_user(uid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            process_uid(*pid) == Some(uid) && crate::reap::process_state(*pid).is_some_and(|(state, _)| state != 'Z')
        })
        .collect()
}

/// Kills every process of `uid`, a few rounds so that one forked meanwhile
/// goes too (a run's user can make no more than its process limit).
#[allow(unsafe_code)]
pub fn kill_user_processes(uid: u32) {
    if !RUN_UIDS.contains(&uid) {
        return;
    }
    for _ in 0..8 {
        let found = processes_of_user(uid);
        if found.is_empty() {
            return;
        }
        for pid in found {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill takes no pointers.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A run user id that no process uses now, drawn at random from
/// [`RUN_UIDS`] (so that nodes on one machine need not agree).
pub fn free_run_uid() -> u32 {
    let span = RUN_UIDS.end - RUN_UIDS.start;
    loop {
        let mut bytes = [0_u8; 4];
        if std::fs::File::open("/dev/urandom")
            .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
            .is_err()
        {
            // No random source: time and pid are unique enough to retry on.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.subsec_nanos())
                .unwrap_or_default();
            bytes = (nanos ^ std::process::id()).to_le_bytes();
        }
        let uid = RUN_UIDS.start + u32::from_le_bytes(bytes) % span;
        if processes_of_user(uid).is_empty() {
            return uid;
        }
    }
}

/// The longest a code cache build may take before it is given up.
const CACHE_BUILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the V8 code cache of the runtime's modules into
/// `settings.code_cache` (see `runner.cjs`): the runner in its build mode,
/// which loads the modules, drives Playwright against a stand-in browser of
/// its own and writes what V8 compiled. Only the runtime's own code runs
/// (no job), so it runs as the server's user, not isolated, at the lowest
/// CPU priority, with a run's Node flags (V8 checks them when it reads a
/// cache). It ends by itself (it reads no job), so it carries no runner
/// marker: a warm runner is never mistaken for it. Returns what the runner
/// said.
pub async fn build_code_cache(settings: &SandboxSettings) -> std::io::Result<String> {
    let Some(dir) = &settings.code_cache else {
        return Ok(String::new());
    };
    tokio::fs::create_dir_all(dir).await?;
    let mut command = Command::new(&settings.node);
    command
        .arg(settings.heap_argument())
        .arg(settings.runtime_dir.join("runner.cjs"))
        .arg(format!("--build-cache={}", dir.display()))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("NODE_ENV", "production")
        .env("HOME", std::env::temp_dir())
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let nice = crate::launch::BACKGROUND_NICE;
    // SAFETY: setpriority is a plain system call, safe between fork and exec.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            Ok(())
        });
    }
    let child = command.spawn()?;
    let group = child.id();
    let output = match tokio::time::timeout(CACHE_BUILD_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output?,
        Err(_) => {
            if let Some(group) = group {
                kill_group(group);
            }
            return Err(std::io::Error::other(format!(
                "the build took over {} s",
                CACHE_BUILD_TIMEOUT.as_secs()
            )));
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .chars()
            .rev()
            .take(400)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(std::io::Error::other(format!(
            "the runner {}: {}",
            output.status,
            tail.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The processes whose command line has `marker` as an argument: this
/// node's runners (at start, those a crash left, to be killed with their
/// users' processes).
pub fn leftover_runner_pids(marker: &str) -> Vec<u32> {
    crate::reap::pids_whose_command_line(|line| line.split(|byte| *byte == 0).any(|part| part == marker.as_bytes()))
}

/// Kills what a crashed run left: its runner's group and its user's
/// processes. Returns how many runners were found.
pub fn reap_leftover_runs(marker: &str) -> usize {
    let found = leftover_runner_pids(marker);
    for pid in &found {
        let uid = process_uid(*pid);
        kill_group(*pid);
        if let Some(uid) = uid {
            kill_user_processes(uid);
        }
    }
    found.len()
}

/// Everything the child does between fork and exec, prepared before the
/// fork so that the child allocates nothing.
struct ChildPlan {
    result_fd: RawFd,
    nice: i32,
    limits: RunLimits,
    isolated: Option<Isolation>,
}

struct Isolation {
    uid: u32,
    runtime_dir: CString,
    socket_dir: CString,
    code_cache: Option<CString>,
    hidden: Vec<CString>,
    writable: Vec<CString>,
    tmpfs_options: CString,
    hidden_options: CString,
}

fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::Error::other("a path with a NUL byte"))
}

fn c_text(text: &str) -> CString {
    // Only our own constants and numbers come here; none holds a NUL.
    CString::new(text).unwrap_or_default()
}

impl ChildPlan {
    fn new(settings: &SandboxSettings, uid: Option<u32>, result_fd: RawFd) -> std::io::Result<Self> {
        let isolated = match uid {
            None => None,
            Some(uid) => Some(Isolation::new(settings, uid)?),
        };
        Ok(Self {
            result_fd,
            nice: 0,
            limits: settings.limits,
            isolated,
        })
    }

    /// Runs in the child. Every call is a plain system call.
    #[allow(unsafe_code)]
    fn apply(&self) -> std::io::Result<()> {
        // SAFETY (every block below): system calls on integers we own and
        // on the NUL-terminated strings of `self`, which outlive the call.
        unsafe {
            check(libc::setsid())?;
            // The result pipe at fd 3, open across exec.
            if self.result_fd != 3 {
                check(libc::dup2(self.result_fd, 3))?;
            } else {
                check(libc::fcntl(3, libc::F_SETFD, 0))?;
            }
            if let Some(isolation) = &self.isolated {
                isolation.apply()?;
            }
            limit(libc::RLIMIT_DATA, self.limits.memory_bytes)?;
            limit(libc::RLIMIT_FSIZE, self.limits.file_bytes)?;
            limit(libc::RLIMIT_NOFILE, self.limits.open_files)?;
            limit(libc::RLIMIT_CORE, 0)?;
            if let Some(isolation) = &self.isolated {
                limit(libc::RLIMIT_NPROC, self.limits.processes)?;
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setresgid(isolation.uid, isolation.uid, isolation.uid))?;
                check(libc::setresuid(isolation.uid, isolation.uid, isolation.uid))?;
            } else {
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
            if self.nice != 0 {
                libc::setpriority(libc::PRIO_PROCESS, 0, self.nice);
            }
        }
        Ok(())
    }
}

impl Isolation {
    fn new(settings: &SandboxSettings, uid: u32) -> std::io::Result<Self> {
        Ok(Self {
            uid,
            runtime_dir: c_path(&settings.runtime_dir)?,
            socket_dir: c_path(&settings.socket_dir)?,
            code_cache: settings
                .code_cache
                .as_deref()
                .filter(|dir| dir.is_dir())
                .map(c_path)
                .transpose()?,
            hidden: settings
                .hidden
                .iter()
                .filter(|path| path.is_dir())
                .map(|path| c_path(path))
                .collect::<Result<_, _>>()?,
            writable: WRITABLE_PLACES
                .iter()
                .filter(|place| Path::new(place).is_dir())
                .map(|place| c_text(place))
                .collect(),
            tmpfs_options: c_text(&format!("size={},mode=1777", settings.limits.tmp_bytes.max(4096))),
            hidden_options: c_text("size=4k,mode=000"),
        })
    }

    /// Makes the run's namespaces (mount, network, IPC) and its view of the
    /// tree in them (see the module's doc). Runs in a child before exec.
    #[allow(unsafe_code)]
    fn apply(&self) -> std::io::Result<()> {
        // SAFETY: as in `ChildPlan::apply`.
        unsafe {
            check(libc::unshare(
                libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC,
            ))?;
            let none = c"none".as_ptr();
            let tmpfs = c"tmpfs".as_ptr();
            // Nothing mounted here reaches the machine's tree.
            check(libc::mount(
                none,
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            // In the new network namespace: loopback up, and any port may be
            // listened on (the relay takes the server's public port).
            bring_loopback_up()?;
            let sysctl = check(libc::open(
                c"/proc/sys/net/ipv4/ip_unprivileged_port_start".as_ptr(),
                libc::O_WRONLY,
            ))?;
            let written = libc::write(sysctl, c"0".as_ptr().cast(), 1);
            libc::close(sysctl);
            check(i32::try_from(written).unwrap_or(-1))?;
            // The whole tree read-only, recursively.
            let attributes = MountAttributes {
                set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
                clear: 0,
                propagation: 0,
                userns_fd: 0,
            };
            check(
                i32::try_from(libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    c"/".as_ptr(),
                    AT_RECURSIVE,
                    &raw const attributes,
                    std::mem::size_of::<MountAttributes>(),
                ))
                .unwrap_or(-1),
            )?;
            // What must stay reachable is cloned (read-only, as the tree is
            // now) before anything covers it, and put back at fixed places.
            let runtime = clone_tree(&self.runtime_dir)?;
            let sockets = clone_tree(&self.socket_dir)?;
            let cache = match &self.code_cache {
                Some(dir) => Some(clone_tree(dir)?),
                None => None,
            };
            for hidden in &self.hidden {
                check(libc::mount(
                    tmpfs,
                    hidden.as_ptr(),
                    tmpfs,
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    self.hidden_options.as_ptr().cast(),
                ))?;
            }
            for place in &self.writable {
                check(libc::mount(
                    tmpfs,
                    place.as_ptr(),
                    tmpfs,
                    libc::MS_NOSUID | libc::MS_NODEV,
                    self.tmpfs_options.as_ptr().cast(),
                ))?;
            }
            // The runtime and the server's socket, at fixed places in the
            // run's own /tmp (root's dirs: the run cannot replace them).
            for dir in [
                c"/tmp/.anchorage",
                c"/tmp/.anchorage/runtime",
                c"/tmp/.anchorage/server",
            ] {
                check(libc::mkdir(dir.as_ptr(), 0o755))?;
            }
            attach_tree(runtime, c"/tmp/.anchorage/runtime")?;
            attach_tree(sockets, c"/tmp/.anchorage/server")?;
            if let Some(cache) = cache {
                check(libc::mkdir(c"/tmp/.anchorage/cache".as_ptr(), 0o755))?;
                attach_tree(cache, c"/tmp/.anchorage/cache")?;
            }
        }
        Ok(())
    }
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const AT_RECURSIVE: libc::c_int = 0x8000;

#[repr(C)]
struct MountAttributes {
    set: u64,
    clear: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// A detached copy of the mount at `path` (`open_tree`), which can be
/// attached after the path itself is covered.
#[allow(unsafe_code)]
fn clone_tree(path: &std::ffi::CStr) -> std::io::Result<RawFd> {
    // SAFETY: a NUL-terminated path that lives through the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    check(i32::try_from(fd).unwrap_or(-1))
}

/// Attaches a tree from [`clone_tree`] at `target`, and closes it.
#[allow(unsafe_code)]
fn attach_tree(tree: RawFd, target: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: NUL-terminated paths that live through the call; the fd is ours.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    // SAFETY: closing the fd we own.
    unsafe {
        libc::close(tree);
    }
    check(i32::try_from(moved).unwrap_or(-1))?;
    Ok(())
}

#[allow(unsafe_code)]
fn bring_loopback_up() -> std::io::Result<()> {
    // SAFETY: a socket we own and an ifreq on the stack.
    unsafe {
        let socket = check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0))?;
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = libc::c_char::try_from(*byte).unwrap_or(0);
        }
        let read = libc::ioctl(socket, libc::SIOCGIFFLAGS, &raw mut request);
        if read < 0 {
            let error = std::io::Error::last_os_error();
            libc::close(socket);
            return Err(error);
        }
        let up = i16::try_from(libc::IFF_UP).unwrap_or(1);
        request.ifr_ifru.ifru_flags |= up;
        let written = libc::ioctl(socket, libc::SIOCSIFFLAGS, &raw const request);
        let error = std::io::Error::last_os_error();
        libc::close(socket);
        if written < 0 {
            return Err(error);
        }
    }
    Ok(())
}

#[allow(unsafe_code)]
fn limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads the struct we pass.
    check(unsafe { libc::setrlimit(resource, &raw const limit) })?;
    Ok(())
}

fn check(result: libc::c_int) -> std::io::Result<libc::c_int> {
    if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_users_are_drawn_from_their_range_and_are_free() {
        for _ in 0..20 {
            let uid = free_run_uid();
            assert!(RUN_UIDS.contains(&uid));
            assert!(processes_of_user(uid).is_empty());
        }
        // Ids outside the range are never killed by user.
        kill_user_processes(0);
    }
}

#[cfg(test)]
mod runs {
    use super::*;

    fn settings(socket_dir: &Path, hidden: &Path) -> SandboxSettings {
        SandboxSettings {
            node: PathBuf::from("node"),
            runtime_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime"),
            // SAFETY: geteuid has no arguments.
            #[allow(unsafe_code)]
            isolate: unsafe { libc::geteuid() } == 0,
            socket_dir: socket_dir.to_owned(),
            hidden: vec![hidden.to_owned()],
            limits: RunLimits {
                memory_bytes: 1 << 30,
                processes: 128,
                file_bytes: 1 << 20,
                tmp_bytes: 4 << 20,
                open_files: 256,
            },
            code_cache: None,
            marker: "--anchorage-runner-test".to_owned(),
        }
    }

    /// [`settings`] in `dir` whose runners carry a marker of the test's own.
    fn marked_settings(dir: &Path, test: &str) -> SandboxSettings {
        let mut settings = settings(dir, dir);
        settings.marker = format!("--anchorage-runner-test-{test}-{}", std::process::id());
        settings
    }

    /// Whether the runners marked `marker` are gone within two seconds (a
    /// run's runner is killed as it answers, and gone a moment later).
    async fn runners_gone(marker: &str) -> bool {
        for _ in 0..100 {
            if leftover_runner_pids(marker).is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Runs `code` as a snippet with no session; the runner's result line.
    async fn run_snippet(process: CodeProcess, code: &str) -> serde_json::Value {
        let job = serde_json::json!({"kind": "snippet", "code": code, "origin": "http://127.0.0.1:9", "apiKey": "k"});
        let result = process
            .run(job.to_string().as_bytes(), Duration::from_secs(30), 1 << 20)
            .await
            .expect("result");
        serde_json::from_slice(&result).expect("json")
    }

    #[tokio::test]
    async fn runs_load_the_code_cache_built_for_them_and_cannot_change_it() {
        let scratch = tempfile::tempdir().expect("tempdir");
        // As on a node: the cache is in the data dir, which runs do not see.
        let hidden = scratch.path().join("data");
        let sockets = scratch.path().join("sockets");
        std::fs::create_dir(&sockets).expect("dir");
        let mut settings = settings(&sockets, &hidden);
        settings.code_cache = Some(hidden.join("code-cache"));
        settings.marker = format!("--anchorage-runner-test-cache-{}", std::process::id());
        let said = build_code_cache(&settings).await.expect("build");
        assert!(said.contains("warmed up"), "{said}");
        let bundle = hidden.join("code-cache/playwright-core__lib__coreBundle.js.v8");
        let built = std::fs::read(&bundle).expect("the bundle's cache");
        assert!(built.len() > 100_000, "{} bytes", built.len());

        let uid = settings.isolate.then(free_run_uid);
        let process = CodeProcess::start(&settings, uid, false).expect("start");
        let inside = if settings.isolate {
            PathBuf::from(CODE_CACHE_INSIDE)
        } else {
            hidden.join("code-cache")
        };
        let code = format!(
            "const fs = require('fs'); const dir = {:?}; const tried = [];\n\
             for (const attempt of [() => fs.writeFileSync(dir + '/playwright-core__lib__coreBundle.js.v8', 'x'),\n\
                                    () => fs.writeFileSync(dir + '/new.v8', 'x'), () => fs.unlinkSync(dir + '/esbuild__lib__main.js.v8')]) {{\n\
               try {{ attempt(); tried.push('done'); }} catch (e) {{ tried.push(e.code); }} }}\n\
             return tried;",
            inside.display().to_string()
        );
        let result = run_snippet(process, &code).await;
        assert_eq!(result["ok"], true, "{result}");
        assert!(result["codeCache"]["used"].as_u64() >= Some(2), "{result}");
        assert_eq!(result["codeCache"]["rejected"], 0, "{result}");
        if uid.is_some() {
            let tried: Vec<String> = serde_json::from_str(result["output"].as_str().expect("output")).expect("json");
            assert!(tried.iter().all(|outcome| outcome != "done"), "{tried:?}");
            assert_eq!(std::fs::read(&bundle).expect("the bundle's cache"), built);
        }
        // The runner is killed as the run answers; it is gone a moment later.
        assert!(runners_gone(&settings.marker).await);
    }

    #[tokio::test]
    async fn a_job_given_to_a_runner_still_warming_up_does_not_wait_for_the_warm_up() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let settings = marked_settings(scratch.path(), "early");
        let uid = settings.isolate.then(free_run_uid);
        // Taken from the pool the moment it was started (a run right after
        // the last one): its job arrives while it loads, which ends the
        // warm-up before or during its first round, and the job runs.
        let process = CodeProcess::start(&settings, uid, true).expect("start");
        let result = run_snippet(process, "return 40 + 2").await;
        assert_eq!(result["ok"], true, "{result}");
        assert_eq!(result["output"], "42", "{result}");
        assert_eq!(result["warmUp"], "cut short", "{result}");
        // A runner started for its job has no warm-up to cut.
        let process = CodeProcess::start(&settings, settings.isolate.then(free_run_uid), false).expect("start");
        let result = run_snippet(process, "return 1").await;
        assert_eq!(result["warmUp"], "none", "{result}");
        assert!(runners_gone(&settings.marker).await);
    }

    #[tokio::test]
    async fn a_runner_started_ahead_says_when_it_has_warmed_up() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let settings = marked_settings(scratch.path(), "ready");
        let mut asked = CodeProcess::start(&settings, settings.isolate.then(free_run_uid), true).expect("start");
        let unasked = CodeProcess::start(&settings, settings.isolate.then(free_run_uid), true).expect("start");
        // Its modules take a while to load: not ready at once.
        assert!(!asked.is_ready());
        let mut waited = Duration::ZERO;
        while !asked.is_ready() {
            assert!(waited < Duration::from_secs(30), "never said it was ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        let result = run_snippet(asked, "return 40 + 2").await;
        assert_eq!(result["output"], "42", "{result}");
        assert_eq!(result["warmUp"], "done", "{result}");
        // Started with it, and nobody read its line: the run's result is
        // read past it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let result = run_snippet(unasked, "return 7").await;
        assert_eq!(result["output"], "7", "{result}");
        assert_eq!(result["warmUp"], "done", "{result}");
        // One started for its job never says so (nor needs to).
        let mut cold = CodeProcess::start(&settings, settings.isolate.then(free_run_uid), false).expect("start");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!cold.is_ready());
        let result = run_snippet(cold, "return 1").await;
        assert_eq!(result["output"], "1", "{result}");
        assert!(runners_gone(&settings.marker).await);
    }

    #[tokio::test]
    async fn a_snippet_runs_as_its_own_user_and_sees_no_secret() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let hidden = scratch.path().join("data");
        std::fs::create_dir(&hidden).expect("dir");
        std::fs::write(hidden.join("secret"), "s").expect("write");
        let sockets = scratch.path().join("sockets");
        std::fs::create_dir(&sockets).expect("dir");
        let settings = settings(&sockets, &hidden);
        let uid = settings.isolate.then(free_run_uid);
        let process = CodeProcess::start(&settings, uid, false).expect("start");
        let code = format!(
            "const fs = require('fs'); let secret; try {{ secret = fs.readFileSync({:?}, 'utf8') }} catch (e) {{ secret = e.code }}\n\
             return {{ uid: process.getuid(), secret, tmp: fs.readdirSync('/tmp') }};",
            hidden.join("secret")
        );
        let result = run_snippet(process, &code).await;
        eprintln!("{result}");
        assert_eq!(result["ok"], true, "{result}");
        let output: serde_json::Value = serde_json::from_str(result["output"].as_str().expect("output")).expect("json");
        if let Some(uid) = uid {
            assert_eq!(output["uid"], uid);
            assert_ne!(output["secret"], "s");
            // The sweep of the run's user runs after the answer, at once.
            for _ in 0..100 {
                if processes_of_user(uid).is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(processes_of_user(uid).is_empty());
        }
    }

    #[tokio::test]
    async fn a_runner_left_by_a_crash_is_found_by_its_marker_and_killed_with_its_user() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let settings = marked_settings(scratch.path(), "crash");
        let uid = settings.isolate.then(free_run_uid);
        let process = CodeProcess::start(&settings, uid, false).expect("start");
        let pid = process.pid();
        // A crash: the server is gone, its guard never dropped.
        std::mem::forget(process);
        assert_eq!(leftover_runner_pids(&settings.marker), vec![pid]);
        assert_eq!(reap_leftover_runs(&settings.marker), 1);
        runners_gone(&settings.marker).await;
        let alive = crate::reap::process_state(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X');
        assert!(!alive, "the runner survived");
        if let Some(uid) = uid {
            assert!(processes_of_user(uid).is_empty());
        }
    }
}

//! The runtime's zygote: one Node process per node that loads and warms
//! up the runtime once, and forks a copy of itself for each run
//! (`runtime/zygote.cc` is its side, `runner.cjs --zygote` its start).
//!
//! A run then starts with Playwright loaded and its first connection's code
//! compiled, in a few milliseconds, instead of loading for a third of a
//! second; and the copies share the zygote's memory until they write to it.
//! The zygote itself never runs a user's code.
//!
//! Each copy takes its run's place before any of the run's code: the
//! run's namespaces (made, as for a spawned run, by [`Isolation::apply`]
//! in a short-lived *holder* process, which the copy joins with `setns`),
//! its pipes at fds 0 to 3, its limits, `no_new_privs`, and its own user.
//! So the zygote runs as root, in namespaces of its own like a run's
//! (nothing but the runtime and the server's socket visible, the data dir
//! covered), and holds no file a run could use: the files it has open are
//! replaced in each copy.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::{boxed, check, CodeProcess, Isolation, Origin, SandboxSettings, RUNTIME_INSIDE};

/// The addon the zygote forks with, in the runtime dir (built from
/// `zygote.cc` by the README's commands).
pub const ZYGOTE_ADDON: &str = "zygote.node";

/// Words of a request (`zygote.cc`'s `REQUEST_WORDS`).
const REQUEST_WORDS: usize = 8;
/// What the zygote writes back (`zygote.cc`).
const ANSWER_STARTED: i32 = 1;
const ANSWER_ENDED: i32 = 2;
const ANSWER_READY: i32 = 3;

/// The longest the zygote may take to load and warm up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a fork may take to be answered.
const FORK_TIMEOUT: Duration = Duration::from_secs(10);

/// A running zygote. Dropping it kills it (its copies are runs, each
/// ended by its own [`CodeProcess`]).
pub struct Zygote {
    pid: u32,
    /// The control socket, for requests; locked while one is written and
    /// its answer's place is queued, so that answers come in that order.
    control: Mutex<UnixStream>,
    shared: Arc<Shared>,
    process: Mutex<std::process::Child>,
}

impl std::fmt::Debug for Zygote {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Zygote")
            .field("pid", &self.pid)
            .field("alive", &self.is_alive())
            .finish_non_exhaustive()
    }
}

/// What the zygote's reader thread and the requests share.
#[derive(Default)]
struct Shared {
    alive: AtomicBool,
    /// Where each request's answer (pid, errno) goes, in request order.
    starts: Mutex<VecDeque<mpsc::Sender<(i32, i32)>>>,
    /// The copies' ends: a waiter, or a status that came first.
    ends: Mutex<HashMap<u32, End>>,
}

enum End {
    Waiting(tokio::sync::oneshot::Sender<i32>),
    Came(i32),
}

impl Zygote {
    /// Starts the zygote and waits until it has loaded and warmed up. Fails
    /// when the runtime has no addon or the zygote does not get ready.
    pub fn start(settings: &SandboxSettings) -> std::io::Result<Self> {
        let addon = settings.runtime_dir.join(ZYGOTE_ADDON);
        if !addon.is_file() {
            return Err(std::io::Error::other(format!(
                "{} is missing (the README's commands build it from zygote.cc)",
                addon.display()
            )));
        }
        let runtime = if settings.isolate {
            PathBuf::from(RUNTIME_INSIDE)
        } else {
            settings.runtime_dir.clone()
        };
        let (ours, theirs) = UnixStream::pair()?;
        let isolation = if settings.isolate {
            Some(Isolation::new(settings, 0)?)
        } else {
            None
        };
        let control_fd = theirs.as_raw_fd();
        let mut command = std::process::Command::new(&settings.node);
        command
            // V8 posts (almost) no work to helper threads, which a copy
            // lacks; and it has one such thread to park at each fork.
            .arg("--single-threaded")
            .arg("--v8-pool-size=1")
            // The reducer's timer, set in the zygote, would fire in every
            // copy made 8 s later and shrink its young generation at once
            // (a copy is short-lived: its memory goes with it anyway).
            .arg("--no-memory-reducer")
            .arg(settings.heap_argument())
            .arg(runtime.join("runner.cjs"))
            .arg(&settings.marker)
            .arg("--zygote")
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("NODE_ENV", "production")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if settings.isolate {
            command.env("HOME", "/tmp").env("TMPDIR", "/tmp").current_dir("/");
        } else {
            command
                .env("HOME", std::env::temp_dir())
                .current_dir(std::env::temp_dir());
        }
        // SAFETY: the closure runs in the child between fork and exec and
        // makes only system calls, on what was prepared before the fork.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                check(libc::setsid())?;
                if control_fd == 3 {
                    check(libc::fcntl(3, libc::F_SETFD, 0))?;
                } else {
                    check(libc::dup2(control_fd, 3))?;
                }
                if let Some(isolation) = &isolation {
                    isolation.apply()?;
                }
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                check(libc::setrlimit(libc::RLIMIT_CORE, &raw const no_core))?;
                Ok(())
            });
        }
        let process = command.spawn()?;
        drop(theirs);
        let pid = process.id();
        let shared = Arc::new(Shared {
            alive: AtomicBool::new(true),
            ..Shared::default()
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let reading = ours.try_clone()?;
        let reader_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("code-zygote".to_owned())
            .spawn(move || read_answers(reading, &reader_shared, &ready_tx))?;
        let zygote = Self {
            pid,
            control: Mutex::new(ours),
            shared,
            process: Mutex::new(process),
        };
        match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(()) => Ok(zygote),
            Err(_) => Err(std::io::Error::other(format!(
                "the zygote was not ready within {} s",
                READY_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it still answers.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// A runner forked from the zygote for a run: isolated under `uid`
    /// when given (a free run user, see [`super::free_run_uid`]), at the
    /// lowest priority when started `ahead`. Blocks until the zygote has
    /// answered (a few milliseconds).
    pub fn fork(&self, settings: &SandboxSettings, uid: Option<u32>, ahead: bool) -> std::io::Result<CodeProcess> {
        if !self.is_alive() {
            return Err(std::io::Error::other("the zygote has ended"));
        }
        let uid = uid.filter(|_| settings.isolate);
        let (stdin_read, stdin_write) = std::io::pipe()?;
        let (stdout_read, stdout_write) = std::io::pipe()?;
        let (stderr_read, stderr_write) = std::io::pipe()?;
        let (result_read, result_write) = std::io::pipe()?;
        // The run's namespaces, made as for a spawned run, in a holder the
        // copy joins; the holder goes once the copy is in.
        let started = std::time::Instant::now();
        let holder = match uid {
            Some(_) => Some(spawn_holder(settings)?),
            None => None,
        };
        let held = started.elapsed();
        let nice = if ahead { crate::launch::BACKGROUND_NICE } else { 0 };
        let limits = settings.limits;
        let words: [u64; REQUEST_WORDS] = [
            u64::from(uid.unwrap_or(0)),
            holder.as_ref().map_or(0, |holder| u64::from(holder.0.id())),
            // Two's complement, read back as a signed word.
            i64::from(nice).cast_unsigned(),
            limits.memory_bytes,
            limits.file_bytes,
            limits.open_files,
            limits.processes,
            u64::from(ahead),
        ];
        let fds = [
            OwnedFd::from(stdin_read),
            OwnedFd::from(stdout_write),
            OwnedFd::from(stderr_write),
            OwnedFd::from(result_write),
        ];
        let answer = {
            let control = self
                .control
                .lock()
                .map_err(|_| std::io::Error::other("the zygote's socket is poisoned"))?;
            let (answer_tx, answer_rx) = mpsc::channel();
            // Queued first: the answer may be read before send returns.
            if let Ok(mut starts) = self.shared.starts.lock() {
                starts.push_back(answer_tx);
            }
            if let Err(error) = send_request(&control, &words, &fds) {
                if let Ok(mut starts) = self.shared.starts.lock() {
                    starts.pop_back();
                }
                return Err(error);
            }
            drop(control);
            answer_rx.recv_timeout(FORK_TIMEOUT)
        };
        drop(fds);
        drop(holder);
        let (pid, errno) = answer.map_err(|_| std::io::Error::other("the zygote did not answer"))?;
        tracing::debug!(
            holder_us = held.as_micros(),
            forked_us = started.elapsed().as_micros(),
            ahead,
            "a copy of the zygote for a run"
        );
        let pid = u32::try_from(pid).ok().filter(|pid| *pid > 0).ok_or_else(|| {
            std::io::Error::other(format!(
                "the zygote could not fork: {}",
                std::io::Error::from_raw_os_error(errno)
            ))
        })?;
        let (end_tx, end_rx) = tokio::sync::oneshot::channel();
        if let Ok(mut ends) = self.shared.ends.lock() {
            match ends.remove(&pid) {
                Some(End::Came(status)) => {
                    let _ = end_tx.send(status);
                }
                _ => {
                    ends.insert(pid, End::Waiting(end_tx));
                }
            }
        }
        let stdin = tokio::net::unix::pipe::Sender::from_owned_fd(OwnedFd::from(stdin_write))?;
        let stdout = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(stdout_read))?;
        let stderr = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(stderr_read))?;
        let result = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(result_read))?;
        Ok(CodeProcess {
            origin: Origin::Forked {
                end: Some(end_rx),
                ended: None,
            },
            pid,
            uid,
            stdin: Some(Box::new(stdin)),
            result: Some(result),
            stdout: Some(boxed(stdout)),
            stderr: Some(boxed(stderr)),
            // Loaded and warmed up in the zygote; one forked ahead also
            // drives its stand-in once (its own pages written before its
            // job) and says when it has.
            ready: !ahead,
        })
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        if let Ok(mut process) = self.process.lock() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// A process that holds a run's namespaces, made by [`Isolation::apply`],
/// until the run's copy has joined them; killed when dropped, on every path
/// (a request that could not be sent included).
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_holder(settings: &SandboxSettings) -> std::io::Result<Holder> {
    let isolation = Isolation::new(settings, 0)?;
    let mut command = std::process::Command::new(sleep_program());
    command
        .arg("60")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: as for the zygote: system calls only, prepared before the fork.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || isolation.apply());
    }
    command.spawn().map(Holder)
}

/// `sleep`, wherever the system has it.
fn sleep_program() -> &'static Path {
    ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .map(Path::new)
        .find(|path| path.is_file())
        .unwrap_or_else(|| Path::new("sleep"))
}

/// Writes one request and passes the run's four fds with it.
#[allow(unsafe_code)]
fn send_request(control: &UnixStream, words: &[u64; REQUEST_WORDS], fds: &[OwnedFd; 4]) -> std::io::Result<()> {
    let mut bytes = [0_u8; REQUEST_WORDS * 8];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    let raw: [RawFd; 4] = [
        fds[0].as_raw_fd(),
        fds[1].as_raw_fd(),
        fds[2].as_raw_fd(),
        fds[3].as_raw_fd(),
    ];
    let fd_bytes = std::mem::size_of_val(&raw);
    // SAFETY: CMSG_SPACE and CMSG_LEN compute sizes from a length.
    let (space, length) = unsafe {
        (
            libc::CMSG_SPACE(u32::try_from(fd_bytes).unwrap_or(16)) as usize,
            libc::CMSG_LEN(u32::try_from(fd_bytes).unwrap_or(16)) as usize,
        )
    };
    // u64s, so that the control buffer is aligned for a cmsghdr.
    let mut control_buffer = vec![0_u64; space.div_ceil(8)];
    let mut part = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below points at a
    // buffer that outlives the sendmsg call, of the length given with it.
    unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &raw mut part;
        message.msg_iovlen = 1;
        message.msg_control = control_buffer.as_mut_ptr().cast();
        message.msg_controllen = space;
        let header = libc::CMSG_FIRSTHDR(&raw const message);
        if header.is_null() {
            return Err(std::io::Error::other("no room for the fds"));
        }
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = length;
        std::ptr::copy_nonoverlapping(raw.as_ptr().cast::<u8>(), libc::CMSG_DATA(header), fd_bytes);
        let mut sent = 0;
        while sent < bytes.len() {
            let written = if sent == 0 {
                libc::sendmsg(control.as_raw_fd(), &raw const message, libc::MSG_NOSIGNAL)
            } else {
                libc::send(
                    control.as_raw_fd(),
                    bytes[sent..].as_ptr().cast(),
                    bytes.len() - sent,
                    libc::MSG_NOSIGNAL,
                )
            };
            if written < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            sent += usize::try_from(written).unwrap_or(0);
        }
    }
    Ok(())
}

/// The reader thread: routes the zygote's answers until it ends, then
/// fails whatever still waits on it.
fn read_answers(mut control: UnixStream, shared: &Shared, ready: &mpsc::Sender<()>) {
    let mut record = [0_u8; 12];
    while control.read_exact(&mut record).is_ok() {
        let word = |at: usize| i32::from_ne_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]]);
        let (kind, pid, value) = (word(0), word(4), word(8));
        match kind {
            ANSWER_READY => {
                let _ = ready.send(());
            }
            ANSWER_STARTED => {
                let waiting = shared.starts.lock().ok().and_then(|mut starts| starts.pop_front());
                if let Some(waiting) = waiting {
                    let _ = waiting.send((pid, value));
                }
            }
            ANSWER_ENDED => {
                let Ok(pid) = u32::try_from(pid) else { continue };
                if let Ok(mut ends) = shared.ends.lock() {
                    match ends.remove(&pid) {
                        Some(End::Waiting(waiter)) => {
                            let _ = waiter.send(value);
                        }
                        _ => {
                            ends.insert(pid, End::Came(value));
                        }
                    }
                    // A copy whose CodeProcess is gone leaves its status
                    // here; an ended zygote's map goes with it, and a
                    // long-lived one keeps at most this many.
                    if ends.len() > 4096 {
                        ends.retain(|_, end| matches!(end, End::Waiting(_)));
                    }
                }
            }
            _ => {}
        }
    }
    shared.alive.store(false, Ordering::SeqCst);
    if let Ok(mut starts) = shared.starts.lock() {
        starts.clear();
    }
    if let Ok(mut ends) = shared.ends.lock() {
        ends.clear();
    }
}

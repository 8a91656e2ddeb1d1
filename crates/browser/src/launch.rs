//! Launching one Chromium and owning it until it is gone.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::watch;
use url::Url;

use crate::devtools::Devtools;

/// How long a browser may take to answer its first DevTools command.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The nice value browsers run at: a step below the server, so that the
/// server's answers and its proxying (which every session's traffic goes
/// through) never queue behind the browsers' own work on a busy machine.
/// Raising one's nice value needs no privilege.
pub const BROWSER_NICE: i32 = 2;
/// The nice value of browsers launched ahead of need, until handed out.
pub const BACKGROUND_NICE: i32 = 19;
/// How many of the last stderr lines a launch failure quotes.
const STDERR_TAIL_LINES: usize = 5;
/// Where an index launch's component updater is sent: the discard port of
/// this machine, so that it asks nobody (and nothing answers).
const NO_UPDATE_SERVER: &str = "http://127.0.0.1:9/";

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The Chromium executable.
    pub executable: PathBuf,
    /// A directory this browser owns alone (its profile is inside);
    /// removed when it ends.
    pub session_dir: PathBuf,
    /// Its TMPDIR; removed when it ends. See [`crate::BrowserDirs`].
    pub tmp_dir: PathBuf,
    /// Window size.
    pub window: (u32, u32),
    /// First page; a blank page when `None`.
    pub initial_url: Option<Url>,
    /// How long to wait for DevTools.
    pub ready_timeout: Duration,
    /// The browser's window frame (window size minus viewport), when known:
    /// added to `window` so that the viewport comes out at `window`.
    pub window_frame: Option<(u32, u32)>,
    /// Chromium `--host-resolver-rules`, e.g. to keep it from private hosts.
    pub host_resolver_rules: Option<String>,
    /// The user the browser runs as, when not the server's own.
    pub run_as: Option<RunAs>,
    /// Whether Chromium's own sandbox is on (it needs a user other than
    /// root and user namespaces).
    pub sandbox: bool,
    /// Launched ahead of need (a pool refill): every process of it runs at
    /// the lowest CPU priority until [`Browser::raise_priority`], so that it
    /// never slows the sessions in use.
    pub background: bool,
    /// What the session's options ask of this browser beyond the defaults.
    pub setup: BrowserSetup,
    /// The Xvfb that headful browsers get a display from.
    pub xvfb: Option<PathBuf>,
}

/// What a session's options ask of its browser beyond the defaults (a
/// browser launched ahead for the pool has none of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserSetup {
    /// A saved profile copied into the new profile dir before the browser
    /// starts, and the most bytes it may hold.
    pub profile_seed: Option<(PathBuf, u64)>,
    /// Chromium `--proxy-server`: `scheme://host:port`, never credentials.
    pub proxy_server: Option<String>,
    /// Unpacked extensions, copied into the browser's own folder (so that
    /// its user owns them) and loaded.
    pub extensions: Vec<PathBuf>,
    /// The node's ad blocking (`crate::adblock`): its extension, allowed in
    /// the browser's off-the-record contexts too (context sessions are such
    /// contexts), and the filter's indexed ruleset.
    pub adblock: Option<AdblockSetup>,
    /// An index launch (`crate::adblock::IndexJob`): the unindexed ruleset
    /// and its version, put where the component updater would put them, and
    /// component updates on (pointed at no server) so that Chromium indexes
    /// it.
    pub index_filter: Option<(PathBuf, String)>,
    /// CA certificates (name, PEM) the browser trusts: put in an NSS
    /// database under a home folder of the browser's own.
    pub trusted_cas: Vec<(String, String)>,
    /// Further Chromium switches a session's options ask for.
    pub switches: Vec<&'static str>,
    /// PDFs are downloaded instead of shown in Chromium's viewer (a
    /// preference written into the profile before the browser starts).
    pub pdfs_downloaded: bool,
    /// The window is fullscreen on a screen the size of `window`, so the
    /// viewport is still `window`.
    pub fullscreen: bool,
    /// A headful browser (no `--headless`), on a virtual display of its own.
    pub headful: bool,
}

/// How a browser blocks ads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdblockSetup {
    /// The extension that hides elements: copied into the browser's folder
    /// and loaded like a user's extension.
    pub extension: PathBuf,
    /// The filter's indexed ruleset, linked into the new profile with the
    /// feature that turns it on; `None`: no request is blocked.
    pub filter: Option<crate::adblock::filter::IndexedFilter>,
}

/// An unprivileged user for browsers (when the server runs as root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// Its user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
    /// A cache directory it owns, shared by its browsers (the font cache).
    pub cache_dir: PathBuf,
}

impl LaunchSpec {
    /// A spec with the default readiness timeout.
    pub fn new(
        executable: PathBuf,
        (session_dir, tmp_dir): (PathBuf, PathBuf),
        window: (u32, u32),
        initial_url: Option<Url>,
    ) -> Self {
        Self {
            executable,
            session_dir,
            tmp_dir,
            window,
            initial_url,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            window_frame: None,
            host_resolver_rules: None,
            run_as: None,
            sandbox: false,
            background: false,
            setup: BrowserSetup::default(),
            xvfb: None,
        }
    }

    /// The browser's own home folder, for a browser that trusts CAs of its own.
    fn home_dir(&self) -> PathBuf {
        self.session_dir.join("home")
    }

    /// Where the browser's copy of its `index`th extension goes.
    fn extension_dir(&self, index: usize) -> PathBuf {
        self.session_dir.join("extensions").join(index.to_string())
    }

    /// Where the browser's copy of the ad blocking extension goes.
    fn adblock_dir(&self) -> PathBuf {
        self.session_dir.join("extensions").join("adblock")
    }

    fn profile_dir(&self) -> PathBuf {
        self.session_dir.join("profile")
    }

    /// The command line. Every flag that makes Chromium reach out on its own
    /// is off: the machines we run on often have no route to the internet, and
    /// a fleet must not phone home in any case.
    fn arguments(&self) -> Vec<String> {
        let (frame_width, frame_height) = self.window_frame.unwrap_or((0, 0));
        let (width, height) = (self.window.0 + frame_width, self.window.1 + frame_height);
        let mut arguments: Vec<String> = [
            if self.setup.headful {
                // On its display (`DISPLAY`), at its top left corner.
                "--window-position=0,0"
            } else {
                "--headless=new"
            },
            // DevTools over the pipes at fds 3 and 4 (see `crate::devtools`):
            // no port, so nothing else on the machine can reach the browser.
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--no-service-autorun",
            "--disable-background-networking",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-breakpad",
            "--disable-crash-reporter",
            "--disable-client-side-phishing-detection",
            // The last three: every window otherwise preloads the omnibox's
            // suggestion popups as WebUI pages, a renderer process per
            // window that nothing here ever shows (measured: 60 MiB per
            // context with a window, 20 MiB without; BENCHMARKS.md). The
            // address bar falls back to its native popup.
            "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,InterestFeedContentSuggestions,CertificateTransparencyComponentUpdater,AutofillServerCommunication,DisableLoadExtensionCommandLineSwitch,WebUIOmniboxPopup,WebUIOmniboxAimPopup,WebUIOmniboxFullPopup",
            "--disable-quic",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--metrics-recording-only",
            "--password-store=basic",
            "--use-mock-keychain",
            "--mute-audio",
            "--hide-scrollbars",
            // Without it, the first tab shows a banner about --no-sandbox that
            // steals height from its viewport.
            "--test-type",
        ]
        .iter()
        .map(|flag| flag.to_string())
        .collect();
        if self.setup.index_filter.is_some() {
            // Only an index launch runs the component updater, which is what
            // indexes a ruleset; it asks no server that answers.
            arguments.push(format!("--component-updater=url-source={NO_UPDATE_SERVER}"));
        } else {
            arguments.push("--disable-component-update".to_owned());
        }
        if !self.sandbox {
            // Root cannot run Chromium's sandbox, and some kernels allow no
            // user namespaces: then it is off (see the README).
            arguments.push("--no-sandbox".to_owned());
        }
        arguments.push(format!("--user-data-dir={}", self.profile_dir().display()));
        arguments.push(format!("--window-size={width},{height}"));
        let mut folders: Vec<String> = (0..self.setup.extensions.len())
            .map(|index| self.extension_dir(index).display().to_string())
            .collect();
        if self.setup.adblock.is_some() {
            folders.push(self.adblock_dir().display().to_string());
        }
        if !folders.is_empty() {
            arguments.push(format!("--load-extension={}", folders.join(",")));
            arguments.push(format!("--disable-extensions-except={}", folders.join(",")));
        }
        let switches: Vec<String> = self.setup.switches.iter().map(|switch| (*switch).to_owned()).collect();
        if self
            .setup
            .adblock
            .as_ref()
            .is_some_and(|adblock| adblock.filter.is_some())
        {
            arguments.extend(crate::adblock::filter::with_activation(&switches));
        } else {
            arguments.extend(switches);
        }
        if self.setup.fullscreen {
            arguments.push("--start-fullscreen".to_owned());
            arguments.push(format!("--screen-info={{0,0 {}x{}}}", self.window.0, self.window.1));
        }
        if let Some(server) = &self.setup.proxy_server {
            arguments.push(format!("--proxy-server={server}"));
        }
        if let Some(rules) = &self.host_resolver_rules {
            arguments.push(format!("--host-resolver-rules={rules}"));
        }
        arguments.push(
            self.initial_url
                .as_ref()
                .map_or_else(|| "about:blank".to_owned(), Url::to_string),
        );
        arguments
    }
}

/// Why a launch failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The launch was stopped from outside (the start was cancelled); the
    /// browser it had begun is gone.
    #[error("the launch was stopped")]
    Stopped,
    /// The directories could not be made.
    #[error("cannot prepare the browser directory {path}: {source}")]
    Directory {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The executable could not be started.
    #[error("cannot start {executable}: {source}")]
    Spawn {
        /// Which.
        executable: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The DevTools pipes could not be made.
    #[error("cannot make the DevTools pipes: {0}")]
    Pipe(std::io::Error),
    /// Chromium exited before DevTools was up.
    #[error("chromium exited with {status} before it was ready: {stderr_tail}")]
    Exited {
        /// How it exited.
        status: String,
        /// Its last words.
        stderr_tail: String,
    },
    /// The virtual display of a headful browser could not be had.
    #[error("{0}")]
    Display(String),
    /// Chromium did not open DevTools in time.
    #[error("chromium did not open DevTools within {seconds} s: {stderr_tail}")]
    Timeout {
        /// The limit.
        seconds: u64,
        /// Its last words.
        stderr_tail: String,
    },
}

/// How long the phases of a launch took, each counted from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchTimings {
    /// Directories made.
    pub prepared: Duration,
    /// The process spawned.
    pub spawned: Duration,
    /// DevTools answered its first command (the browser is connectable).
    pub devtools_ready: Duration,
}

/// How a browser ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowserExit {
    /// Exited by itself with this description (`exit status 0`, `signal 9`…).
    Exited {
        /// A human description of the status.
        status: String,
        /// Whether it was a clean exit (status 0).
        clean: bool,
    },
    /// We killed it.
    Killed,
}

/// A running Chromium. Dropping it kills the process group (without waiting)
/// and removes its directory, so no path of the server can leak one.
#[derive(Debug)]
pub struct Browser {
    /// The process (group) id; 0 for a simulated browser, which has none.
    pid: u32,
    devtools: Devtools,
    timings: LaunchTimings,
    dirs: Vec<PathBuf>,
    exit: watch::Receiver<Option<BrowserExit>>,
    killer: Option<tokio::sync::oneshot::Sender<()>>,
    /// The virtual display of a headful browser (ended after it).
    display: Option<crate::display::Display>,
    /// The id of the ad blocking extension it loaded, if it did.
    adblock_extension: Option<String>,
}

impl Browser {
    /// The id of the node's ad blocking extension in this browser, when it
    /// was launched with it ([`BrowserSetup::adblock`]).
    pub fn adblock_extension(&self) -> Option<&str> {
        self.adblock_extension.as_deref()
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its DevTools pipe, to open connections with.
    pub fn devtools(&self) -> &Devtools {
        &self.devtools
    }

    /// The directory this browser owns alone (its profile is inside, and
    /// anything else of its session goes there too); `None` for a browser
    /// with no process.
    pub fn session_dir(&self) -> Option<&Path> {
        self.dirs.first().map(PathBuf::as_path)
    }

    /// Its profile (user-data-dir); `None` for a browser with no process.
    pub fn profile_dir(&self) -> Option<PathBuf> {
        self.session_dir().map(|dir| dir.join("profile"))
    }

    /// Asks the browser to close (`Browser.close`), so that it writes what
    /// it keeps in memory (cookies, local storage) to its profile, and waits
    /// up to `within` for every process of it to be gone. `true` if it closed
    /// in time; the caller kills it otherwise.
    pub async fn close_gracefully(&self, within: Duration) -> bool {
        let asked = async {
            if let Ok(mut client) = crate::cdp::CdpClient::open(&self.devtools).await {
                let _ = client.send("Browser.close", serde_json::json!({}), None).await;
                // The connection stays open until the browser goes.
                let _ = self.exited().await;
                drop(client);
            }
            wait_group_gone(self.pid).await;
        };
        tokio::time::timeout(within, asked).await.is_ok() && self.exit.borrow().is_some()
    }

    /// How long each phase of its launch took.
    pub fn timings(&self) -> LaunchTimings {
        self.timings
    }

    /// Whether the browser has exited already.
    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Resolves when the browser has exited, with how.
    pub async fn exited(&self) -> BrowserExit {
        let mut exit = self.exit.clone();
        loop {
            if let Some(status) = exit.borrow_and_update().clone() {
                return status;
            }
            if exit.changed().await.is_err() {
                return BrowserExit::Killed;
            }
        }
    }

    /// Kills the browser's main process now, without waiting: from here
    /// it serves no client (its DevTools pipe dies with it, and its helper
    /// processes can do nothing without it). The signal is sent from a
    /// blocking thread: a `kill` of a process with many threads wakes them
    /// all to exit, and the sender can be kept off the CPU for milliseconds
    /// while they do; the caller goes on at once. [`Browser::shut_down`]
    /// then kills the rest of the group, waits until it is gone and removes
    /// the directories.
    pub fn kill_now(&self) {
        let pid = self.pid;
        tokio::task::spawn_blocking(move || kill_process(pid));
    }

    /// Puts every process of a browser launched in the background back at
    /// the priority of browsers in use (`BROWSER_NICE`), for the session
    /// it is handed to.
    /// Lowering a nice value takes root (or `CAP_SYS_NICE`, or an
    /// `RLIMIT_NICE` of 20); see [`can_raise_priority`].
    /// The group is walked by the kernel process by process, so the call
    /// runs on a blocking thread.
    pub async fn raise_priority(&self) -> std::io::Result<()> {
        let pid = self.pid;
        tokio::task::spawn_blocking(move || set_group_priority(pid, BROWSER_NICE))
            .await
            .map_err(std::io::Error::other)?
    }

    /// A browser with no process behind it, for tests of the code that
    /// schedules browsers (see [`crate::testing`]).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn simulated(
        devtools: Devtools,
        exit: watch::Receiver<Option<BrowserExit>>,
        killer: tokio::sync::oneshot::Sender<()>,
    ) -> Self {
        Self {
            pid: 0,
            devtools,
            timings: LaunchTimings {
                prepared: Duration::ZERO,
                spawned: Duration::ZERO,
                devtools_ready: Duration::ZERO,
            },
            dirs: Vec::new(),
            exit,
            killer: Some(killer),
            display: None,
            adblock_extension: None,
        }
    }

    /// Kills the whole process group, waits for the main process to be
    /// reaped, and removes the browser's directory.
    pub async fn shut_down(mut self) {
        if let Some(killer) = self.killer.take() {
            let _ = killer.send(());
        }
        let _ = self.exited().await;
        wait_group_gone(self.pid).await;
        if let Some(display) = self.display.take() {
            display.shut_down().await;
        }
        for dir in &self.dirs {
            remove_dir(dir).await;
        }
    }

    /// The number of a headful browser's display (`DISPLAY=:<number>`).
    pub fn display_number(&self) -> Option<u32> {
        self.display.as_ref().map(crate::display::Display::number)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.killer.is_some() {
            kill_group(self.pid);
            // The supervising task owns the child; the directories go now.
            for dir in &self.dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Sends SIGKILL to a process group. An error (no such group) means it is
/// already gone, which is the outcome wanted.
#[allow(unsafe_code)]
pub(crate) fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg takes plain integers and touches no memory of ours.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// Sends SIGKILL to one process. An error (no such process) means it is
/// already gone.
#[allow(unsafe_code)]
fn kill_process(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Kills a browser's whole group, lowering its priority first: the
/// teardown of dying processes (unmapping their memory, closing their files)
/// is CPU work done in them, and at the lowest priority it yields to the
/// server and to the sessions in use. Both calls walk the group and wake
/// its threads, which takes milliseconds: they run on a blocking thread.
async fn end_group(pgid: u32) {
    let ended = tokio::task::spawn_blocking(move || {
        let _ = set_group_priority(pgid, BACKGROUND_NICE);
        kill_group(pgid);
    })
    .await;
    if ended.is_err() {
        // The blocking pool is gone (the runtime is stopping): kill here.
        kill_group(pgid);
    }
}

/// Sets preferences in the profile's `Default/Preferences` (kept with
/// whatever a saved profile brought), before the browser starts: each a
/// path of keys and its value, in order, the file read and written once.
async fn set_preferences(spec: &LaunchSpec, values: Vec<(Vec<&str>, serde_json::Value)>) -> std::io::Result<()> {
    let file = spec.profile_dir().join("Default").join("Preferences");
    if let Some(parent) = file.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut preferences: serde_json::Value = match tokio::fs::read(&file).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::json!({})),
        Err(_) => serde_json::json!({}),
    };
    for (path, value) in values {
        let mut slot = &mut preferences;
        for key in path {
            if !slot.is_object() {
                *slot = serde_json::json!({});
            }
            slot = slot
                .as_object_mut()
                .map(|object| object.entry(key.to_owned()).or_insert(serde_json::Value::Null))
                .ok_or_else(|| std::io::Error::other("preferences are not an object"))?;
        }
        *slot = value;
    }
    tokio::fs::write(&file, preferences.to_string()).await?;
    if let Some(run_as) = &spec.run_as {
        for path in [spec.profile_dir().join("Default"), file] {
            std::os::unix::fs::chown(&path, Some(run_as.uid), Some(run_as.gid))?;
        }
    }
    Ok(())
}

/// Readies the ad blocking of `spec` (if any) in the new profile: the
/// extension allowed in off-the-record contexts, the filter's indexed
/// ruleset (or, for an index launch, the ruleset to index) made the
/// browser's. Returns the extension's id.
async fn install_adblock(spec: &LaunchSpec) -> std::io::Result<Option<String>> {
    let owner = spec.run_as.as_ref().map(|run_as| (run_as.uid, run_as.gid));
    if let Some((unindexed, version)) = &spec.setup.index_filter {
        let (profile, unindexed, version) = (spec.profile_dir(), unindexed.clone(), version.clone());
        tokio::task::spawn_blocking(move || {
            crate::adblock::filter::place_unindexed(&profile, &unindexed, &version)?;
            match owner {
                Some(owner) => chown_tree(&profile.join("Subresource Filter"), owner),
                None => Ok(()),
            }
        })
        .await
        .map_err(std::io::Error::other)??;
    }
    let Some(adblock) = &spec.setup.adblock else {
        return Ok(None);
    };
    if let Some(filter) = adblock.filter.clone() {
        let profile = spec.profile_dir();
        tokio::task::spawn_blocking(move || {
            let made = crate::adblock::filter::place_indexed(&profile, &filter)?;
            if let Some((uid, gid)) = owner {
                for path in made {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(std::io::Error::other)??;
    }
    // Chromium names an unpacked extension after its absolute path.
    let id = crate::adblock::extension::extension_id(&tokio::fs::canonicalize(spec.adblock_dir()).await?);
    set_preferences(
        spec,
        vec![(vec!["extensions", "settings", id.as_str(), "incognito"], true.into())],
    )
    .await?;
    Ok(Some(id))
}

/// Makes the NSS database a browser reads its trusted CAs from
/// (`<home>/.pki/nssdb`) with the spec's CAs in it, trusted for servers.
async fn trust_cas(spec: &LaunchSpec) -> std::io::Result<()> {
    let certutil = crate::host::find_in_path("certutil").ok_or_else(|| {
        std::io::Error::other(
            "certutil is not installed (Debian package libnss3-tools); it is needed to trust CA certificates",
        )
    })?;
    let db = spec.home_dir().join(".pki").join("nssdb");
    tokio::fs::create_dir_all(&db).await?;
    let database = format!("sql:{}", db.display());
    let run = |arguments: Vec<String>| {
        let certutil = certutil.clone();
        async move {
            let output = tokio::process::Command::new(certutil)
                .args(&arguments)
                .stdin(Stdio::null())
                .output()
                .await?;
            if output.status.success() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "certutil failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )))
            }
        }
    };
    run(vec![
        "-N".into(),
        "-d".into(),
        database.clone(),
        "--empty-password".into(),
    ])
    .await?;
    for (index, (name, pem)) in spec.setup.trusted_cas.iter().enumerate() {
        let file = db.join(format!("ca-{index}.pem"));
        tokio::fs::write(&file, pem).await?;
        let added = run(vec![
            "-A".into(),
            "-d".into(),
            database.clone(),
            "-n".into(),
            name.clone(),
            "-t".into(),
            "C,,".into(),
            "-i".into(),
            file.display().to_string(),
        ])
        .await;
        let _ = tokio::fs::remove_file(&file).await;
        added?;
    }
    if let Some(run_as) = &spec.run_as {
        let (home, owner) = (spec.home_dir(), (run_as.uid, run_as.gid));
        tokio::task::spawn_blocking(move || chown_tree(&home, owner))
            .await
            .map_err(|error| std::io::Error::other(error.to_string()))??;
    }
    Ok(())
}

/// Gives a folder and everything in it to `owner` (uid, gid).
fn chown_tree(path: &Path, owner: (u32, u32)) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

/// Sets the nice value of every process of a group.
#[allow(unsafe_code)]
pub(crate) fn set_group_priority(pgid: u32, nice: i32) -> std::io::Result<()> {
    if pgid == 0 {
        return Ok(());
    }
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    let result = unsafe { libc::setpriority(libc::PRIO_PGRP, pgid, nice) };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this process may put a browser launched in the background back at
/// `BROWSER_NICE`: root, or an `RLIMIT_NICE` that allows it. Without it, launching in
/// the background would leave the session slow for its whole life.
#[allow(unsafe_code)]
pub fn can_raise_priority() -> bool {
    // SAFETY: geteuid has no arguments; getrlimit writes into the struct we pass.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut limit) };
    read == 0 && limit.rlim_cur >= u64::try_from(20 - BROWSER_NICE).unwrap_or(u64::MAX)
}

/// Whether any process of the group is alive (zombies, already dead and
/// waiting for their reaper, do not count).
pub(crate) fn group_alive(pgid: u32) -> bool {
    if pgid == 0 {
        // No process (a simulated browser); kernel threads have group 0.
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| {
            crate::reap::process_state(pid).is_some_and(|(state, group)| group == pgid && state != 'Z' && state != 'X')
        })
}

/// Waits (briefly, bounded) until every process of a killed group is gone,
/// so that "ended" means no process of it is left.
async fn wait_group_gone(pgid: u32) {
    for _ in 0..200 {
        // Reading /proc is blocking file I/O: keep it off the async workers.
        let alive = tokio::task::spawn_blocking(move || group_alive(pgid))
            .await
            .unwrap_or(false);
        if !alive {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!(pgid, "processes of a killed browser are still alive after 2 s");
}

async fn remove_dirs(spec: &LaunchSpec) {
    remove_dir(&spec.session_dir).await;
    remove_dir(&spec.tmp_dir).await;
}

async fn remove_dir(path: &Path) {
    if let Err(error) = tokio::fs::remove_dir_all(path).await {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %error, "could not remove a browser directory");
        }
    }
}

fn describe(status: ExitStatus) -> (String, bool) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (format!("exit status {code}"), code == 0),
        (None, Some(signal)) => (format!("signal {signal}"), false),
        _ => ("an unknown status".to_owned(), false),
    }
}

/// The last lines a browser wrote to stderr, for launch errors; the reader
/// keeps draining after the launch so that a chatty browser never blocks on
/// a full pipe.
#[derive(Clone, Default)]
struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    /// Reads `stderr` to its end in a task; the handle resolves at the end.
    fn follow(&self, stderr: ChildStderr, pid: u32) -> tokio::task::JoinHandle<()> {
        let tail = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::trace!(pid, %line, "chromium");
                let mut kept = tail.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if kept.len() == STDERR_TAIL_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        })
    }

    fn joined(&self) -> String {
        let kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.iter().map(String::as_str).collect::<Vec<_>>().join(" | ")
    }
}

/// The pipes of `--remote-debugging-pipe`, made close-on-exec: the browser
/// gets `for_browser` as its fds 3 (commands in) and 4 (messages out); the
/// server keeps `for_server` (writes commands, reads messages).
struct DevtoolsPipes {
    for_browser: [OwnedFd; 2],
    for_server: [OwnedFd; 2],
}

impl DevtoolsPipes {
    fn new() -> std::io::Result<Self> {
        let (browser_reads, server_writes) = std::io::pipe()?;
        let (server_reads, browser_writes) = std::io::pipe()?;
        Ok(Self {
            for_browser: [browser_reads.into(), browser_writes.into()],
            for_server: [server_writes.into(), server_reads.into()],
        })
    }

    /// Arranges for the child to find its ends at fds 3 and 4, and to run
    /// at [`BROWSER_NICE`], or [`BACKGROUND_NICE`] when it is launched in
    /// the `background`.
    #[allow(unsafe_code)]
    fn hand_over(&self, command: &mut Command, background: bool) {
        let ends = [self.for_browser[0].as_raw_fd(), self.for_browser[1].as_raw_fd()];
        // SAFETY: the closure runs in the child between fork and exec, and
        // only calls fcntl, dup2 and setpriority, which are async-signal-safe;
        // it touches no memory but the integers it owns.
        unsafe {
            command.pre_exec(move || {
                place_devtools_fds(ends)?;
                // Every process the browser starts inherits it. Raising
                // one's nice value is always allowed; a server that runs
                // nicer than this already keeps its own (the call fails,
                // which is no reason to fail the launch).
                let nice = if background { BACKGROUND_NICE } else { BROWSER_NICE };
                libc::setpriority(libc::PRIO_PROCESS, 0, nice);
                Ok(())
            });
        }
    }
}

/// In the child: puts `ends` at fds 3 and 4, open across exec. Each end is
/// first copied above 9, so that neither can be overwritten by the other's
/// move (they could be 3 or 4 themselves).
#[allow(unsafe_code)]
fn place_devtools_fds(ends: [RawFd; 2]) -> std::io::Result<()> {
    let mut high = [0; 2];
    for (copy, end) in high.iter_mut().zip(ends) {
        // SAFETY: fcntl on a descriptor we own; no memory is passed.
        *copy = unsafe { libc::fcntl(end, libc::F_DUPFD_CLOEXEC, 10) };
        if *copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for (copy, target) in high.into_iter().zip([3, 4]) {
        // SAFETY: as above; dup2 leaves the new descriptor open across exec.
        if unsafe { libc::dup2(copy, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Launches Chromium and waits until its DevTools pipe answers.
pub async fn launch(spec: &LaunchSpec) -> Result<Browser, LaunchError> {
    launch_until(spec, std::future::pending()).await
}

/// Like [`launch`], but gives up when `stop` resolves first. Whatever way a
/// launch fails or stops, the browser begun is killed, its whole group waited
/// for and its dirs removed before this returns (one path does it,
/// `UnfinishedLaunch::abandon`); a launch future dropped half-way kills the
/// group and removes the dirs as it drops.
pub async fn launch_until(
    spec: &LaunchSpec,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Browser, LaunchError> {
    let started = std::time::Instant::now();
    for dir in [spec.profile_dir(), spec.tmp_dir.clone()] {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|source| LaunchError::Directory {
                path: dir.clone(),
                source,
            })?;
    }
    if let Some(run_as) = &spec.run_as {
        // The browser's user owns its dirs, and nothing else of the server's.
        let mut owned = vec![spec.session_dir.clone(), spec.profile_dir(), spec.tmp_dir.clone()];
        owned.dedup();
        for dir in owned {
            if let Err(source) = std::os::unix::fs::chown(&dir, Some(run_as.uid), Some(run_as.gid)) {
                remove_dirs(spec).await;
                return Err(LaunchError::Directory { path: dir, source });
            }
        }
    }
    // A saved profile and extensions are copied in before the browser starts.
    let mut copies: Vec<(PathBuf, PathBuf, u64)> = Vec::new();
    if let Some((seed, max_bytes)) = &spec.setup.profile_seed {
        copies.push((seed.clone(), spec.profile_dir(), *max_bytes));
    }
    for (index, extension) in spec.setup.extensions.iter().enumerate() {
        copies.push((extension.clone(), spec.extension_dir(index), u64::MAX));
    }
    if let Some(adblock) = &spec.setup.adblock {
        copies.push((adblock.extension.clone(), spec.adblock_dir(), u64::MAX));
    }
    for (from, to, max_bytes) in copies {
        let limits = crate::CopyLimits {
            max_bytes,
            owner: spec.run_as.as_ref().map(|run_as| (run_as.uid, run_as.gid)),
        };
        let target = to.clone();
        let copied = tokio::task::spawn_blocking(move || crate::copy_profile(&from, &target, limits))
            .await
            .map_err(|error| std::io::Error::other(error.to_string()))
            .and_then(|copied| copied.map_err(std::io::Error::other));
        if let Err(source) = copied {
            remove_dirs(spec).await;
            return Err(LaunchError::Directory { path: to, source });
        }
    }
    let adblock_extension = match install_adblock(spec).await {
        Ok(id) => id,
        Err(source) => {
            remove_dirs(spec).await;
            return Err(LaunchError::Directory {
                path: spec.profile_dir(),
                source,
            });
        }
    };
    if spec.setup.pdfs_downloaded {
        if let Err(source) =
            set_preferences(spec, vec![(vec!["plugins", "always_open_pdf_externally"], true.into())]).await
        {
            remove_dirs(spec).await;
            return Err(LaunchError::Directory {
                path: spec.profile_dir(),
                source,
            });
        }
    }
    if !spec.setup.trusted_cas.is_empty() {
        if let Err(source) = trust_cas(spec).await {
            remove_dirs(spec).await;
            return Err(LaunchError::Directory {
                path: spec.home_dir(),
                source,
            });
        }
    }
    let pipes = match DevtoolsPipes::new() {
        Ok(pipes) => pipes,
        Err(error) => {
            remove_dirs(spec).await;
            return Err(LaunchError::Pipe(error));
        }
    };
    let display = if spec.setup.headful {
        match start_display(spec).await {
            Ok(display) => Some(display),
            Err(error) => {
                remove_dirs(spec).await;
                return Err(LaunchError::Display(error));
            }
        }
    } else {
        None
    };
    let prepared = started.elapsed();
    let mut command = Command::new(&spec.executable);
    if let Some(display) = &display {
        command.env("DISPLAY", format!(":{}", display.number()));
    }
    command
        .args(spec.arguments())
        .env("TMPDIR", spec.tmp_dir.clone())
        // Chromium keeps its crash reports under the configuration dir
        // (~/.config/chromium), not the profile: keep them in the session's
        // dir too. HOME and the cache dir stay, so that the font cache is shared.
        .env("XDG_CONFIG_HOME", spec.session_dir.join("config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(run_as) = &spec.run_as {
        // Another user's HOME is not the browser's; its own dir is, with a
        // cache shared by the browsers of that user.
        command
            .uid(run_as.uid)
            .gid(run_as.gid)
            .env("HOME", spec.session_dir.clone())
            .env("XDG_CACHE_HOME", run_as.cache_dir.clone());
    }
    if !spec.setup.trusted_cas.is_empty() {
        // Chromium reads the CAs it trusts from $HOME/.pki/nssdb; the font
        // cache stays where it was, shared.
        command.env("HOME", spec.home_dir());
        if spec.run_as.is_none() {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")));
            if let Some(cache) = cache {
                command.env("XDG_CACHE_HOME", cache);
            }
        }
    }
    pipes.hand_over(&mut command, spec.background);
    let spawned_child = command.spawn();
    let DevtoolsPipes {
        for_browser,
        for_server,
    } = pipes;
    // The child has its copies; ours would keep the pipes open after it exits.
    drop(for_browser);
    let mut child = match spawned_child {
        Ok(child) => child,
        Err(source) => {
            remove_dirs(spec).await;
            return Err(LaunchError::Spawn {
                executable: spec.executable.clone(),
                source,
            });
        }
    };
    let spawned = started.elapsed();
    let pid = child.id().unwrap_or(0);
    // From here every failure goes through the guard's `abandon`, and a
    // dropped future through its `Drop`.
    let unfinished = UnfinishedLaunch {
        pid,
        dirs: Some(vec![spec.session_dir.clone(), spec.tmp_dir.clone()]),
    };
    let tail = StderrTail::default();
    let stderr_done = child.stderr.take().map(|stderr| tail.follow(stderr, pid));
    let [commands, messages] = for_server;
    let devtools = match Devtools::start(commands, messages) {
        Ok(devtools) => devtools,
        Err(error) => {
            unfinished.abandon(&mut child).await;
            return Err(LaunchError::Pipe(error));
        }
    };
    // The first command is read once the browser is up; its answer is the
    // signal that it is. No polling.
    let answered = tokio::select! {
        answered = tokio::time::timeout(spec.ready_timeout, devtools.call("Browser.getVersion", serde_json::json!({}))) => answered,
        () = stop => {
            unfinished.abandon(&mut child).await;
            return Err(LaunchError::Stopped);
        }
    };
    match answered {
        Ok(Ok(_version)) => {}
        Ok(Err(error)) => {
            let status = unfinished.abandon(&mut child).await;
            // Its last words are read to the end before they are quoted.
            if let Some(done) = stderr_done {
                let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
            }
            tracing::debug!(pid, %error, "the DevTools pipe closed before the browser was ready");
            return Err(LaunchError::Exited {
                status,
                stderr_tail: tail.joined(),
            });
        }
        Err(_) => {
            unfinished.abandon(&mut child).await;
            return Err(LaunchError::Timeout {
                seconds: spec.ready_timeout.as_secs(),
                stderr_tail: tail.joined(),
            });
        }
    }

    // The hub learns the order pages open in (the active page is the newest).
    if let Err(error) = devtools.follow_targets().await {
        tracing::warn!(pid, %error, "the browser's targets cannot be followed; the active page may be any open page");
    }
    let dirs = unfinished.finish();
    let (exit_sender, exit) = watch::channel(None);
    let (killer, kill_requested) = tokio::sync::oneshot::channel();
    tokio::spawn(supervise(child, pid, exit_sender, kill_requested));
    let timings = LaunchTimings {
        prepared,
        spawned,
        devtools_ready: started.elapsed(),
    };
    Ok(Browser {
        pid,
        devtools,
        timings,
        dirs,
        exit,
        killer: Some(killer),
        display,
        adblock_extension,
    })
}

/// A display for a headful browser: a screen its window's size with its
/// frame, and some room to spare. (A screen exactly the window's size, as
/// once measured, made Chromium keep its window one pixel short of it on
/// each side it touched: a viewport of 800×600 came out 799×599.)
async fn start_display(spec: &LaunchSpec) -> Result<crate::display::Display, String> {
    let Some(xvfb) = &spec.xvfb else {
        return Err("headful browsers need Xvfb, which is not on PATH: install Debian's xvfb package".to_owned());
    };
    let (frame_width, frame_height) = spec.window_frame.unwrap_or(HEADFUL_FRAME_ALLOWANCE);
    let size = (
        spec.window.0 + frame_width + SCREEN_SPARE,
        spec.window.1 + frame_height + SCREEN_SPARE,
    );
    let owner = spec.run_as.as_ref().map(|run_as| (run_as.uid, run_as.gid));
    crate::display::Display::start(xvfb, size, &spec.session_dir.join("display"), owner)
        .await
        .map_err(|error| format!("cannot start Xvfb ({}): {error}", xvfb.display()))
}

/// Room for a headful window's frame (tab strip, toolbar) on the screen of
/// the first headful launch, before the frame is measured.
const HEADFUL_FRAME_ALLOWANCE: (u32, u32) = (64, 256);

/// Pixels of screen beyond a headful window and its frame, on each axis.
const SCREEN_SPARE: u32 = 32;

/// A browser spawned but not yet handed out. The one way to give it up is
/// [`UnfinishedLaunch::abandon`]: kill the group, reap the main process, wait
/// until no process of the group is left, remove the dirs, and disarm. A
/// guard still armed when dropped (the launch future itself was dropped)
/// kills the group and removes the dirs on the spot.
struct UnfinishedLaunch {
    pid: u32,
    /// The dirs until they are removed or handed on; armed while set.
    dirs: Option<Vec<PathBuf>>,
}

impl UnfinishedLaunch {
    /// Kills the browser begun and waits until nothing of it is left;
    /// returns how its main process ended.
    async fn abandon(mut self, child: &mut Child) -> String {
        kill_group(self.pid);
        let status = child
            .wait()
            .await
            .map(|status| describe(status).0)
            .unwrap_or_else(|error| error.to_string());
        wait_group_gone(self.pid).await;
        for dir in self.dirs.take().unwrap_or_default() {
            remove_dir(&dir).await;
        }
        status
    }

    /// The launch succeeded: the dirs go to the [`Browser`].
    fn finish(mut self) -> Vec<PathBuf> {
        self.dirs.take().unwrap_or_default()
    }
}

impl Drop for UnfinishedLaunch {
    fn drop(&mut self) {
        if let Some(dirs) = self.dirs.take() {
            kill_group(self.pid);
            for dir in dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Owns the child: reaps it when it exits, kills its group when asked (or
/// when the [`Browser`] is dropped), and publishes how it ended.
async fn supervise(
    mut child: Child,
    pid: u32,
    exit: watch::Sender<Option<BrowserExit>>,
    kill_requested: tokio::sync::oneshot::Receiver<()>,
) {
    let outcome = tokio::select! {
        status = child.wait() => {
            // The main process is gone; helpers of its group go with it.
            end_group(pid).await;
            match status {
                Ok(status) => {
                    let (status, clean) = describe(status);
                    BrowserExit::Exited { status, clean }
                }
                Err(error) => BrowserExit::Exited { status: error.to_string(), clean: false },
            }
        }
        _ = kill_requested => {
            // Asked to stop, or the Browser was dropped: either way, kill.
            end_group(pid).await;
            let _ = child.wait().await;
            BrowserExit::Killed
        }
    };
    let _ = exit.send(Some(outcome));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_keep_the_browser_quiet_and_local() {
        let spec = LaunchSpec::new(
            "/usr/bin/chromium".into(),
            ("/tmp/x".into(), "/tmp/x/tmp".into()),
            (800, 600),
            None,
        );
        let arguments = spec.arguments();
        for flag in [
            "--disable-background-networking",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-pipe",
            "--window-size=800,600",
            "--user-data-dir=/tmp/x/profile",
        ] {
            assert!(arguments.iter().any(|argument| argument == flag), "{flag} missing");
        }
        assert_eq!(arguments.last().map(String::as_str), Some("about:blank"));
    }

    #[tokio::test]
    async fn a_missing_executable_is_a_spawn_error_and_leaves_no_dir() {
        let dir = tempfile::tempdir().expect("temp dir");
        let session_dir = dir.path().join("s1");
        let spec = LaunchSpec::new(
            "/nonexistent/chromium".into(),
            (session_dir.clone(), session_dir.join("tmp")),
            (800, 600),
            None,
        );
        assert!(matches!(launch(&spec).await, Err(LaunchError::Spawn { .. })));
        assert!(!session_dir.exists());
    }

    /// Defect: the exit and timeout paths of a launch did not wait for the
    /// rest of the browser's group, so a helper could outlive the error.
    #[tokio::test]
    async fn a_launch_that_times_out_leaves_no_process_of_its_group() {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("fake-chromium");
        // A helper in the browser's group that outlives its parent's
        // answer, as Chromium's zygote would; the pipe never answers.
        std::fs::write(
            &script,
            "#!/bin/sh\nsleep 30 &\necho $! > \"$TMPDIR/../helper\"\nexec sleep 30\n",
        )
        .expect("write");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let session_dir = dir.path().join("s1");
        let spec = LaunchSpec {
            ready_timeout: Duration::from_millis(500),
            ..LaunchSpec::new(script, (session_dir.clone(), session_dir.join("tmp")), (800, 600), None)
        };
        let helper_file = session_dir.join("helper");
        let launched = tokio::spawn(async move { launch(&spec).await });
        let mut helper = None;
        for _ in 0..400 {
            helper = std::fs::read_to_string(&helper_file)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok());
            if helper.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let helper = helper.expect("the helper started");
        assert!(matches!(
            launched.await.expect("task"),
            Err(LaunchError::Timeout { .. })
        ));
        // Gone, not only signalled: no live process of the group is left.
        let state = crate::reap::process_state(helper);
        assert!(
            state.is_none_or(|(state, _)| state == 'Z' || state == 'X'),
            "the helper is still alive: {state:?}"
        );
        assert!(!session_dir.exists());
    }

    #[tokio::test]
    async fn a_browser_that_exits_early_is_reported_with_its_words() {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("fake-chromium");
        std::fs::write(&script, "#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n").expect("write");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let spec = LaunchSpec::new(
            script,
            (dir.path().join("s1"), dir.path().join("s1/tmp")),
            (800, 600),
            None,
        );
        match launch(&spec).await {
            Err(LaunchError::Exited { status, stderr_tail }) => {
                assert_eq!(status, "exit status 3");
                assert!(stderr_tail.contains("cannot open display"));
            }
            other => panic!("expected an early exit, got {other:?}"),
        }
    }
}

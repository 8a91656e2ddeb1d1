//! The [`Launcher`] interface between the code that schedules browsers and
//! the code that starts them, and [`ChromiumLauncher`], its real
//! implementation.
//!
//! Everything a launch needs that does not change from one launch to the
//! next (the executable, the directory layout, timeouts, resolver rules,
//! the browser user, the sandbox) is fixed when the launcher is made, so
//! that launch settings are built in one place ([`ChromiumLauncher::spec`]).
//! A caller says only what differs: a directory name, a window, a first
//! page, and whether the browser is launched ahead of need. Tests of the
//! scheduler implement the trait with browsers that have no process behind
//! them (see [`crate::testing`]).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::cdp::CdpError;
use crate::launch::{can_raise_priority, launch_until, Browser, BrowserSetup, LaunchError, LaunchSpec, RunAs};
use crate::BrowserDirs;

/// What differs between launches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    /// The name of its directory under the browsers root: a session id in
    /// 32 hex digits, or `pool…` for a browser launched ahead.
    pub name: String,
    /// The viewport its first page gets.
    pub window: (u32, u32),
    /// Its first page; a blank page when `None`.
    pub initial_url: Option<Url>,
    /// Launched ahead of need (a pool refill): at the lowest CPU priority
    /// until [`Launcher::hand_out`], so that it never slows sessions in use.
    pub ahead: bool,
    /// What the session's options ask of it beyond the defaults.
    pub setup: BrowserSetup,
}

/// Starts browsers. The fleet schedules; this launches.
#[async_trait]
pub trait Launcher: Send + Sync + 'static {
    /// Launches one browser and waits until it is connectable. When `stop`
    /// fires first, the browser begun is gone before this returns
    /// [`LaunchError::Stopped`].
    async fn launch(&self, request: &LaunchRequest, stop: CancellationToken) -> Result<Browser, LaunchError>;

    /// Readies a browser launched ahead for the session it is handed to:
    /// normal CPU priority, and `initial_url` opened in its first page.
    async fn hand_out(&self, browser: &Browser, initial_url: Option<&Url>) -> Result<(), CdpError>;

    /// Whether launches can work at all (the executable is in place).
    fn ready(&self) -> bool;

    /// How much memory the browsers launched here use now, per browser;
    /// `None` when it cannot be told. Blocking (it reads `/proc`).
    fn memory_in_use(&self) -> Option<crate::MemoryUse> {
        None
    }
}

/// The settings every Chromium of a server shares.
#[derive(Debug, Clone)]
pub struct ChromiumSettings {
    /// The Chromium executable (the binary, not a launcher script).
    pub executable: PathBuf,
    /// Where per-browser directories go.
    pub dirs: BrowserDirs,
    /// How long a launch may take to answer on its DevTools pipe.
    pub ready_timeout: Duration,
    /// Chromium `--host-resolver-rules` every browser gets.
    pub host_resolver_rules: Option<String>,
    /// The user browsers run as, when not the server's.
    pub run_as: Option<RunAs>,
    /// Whether Chromium's own sandbox is on.
    pub sandbox: bool,
    /// Whether browsers launched ahead run at the lowest CPU priority until
    /// handed out (where this process may raise it back, see
    /// [`crate::can_raise_priority`]).
    pub low_priority_ahead: bool,
}

/// Launches real Chromium processes.
#[derive(Debug)]
pub struct ChromiumLauncher {
    settings: ChromiumSettings,
    /// Window size minus viewport, measured on the first launch: later
    /// launches ask for a window that large, so their viewport comes out
    /// exactly as asked without a CDP round trip.
    window_frame: Mutex<Option<(u32, u32)>>,
    /// The same for headful windows (a tab strip and a toolbar).
    headful_frame: Mutex<Option<(u32, u32)>>,
    /// Xvfb, for headful browsers' displays.
    xvfb: Option<std::path::PathBuf>,
    /// Whether browsers launched ahead can be put back at normal priority
    /// (otherwise they are launched at normal priority in the first place).
    background_launches: bool,
    /// Reads the browsers' memory, reusing sizes between readings.
    memory: Mutex<crate::MemoryReader>,
}

impl ChromiumLauncher {
    /// A launcher with these settings.
    pub fn new(settings: ChromiumSettings) -> Self {
        Self {
            window_frame: Mutex::new(None),
            headful_frame: Mutex::new(None),
            xvfb: crate::host::find_in_path("Xvfb"),
            background_launches: settings.low_priority_ahead && can_raise_priority(),
            memory: Mutex::new(crate::MemoryReader::new(settings.dirs.root())),
            settings,
        }
    }

    /// The settings it launches with.
    pub fn settings(&self) -> &ChromiumSettings {
        &self.settings
    }

    fn frame_slot(&self, headful: bool) -> &Mutex<Option<(u32, u32)>> {
        if headful {
            &self.headful_frame
        } else {
            &self.window_frame
        }
    }

    fn window_frame(&self, headful: bool) -> Option<(u32, u32)> {
        self.frame_slot(headful).lock().ok().and_then(|frame| *frame)
    }

    /// Whether headful browsers can be launched (Xvfb is there).
    pub fn headful_ready(&self) -> bool {
        self.xvfb.is_some()
    }

    /// The one place a launch's full settings are made.
    fn spec(&self, request: &LaunchRequest) -> LaunchSpec {
        LaunchSpec {
            ready_timeout: self.settings.ready_timeout,
            window_frame: self.window_frame(request.setup.headful),
            xvfb: self.xvfb.clone(),
            host_resolver_rules: self.settings.host_resolver_rules.clone(),
            run_as: self.settings.run_as.clone(),
            sandbox: self.settings.sandbox,
            background: request.ahead && self.background_launches,
            setup: request.setup.clone(),
            ..LaunchSpec::new(
                self.settings.executable.clone(),
                self.settings.dirs.for_session(&request.name),
                request.window,
                request.initial_url.clone(),
            )
        }
    }
}

#[async_trait]
impl Launcher for ChromiumLauncher {
    async fn launch(&self, request: &LaunchRequest, stop: CancellationToken) -> Result<Browser, LaunchError> {
        let spec = self.spec(request);
        let browser = launch_until(&spec, stop.cancelled()).await?;
        // A fullscreen window has no frame: it cannot tell the others' size.
        if spec.window_frame.is_none() && !request.setup.fullscreen {
            // Headless windows have an invisible frame: size this first
            // window so that its viewport is what was asked, and remember
            // the frame for every later launch.
            let (width, height) = request.window;
            match crate::cdp::fit_viewport(browser.devtools(), width, height).await {
                Ok(frame) => {
                    if let Ok(mut slot) = self.frame_slot(request.setup.headful).lock() {
                        *slot = Some(frame);
                    }
                }
                Err(error) => tracing::warn!(%error, "could not fit the viewport"),
            }
        }
        Ok(browser)
    }

    async fn hand_out(&self, browser: &Browser, initial_url: Option<&Url>) -> Result<(), CdpError> {
        if self.background_launches {
            if let Err(error) = browser.raise_priority().await {
                tracing::warn!(pid = browser.pid(), %error, "could not put a pooled browser back at normal priority");
            }
        }
        match initial_url {
            Some(url) => crate::cdp::open_in_first_page(browser.devtools(), url).await,
            None => Ok(()),
        }
    }

    fn ready(&self) -> bool {
        crate::host::is_executable(&self.settings.executable)
    }

    fn memory_in_use(&self) -> Option<crate::MemoryUse> {
        let mut reader = self.memory.lock().ok()?;
        Some(reader.read())
    }
}

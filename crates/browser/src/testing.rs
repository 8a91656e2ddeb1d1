//! Browsers with no process behind them, for tests of the code that
//! schedules browsers (the fleet's admission, pool and supervision) without
//! Chromium. Built only with the `testing` feature.
//!
//! A simulated [`Browser`] behaves as a real one towards its owner: it can
//! be killed, shut down and dropped, and it reports how it ended. Its
//! DevTools pipe is open but silent (nothing answers), so code under test
//! must not expect CDP answers from it. The [`BrowserHandle`] lets a test
//! end it from outside, as a crash would, and see whether it is gone.

use std::os::fd::OwnedFd;

use tokio::sync::{oneshot, watch};

use crate::devtools::Devtools;
use crate::launch::{Browser, BrowserExit};

/// The test's side of a simulated browser.
#[derive(Debug)]
pub struct BrowserHandle {
    exit: watch::Receiver<Option<BrowserExit>>,
    crash: Option<oneshot::Sender<BrowserExit>>,
}

impl BrowserHandle {
    /// Makes the browser exit by itself, as a crash or a client's
    /// `Browser.close` would.
    pub fn exit_by_itself(&mut self, exit: BrowserExit) {
        if let Some(crash) = self.crash.take() {
            let _ = crash.send(exit);
        }
    }

    /// Whether the browser has ended (killed, dropped, or exited).
    pub fn is_gone(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Resolves when the browser has ended.
    pub async fn gone(&self) {
        let mut exit = self.exit.clone();
        let _ = exit.wait_for(Option::is_some).await;
    }
}

/// A browser with no process, and the handle to end it from outside.
pub fn simulated_browser() -> std::io::Result<(Browser, BrowserHandle)> {
    let (browser_reads, server_writes) = std::io::pipe()?;
    let (server_reads, browser_writes) = std::io::pipe()?;
    let devtools = Devtools::start(server_writes.into(), server_reads.into())?;
    let browser_ends: [OwnedFd; 2] = [browser_reads.into(), browser_writes.into()];
    let (exit_sender, exit) = watch::channel(None);
    let (killer, kill_requested) = oneshot::channel::<()>();
    let (crash, crashed) = oneshot::channel::<BrowserExit>();
    tokio::spawn(async move {
        let outcome = tokio::select! {
            // Asked to stop, or the Browser was dropped.
            _ = kill_requested => BrowserExit::Killed,
            exit = crashed => exit.unwrap_or(BrowserExit::Killed),
        };
        // The pipe closes as a dead browser's does.
        drop(browser_ends);
        let _ = exit_sender.send(Some(outcome));
    });
    let handle = BrowserHandle {
        exit: exit.clone(),
        crash: Some(crash),
    };
    Ok((Browser::simulated(devtools, exit, killer), handle))
}

//! Virtual X displays for headful browsers: one `Xvfb` per browser, in a
//! process group of its own, owned by the [`crate::Browser`] (killed with it,
//! and by its `Drop`, so none can leak).
//!
//! - **No clash**: Xvfb picks a free display number itself (`-displayfd`)
//!   and tells it on a pipe, so two launches never race for one.
//! - **Found after a crash**: its command line carries `-fbdir` under the
//!   browser's own directory, so the start-up reap finds it with the
//!   browsers and removes the lock file and socket a killed Xvfb leaves in
//!   `/tmp`.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// How long Xvfb may take to open its display.
const DISPLAY_TIMEOUT: Duration = Duration::from_secs(15);

/// A running Xvfb.
#[derive(Debug)]
pub struct Display {
    child: Child,
    pid: u32,
    /// Known once Xvfb said it.
    number: Option<u32>,
}

impl Display {
    /// Starts Xvfb with one screen of `size` (24-bit), its frame buffer
    /// file in `fb_dir`, as `run_as` (uid, gid) when given.
    pub async fn start(
        xvfb: &Path,
        size: (u32, u32),
        fb_dir: &Path,
        run_as: Option<(u32, u32)>,
    ) -> std::io::Result<Self> {
        tokio::fs::create_dir_all(fb_dir).await?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(fb_dir, Some(uid), Some(gid))?;
        }
        let (mut reader, writer) = std::io::pipe()?;
        let write_end = writer.as_raw_fd();
        let mut command = Command::new(xvfb);
        command
            .args(["-displayfd", "3", "-screen", "0"])
            .arg(format!("{}x{}x24", size.0.max(1), size.1.max(1)))
            .args(["-nolisten", "tcp", "-noreset", "-fbdir"])
            .arg(fb_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        if let Some((uid, gid)) = run_as {
            command.uid(uid).gid(gid);
        }
        // SAFETY: between fork and exec the closure only calls dup2, which
        // is async-signal-safe, on integers it owns.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                // Copied above 9 first: the end may be fd 3 itself, which
                // dup2 onto itself would leave closed on exec.
                let high = libc::fcntl(write_end, libc::F_DUPFD_CLOEXEC, 10);
                if high < 0 || libc::dup2(high, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        drop(writer);
        let pid = child.id().unwrap_or(0);
        let mut display = Self {
            child,
            pid,
            number: None,
        };
        // Xvfb writes the number and a newline once it accepts clients.
        let read = tokio::task::spawn_blocking(move || {
            let mut said = Vec::new();
            let mut byte = [0_u8; 1];
            while reader.read(&mut byte).ok() == Some(1) && byte[0] != b'\n' {
                said.push(byte[0]);
            }
            String::from_utf8_lossy(&said).trim().parse::<u32>().ok()
        });
        match tokio::time::timeout(DISPLAY_TIMEOUT, read).await {
            Ok(Ok(Some(number))) => {
                display.number = Some(number);
                Ok(display)
            }
            _ => {
                display.shut_down().await;
                Err(std::io::Error::other(format!(
                    "Xvfb did not open a display within {} s",
                    DISPLAY_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// The display's number (`DISPLAY=:<number>`).
    pub fn number(&self) -> u32 {
        self.number.unwrap_or_default()
    }

    /// Ends Xvfb: SIGTERM (it then removes its lock file and socket), and
    /// SIGKILL to its group if it has not gone within a second; then its
    /// leftovers in `/tmp` are removed.
    pub async fn shut_down(mut self) {
        signal_group(self.pid, libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(1), self.child.wait())
            .await
            .is_err()
        {
            signal_group(self.pid, libc::SIGKILL);
            let _ = self.child.wait().await;
        }
        if let Some(number) = self.number.take() {
            remove_display_files(number, self.pid);
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(self.pid, libc::SIGKILL);
            // A killed Xvfb removes nothing: its lock file and socket go now.
            if let Some(number) = self.number {
                remove_display_files(number, self.pid);
            }
        }
    }
}

fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else { return };
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg takes plain integers and touches no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::killpg(pgid, signal);
    }
}

fn lock_file(number: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/.X{number}-lock"))
}

fn socket_file(number: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/.X11-unix/X{number}"))
}

/// The pid a display's lock file names.
fn lock_owner(number: u32) -> Option<u32> {
    std::fs::read_to_string(lock_file(number)).ok()?.trim().parse().ok()
}

/// Removes a display's lock file and socket if the lock is `pid`'s (a
/// display another process holds now is left alone).
pub(crate) fn remove_display_files(number: u32, pid: u32) {
    if lock_owner(number) == Some(pid) {
        let _ = std::fs::remove_file(socket_file(number));
        let _ = std::fs::remove_file(lock_file(number));
    }
}

/// The displays whose lock file names `pid`.
pub(crate) fn displays_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_prefix(".X")?.strip_suffix("-lock")?.parse::<u32>().ok()
        })
        .filter(|number| lock_owner(*number) == Some(pid))
        .collect()
}

/// The Xvfb of a browser directory under `root`, by its `-fbdir` argument.
pub(crate) fn is_display_of(cmdline: &[u8], root: &Path) -> bool {
    let marker = format!("{}/", root.display());
    let mut arguments = cmdline.split(|byte| *byte == 0);
    let is_xvfb = arguments.next().is_some_and(|program| program.ends_with(b"Xvfb"));
    let mut previous: &[u8] = b"";
    is_xvfb
        && arguments.any(|argument| {
            let found = previous == b"-fbdir" && argument.starts_with(marker.as_bytes());
            previous = argument;
            found
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xvfb_is_known_by_its_frame_buffer_folder() {
        let root = Path::new("/data/browsers");
        let ours = b"/usr/bin/Xvfb\0-displayfd\x003\0-fbdir\0/data/browsers/abc/display\0";
        let theirs = b"/usr/bin/Xvfb\0:99\0-fbdir\0/elsewhere/display\0";
        let not_xvfb = b"/usr/bin/cat\0-fbdir\0/data/browsers/abc/display\0";
        assert!(is_display_of(ours, root));
        assert!(!is_display_of(theirs, root));
        assert!(!is_display_of(not_xvfb, root));
    }
}

//! Finding and removing what an earlier run of the server left behind: browser
//! processes whose profile lives under our browsers directory, and the
//! directories themselves.
//!
//! A browser is recognised by its command line (`--user-data-dir=` under the
//! directory given), so two servers with different data dirs on one machine
//! never touch each other's browsers.

use std::path::Path;

use crate::launch::kill_group;
use crate::BrowserDirs;

/// What [`reap_leftovers`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReapReport {
    /// Process groups killed.
    pub process_groups_killed: usize,
    /// Directories removed.
    pub directories_removed: usize,
}

/// The state letter and process group of a pid, read from `/proc/PID/stat`.
pub(crate) fn process_state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its ')' are plain.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_whitespace();
    // state, ppid, pgrp
    let state = fields.next()?.chars().next()?;
    fields.next()?;
    Some((state, fields.next()?.parse().ok()?))
}

fn process_group_of(pid: u32) -> Option<u32> {
    process_state(pid).map(|(_, group)| group)
}

/// Pids (other than ours) whose command line (its NUL-separated bytes)
/// `matches`.
pub(crate) fn pids_whose_command_line(matches: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own_pid = std::process::id();
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own_pid)
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| matches(&cmdline)))
        .collect()
}

/// Pids whose command line has a `--user-data-dir=` under `browsers_root`.
pub fn leftover_browser_pids(browsers_root: &Path) -> Vec<u32> {
    let marker = format!("--user-data-dir={}/", browsers_root.display());
    pids_whose_command_line(|cmdline| {
        cmdline
            .split(|byte| *byte == 0)
            .any(|argument| argument.starts_with(marker.as_bytes()))
    })
}

/// Pids of Xvfb displays of browsers under `browsers_root` (their `-fbdir`).
pub fn leftover_display_pids(browsers_root: &Path) -> Vec<u32> {
    pids_whose_command_line(|cmdline| crate::display::is_display_of(cmdline, browsers_root))
}

/// Kills every leftover browser of these dirs (its whole process group) and
/// removes every directory in them. Blocking: call it before serving, or
/// from a blocking thread.
pub fn reap_leftovers(dirs: &BrowserDirs) -> ReapReport {
    let browsers_root = dirs.root();
    let mut report = ReapReport::default();
    let mut groups: Vec<u32> = leftover_browser_pids(browsers_root)
        .into_iter()
        .map(|pid| process_group_of(pid).unwrap_or(pid))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    for group in groups {
        kill_group(group);
        report.process_groups_killed += 1;
    }
    // Their displays, and what a killed Xvfb leaves in /tmp.
    for pid in leftover_display_pids(browsers_root) {
        let displays = crate::display::displays_of(pid);
        kill_group(process_group_of(pid).unwrap_or(pid));
        report.process_groups_killed += 1;
        for number in displays {
            crate::display::remove_display_files(number, pid);
        }
    }
    // Killed processes disappear asynchronously; wait briefly so that the
    // directories are not recreated under us by a dying browser.
    for _ in 0..50 {
        if leftover_browser_pids(browsers_root).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for root in [browsers_root, dirs.short_tmp_root()] {
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.filter_map(Result::ok) {
                if std::fs::remove_dir_all(entry.path()).is_ok() {
                    report.directories_removed += 1;
                }
            }
        }
    }
    report
}

//! How much memory this server's browsers use, read from `/proc`.
//!
//! Every browser (and every Xvfb display of a headful one) is the leader of
//! a process group of its own, and its renderer, GPU, network and utility
//! processes stay in that group. A reading walks `/proc` once: it finds the
//! groups whose leader is one of ours (recognised by its command line, as
//! [`crate::reap_leftovers`] does) and adds up the proportional set size
//! (`Pss` in `/proc/PID/smaps_rollup`) of every process in them. PSS splits
//! each shared page among the processes that map it, so shared libraries
//! and the memory Chromium shares between its processes are counted once
//! in the total, which the sum of resident sizes would count many times.
//!
//! Reading `smaps_rollup` walks a process's mappings, about a millisecond
//! for a large renderer: callers read in a blocking thread and space their
//! readings by the time one takes.

use std::collections::HashMap;
use std::path::Path;

/// One reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Bytes of every group of ours together.
    pub total_bytes: u64,
    /// Bytes per group, keyed by the pid of its leader (a browser's
    /// [`crate::Browser::pid`], or a display's).
    pub by_group: HashMap<u32, u64>,
    /// Processes read.
    pub processes: usize,
}

/// Reads the memory of the browsers (and displays) whose directories are
/// under `browsers_root`. Blocking.
pub fn browsers_memory(browsers_root: &Path) -> MemoryUse {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return MemoryUse::default();
    };
    let own_pid = std::process::id();
    let marker = format!("--user-data-dir={}/", browsers_root.display());
    // pid → its group, and whether each leader seen is ours.
    let mut members: Vec<(u32, u32)> = Vec::new();
    let mut ours: HashMap<u32, bool> = HashMap::new();
    for pid in entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own_pid)
    {
        let Some((_, group)) = crate::reap::process_state(pid) else {
            continue;
        };
        if group == pid {
            let is_ours = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|byte| *byte == 0)
                    .any(|argument| argument.starts_with(marker.as_bytes()))
                    || crate::display::is_display_of(&cmdline, browsers_root)
            });
            ours.insert(pid, is_ours);
        }
        members.push((pid, group));
    }
    let mut reading = MemoryUse::default();
    for (pid, group) in members {
        if !ours.get(&group).copied().unwrap_or(false) {
            continue;
        }
        let Some(bytes) = proportional_size(pid) else {
            // Gone since the walk began.
            continue;
        };
        reading.total_bytes += bytes;
        *reading.by_group.entry(group).or_insert(0) += bytes;
        reading.processes += 1;
    }
    reading
}

/// A process's proportional set size in bytes.
fn proportional_size(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_of(&rollup, "Pss:").map(|kib| kib * 1024)
}

/// The number of kB on the line that starts with `label`.
fn kib_of(text: &str, label: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with(label))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pss_line_is_read_in_kib() {
        let rollup = "00400000-7ffd rw-p 00000000 00:00 0 [rollup]\nRss:  2048 kB\nPss:  1500 kB\nPss_Anon: 900 kB\n";
        assert_eq!(kib_of(rollup, "Pss:"), Some(1500));
        assert_eq!(kib_of(rollup, "Swap:"), None);
    }

    #[test]
    fn a_reading_with_no_browsers_is_empty() {
        let root = std::env::temp_dir().join("anchorage-memory-test-no-browsers-here");
        let reading = browsers_memory(&root);
        assert_eq!(reading.total_bytes, 0);
        assert!(reading.by_group.is_empty());
    }

    #[test]
    fn this_process_can_read_its_own_size() {
        assert!(proportional_size(std::process::id()).is_some_and(|bytes| bytes > 0));
    }
}

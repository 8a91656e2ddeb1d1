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
//! The sum of PSS leaves out what the kernel keeps for the processes (page
//! tables, socket buffers): a reading also gives the machine's
//! `MemAvailable`, which sees everything.
//!
//! Reading `smaps_rollup` walks a process's mappings, about 1.4 ms per
//! Chromium process here (969 processes of 622 context sessions: 1.4 s), so
//! a [`MemoryReader`] that reads again and again reuses each size for ten
//! readings; callers read in a blocking thread and space their readings by
//! the time one takes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

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
    /// The machine's memory, total and available (`MemTotal` and
    /// `MemAvailable` of `/proc/meminfo`), in bytes.
    pub machine: Option<(u64, u64)>,
}

/// Reads the memory of the browsers (and displays) whose directories are
/// under `browsers_root`, every process afresh. Blocking.
pub fn browsers_memory(browsers_root: &Path) -> MemoryUse {
    MemoryReader::new(browsers_root).read()
}

/// How many readings a [`MemoryReader`] reuses a process's size for before
/// it reads it again.
const REFRESH_READINGS: u64 = 10;

/// Readings taken again and again, at a tenth of the cost of fresh ones: a
/// process's size is read when it is first seen, and then again every
/// `REFRESH_READINGS` readings (spread over them by pid); a process that
/// is gone drops out at once. So a browser that ended is out of the next
/// reading, a new one is in it, and a size that changes is seen within ten
/// readings.
#[derive(Debug)]
pub struct MemoryReader {
    root: PathBuf,
    readings: u64,
    /// Sizes read, by pid, with the process's start time (a pid used again
    /// by another process is read afresh) and group.
    known: HashMap<u32, Known>,
    /// The group leaders found to be ours (pid and start time). Only those
    /// are remembered: a process read between its fork and its `exec`
    /// still shows its parent's command line, so "not ours" is asked again
    /// at every reading.
    leaders: HashSet<(u32, u64)>,
}

#[derive(Debug, Clone, Copy)]
struct Known {
    started: u64,
    bytes: u64,
}

impl MemoryReader {
    /// A reader of the browsers under `browsers_root`.
    pub fn new(browsers_root: &Path) -> Self {
        Self {
            root: browsers_root.to_path_buf(),
            readings: 0,
            known: HashMap::new(),
            leaders: HashSet::new(),
        }
    }

    /// One reading. Blocking.
    pub fn read(&mut self) -> MemoryUse {
        self.readings += 1;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return MemoryUse::default();
        };
        let own_pid = std::process::id();
        let marker = format!("--user-data-dir={}/", self.root.display());
        let mut members: Vec<(u32, u32, u64)> = Vec::new();
        let mut leaders: HashSet<(u32, u64)> = HashSet::new();
        for pid in entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != own_pid)
        {
            let Some((group, started)) = group_and_start(pid) else {
                continue;
            };
            if group == pid {
                let is_ours = self.leaders.contains(&(pid, started))
                    || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                        cmdline
                            .split(|byte| *byte == 0)
                            .any(|argument| argument.starts_with(marker.as_bytes()))
                            || crate::display::is_display_of(&cmdline, &self.root)
                    });
                if is_ours {
                    leaders.insert((pid, started));
                }
            }
            members.push((pid, group, started));
        }
        let ours: HashSet<u32> = leaders.iter().map(|(pid, _)| *pid).collect();
        self.leaders = leaders;
        let mut reading = MemoryUse {
            machine: machine_memory(),
            ..MemoryUse::default()
        };
        let mut known = HashMap::new();
        for (pid, group, started) in members {
            if !ours.contains(&group) {
                continue;
            }
            let due = (u64::from(pid) + self.readings).is_multiple_of(REFRESH_READINGS);
            let kept = self
                .known
                .get(&pid)
                .filter(|kept| kept.started == started && !due)
                .map(|kept| kept.bytes);
            let Some(bytes) = kept.or_else(|| proportional_size(pid)) else {
                // Gone since the walk began.
                continue;
            };
            known.insert(pid, Known { started, bytes });
            reading.total_bytes += bytes;
            *reading.by_group.entry(group).or_insert(0) += bytes;
            reading.processes += 1;
        }
        self.known = known;
        reading
    }
}

/// The process group and start time (in clock ticks since boot) of a pid,
/// from `/proc/PID/stat`.
fn group_and_start(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its ')' are plain.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    // Field 5 (the group) is the third after the name, field 22 (the start
    // time) the twentieth.
    let group = fields.nth(2)?.parse().ok()?;
    let started = fields.nth(16)?.parse().ok()?;
    Some((group, started))
}

/// The machine's total and available memory in bytes.
fn machine_memory() -> Option<(u64, u64)> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some((
        kib_of(&meminfo, "MemTotal:")? * 1024,
        kib_of(&meminfo, "MemAvailable:")? * 1024,
    ))
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
    fn the_machines_memory_is_read() {
        let (total, available) = machine_memory().expect("/proc/meminfo");
        assert!(available <= total && total > 0);
    }

    /// A process group led by a shell whose command line names a browser
    /// directory under `root`, as a browser's does, with a child of its own.
    /// For its first 300 ms the leader has another command line (as a
    /// browser has between its fork and its `exec`); then it `exec`s, with
    /// the same pid and start time.
    fn fake_browser(root: &Path) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let profile = format!("--user-data-dir={}/fake/profile", root.display());
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("sleep 0.3; exec sh -c 'sleep 30 & wait' '{profile}'"))
            .process_group(0)
            .spawn()
            .expect("sh")
    }

    #[test]
    fn a_reader_counts_every_process_of_a_group_and_drops_one_that_ended_at_once() {
        let root = tempfile::tempdir().expect("temp dir");
        let mut reader = MemoryReader::new(root.path());
        assert_eq!(reader.read().processes, 0);
        let mut child = fake_browser(root.path());
        let leader = child.id();
        // Its group goes whatever the test finds (a kill of a group that is
        // gone does nothing).
        struct Reaped(u32);
        impl Drop for Reaped {
            fn drop(&mut self) {
                crate::launch::kill_group(self.0);
            }
        }
        let _reaped = Reaped(leader);
        // Read while the leader is not yet recognisable.
        assert_eq!(reader.read().processes, 0);
        // The shell and its `sleep`, once both run.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let reading = loop {
            let reading = reader.read();
            if reading.processes == 2 || std::time::Instant::now() > deadline {
                break reading;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(reading.processes, 2, "{reading:?}");
        let group = reading.by_group.get(&leader).copied().unwrap_or(0);
        assert!(group > 0 && group == reading.total_bytes, "{reading:?}");
        // Readings in between reuse the sizes, and agree with a fresh one
        // on what runs.
        for _ in 0..REFRESH_READINGS {
            assert_eq!(reader.read().processes, 2);
        }
        assert_eq!(browsers_memory(root.path()).processes, 2);
        crate::launch::kill_group(leader);
        let _ = child.wait();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while reader.read().processes != 0 {
            assert!(std::time::Instant::now() < deadline, "the ended group is still counted");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(reader.read().total_bytes, 0);
    }

    #[test]
    fn the_group_and_start_time_of_this_process_are_read() {
        let (group, started) = group_and_start(std::process::id()).expect("own stat");
        assert!(group > 0 && started > 0);
        // Its own start does not change between two looks.
        assert_eq!(
            group_and_start(std::process::id()).map(|(_, again)| again),
            Some(started)
        );
    }

    #[test]
    fn this_process_can_read_its_own_size() {
        assert!(proportional_size(std::process::id()).is_some_and(|bytes| bytes > 0));
    }
}

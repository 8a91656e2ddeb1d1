//! Memory-aware admission: the memory this node's browsers may use
//! together (`ANCHORAGE_MAX_MEMORY_MIB`), and the readings that tell how
//! much they use.
//!
//! A reader task measures the browsers' memory from time to time (see
//! `anchorage_browser::browsers_memory`: the proportional set size of every
//! process of every browser and display). A start that needs memory it
//! cannot see yet (a launch, or a context in a host) is let through only
//! while the last reading plus what the starts admitted since are expected
//! to take stays below the limit; otherwise it waits in the queue, as it
//! waits for a place. What a start is expected to take is reserved at
//! admission and given back once a reading begun after the start finished
//! has seen its real size, so a burst of starts between two readings cannot
//! overshoot the limit by more than one start's guess.
//!
//! Whatever the limit, starts also wait while the machine's available
//! memory, less what is reserved, is under a tenth of its memory (at least
//! 1 GiB): the browsers' PSS leaves out what the kernel keeps for
//! them (page tables, buffers: the machine lost 6% more than the reading
//! with 621 context sessions, 12% more with 169 browsers; BENCHMARKS.md),
//! and other programs use the machine too.
//!
//! Where the memory cannot be read (a launcher with no processes, a
//! platform without `/proc`), admission by memory is off and says so once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a browser launched for one session is expected to take until a
/// reading shows it: an idle headless Chromium with a small page measured
/// 119 MiB by a reading and 133 MiB of system memory here (BENCHMARKS.md,
/// "Context sessions"); a guess on the high side.
pub(super) const BROWSER_GUESS: u64 = 150 * 1024 * 1024;

/// The same for a context session in a host that runs (32 MiB read, 34 MiB
/// of system memory); a host launched for it is not guessed.
pub(super) const CONTEXT_GUESS: u64 = 48 * 1024 * 1024;

/// The shortest time between two readings.
pub(super) const READING_INTERVAL: Duration = Duration::from_secs(1);

/// How many times its own length a reading waits before the next, so that
/// reading never takes more than a twentieth of one core.
pub(super) const READING_SPACING: u32 = 20;

/// The memory limit, the last reading, and what admitted starts reserve.
#[derive(Debug)]
pub(super) struct MemoryBudget {
    limit: Option<u64>,
    /// Bytes the last reading found.
    measured: AtomicU64,
    /// The machine's available bytes at the last reading, and the least
    /// that must stay available (`u64::MAX` and 0 until known).
    available: AtomicU64,
    floor: AtomicU64,
    /// Whether readings work (until one fails, or before the first, both
    /// count as working: the first reading is taken at once).
    readable: AtomicBool,
    /// Readings begun so far.
    readings_begun: AtomicU64,
    reserved: Mutex<Reserved>,
}

#[derive(Debug, Default)]
struct Reserved {
    /// Bytes of starts under way.
    in_flight: u64,
    /// Bytes of starts that finished, each with the number of readings
    /// begun when it did: the reading with that index is the first to see it.
    settling: Vec<(u64, u64)>,
}

/// Memory reserved for one start; dropping it once the start is over (up,
/// failed or withdrawn) keeps it reserved until a reading has seen the
/// start's real size.
#[derive(Debug)]
pub(crate) struct MemoryClaim {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Drop for MemoryClaim {
    fn drop(&mut self) {
        let tag = self.budget.readings_begun.load(Ordering::SeqCst);
        if let Ok(mut reserved) = self.budget.reserved.lock() {
            reserved.in_flight = reserved.in_flight.saturating_sub(self.bytes);
            reserved.settling.push((tag, self.bytes));
        }
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes (`None`: no limit, readings only).
    pub(super) fn new(limit: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            limit,
            measured: AtomicU64::new(0),
            available: AtomicU64::new(u64::MAX),
            floor: AtomicU64::new(0),
            readable: AtomicBool::new(true),
            readings_begun: AtomicU64::new(0),
            reserved: Mutex::new(Reserved::default()),
        })
    }

    /// The limit in bytes, if there is one.
    pub(super) fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Bytes the last reading found.
    pub(super) fn measured(&self) -> u64 {
        self.measured.load(Ordering::SeqCst)
    }

    /// Bytes reserved by starts no reading has seen yet.
    pub(super) fn reserved(&self) -> u64 {
        self.reserved
            .lock()
            .map(|reserved| reserved.in_flight + reserved.settling.iter().map(|(_, bytes)| bytes).sum::<u64>())
            .unwrap_or(0)
    }

    /// Whether one more start that needs new memory may go now.
    pub(super) fn allows(&self) -> bool {
        if !self.readable.load(Ordering::SeqCst) {
            return true;
        }
        let reserved = self.reserved();
        let machine_has_room =
            self.available.load(Ordering::SeqCst).saturating_sub(reserved) > self.floor.load(Ordering::SeqCst);
        machine_has_room
            && self
                .limit
                .is_none_or(|limit| self.measured().saturating_add(reserved) < limit)
    }

    /// Reserves `bytes` for a start let through.
    pub(super) fn reserve(self: &Arc<Self>, bytes: u64) -> MemoryClaim {
        if let Ok(mut reserved) = self.reserved.lock() {
            reserved.in_flight += bytes;
        }
        MemoryClaim {
            budget: Arc::clone(self),
            bytes,
        }
    }

    /// Readings begun so far.
    pub(super) fn readings_begun(&self) -> u64 {
        self.readings_begun.load(Ordering::SeqCst)
    }

    /// A reading begins; its index, for [`MemoryBudget::read`].
    pub(super) fn reading_begins(&self) -> u64 {
        self.readings_begun.fetch_add(1, Ordering::SeqCst)
    }

    /// The reading with this index found `bytes` used by the browsers, and
    /// the machine's total and available memory if known: what it has seen
    /// is no longer reserved.
    pub(super) fn read(&self, index: u64, bytes: u64, machine: Option<(u64, u64)>) {
        self.measured.store(bytes, Ordering::SeqCst);
        if let Some((total, available)) = machine {
            self.floor.store((total / 10).max(1024 * 1024 * 1024), Ordering::SeqCst);
            self.available.store(available, Ordering::SeqCst);
        }
        if let Ok(mut reserved) = self.reserved.lock() {
            reserved.settling.retain(|(tag, _)| *tag > index);
        }
    }

    /// Readings do not work here: admission by memory is off.
    pub(super) fn unreadable(&self) {
        self.readable.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn no_limit_always_allows() {
        let budget = MemoryBudget::new(None);
        let _claims: Vec<_> = (0..100).map(|_| budget.reserve(BROWSER_GUESS)).collect();
        assert!(budget.allows());
    }

    #[test]
    fn starts_are_let_through_until_reading_and_reservations_reach_the_limit() {
        let budget = MemoryBudget::new(Some(300 * MIB));
        let index = budget.reading_begins();
        budget.read(index, 100 * MIB, None);
        assert!(budget.allows());
        let first = budget.reserve(100 * MIB);
        assert!(budget.allows(), "200 of 300 MiB");
        let second = budget.reserve(100 * MIB);
        assert!(!budget.allows(), "300 of 300 MiB");
        // The starts finish; until a reading begun after that has seen them
        // their guesses stay reserved.
        drop((first, second));
        assert!(!budget.allows());
        let stale = 0;
        budget.read(stale, 100 * MIB, None);
        assert!(
            !budget.allows(),
            "a reading begun before they finished saw nothing of them"
        );
        let index = budget.reading_begins();
        budget.read(index, 180 * MIB, None);
        assert_eq!(budget.reserved(), 0);
        assert!(budget.allows(), "their real size (80 MiB) is below the guesses");
    }

    #[test]
    fn a_start_that_finished_during_a_reading_waits_for_the_next() {
        let budget = MemoryBudget::new(Some(1000 * MIB));
        let claim = budget.reserve(CONTEXT_GUESS);
        let during = budget.reading_begins();
        drop(claim);
        budget.read(during, 0, None);
        assert_eq!(budget.reserved(), CONTEXT_GUESS);
        let after = budget.reading_begins();
        budget.read(after, 0, None);
        assert_eq!(budget.reserved(), 0);
    }

    #[test]
    fn starts_wait_while_the_machine_is_short_of_memory_whatever_the_limit() {
        const GIB: u64 = 1024 * MIB;
        let budget = MemoryBudget::new(None);
        let index = budget.reading_begins();
        budget.read(index, 0, Some((24 * GIB, 4 * GIB)));
        assert!(budget.allows(), "4 GiB of 24 free; 2.4 GiB must stay");
        let claim = budget.reserve(BROWSER_GUESS * 12);
        assert!(
            !budget.allows(),
            "what is reserved would take the machine under its floor"
        );
        drop(claim);
        let index = budget.reading_begins();
        budget.read(index, 0, Some((24 * GIB, 2 * GIB)));
        assert!(!budget.allows(), "2 GiB of 24 free");
    }

    #[test]
    fn an_unreadable_fleet_turns_admission_by_memory_off() {
        let budget = MemoryBudget::new(Some(MIB));
        let _claim = budget.reserve(BROWSER_GUESS);
        assert!(!budget.allows());
        budget.unreadable();
        assert!(budget.allows());
    }
}

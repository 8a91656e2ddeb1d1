//! Batches: a batch's status, counts and progress are derived from its items,
//! never stored apart from them, so they cannot drift. The one fact stored on
//! the batch itself is whether it was cancelled.

use crate::request::RequestPhase;
use crate::wire_enum::wire_enum;

wire_enum! {
    /// Where a batch is.
    pub enum BatchStatus {
        /// Nothing started yet.
        Pending => "pending",
        /// Some items started, some are not final yet.
        Processing => "processing",
        /// Every item is final and at least one session came up.
        Completed => "completed",
        /// Every item is final and none came up.
        Failed => "failed",
        /// Cancelled by a client.
        Cancelled => "cancelled",
    }
}

impl BatchStatus {
    /// Whether the batch has nothing left to do (until a retry).
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Whether a cancel is allowed from here.
    pub fn can_cancel(&self) -> bool {
        matches!(self, Self::Pending | Self::Processing)
    }
}

/// How many items of a batch are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Waiting.
    pub pending: i64,
    /// Launching.
    pub processing: i64,
    /// Came up.
    pub completed: i64,
    /// Could not be started.
    pub failed: i64,
    /// Withdrawn.
    pub cancelled: i64,
    /// Items that are out of the queue now or have been at some time
    /// (launched, or retried); zero means nothing of the batch ever started.
    pub attempted: i64,
}

impl BatchCounts {
    /// All items.
    pub fn total(&self) -> i64 {
        self.pending + self.processing + self.completed + self.failed + self.cancelled
    }

    /// Items in a final state.
    pub fn finished(&self) -> i64 {
        self.completed + self.failed + self.cancelled
    }

    /// The batch's status; `cancelled` wins over everything.
    pub fn status(&self, cancelled: bool) -> BatchStatus {
        if cancelled {
            BatchStatus::Cancelled
        } else if self.pending + self.processing == 0 {
            if self.completed > 0 {
                BatchStatus::Completed
            } else {
                BatchStatus::Failed
            }
        } else if self.attempted == 0 {
            BatchStatus::Pending
        } else {
            BatchStatus::Processing
        }
    }

    /// Share of items in a final state, 0 to 100.
    pub fn percentage(&self) -> f64 {
        match self.total() {
            0 => 100.0,
            total => (self.finished() as f64 * 100.0 / total as f64 * 10.0).round() / 10.0,
        }
    }

    /// `queued` before any item started, `provisioning` while items are
    /// starting, `ready` once all are final.
    pub fn phase(&self, cancelled: bool) -> RequestPhase {
        match self.status(cancelled) {
            BatchStatus::Pending => RequestPhase::Queued,
            BatchStatus::Processing => RequestPhase::Provisioning,
            _ => RequestPhase::Ready,
        }
    }
}

/// The one-line summary of a batch's failures, e.g. "2 of 10 sessions failed
/// to start: chromium exited with …".
pub fn failure_summary(counts: &BatchCounts, first_error: Option<&str>) -> Option<String> {
    if counts.failed == 0 {
        return None;
    }
    let noun = if counts.total() == 1 { "session" } else { "sessions" };
    let mut summary = format!("{} of {} {noun} failed to start", counts.failed, counts.total());
    if let Some(error) = first_error {
        summary.push_str(": ");
        summary.push_str(error);
    }
    Some(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pending: i64, processing: i64, completed: i64, failed: i64, cancelled: i64) -> BatchCounts {
        let attempted = processing + completed + failed + cancelled;
        BatchCounts {
            pending,
            processing,
            completed,
            failed,
            cancelled,
            attempted,
        }
    }

    #[test]
    fn status_follows_the_items() {
        assert_eq!(counts(5, 0, 0, 0, 0).status(false), BatchStatus::Pending);
        assert_eq!(counts(4, 1, 0, 0, 0).status(false), BatchStatus::Processing);
        assert_eq!(counts(4, 0, 1, 0, 0).status(false), BatchStatus::Processing);
        assert_eq!(counts(0, 0, 1, 4, 0).status(false), BatchStatus::Completed);
        assert_eq!(counts(0, 0, 0, 5, 0).status(false), BatchStatus::Failed);
        assert_eq!(counts(3, 0, 2, 0, 0).status(true), BatchStatus::Cancelled);
        // Every item failed and was retried: processing again, not pending.
        let retried = BatchCounts {
            attempted: 5,
            ..counts(5, 0, 0, 0, 0)
        };
        assert_eq!(retried.status(false), BatchStatus::Processing);
    }

    #[test]
    fn every_mix_of_counts_is_consistent() {
        // All mixes of up to 3 items per state: the phase agrees with the
        // status, the percentage stays in range, and final means 100 %.
        for pending in 0..3 {
            for processing in 0..3 {
                for completed in 0..3 {
                    for failed in 0..3 {
                        for cancelled in 0..3 {
                            let mix = counts(pending, processing, completed, failed, cancelled);
                            if mix.total() == 0 {
                                continue;
                            }
                            for flag in [false, true] {
                                let status = mix.status(flag);
                                let percentage = mix.percentage();
                                assert!((0.0..=100.0).contains(&percentage));
                                assert_eq!(status == BatchStatus::Pending, mix.phase(flag) == RequestPhase::Queued);
                                if !flag && status.is_final() {
                                    assert_eq!(percentage, 100.0, "{mix:?}");
                                    assert_eq!(mix.phase(flag), RequestPhase::Ready);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn failures_are_summarised() {
        assert_eq!(failure_summary(&counts(0, 0, 8, 0, 0), None), None);
        assert_eq!(
            failure_summary(&counts(0, 0, 8, 2, 0), Some("chromium exited with exit status 1")).as_deref(),
            Some("2 of 10 sessions failed to start: chromium exited with exit status 1")
        );
    }
}

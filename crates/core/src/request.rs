//! The state machine of a start request: one row per session asked for,
//! persisted before any browser starts so that a crash never loses it.
//!
//! ```text
//! pending ──> processing ──> completed   (its session is up)
//!  ▲ │            │    └───> failed
//!  │ └────────────┴────────> cancelled
//!  └── requeue (from processing) / retry (from failed or completed)
//! ```
//!
//! Every move is a [`RequestMove`], with the states it may start from; the
//! store's conditional writes take their `WHERE status IN (…)` from it, so
//! the rules written here are the ones enforced. A `processing` request
//! goes back to `pending` when its launch failed with attempts left, or when
//! a restarting server finds it (its half-launched browser is gone with the
//! old run); a batch retry moves failed items, and completed items whose
//! session has ended, back to `pending`.

use crate::wire_enum::wire_enum;

wire_enum! {
    /// Where a start request is.
    pub enum RequestStatus {
        /// Accepted, waiting for capacity.
        Pending => "pending",
        /// Its browser is being launched.
        Processing => "processing",
        /// Its session came up.
        Completed => "completed",
        /// Its browser could not be started.
        Failed => "failed",
        /// Withdrawn before its session came up.
        Cancelled => "cancelled",
    }
}

/// A move of a start request, with the states it may start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestMove {
    /// Its launch begins.
    Begin,
    /// Its session came up.
    Complete,
    /// Its launch failed for good.
    Fail,
    /// Back in the queue: a failed launch with attempts left, or a launch
    /// the server's previous run left half-done.
    Requeue,
    /// Withdrawn before its launch began (an abandoned start).
    Withdraw,
    /// Withdrawn before its session came up (a batch cancel, an end of a
    /// launching session).
    Cancel,
    /// A batch retry: failed, or completed with its session since ended.
    Retry,
}

impl RequestMove {
    /// Every move.
    pub const ALL: [RequestMove; 7] = [
        Self::Begin,
        Self::Complete,
        Self::Fail,
        Self::Requeue,
        Self::Withdraw,
        Self::Cancel,
        Self::Retry,
    ];

    /// The states the move may start from.
    pub fn from(self) -> &'static [RequestStatus] {
        use RequestStatus::*;
        match self {
            Self::Begin | Self::Withdraw => &[Pending],
            Self::Complete | Self::Fail | Self::Requeue => &[Processing],
            Self::Cancel => &[Pending, Processing],
            Self::Retry => &[Failed, Completed],
        }
    }

    /// The state it ends in.
    pub fn to(self) -> RequestStatus {
        use RequestStatus::*;
        match self {
            Self::Begin => Processing,
            Self::Complete => Completed,
            Self::Fail => Failed,
            Self::Requeue | Self::Retry => Pending,
            Self::Withdraw | Self::Cancel => Cancelled,
        }
    }
}

impl RequestStatus {
    /// Whether the request is done: nothing changes it any more but an
    /// explicit batch retry.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Whether some move takes `self` to `next`.
    pub fn can_become(&self, next: RequestStatus) -> bool {
        RequestMove::ALL
            .iter()
            .any(|step| step.to() == next && step.from().contains(self))
    }

    /// The provisioning phase shown to pollers.
    pub fn phase(&self) -> RequestPhase {
        match self {
            Self::Pending => RequestPhase::Queued,
            Self::Processing => RequestPhase::Provisioning,
            Self::Completed | Self::Failed | Self::Cancelled => RequestPhase::Ready,
        }
    }
}

/// The coarse phase of provisioning (`progress.current_phase` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestPhase {
    /// Nothing started yet.
    Queued,
    /// A browser is being launched.
    Provisioning,
    /// Nothing left to do.
    Ready,
}

impl RequestPhase {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Provisioning => "provisioning",
            Self::Ready => "ready",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_move_only_by_a_retry() {
        for step in RequestMove::ALL {
            if step != RequestMove::Retry {
                assert!(step.from().iter().all(|from| !from.is_final()), "{step:?}");
            }
        }
        assert!(!RequestStatus::Cancelled.can_become(RequestStatus::Pending));
        assert!(RequestStatus::Failed.can_become(RequestStatus::Pending));
    }

    #[test]
    fn the_moves_are_the_diagram() {
        use RequestStatus::*;
        let allowed = [
            (Pending, Processing),
            (Pending, Cancelled),
            (Processing, Completed),
            (Processing, Failed),
            (Processing, Cancelled),
            (Processing, Pending),
            (Failed, Pending),
            (Completed, Pending),
        ];
        for from in RequestStatus::ALL.iter().copied() {
            for to in RequestStatus::ALL.iter().copied() {
                assert_eq!(from.can_become(to), allowed.contains(&(from, to)), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for status in RequestStatus::ALL.iter().copied() {
            assert_eq!(status.as_str().parse::<RequestStatus>().ok(), Some(status));
        }
    }
}

//! The state machine of a start request: one row per session asked for,
//! persisted before any browser starts so that a crash never loses it.
//!
//! ```text
//! pending ──> processing ──> completed   (its session is up)
//!    │            │    └───> failed
//!    └────────────┴────────> cancelled
//! ```
//!
//! A `processing` request found by a restarting server goes back to
//! `pending` (its half-launched browser is gone with the old run).

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

impl RequestStatus {
    /// Whether the request can no longer change.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Whether moving from `self` to `next` is allowed.
    pub fn can_become(&self, next: RequestStatus) -> bool {
        use RequestStatus::*;
        matches!(
            (self, next),
            (Pending, Processing)
                | (Pending, Cancelled)
                | (Processing, Completed)
                | (Processing, Failed)
                | (Processing, Cancelled)
                | (Processing, Pending)
        )
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
    fn final_states_never_move() {
        for from in RequestStatus::ALL.iter().copied().filter(RequestStatus::is_final) {
            for to in RequestStatus::ALL.iter().copied() {
                assert!(!from.can_become(to), "{from} -> {to}");
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

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

use std::fmt;
use std::str::FromStr;

use crate::session::UnknownStatus;

/// Where a start request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    /// Accepted, waiting for capacity.
    Pending,
    /// Its browser is being launched.
    Processing,
    /// Its session came up.
    Completed,
    /// Its browser could not be started.
    Failed,
    /// Withdrawn before its session came up.
    Cancelled,
}

impl RequestStatus {
    /// Every status.
    pub const ALL: [RequestStatus; 5] = [
        Self::Pending,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The wire and storage name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

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

impl fmt::Display for RequestStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for RequestStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| UnknownStatus(text.to_owned()))
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
        for from in RequestStatus::ALL.into_iter().filter(RequestStatus::is_final) {
            for to in RequestStatus::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for status in RequestStatus::ALL {
            assert_eq!(status.as_str().parse::<RequestStatus>().ok(), Some(status));
        }
    }
}

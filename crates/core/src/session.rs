//! The session state machine.
//!
//! ```text
//! starting ──> running ──> completed
//!    │            │
//!    └──> failed <┘
//! ```
//!
//! `completed` means the session was ended on purpose (a client, a timeout, a
//! cancel, a delete, a shutdown); `failed` means the browser never came up or
//! died on its own. Both are final.

use crate::wire_enum::wire_enum;

wire_enum! {
    /// Where a session is in its life.
    pub enum SessionStatus {
        /// The browser is being launched.
        Starting => "starting",
        /// The browser is up and connectable.
        Running => "running",
        /// Ended on purpose.
        Completed => "completed",
        /// Never came up, or died on its own.
        Failed => "failed",
    }
}

impl SessionStatus {
    /// Whether the session can no longer change.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// Whether moving from `self` to `next` is allowed.
    pub fn can_become(&self, next: SessionStatus) -> bool {
        matches!(
            (self, next),
            (Self::Starting, Self::Running)
                | (Self::Starting, Self::Failed)
                | (Self::Starting, Self::Completed)
                | (Self::Running, Self::Completed)
                | (Self::Running, Self::Failed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_never_move() {
        for from in SessionStatus::ALL.iter().copied().filter(SessionStatus::is_final) {
            for to in SessionStatus::ALL.iter().copied() {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for status in SessionStatus::ALL.iter().copied() {
            assert_eq!(status.as_str().parse::<SessionStatus>().ok(), Some(status));
        }
        assert!("bogus".parse::<SessionStatus>().is_err());
    }
}

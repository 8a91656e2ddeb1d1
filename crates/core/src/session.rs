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
//! died on its own. Both are final. Every move is a [`SessionMove`], whose
//! starting states the store's conditional writes use.

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

/// A move of a session, with the states it may start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMove {
    /// Its browser is up.
    Run,
    /// It ends, `completed` or `failed`.
    End,
}

impl SessionMove {
    /// Every move.
    pub const ALL: [SessionMove; 2] = [Self::Run, Self::End];

    /// The states the move may start from.
    pub fn from(self) -> &'static [SessionStatus] {
        match self {
            Self::Run => &[SessionStatus::Starting],
            Self::End => &[SessionStatus::Starting, SessionStatus::Running],
        }
    }

    /// Whether it may end in `status`.
    pub fn reaches(self, status: SessionStatus) -> bool {
        match self {
            Self::Run => status == SessionStatus::Running,
            Self::End => status.is_final(),
        }
    }
}

impl SessionStatus {
    /// Whether the session can no longer change.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// Whether some move takes `self` to `next`.
    pub fn can_become(&self, next: SessionStatus) -> bool {
        SessionMove::ALL
            .iter()
            .any(|step| step.reaches(next) && step.from().contains(self))
    }

    /// Whether the session is live (its browser launching or running).
    pub fn is_live(&self) -> bool {
        !self.is_final()
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

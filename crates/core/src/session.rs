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

use std::fmt;
use std::str::FromStr;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// The browser is being launched.
    Starting,
    /// The browser is up and connectable.
    Running,
    /// Ended on purpose.
    Completed,
    /// Never came up, or died on its own.
    Failed,
}

impl SessionStatus {
    /// Every status, in life order.
    pub const ALL: [SessionStatus; 4] = [Self::Starting, Self::Running, Self::Completed, Self::Failed];

    /// The wire and storage name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    /// Whether the session can no longer change.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// Whether the session holds (or is about to hold) a browser.
    pub fn is_live(&self) -> bool {
        !self.is_final()
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

impl fmt::Display for SessionStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A status name that is not one of ours.
#[derive(Debug, thiserror::Error)]
#[error("unknown session status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for SessionStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| UnknownStatus(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_never_move() {
        for from in SessionStatus::ALL.into_iter().filter(SessionStatus::is_final) {
            for to in SessionStatus::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for status in SessionStatus::ALL {
            assert_eq!(status.as_str().parse::<SessionStatus>().ok(), Some(status));
        }
        assert!("bogus".parse::<SessionStatus>().is_err());
    }
}

//! The states of what the server keeps beside sessions: a saved profile, a
//! session's recording, and one attempt at delivering a webhook event.
//! Stored and answered by their names, compared as enums.

use crate::wire_enum::wire_enum;

wire_enum! {
    /// Where a saved profile is.
    pub enum ProfileStatus {
        /// Made from a running session, saved when that session ends.
        Pending => "pending",
        /// A saved copy is in place; sessions can start from it.
        Ready => "ready",
        /// Its session ended without a copy being saved.
        Failed => "failed",
    }
}

wire_enum! {
    /// Where a session's recording is.
    pub enum RecordingStatus {
        /// Its session is being recorded.
        Recording => "recording",
        /// The video is finished and can be fetched.
        Ready => "ready",
        /// No video came of it.
        Failed => "failed",
    }
}

wire_enum! {
    /// Where one attempt at delivering a webhook event is.
    pub enum DeliveryStatus {
        /// Due, or waiting for its time.
        Pending => "pending",
        /// A node is sending it now.
        InFlight => "in_flight",
        /// The receiver took it.
        Succeeded => "succeeded",
        /// It did not go through; another attempt follows.
        Failed => "failed",
        /// It did not go through and no attempt follows.
        Dead => "dead",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_reads_back_from_its_name() {
        for status in ProfileStatus::ALL {
            assert_eq!(status.as_str().parse::<ProfileStatus>().ok(), Some(*status));
        }
        for status in RecordingStatus::ALL {
            assert_eq!(status.as_str().parse::<RecordingStatus>().ok(), Some(*status));
        }
        for status in DeliveryStatus::ALL {
            assert_eq!(status.as_str().parse::<DeliveryStatus>().ok(), Some(*status));
        }
        assert!("saving".parse::<ProfileStatus>().is_err());
    }
}

wire_enum! {
    /// Where a run of user code is (a task's run, or `execute_code`).
    pub enum ExecutionStatus {
        /// Accepted, waiting for a runner (or for its session to start).
        Queued => "queued",
        /// Its code runs.
        Running => "running",
        /// Its code returned.
        Success => "success",
        /// Its code threw, crashed, or could not start.
        Failure => "failure",
        /// It ran past its time and was stopped.
        Timeout => "timeout",
        /// Its session ended, or the server stopped, before it finished.
        Cancelled => "cancelled",
    }
}

impl ExecutionStatus {
    /// Whether the run is over.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

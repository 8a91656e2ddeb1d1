//! Domain types of anchorage: identifiers, sessions and start requests with
//! their state machines, and the validated options of a session start.
//!
//! This crate does no I/O: no files, no sockets, no processes, no SQL. The
//! store, the browser supervisor and the HTTP server all speak in these types,
//! so the rules written here hold the same wherever they are used.

pub mod admission;
pub mod batch;
pub mod ids;
pub mod network;
pub mod options;
pub mod request;
pub mod resources;
pub mod session;
pub mod time;
pub mod webhook;
mod wire_enum;

pub use admission::FairQueue;
pub use batch::{failure_summary, BatchCounts, BatchStatus};
pub use ids::{
    ApiKeyId, AttemptId, BatchId, CertificateId, DeliveryId, ExecutionId, ExtensionId, NodeId, ProfileId, RecordingId,
    RequestId, SessionId, TaskId, TaskVersionId, TeamId,
};
pub use options::{
    check_certificate_name, check_profile_name, check_tags, redact_configuration, AnchoragePart, CustomProxy,
    Isolation, OptionsError, ProfileUse, SessionOptions, Viewport,
};
pub use request::{RequestMove, RequestPhase, RequestStatus};
pub use resources::{DeliveryStatus, ExecutionStatus, ProfileStatus, RecordingStatus};
pub use session::{SessionMove, SessionStatus};
pub use time::Timestamp;
pub use wire_enum::UnknownStatus;

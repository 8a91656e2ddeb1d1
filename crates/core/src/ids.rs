//! Identifier newtypes. Every id is a UUID v4; parsing happens once, at the
//! edge, so that code further in never handles an unchecked string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (v4) identifier.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// A fixed identifier from its 128 bits (tests and fixtures).
            pub const fn from_u128(bits: u128) -> Self {
                Self(Uuid::from_u128(bits))
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            /// Accepts only the canonical hyphenated form, the one we hand out.
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                uuid::fmt::Hyphenated::from_str(text).map(|hyphenated| Self(hyphenated.into_uuid()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(formatter)
            }
        }
    };
}

uuid_id!(
    /// One browser session.
    SessionId
);
uuid_id!(
    /// A server process sharing the database: a node. Kept in its data dir,
    /// so a node that restarts is the same node.
    NodeId
);
uuid_id!(
    /// A team: the unit of tenancy. Every session belongs to one.
    TeamId
);
uuid_id!(
    /// An API key's row (not the key itself, which is never stored).
    ApiKeyId
);
uuid_id!(
    /// A batch of start requests.
    BatchId
);
uuid_id!(
    /// A session's video recording.
    RecordingId
);

uuid_id!(
    /// A request to start one session (sync, async, or one item of a batch).
    RequestId
);
uuid_id!(
    /// A team's saved browser profile.
    ProfileId
);
uuid_id!(
    /// A browser extension a team uploaded.
    ExtensionId
);
uuid_id!(
    /// A CA certificate a team uploaded.
    CertificateId
);

uuid_id!(
    /// A code task (`/v1/task`): the user's TypeScript, kept in versions.
    TaskId
);
uuid_id!(
    /// One version of a task (its draft, or a published number).
    TaskVersionId
);
uuid_id!(
    /// One run of user code: a task's run, or an `execute_code` snippet.
    ExecutionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_canonical_uuids() {
        let id = SessionId::new_random();
        assert_eq!(id.to_string().parse::<SessionId>().ok(), Some(id));
        assert!("not-a-uuid".parse::<SessionId>().is_err());
        assert!("".parse::<SessionId>().is_err());
        let simple = id.as_uuid().simple().to_string();
        assert!(simple.parse::<SessionId>().is_err());
    }
}

/// An id the database makes for a row of its own, kept and shown exactly as
/// stored (32 hex digits, or a hyphenated UUID for rows written later): a
/// newtype so that one kind is never passed where another is meant.
macro_rules! stored_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as stored.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                Self(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }
    };
}

stored_id!(
    /// A webhook event's delivery to one webhook (`Anchor-Delivery-Id`),
    /// the same for each of its attempts.
    DeliveryId
);
stored_id!(
    /// One attempt at a delivery.
    AttemptId
);

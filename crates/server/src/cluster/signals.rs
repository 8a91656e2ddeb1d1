//! Wake-ups between the nodes of one database (see [`super::Cluster::publish`]
//! and [`super::Cluster::listen`]): a start queued for any
//! node to claim, a start request that reached its outcome (its caller may
//! wait at another node), a batch that changed (its event streams may be
//! open at another node). Each of these is also polled for, so a
//! notification lost while a listener reconnects costs time, nothing else.

use anchorage_core::{BatchId, NodeId, RequestId};

/// What one node tells the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Starts went into the shared queue (or were freed from a lost node):
    /// nodes with room should claim now.
    Queued,
    /// A start request reached its outcome.
    Request(RequestId),
    /// A batch changed.
    Batch(BatchId),
}

impl Signal {
    /// The topic that carries it, naming the node it comes from.
    pub fn topic(&self, from: NodeId) -> String {
        match self {
            Self::Queued => format!("{from} queued"),
            Self::Request(id) => format!("{from} request {id}"),
            Self::Batch(id) => format!("{from} batch {id}"),
        }
    }

    /// Its kind, as `/metrics` labels it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Request(_) => "request",
            Self::Batch(_) => "batch",
        }
    }

    /// The node and signal a topic carries; `None` for one this version
    /// does not know.
    pub fn parse(topic: &str) -> Option<(NodeId, Self)> {
        let mut words = topic.split(' ');
        let from = words.next()?.parse().ok()?;
        let signal = match (words.next()?, words.next()) {
            ("queued", None) => Self::Queued,
            ("request", Some(id)) => Self::Request(id.parse().ok()?),
            ("batch", Some(id)) => Self::Batch(id.parse().ok()?),
            _ => return None,
        };
        words.next().is_none().then_some((from, signal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_read_back_as_the_signal_and_its_node() {
        let node = NodeId::from_u128(5);
        for signal in [
            Signal::Queued,
            Signal::Request(RequestId::new_random()),
            Signal::Batch(BatchId::new_random()),
        ] {
            assert_eq!(Signal::parse(&signal.topic(node)), Some((node, signal)));
        }
        for unknown in [
            "",
            "queued",
            "x queued",
            &format!("{node} launched"),
            &format!("{node} queued now"),
            &format!("{node} batch 12"),
        ] {
            assert_eq!(Signal::parse(unknown), None, "{unknown}");
        }
    }
}

//! This process as a node of the database it shares: its stable id (kept in
//! the data dir, so a restart is the same node), its registration, and the
//! lease it renews while it runs. A node whose lease has run out is dead:
//! work it had claimed (for now, webhook attempts) is released to the
//! others.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anchorage_core::{NodeId, Timestamp};
use anchorage_store::{NodeRecord, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// How long a lease lasts.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often it is renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);

/// The node's id, read from `<data dir>/node-id`, or made and written there.
pub fn node_id(data_dir: &Path) -> std::io::Result<NodeId> {
    let file = data_dir.join("node-id");
    match std::fs::read_to_string(&file) {
        Ok(text) => text.trim().parse().map_err(|_| {
            std::io::Error::other(format!(
                "{} does not hold a node id; remove it to make a new one",
                file.display()
            ))
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = NodeId::new_random();
            // Written whole, then renamed: a crash leaves the old state or the new.
            let partial = data_dir.join("node-id.partial");
            std::fs::write(&partial, format!("{id}\n"))?;
            std::fs::rename(&partial, &file)?;
            Ok(id)
        }
        Err(error) => Err(error),
    }
}

fn lease_from(now: Timestamp) -> Timestamp {
    Timestamp::from_millis(now.as_millis() + LEASE.as_millis() as i64)
}

/// Registers the node with a fresh lease.
pub async fn register(store: &dyn Store, id: NodeId, url: &str, max_sessions: usize) -> Result<(), StoreError> {
    let now = Timestamp::now();
    store
        .register_node(&NodeRecord {
            id,
            url: url.to_owned(),
            max_sessions: i64::try_from(max_sessions).unwrap_or(i64::MAX),
            started_at: now,
            lease_until: lease_from(now),
            live_sessions: 0,
        })
        .await
}

/// Renews the lease until `shutdown`, then leaves the registry. A node
/// found missing (removed while it could not reach the database) registers
/// again.
pub async fn keep_lease(
    store: Arc<dyn Store>,
    id: NodeId,
    url: String,
    max_sessions: usize,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
        match store.renew_node(id, lease_from(Timestamp::now())).await {
            Ok(true) => {}
            Ok(false) => {
                if let Err(error) = register(store.as_ref(), id, &url, max_sessions).await {
                    tracing::warn!(%error, "cannot register this node again");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot renew this node's lease"),
        }
    }
    if let Err(error) = store.leave(id).await {
        tracing::warn!(%error, "cannot remove this node from the registry");
    }
}

/// Every registered node, read from the database of `config` (for
/// `anchorage nodes`).
pub async fn list(config: &crate::config::Config) -> Result<Vec<NodeRecord>, crate::app::StartError> {
    Ok(crate::app::open_store(config).await?.nodes().await?)
}

/// `live` while a node's lease holds, else `dead`.
pub fn state(node: &NodeRecord) -> &'static str {
    if node.lease_until >= Timestamp::now() {
        "live"
    } else {
        "dead"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_id_is_kept_in_the_data_dir() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = node_id(dir.path()).expect("made");
        assert_eq!(node_id(dir.path()).expect("read"), first, "a restart is the same node");
        std::fs::write(dir.path().join("node-id"), "not an id").expect("write");
        let error = node_id(dir.path()).expect_err("a bad file is an error");
        assert!(error.to_string().contains("node-id"), "{error}");
    }
}

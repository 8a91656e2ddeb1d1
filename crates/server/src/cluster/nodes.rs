//! This process as a node of the database it shares: its stable id (kept in
//! the data dir, so a restart is the same node), its registration, and the
//! lease it renews while it runs. A node whose lease has run out is dead:
//! the others record its sessions as failed and queue its work again
//! (start requests, webhook attempts).

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

/// Why a lost node's sessions ended, as recorded.
pub const LOST_REASON: &str = "its node was lost (it stopped renewing its lease); the browser was ended";

/// Renews the lease until `shutdown`, then leaves the registry; on each
/// round also recovers the nodes whose lease ran out (see
/// [`recover_lost_nodes`]). A node found missing was taken for lost by the
/// others: it gives up everything it runs (see
/// [`crate::fleet::Fleet::give_up_everything`]) and registers again.
pub async fn keep_lease(
    store: Arc<dyn Store>,
    id: NodeId,
    url: String,
    fleet: Arc<crate::fleet::Fleet>,
    shutdown: CancellationToken,
) {
    let max_sessions = fleet.max_sessions();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
        match store.renew_node(id, lease_from(Timestamp::now())).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!("this node was taken for lost by the others; ending everything it runs");
                fleet.give_up_everything(LOST_REASON).await;
                if let Err(error) = register(store.as_ref(), id, &url, max_sessions).await {
                    tracing::warn!(%error, "cannot register this node again");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot renew this node's lease"),
        }
        match recover_lost_nodes(store.as_ref(), id, Timestamp::now()).await {
            // Their work is back in the queue: every node with room may take it.
            Ok(recovered) if recovered > 0 => fleet.requeued(),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot look for lost nodes"),
        }
    }
    if let Err(error) = store.leave(id).await {
        tracing::warn!(%error, "cannot remove this node from the registry");
    }
}

/// Recovers every other node whose lease ran out before `now`: its live
/// sessions are recorded as failed, what it was launching or had claimed
/// goes back to the queue (`Store::recover_node`), and it leaves the
/// registry (it registers again if it comes back, and reaps its old
/// browsers at start). Several nodes doing this at once is harmless: the
/// store's changes are conditional. How many it recovered.
pub async fn recover_lost_nodes(store: &dyn Store, me: NodeId, now: Timestamp) -> Result<usize, StoreError> {
    let mut recovered = 0;
    for node in store.nodes().await? {
        if node.id == me || node.lease_until >= now {
            continue;
        }
        let report = store.recover_node(node.id, LOST_REASON, now).await?;
        store.leave(node.id).await?;
        tracing::warn!(
            node = %node.id,
            url = %node.url,
            sessions_failed = report.sessions_failed,
            requests_requeued = report.requests_requeued,
            "a node was lost; its sessions are recorded as failed and its work is queued again"
        );
        recovered += 1;
    }
    Ok(recovered)
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

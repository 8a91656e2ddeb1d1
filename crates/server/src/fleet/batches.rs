//! Batch operations of the fleet: create, cancel, delete, retry. The store
//! makes each change atomically; the fleet then acts on it: drops queued
//! items, stops launches under way (waiting until their browsers are gone),
//! and ends running sessions.

use crate::cluster::{BatchShare, HeldSession, Signal};
use anchorage_core::{BatchId, SessionId, SessionStatus, TeamId, Timestamp};
use anchorage_store::{BatchChange, BatchRecord, RequestRecord, RetryOutcome, StoreError};

use super::Fleet;

/// What ending a batch's sessions came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Sessions that were running and were ended now.
    pub ended: usize,
    /// Sessions that could not be ended, with why.
    pub errors: Vec<(SessionId, String)>,
}

/// The answer to a cancel or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchEnd {
    /// No such batch for this team.
    NotFound,
    /// The batch's state does not allow it.
    Conflict(anchorage_core::BatchStatus),
    /// Done.
    Done(Ended),
}

impl Fleet {
    /// Persists a batch with its items in the shared queue, for the nodes
    /// with room to claim.
    pub async fn submit_batch(&self, batch: &BatchRecord, items: Vec<RequestRecord>) -> Result<(), StoreError> {
        self.store.insert_batch(batch, &items).await?;
        self.admission.wake();
        self.cluster.publish(Signal::Queued);
        self.batch_changed(batch.id);
        Ok(())
    }

    /// Cancels a batch: nothing of it starts any more, launches under way are
    /// stopped, running sessions are ended; all of it before this returns.
    pub async fn cancel_batch(&self, team_id: TeamId, batch_id: BatchId) -> Result<BatchEnd, StoreError> {
        let change = self.store.cancel_batch(team_id, batch_id, Timestamp::now()).await?;
        self.finish_batch_end(batch_id, change, "the batch was cancelled").await
    }

    /// Deletes a batch: ends every session of it and removes it.
    pub async fn delete_batch(&self, team_id: TeamId, batch_id: BatchId) -> Result<BatchEnd, StoreError> {
        let change = self.store.delete_batch(team_id, batch_id, Timestamp::now()).await?;
        self.finish_batch_end(batch_id, change, "the batch was deleted").await
    }

    /// Acts on a cancel or delete the store made: every node (this one and
    /// each other, once each, at once) drops what it queued of the batch,
    /// stops its launches of it and ends its running sessions of it; a
    /// session that no node held (its node was lost) is recorded as ended
    /// here. Answers once all of it is done, with how many running sessions
    /// were ended on every node together.
    async fn finish_batch_end(
        &self,
        batch_id: BatchId,
        change: BatchChange,
        reason: &str,
    ) -> Result<BatchEnd, StoreError> {
        let running = match change {
            BatchChange::NotFound => return Ok(BatchEnd::NotFound),
            BatchChange::Conflict(status) => return Ok(BatchEnd::Conflict(status)),
            BatchChange::Done(running) => running,
        };
        let (here, elsewhere) = tokio::join!(
            self.stop_batch_here(batch_id, reason),
            self.cluster.stop_batch_elsewhere(batch_id, reason)
        );
        let mut outcome = Ended {
            ended: here.ended(),
            errors: Vec::new(),
        };
        let mut held: std::collections::HashSet<SessionId> =
            here.sessions.iter().map(|session| session.session_id).collect();
        let mut silent = std::collections::HashSet::new();
        for node in elsewhere? {
            match node.share {
                Ok(share) => {
                    outcome.ended += share.ended();
                    held.extend(share.sessions.iter().map(|session| session.session_id));
                }
                Err(error) => {
                    tracing::error!(%batch_id, node = %node.node, %error, "a node could not stop its share of a batch");
                    silent.insert(node.node);
                }
            }
        }
        // What no node said it held: a session of a node that could not be
        // reached cannot be ended; one of a lost node (or of none) is
        // recorded as ended.
        for session_id in running.into_iter().filter(|session_id| !held.contains(session_id)) {
            let ended = match self.cluster.owner_elsewhere(session_id).await {
                Ok(Some(owner)) if silent.contains(&owner.id) => {
                    outcome
                        .errors
                        .push((session_id, "its node cannot be reached; see the server log".to_owned()));
                    continue;
                }
                Ok(_) => self.end_session(session_id, SessionStatus::Completed, reason).await,
                Err(error) => Err(error),
            };
            match ended {
                Ok(true) => outcome.ended += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(%session_id, %error, "could not end a session of a batch");
                    outcome.errors.push((
                        session_id,
                        "the session could not be ended; see the server log".to_owned(),
                    ));
                }
            }
        }
        self.batch_changed(batch_id);
        Ok(BatchEnd::Done(outcome))
    }

    /// This node's share of a batch that was cancelled or deleted: what it
    /// queued of it is dropped, its launches stopped, its running sessions
    /// of it ended; all of it gone before this returns. The sessions it
    /// held, each with whether this ended it.
    pub async fn stop_batch_here(&self, batch_id: BatchId, reason: &str) -> BatchShare {
        self.admission.remove(|request| request.batch_id == Some(batch_id));
        self.abort_launches(|launch| launch.batch_id == Some(batch_id)).await;
        let sessions: Vec<std::sync::Arc<super::LiveSession>> = self
            .live
            .lock()
            .map(|live| {
                live.values()
                    .filter(|session| session.batch_id == Some(batch_id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let ends = sessions
            .iter()
            .map(|session| session.end(SessionStatus::Completed, reason, super::EndWait::Gone));
        let ended = futures_util::future::join_all(ends).await;
        self.batch_changed(batch_id);
        BatchShare {
            sessions: sessions
                .iter()
                .zip(ended)
                .map(|(session, ended)| HeldSession {
                    session_id: session.id,
                    ended,
                })
                .collect(),
        }
    }

    /// Re-queues a batch's failed items (see `Store::retry_batch`).
    pub async fn retry_batch(
        &self,
        team_id: TeamId,
        batch_id: BatchId,
        failed_only: bool,
        attempts: i64,
    ) -> Result<RetryOutcome, StoreError> {
        let outcome = self.store.retry_batch(team_id, batch_id, failed_only, attempts).await?;
        if let RetryOutcome::Retried { .. } = &outcome {
            // Back in the shared queue.
            self.admission.wake();
            self.cluster.publish(Signal::Queued);
            self.batch_changed(batch_id);
        }
        Ok(outcome)
    }
}
